//! The distribution column itself: the same type (and collation) in every
//! colocated table, a type with a hash operator class, not GENERATED ...
//! STORED, and never NULL.
//!
//! ```text
//! ERROR:  cannot colocate tables stores and orders
//! DETAIL: Distribution column types don't match for stores and orders.
//! ERROR:  could not identify a hash function for type json
//! ERROR:  cannot distribute relation: orders
//! DETAIL: Distribution column must not use GENERATED ALWAYS AS (...) STORED.
//! ```

use crate::analyze::rules::id::RuleId;
use crate::analyze::tenant::Class;
use crate::analyze::{Finding, Severity};

use super::Ctx;

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    let tenant = ctx.tenant;
    // The type every colocated table must share: the root's key, or
    // without a root, the column of the largest table that has it.
    let root = tenant
        .root
        .as_ref()
        .and_then(|r| ctx.cat.table(r))
        .or_else(|| {
            ctx.tables()
                .filter(|(t, c)| {
                    t.parent.is_none()
                        && **c == Class::Distributed
                        && t.column(ctx.tenant_column(t)).is_some()
                })
                .max_by_key(|(t, _)| (t.row_estimate, std::cmp::Reverse(t.name.clone())))
                .map(|(t, _)| t)
        });
    let root_col = root.and_then(|r| r.column(ctx.tenant_column(r)));
    for (t, class) in ctx.tables() {
        if t.parent.is_some() || !matches!(class, Class::Root | Class::Distributed) {
            continue;
        }
        let name = ctx.tenant_column(t);
        let Some(col) = t.column(name) else { continue };
        let obj = Some(name.to_string());
        if !col.hashable {
            out.push(Finding {
                rule: RuleId::TenantTypeNotHashable,
                severity: Severity::Blocker,
                table: Some(t.name.clone()),
                object: obj.clone(),
                message: format!("{name} is of type {}, which has no hash operator class", col.type_name),
                citus_error: Some(format!(
                    "could not identify a hash function for type {}: Partition column types must have a hash function defined to use hash partitioning.",
                    col.type_name
                )),
                fix: "change the column to a hashable type (bigint, uuid, text, ...)".into(),
                automatic: false,
            });
        }
        if col.generated.as_deref() == Some("s") {
            out.push(Finding {
                rule: RuleId::TenantGenerated,
                severity: Severity::Blocker,
                table: Some(t.name.clone()),
                object: obj.clone(),
                message: format!("{name} is a GENERATED ... STORED column"),
                citus_error: Some(format!(
                    "cannot distribute relation: {}: Distribution column must not use GENERATED ALWAYS AS (...) STORED.",
                    t.name.name
                )),
                fix: "make it a plain column (ALTER TABLE ... ALTER COLUMN ... DROP EXPRESSION)".into(),
                automatic: false,
            });
        }
        if let (Some(root), Some(rc)) = (root, root_col) {
            if root.name != t.name {
                if rc.type_name != col.type_name {
                    out.push(Finding {
                        rule: RuleId::TenantTypeMismatch,
                        severity: Severity::Blocker,
                        table: Some(t.name.clone()),
                        object: obj.clone(),
                        message: format!(
                            "{name} is {} here but {} in {}",
                            col.type_name, rc.type_name, root.name
                        ),
                        citus_error: Some(format!(
                            "cannot colocate tables {} and {}: Distribution column types don't match for {} and {}.",
                            root.name.name, t.name.name, root.name.name, t.name.name
                        )),
                        fix: format!(
                            "ALTER TABLE {} ALTER COLUMN {name} TYPE {} (rewrites the table; not automatic)",
                            t.name, rc.type_name
                        ),
                        automatic: false,
                    });
                } else if rc.collation != col.collation {
                    out.push(Finding {
                        rule: RuleId::TenantCollationMismatch,
                        severity: Severity::Blocker,
                        table: Some(t.name.clone()),
                        object: obj.clone(),
                        message: format!(
                            "{name} has collation {} here but {} in {}",
                            col.collation.as_deref().unwrap_or("default"),
                            rc.collation.as_deref().unwrap_or("default"),
                            root.name
                        ),
                        citus_error: Some(format!(
                            "cannot colocate tables {} and {}: Distribution column collations don't match for {} and {}.",
                            root.name.name, t.name.name, root.name.name, t.name.name
                        )),
                        fix: "give the column the same collation everywhere".into(),
                        automatic: false,
                    });
                }
            }
        }
        if !col.not_null && class == &Class::Distributed {
            out.push(Finding {
                rule: RuleId::TenantNullable,
                severity: Severity::Info,
                table: Some(t.name.clone()),
                object: obj,
                message: format!("{name} allows NULL"),
                citus_error: Some(format!(
                    "the partition column of table {} cannot be NULL (for rows that have one)",
                    t.name.name
                )),
                fix: "SET NOT NULL through a validated CHECK (no long lock)".into(),
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
    use crate::analyze::Overrides;

    #[test]
    fn tailspin_nullable_columns_only() {
        let f = run_rule(&tailspin(), &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (RuleId::TenantNullable, "products".into(), s("store_id")),
                (RuleId::TenantNullable, "orders".into(), s("store_id")),
            ]
        );
        assert!(f
            .iter()
            .all(|f| f.severity == Severity::Info && f.automatic));
    }

    #[test]
    fn type_collation_hash_and_generated() {
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("a").col_notnull("store_id", "integer").fk(
                "a_s",
                &["store_id"],
                "stores",
                &["store_id"],
            ),
            table("b")
                .col_notnull("store_id", "bigint")
                .with(|c| c.collation = Some("\"C\"".into()))
                .fk("b_s", &["store_id"], "stores", &["store_id"]),
            table("c")
                .col_notnull("store_id", "bigint")
                .with(|c| c.generated = Some("s".into()))
                .fk("c_s", &["store_id"], "stores", &["store_id"]),
        ]);
        let f = run_rule(&cat, &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (RuleId::TenantTypeMismatch, "a".into(), s("store_id")),
                (RuleId::TenantCollationMismatch, "b".into(), s("store_id")),
                (RuleId::TenantGenerated, "c".into(), s("store_id")),
            ]
        );
        assert!(f[0].message.contains("integer here but bigint in stores"));
        assert!(f[0]
            .citus_error
            .as_deref()
            .unwrap()
            .contains("Distribution column types don't match"));

        let json = catalog(vec![
            table("docs")
                .col("tenant", "json")
                .col("id", "bigint")
                .pk(&["id"]),
            table("other").col("tenant", "json"),
        ]);
        let o = Overrides {
            tenant_column: Some("tenant".into()),
            ..Default::default()
        };
        let f = run_rule(&json, &o, check);
        assert!(summary(&f).contains(&(RuleId::TenantTypeNotHashable, "docs".into(), s("tenant"))));
    }

    #[test]
    fn without_a_root_the_largest_table_sets_the_type() {
        let cat = catalog(vec![
            table("big").col_notnull("tenant", "bigint").rows(1_000_000),
            table("small").col_notnull("tenant", "integer").rows(10),
        ]);
        let o = Overrides {
            tenant_column: Some("tenant".into()),
            ..Default::default()
        };
        let f = run_rule(&cat, &o, check);
        assert_eq!(
            summary(&f),
            [(RuleId::TenantTypeMismatch, "small".into(), s("tenant"))]
        );
    }
}
