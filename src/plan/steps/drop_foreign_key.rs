//! Step: drop a foreign key the user chose to drop (`--drop-fk`) because
//! it cannot hold across tenants; its definition stays in the plan (and so
//! in the state), printed, and is what its undo re-adds.

use serde::{Deserialize, Serialize};

use super::{brief, non_blocking, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};
use crate::sql::ident;

/// Drop a foreign key at the user's request, keeping its definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropForeignKey {
    pub table: QName,
    pub name: String,
    /// As `pg_get_constraintdef` gives it.
    pub definition: String,
}

impl DropForeignKey {
    /// The statement that puts it back (NOT VALID, to be validated).
    pub fn restore_sql(&self) -> String {
        let def = self.definition.trim_end_matches(" NOT VALID");
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {def} NOT VALID;",
            self.table.sql(),
            ident(&self.name)
        )
    }
}

impl StepKind for DropForeignKey {
    fn id(&self) -> String {
        format!("drop-fk:{}.{}", self.table, self.name)
    }
    table_step!(Impact::Brief);
    fn describe(&self) -> String {
        format!(
            "drop foreign key {} on {} (--drop-fk; restore with: {})",
            self.name,
            self.table,
            self.restore_sql()
        )
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table)
            .is_some_and(|t| !t.foreign_keys.iter().any(|fk| fk.name == self.name))
    }
    /// Dropping a constraint rejects no write; it takes a brief lock on
    /// both tables.
    fn actions(&self) -> Vec<Action> {
        vec![brief(vec![format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {};",
            self.table.sql(),
            ident(&self.name)
        )])]
    }
    /// Re-added NOT VALID (brief), then validated (never blocks).
    fn undo(&self) -> Undo {
        Undo::Actions(vec![
            brief(vec![self.restore_sql()]),
            non_blocking(vec![format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {};",
                self.table.sql(),
                ident(&self.name)
            )]),
        ])
    }
}
