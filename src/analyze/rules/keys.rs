//! Keys: every PRIMARY KEY, UNIQUE and EXCLUDE constraint and every unique
//! index of a distributed table must contain the distribution column as a
//! plain key column. Citus refuses otherwise:
//!
//! ```text
//! ERROR:  cannot create constraint on "orders"
//! DETAIL: Distributed relations cannot have UNIQUE, EXCLUDE, or PRIMARY KEY
//!         constraints that do not include the partition column (with an
//!         equality operator if EXCLUDE).
//! ```
//!
//! The plan fixes keys and unique indexes itself: a unique index on
//! `(tenant, ...)` built concurrently, then swapped in. Exclusion
//! constraints and expression-only unique indexes need the user.

use crate::analyze::rules::id::RuleId;
use crate::analyze::{Finding, Severity};
use crate::catalog::KeyKind;

use super::Ctx;

pub const CITUS_ERROR: &str = "Distributed relations cannot have UNIQUE, EXCLUDE, or PRIMARY KEY constraints that do not include the partition column (with an equality operator if EXCLUDE).";

/// Whether every column is filled by a sequence or identity (its values are
/// unique everywhere whatever the key says).
fn generated(t: &crate::catalog::Table, columns: &[String]) -> bool {
    !columns.is_empty()
        && columns.iter().all(|c| {
            t.column(c).is_some_and(|c| {
                c.identity.is_some() || c.default.as_deref().is_some_and(|d| d.contains("nextval("))
            })
        })
}

