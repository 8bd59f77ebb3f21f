//! Partitioned tables: Citus distributes a partitioned table through its
//! parent (partitions follow), and refuses multi-level partitioning.
//!
//! ```text
//! ERROR:  distributing multi-level partitioned tables is not supported
//! ```

use crate::analyze::{Finding, Severity};
use crate::catalog::TableKind;

use super::Ctx;

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, class) in ctx.tables() {
        if let (TableKind::Partitioned, Some(parent)) = (t.kind, &t.parent) {
            out.push(Finding {
                rule: "multi-level-partitioning",
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
                rule: "partitioned-table",
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
                rule: "foreign-table",
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
