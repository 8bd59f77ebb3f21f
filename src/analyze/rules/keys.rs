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

use crate::analyze::{Finding, Severity};
use crate::catalog::KeyKind;

use super::Ctx;

pub const CITUS_ERROR: &str = "Distributed relations cannot have UNIQUE, EXCLUDE, or PRIMARY KEY constraints that do not include the partition column (with an equality operator if EXCLUDE).";

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in ctx.tenant_tables() {
        let col = ctx.tenant_column(t);
        for k in &t.keys {
            if k.columns.iter().any(|c| c == col) {
                continue;
            }
            let (rule, what, automatic, fix) = match k.kind {
                KeyKind::Primary => (
                    "primary-key-without-tenant",
                    "primary key",
                    true,
                    format!(
                        "build a unique index on ({col}, {}) concurrently and swap the primary key to it",
                        k.columns.join(", ")
                    ),
                ),
                KeyKind::Unique => (
                    "unique-without-tenant",
                    "unique constraint",
                    true,
                    format!(
                        "build a unique index on ({col}, {}) concurrently and swap the constraint to it",
                        k.columns.join(", ")
                    ),
                ),
                KeyKind::Exclusion => (
                    "exclusion-without-tenant",
                    "exclusion constraint",
                    false,
                    format!("recreate it with `{col} WITH =` as its first element (not automatic)"),
                ),
            };
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
            let has_expr = ix.columns.iter().any(|c| c.is_none());
            out.push(Finding {
                rule: "unique-index-without-tenant",
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