/// The warning that a unique rule on the application's values becomes
/// per-tenant once the tenant column is in front.
fn per_tenant(t: &crate::catalog::Table, name: &str, columns: &str, col: &str) -> Finding {
    Finding {
        rule: RuleId::UniqueBecomesPerTenant,
        severity: Severity::Warning,
        table: Some(t.name.clone()),
        object: Some(name.to_string()),
        message: format!(
            "{name}: \"unique ({columns})\" on {} becomes \"unique ({col}, {columns})\": two tenants \
             may then have the same {columns}",
            t.name
        ),
        citus_error: None,
        fix: format!(
            "check that the application does not need ({columns}) unique across tenants; if it \
             does, enforce that in the application (a distributed table's shards can only \
             enforce uniqueness within a tenant)"
        ),
        automatic: false,
    }
}

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in ctx.tenant_tables() {
        let col = ctx.tenant_column(t);
        // A partition's copies of its parent's keys and indexes are
        // reported once, on the parent.
        let parent = t.parent.as_ref().and_then(|p| ctx.cat.table(p));
        for k in &t.keys {
            if k.columns.iter().any(|c| c == col) {
                continue;
            }
            if parent.is_some_and(|p| {
                p.keys
                    .iter()
                    .any(|pk| pk.kind == k.kind && pk.columns == k.columns)
            }) {
                continue;
            }
            let (rule, what, automatic, fix) = match k.kind {
                KeyKind::Primary => (
                    RuleId::PrimaryKeyWithoutTenant,
                    "primary key",
                    true,
                    format!(
                        "build a unique index on ({col}, {}) concurrently and swap the primary key to it",
                        k.columns.join(", ")
                    ),
                ),
                KeyKind::Unique => (
                    RuleId::UniqueWithoutTenant,
                    "unique constraint",
                    true,
                    format!(
                        "build a unique index on ({col}, {}) concurrently and swap the constraint to it",
                        k.columns.join(", ")
                    ),
                ),
                KeyKind::Exclusion => (
                    RuleId::ExclusionWithoutTenant,
                    "exclusion constraint",
                    false,
                    format!("recreate it with `{col} WITH =` as its first element (not automatic)"),
                ),
            };
            if k.kind == KeyKind::Unique && !generated(t, &k.columns) {
                out.push(per_tenant(t, &k.name, &k.columns.join(", "), col));
            }
            out.push(Finding {
                rule,
                severity: Severity::Blocker,
                table: Some(t.name.clone()),
                object: Some(k.name.clone()),
                message: format!(
                    "{what} {} on ({}) does not include {col}",
                    k.name,
                    k.columns.join(", ")
                ),
                citus_error: Some(format!(
                    "cannot create constraint on \"{}\": {CITUS_ERROR}",
                    t.name.name
                )),
                fix,
                automatic,
            });
        }
        for ix in &t.unique_indexes {
            if ix.constraint.is_some() {
                continue; // reported with its constraint
            }
            if ix.columns.iter().any(|c| c.as_deref() == Some(col)) {
                continue;
            }
            if parent.is_some_and(|p| {
                p.unique_indexes
                    .iter()
                    .any(|pi| pi.columns == ix.columns && pi.predicate == ix.predicate)
            }) {
                continue;
            }
            let has_expr = ix.columns.iter().any(|c| c.is_none());
            let named: Vec<String> = ix.columns.iter().flatten().cloned().collect();
            if has_expr || !generated(t, &named) {
                let what = ix
                    .columns
                    .iter()
                    .map(|c| c.as_deref().unwrap_or("(expression)"))
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(per_tenant(t, &ix.name, &what, col));
            }
            out.push(Finding {
                rule: RuleId::UniqueIndexWithoutTenant,
                severity: Severity::Blocker,
                table: Some(t.name.clone()),
                object: Some(ix.name.clone()),
                message: format!(
                    "unique index {}{} does not include {col}",
                    ix.name,
                    if ix.predicate.is_some() {
                        " (partial)"
                    } else {
                        ""
                    }
                ),
                citus_error: Some(format!(
                    "cannot create index on relation \"{}\": {CITUS_ERROR}",
                    t.name.name
                )),
                fix: format!(
                    "rebuild it concurrently with {col} as its first column{}",
                    if has_expr {
                        " (it has expressions: kept as they are)"
                    } else {
                        ""
                    }
                ),
                automatic: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    #[test]
    fn tailspin_primary_keys() {
        let f = run_rule(&tailspin(), &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (
                    RuleId::PrimaryKeyWithoutTenant,
                    "products".into(),
                    s("products_pkey")
                ),
                (
                    RuleId::PrimaryKeyWithoutTenant,
                    "orders".into(),
                    s("orders_pkey")
                ),
                (
                    RuleId::PrimaryKeyWithoutTenant,
                    "line_items".into(),
                    s("line_items_pkey")
                ),
            ]
        );
        assert!(f
            .iter()
            .all(|f| f.severity == Severity::Blocker && f.automatic));
        assert!(f[2].fix.contains("(store_id, line_item_id)"));
        assert!(f[0]
            .citus_error
            .as_deref()
            .unwrap()
            .starts_with("cannot create constraint on \"products\""));
    }

    #[test]
    fn every_kind_of_key() {
        let cat = catalog(vec![
            table("stores")
                .col("store_id", "bigint")
                .col("name", "text")
                .pk(&["store_id"])
                .unique("stores_name_key", &["name"]),
            table("orders")
                .col("store_id", "bigint")
                .col("id", "bigint")
                .col("code", "text")
                .col("during", "tstzrange")
                .pk(&["store_id", "id"])
                .unique("orders_code_key", &["code"])
                .unique("orders_store_code_key", &["store_id", "code"])
                .exclusion("orders_during_excl", &["during"])
                .unique_index("orders_code_idx", &["code"])
                .unique_index_expr("orders_lower_code", &[None])
                .unique_index("orders_store_code_idx", &["code", "store_id"])
                .fk("o_s", &["store_id"], "stores", &["store_id"]),
            table("countries").col("code", "text").pk(&["code"]),
        ]);
        let all = run_rule(&cat, &Default::default(), check);
        // Each unique rule on the application's values is also said to
        // become per-tenant (the key columns of ids are not).
        let per_tenant: Vec<_> = all
            .iter()
            .filter(|f| f.rule == RuleId::UniqueBecomesPerTenant)
            .map(|f| f.object.clone().unwrap())
            .collect();
        assert_eq!(
            per_tenant,
            [
                "stores_name_key",
                "orders_code_key",
                "orders_code_idx",
                "orders_lower_code"
            ]
        );
        let warning = all
            .iter()
            .find(|f| f.rule == RuleId::UniqueBecomesPerTenant)
            .unwrap();
        assert_eq!(warning.severity, Severity::Warning);
        assert!(
            warning
                .message
                .contains("\"unique (name)\" on stores becomes \"unique (store_id, name)\""),
            "{}",
            warning.message
        );
        let f: Vec<_> = all
            .into_iter()
            .filter(|f| f.rule != RuleId::UniqueBecomesPerTenant)
            .collect();
        assert_eq!(
            summary(&f),
            [
                (
                    RuleId::UniqueWithoutTenant,
                    "stores".into(),
                    s("stores_name_key")
                ),
                (
                    RuleId::UniqueWithoutTenant,
                    "orders".into(),
                    s("orders_code_key")
                ),
                (
                    RuleId::ExclusionWithoutTenant,
                    "orders".into(),
                    s("orders_during_excl")
                ),
                (
                    RuleId::UniqueIndexWithoutTenant,
                    "orders".into(),
                    s("orders_code_idx")
                ),
                (
                    RuleId::UniqueIndexWithoutTenant,
                    "orders".into(),
                    s("orders_lower_code")
                ),
            ],
            "composite keys with the column are fine, wherever it sits; countries is a lookup"
        );
        assert!(!f[2].automatic, "exclusion constraints need the user");
        assert!(f[4].fix.contains("expressions"));
    }

    #[test]
    fn partition_copies_are_reported_on_the_parent_only() {
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("events")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .partitioned("RANGE (id)")
                .pk(&["id"])
                .fk("e_s", &["store_id"], "stores", &["store_id"]),
            table("events_1")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .col("code", "text")
                .partition_of("events")
                .pk(&["id"])
                .unique_index("events_1_local", &["code"]),
        ]);
        let f: Vec<_> = run_rule(&cat, &Default::default(), check)
            .into_iter()
            .filter(|f| f.rule != RuleId::UniqueBecomesPerTenant)
            .collect();
        assert_eq!(
            summary(&f),
            [
                (
                    RuleId::PrimaryKeyWithoutTenant,
                    "events".into(),
                    s("events_pkey")
                ),
                (
                    RuleId::UniqueIndexWithoutTenant,
                    "events_1".into(),
                    s("events_1_local")
                ),
            ]
        );
    }
}
