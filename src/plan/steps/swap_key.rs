//! Step: make the new index the key — `DROP CONSTRAINT …, ADD … USING
//! INDEX` in one brief lock, or, for a plain unique index, drop the old one
//! concurrently and rename the new one.

use serde::{Deserialize, Serialize};

use super::{brief, key_in_place, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, KeyTarget, Undo};
use crate::sql::{ident, qualified};

/// Swap a key to the new index (`DROP CONSTRAINT …, ADD … USING INDEX`),
/// or, for a plain unique index, drop the old one concurrently and
/// rename the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapKey {
    pub table: QName,
    pub index: String,
    pub target: KeyTarget,
    pub columns: Vec<String>,
}

impl StepKind for SwapKey {
    fn id(&self) -> String {
        format!("swap-key:{}.{}", self.table, self.index)
    }
    table_step!(Impact::Brief);
    fn describe(&self) -> String {
        format!(
            "{} of {} becomes ({})",
            match &self.target {
                KeyTarget::Primary { constraint } => format!("primary key {constraint}"),
                KeyTarget::Unique { constraint } => format!("unique constraint {constraint}"),
                KeyTarget::Index { name } => format!("unique index {name}"),
            },
            self.table,
            self.columns.join(", ")
        )
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table)
            .is_some_and(|t| key_in_place(t, &self.target, &self.columns))
    }
    fn actions(&self) -> Vec<Action> {
        let (t, i) = (self.table.sql(), ident(&self.index));
        match &self.target {
            KeyTarget::Primary { constraint } => vec![brief(vec![format!(
                "ALTER TABLE {t} DROP CONSTRAINT {c},\n  ADD CONSTRAINT {c} PRIMARY KEY USING INDEX {i};",
                c = ident(constraint),
            )])],
            KeyTarget::Unique { constraint } => vec![brief(vec![format!(
                "ALTER TABLE {t} DROP CONSTRAINT {c},\n  ADD CONSTRAINT {c} UNIQUE USING INDEX {i};",
                c = ident(constraint),
            )])],
            KeyTarget::Index { name } => vec![
                Action::Bare {
                    sql: format!(
                        "DROP INDEX CONCURRENTLY IF EXISTS {};",
                        qualified(&self.table.schema, name)
                    ),
                },
                brief(vec![format!(
                    "ALTER INDEX {} RENAME TO {};",
                    qualified(&self.table.schema, &self.index),
                    ident(name)
                )]),
            ],
        }
    }
    /// The swap is one transaction: before it is done, nothing of it
    /// happened. Once done, the original key is gone: `abort` keeps the new
    /// one (valid; past the point of no return) and lists it.
    fn undo(&self) -> Undo {
        Undo::Nothing
    }
}
