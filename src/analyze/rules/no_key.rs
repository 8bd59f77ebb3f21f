//! Tables without a primary key. The backfill walks a table in keyset
//! batches on its key, and `create_distributed_table_concurrently` needs a
//! replica identity (a primary key or `REPLICA IDENTITY FULL`).
//!
//! ```text
//! ERROR:  create_distributed_table_concurrently: relation has no replica
//!         identity: add a primary key or set REPLICA IDENTITY FULL
//! ```

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
            rule: "no-primary-key",
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
