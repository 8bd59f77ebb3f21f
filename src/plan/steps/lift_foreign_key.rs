//! Step: make the foreign keys declared on each partition of a partitioned
//! table one key of the parent. Citus distributes a partitioned table only
//! when its partitions' keys are inherited from the parent ("cannot
//! cascade operation via foreign keys as partition table … involved in a
//! foreign key relationship that is not inherited from its parent
//! table"). Each partition has a validated key of this shape by then, so
//! the parent's key attaches them: one brief lock, no row checked.

use serde::{Deserialize, Serialize};

use super::{add_fk_sql, brief, has_key, unless_constraint_exists, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};
use crate::sql::ident;

/// `ALTER TABLE parent ADD FOREIGN KEY …`, attaching each partition's
/// validated key of the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiftForeignKey {
    pub table: QName,
    pub name: String,
    pub columns: Vec<String>,
    pub ref_table: QName,
    pub ref_columns: Vec<String>,
    pub on_delete: String,
    pub on_update: String,
    /// A key declared on the parent itself that this one replaces (same
    /// name): dropped in the same transaction, so that every write is
    /// checked by one of them throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

impl StepKind for LiftForeignKey {
    fn id(&self) -> String {
        format!("lift-fk:{}.{}", self.table, self.name)
    }
    table_step!(Impact::Brief);
    fn describe(&self) -> String {
        format!(
            "foreign key {}: {} ({}) → {} ({}) declared once on the partitioned table, taking in its partitions' keys",
            self.name,
            self.table,
            self.columns.join(", "),
            self.ref_table,
            self.ref_columns.join(", ")
        ) + if self.replaces.is_some() {
            " (replaces the parent's own)"
        } else {
            ""
        }
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table).is_some_and(|t| {
            has_key(t, &self.columns, &self.ref_table, &self.ref_columns)
                && !self.replaces.as_ref().is_some_and(|old| {
                    t.foreign_keys
                        .iter()
                        .any(|fk| &fk.name == old && fk.columns != self.columns)
                })
        })
    }
    fn actions(&self) -> Vec<Action> {
        let drop_old = self.replaces.as_ref().map(|old| {
            format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {};",
                self.table.sql(),
                ident(old)
            )
        });
        vec![brief(
            drop_old
                .into_iter()
                .chain([unless_constraint_exists(
                    &self.table,
                    &self.name,
                    &add_fk_sql(
                        &self.table,
                        &self.name,
                        &self.columns,
                        &self.ref_table,
                        &self.ref_columns,
                        &self.on_delete,
                        &self.on_update,
                        "",
                    ),
                )])
                .collect(),
        )]
    }
    /// Once attached, the partitions' keys are the parent's: `abort` keeps
    /// it (the same rows are checked as before it).
    fn undo(&self) -> Undo {
        Undo::Nothing
    }
}
