//! Step: add the tenant column, nullable and without a default (instant:
//! ACCESS EXCLUSIVE for milliseconds).

use serde::{Deserialize, Serialize};

use super::{brief, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};
use crate::sql::ident;

/// `ALTER TABLE … ADD COLUMN col type` (nullable, no default: instant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddColumn {
    pub table: QName,
    pub column: String,
    pub type_name: String,
}

impl StepKind for AddColumn {
    fn id(&self) -> String {
        format!("add-column:{}.{}", self.table, self.column)
    }
    table_step!(Impact::Brief);
    fn describe(&self) -> String {
        format!(
            "add {} {} to {} (nullable, no default)",
            self.column, self.type_name, self.table
        )
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table)
            .is_some_and(|t| t.column(&self.column).is_some())
    }
    fn actions(&self) -> Vec<Action> {
        vec![brief(vec![format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {};",
            self.table.sql(),
            ident(&self.column),
            self.type_name
        )])]
    }
    fn undo(&self) -> Undo {
        Undo::Actions(vec![brief(vec![format!(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {};",
            self.table.sql(),
            ident(&self.column)
        )])])
    }
}
