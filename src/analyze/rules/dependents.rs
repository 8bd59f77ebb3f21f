//! What depends on a key the plan replaces. Swapping a key drops the old
//! constraint in the swap's transaction; PostgreSQL refuses while
//! something depends on it:
//!
//! ```text
//! ERROR:  cannot drop constraint orders_pkey on table orders because other objects depend on it
//! DETAIL: view order_totals depends on constraint orders_pkey on table orders
//! ```
//!
//! A view that groups by the key and selects the table's other columns
//! relies on it (functional dependency). The swap carries a plain view
//! through in its own transaction: it is re-created with the tenant column
//! added to that GROUP BY ([`crate::analyze::regroup`]), which changes no
//! group and relies on the new key. A materialized view cannot be
//! re-created without refreshing it, and anything else (a function, a
//! rule) cannot be rewritten safely: those are refused before any change,
//! with the change to make.

use crate::analyze::regroup::{regroup, Grouping, SwappedKey};
use crate::analyze::rules::id::RuleId;
use crate::analyze::{Finding, Severity};
use crate::catalog::{Catalog, KeyView, Table};

use super::Ctx;

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in ctx.tenant_tables() {
        let tcol = ctx.tenant_column(t);
        let (keys, _) = t.keys_without(tcol);
        for k in keys {
            for d in &k.dependents {
                out.push(Finding {
                    rule: RuleId::KeyDependent,
                    severity: Severity::Blocker,
                    table: Some(t.name.clone()),
                    object: Some(k.name.clone()),
                    message: format!(
                        "{d} depends on {}, which the plan replaces with a key that starts with {tcol}: the swap would fail on it",
                        k.name
                    ),
                    citus_error: None,
                    fix: format!(
                        "drop it, or change it so that it no longer relies on {} ({}), then run again; re-create it after apply if you need it",
                        k.name,
                        k.columns.join(", ")
                    ),
                    automatic: false,
                });
            }
            for v in ctx
                .cat
                .key_views
                .iter()
                .filter(|v| v.keys.iter().any(|(vt, c)| vt == &t.name && c == &k.name))
            {
                out.push(view_finding(ctx, t, &k.name, v));
            }
        }
    }
    out
}

/// The keys of `view` that the plan replaces (on tenant tables, those
/// without the tenant column), each with its table's tenant column.
pub fn swapped_keys<'a>(
    cat: &'a Catalog,
    view: &'a KeyView,
    tenant_of: impl Fn(&Table) -> Option<&'a str>,
) -> Vec<SwappedKey<'a>> {
    view.keys
        .iter()
        .filter_map(|(table, constraint)| {
            let t = cat.table(table)?;
            let tenant = tenant_of(t)?;
            let k = t.keys.iter().find(|k| &k.name == constraint)?;
            (!k.columns.iter().any(|c| c == tenant)).then_some(SwappedKey {
                table: &t.name,
                columns: &k.columns,
                tenant,
            })
        })
        .collect()
}

