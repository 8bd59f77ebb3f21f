//! Tables without a primary key. The backfill walks a table in keyset
//! batches on its key, and `create_distributed_table_concurrently` needs a
//! replica identity (a primary key or `REPLICA IDENTITY FULL`).
//!
//! ```text
//! ERROR:  create_distributed_table_concurrently: relation has no replica
//!         identity: add a primary key or set REPLICA IDENTITY FULL
//! ```

use crate::analyze::rules::id::RuleId;
use crate::analyze::tenant::Class;
use crate::analyze::{Finding, Severity};

use super::Ctx;

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, class) in ctx.tables() {
        if t.parent.is_some() || t.primary_key().is_some() || !class.is_tenant() {
            continue;
        }
        let needs = matches!(class, Class::NeedsColumn { .. });
        let has_unique_not_null = t.unique_indexes.iter().any(|ix| {
            ix.predicate.is_none()
                && ix.columns.iter().all(|c| {
                    c.as_deref()
                        .and_then(|c| t.column(c))
                        .is_some_and(|c| c.not_null)
                })
        });
        out.push(Finding {
            rule: RuleId::NoPrimaryKey,
            severity: if needs && !has_unique_not_null {
                Severity::Blocker
            } else {
                Severity::Warning
            },
            table: Some(t.name.clone()),
            object: None,
            message: if needs {
                "no primary key: the backfill has no key to walk in batches".into()
            } else {
                "no primary key: no replica identity for create_distributed_table_concurrently".into()
            },
            citus_error: Some(
                "relation has no replica identity: add a primary key or set REPLICA IDENTITY FULL (create_distributed_table_concurrently)".into(),
            ),
            fix: "add a primary key (CREATE UNIQUE INDEX CONCURRENTLY, then ADD PRIMARY KEY USING INDEX)".into(),
            automatic: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    #[test]
    fn tables_without_a_primary_key() {
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("orders")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("o_s", &["store_id"], "stores", &["store_id"]),
            // Has the column, no key: a warning.
            table("logs").col("store_id", "bigint").fk(
                "l_s",
                &["store_id"],
                "stores",
                &["store_id"],
            ),
            // Needs the column and has nothing to walk: a blocker.
            table("notes")
                .col("order_id", "bigint")
                .fk("n_o", &["order_id"], "orders", &["id"]),
            // Needs the column, but a unique NOT NULL index is walkable.
            table("tags")
                .col_notnull("code", "text")
                .col("order_id", "bigint")
                .unique_index("tags_code", &["code"])
                .fk("t_o", &["order_id"], "orders", &["id"]),
            table("misc").col("x", "int"),
        ]);
        let f = run_rule(&cat, &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (RuleId::NoPrimaryKey, "logs".into(), None),
                (RuleId::NoPrimaryKey, "notes".into(), None),
                (RuleId::NoPrimaryKey, "tags".into(), None),
            ],
            "misc is local"
        );
        let sev: Vec<_> = f.iter().map(|f| f.severity).collect();
        assert_eq!(
            sev,
            [Severity::Warning, Severity::Blocker, Severity::Warning]
        );
    }
}
