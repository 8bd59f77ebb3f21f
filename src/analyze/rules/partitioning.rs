//! Partitioned tables: Citus distributes a partitioned table through its
//! parent (partitions follow), and refuses multi-level partitioning.
//!
//! ```text
//! ERROR:  distributing multi-level partitioned tables is not supported
//! ```

use crate::analyze::rules::id::RuleId;
use crate::analyze::{Finding, Severity};
use crate::catalog::TableKind;

use super::Ctx;

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, class) in ctx.tables() {
        if let (TableKind::Partitioned, Some(parent)) = (t.kind, &t.parent) {
            out.push(Finding {
                rule: RuleId::MultiLevelPartitioning,
                severity: Severity::Blocker,
                table: Some(t.name.clone()),
                object: Some(parent.to_string()),
                message: format!(
                    "{} is a partition of {parent} and is itself partitioned",
                    t.name
                ),
                citus_error: Some(
                    "distributing multi-level partitioned tables is not supported".into(),
                ),
                fix: "flatten the hierarchy to one level (not automatic)".into(),
                automatic: false,
            });
        }
        if t.kind == TableKind::Partitioned && t.parent.is_none() && class.is_tenant() {
            let key = t.partition_key.clone().unwrap_or_default();
            out.push(Finding {
                rule: RuleId::PartitionedTable,
                severity: Severity::Info,
                table: Some(t.name.clone()),
                object: None,
                message: format!("partitioned ({key}); its partitions are distributed with it"),
                citus_error: None,
                fix: "distributed through the parent only".into(),
                automatic: true,
            });
        }
        if t.kind == TableKind::Foreign && class.is_tenant() {
            out.push(Finding {
                rule: RuleId::ForeignTable,
                severity: Severity::Blocker,
                table: Some(t.name.clone()),
                object: None,
                message: "a foreign table cannot be distributed".into(),
                citus_error: Some("foreign tables cannot be distributed".into()),
                fix: format!("keep it local (--local {})", t.name),
                automatic: false,
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
    fn partitioned_multi_level_and_foreign() {
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("events")
                .col("store_id", "bigint")
                .partitioned("RANGE (at)")
                .fk("e_s", &["store_id"], "stores", &["store_id"]),
            table("events_2024")
                .col("store_id", "bigint")
                .partition_of("events"),
            table("events_2025")
                .col("store_id", "bigint")
                .partition_of("events")
                .partitioned("LIST (kind)"),
            table("remote").col("store_id", "bigint").foreign().fk(
                "r_s",
                &["store_id"],
                "stores",
                &["store_id"],
            ),
        ]);
        let f = run_rule(&cat, &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (RuleId::PartitionedTable, "events".into(), None),
                (
                    RuleId::MultiLevelPartitioning,
                    "events_2025".into(),
                    s("events")
                ),
                (RuleId::ForeignTable, "remote".into(), None),
            ]
        );
        assert_eq!(f[0].severity, Severity::Info);
        assert_eq!(f[1].severity, Severity::Blocker);
        assert_eq!(f[2].severity, Severity::Blocker);
    }
}