fn view_finding(ctx: &Ctx, t: &Table, key: &str, v: &KeyView) -> Finding {
    let keys = swapped_keys(ctx.cat, v, |t| {
        ctx.tenant_tables()
            .any(|x| x.name == t.name)
            .then(|| ctx.tenant_column(t))
    });
    // A view is carried through the swap (the tenant column joins its
    // GROUP BY); a materialized view is re-created by the user before
    // apply, grouped by every column it uses, so that it relies on no key.
    // Carried only where the swap can: a plain view on a table's own key
    // (a partition's key goes with its parent's swap, which carries the
    // views of the parent's key only), that the current role may replace.
    let carried = (!v.materialized && t.parent.is_none() && v.owned)
        .then(|| regroup(&v.definition, &keys, Grouping::Tenant))
        .flatten();
    let explicit = regroup(&v.definition, &keys, Grouping::Explicit(&v.uses));
    let tcol = ctx.tenant_column(t);
    let what = if v.materialized {
        "materialized view"
    } else {
        "view"
    };
    let message = format!(
        "{what} {} groups by {key} of {} and selects its other columns: it relies on that key, which the plan replaces",
        v.name, t.name
    );
    let owner = if v.owned {
        String::new()
    } else {
        " (it belongs to another role: run apply as a member of its owner, or)".to_string()
    };
    let (severity, fix, automatic) = match (&carried, &explicit) {
        (Some(_), _) => (
            Severity::Info,
            format!(
                "automatic: the swap re-creates it in its own transaction with {tcol} added to that GROUP BY (the same groups; it then relies on the new key)"
            ),
            true,
        ),
        (None, Some(sql)) if v.materialized => (
            Severity::Blocker,
            format!(
                "re-create it before apply{owner} grouped by every column of {} it uses, so that it no longer relies on {key} (the same rows; it is filled again, so apply does not do it under traffic; its indexes, grants and the views on it go with it and must be re-created; a column without an equality operator, json say, cannot be grouped by): DROP MATERIALIZED VIEW {name}; CREATE MATERIALIZED VIEW {name} AS {sql};",
                t.name,
                name = v.name.sql()
            ),
            false,
        ),
        (None, Some(sql)) => (
            Severity::Blocker,
            format!(
                "re-create it before apply{owner} grouped by every column of {} it uses, so that it no longer relies on {key} (the same rows; a column without an equality operator, json say, cannot be grouped by): CREATE OR REPLACE VIEW {name} AS {sql};",
                t.name,
                name = v.name.sql()
            ),
            false,
        ),
        (None, None) => (
            Severity::Blocker,
            format!(
                "list every column of {} it selects in its GROUP BY{owner} so that it no longer relies on {key}, then run again",
                t.name
            ),
            false,
        ),
    };
    Finding {
        rule: RuleId::ViewReliesOnKey,
        severity,
        table: Some(t.name.clone()),
        object: Some(v.name.to_string()),
        message,
        citus_error: None,
        fix,
        automatic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;
    use crate::catalog::{QName, ViewColumn};

    fn view(name: &str, materialized: bool, def: &str) -> KeyView {
        KeyView {
            name: QName::new("public", name),
            materialized,
            definition: def.into(),
            columns: vec![ViewColumn {
                name: "id".into(),
                type_sql: "bigint".into(),
                collation: None,
            }],
            options: Vec::new(),
            owned: true,
            keys: vec![(QName::new("public", "orders"), "orders_pkey".into())],
            uses: ["id", "note"]
                .iter()
                .map(|c| (QName::new("public", "orders"), c.to_string()))
                .collect(),
        }
    }

    #[test]
    fn views_on_a_replaced_key_are_carried_or_refused() {
        let mut cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("orders")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .col("note", "text")
                .pk(&["id"])
                .fk("o_s", &["store_id"], "stores", &["store_id"]),
        ]);
        let grouped = "SELECT o.id, o.note FROM public.orders o GROUP BY o.id";
        cat.key_views = vec![
            view("totals", false, grouped),
            view("totals_m", true, grouped),
            view("odd", false, "SELECT o.id, o.note FROM public.orders o"),
        ];
        cat.tables[1].keys[0].dependents = vec!["function f()".into()];
        let f = run_rule(&cat, &Default::default(), check);
        let by = |object: &str| {
            f.iter()
                .find(|f| f.object.as_deref() == Some(object))
                .unwrap_or_else(|| panic!("{object} in {f:#?}"))
        };
        let carried = by("totals");
        assert!(carried.automatic && !carried.blocks_apply(), "{carried:?}");
        let m = by("totals_m");
        assert!(m.blocks_apply());
        assert!(
            m.fix.contains("GROUP BY o.id, o.note"),
            "the exact change: {}",
            m.fix
        );
        assert!(by("odd").blocks_apply());
        let other = by("orders_pkey");
        assert_eq!(other.rule, RuleId::KeyDependent);
        assert!(other.blocks_apply() && other.message.contains("function f()"));
    }
}
