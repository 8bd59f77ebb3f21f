//! Step: make the tenant column NOT NULL through a validated CHECK, so no
//! table scan ever runs under ACCESS EXCLUSIVE.

use serde::{Deserialize, Serialize};

use super::{brief, unless_constraint_exists, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};
use crate::sql::ident;

/// NOT NULL through a validated CHECK (no scan under ACCESS EXCLUSIVE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotNull {
    pub table: QName,
    pub column: String,
    pub check: String,
}

impl StepKind for NotNull {
    fn id(&self) -> String {
        format!("not-null:{}.{}", self.table, self.column)
    }
    table_step!(Impact::ScanNoBlock);
    fn describe(&self) -> String {
        format!(
            "{}.{} NOT NULL via a validated CHECK",
            self.table, self.column
        )
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table).is_some_and(|t| {
            t.column(&self.column).is_some_and(|c| c.not_null)
                && !t.checks.iter().any(|c| c.name == self.check)
        })
    }
    /// ADD CHECK NOT VALID (brief), VALIDATE (no block), SET NOT NULL +
    /// DROP CHECK (brief: no scan thanks to the valid check).
    fn actions(&self) -> Vec<Action> {
        let (t, c, col) = (self.table.sql(), ident(&self.check), ident(&self.column));
        vec![
            brief(vec![unless_constraint_exists(
                &self.table,
                &self.check,
                &format!("ALTER TABLE {t} ADD CONSTRAINT {c} CHECK ({col} IS NOT NULL) NOT VALID;"),
            )]),
            Action::Validate {
                table: self.table.clone(),
                column: self.column.clone(),
                sql: format!("ALTER TABLE {t} VALIDATE CONSTRAINT {c};"),
            },
            brief(vec![
                format!("ALTER TABLE {t} ALTER COLUMN {col} SET NOT NULL;"),
                format!("ALTER TABLE {t} DROP CONSTRAINT {c};"),
            ]),
        ]
    }
    /// The column was nullable before (the step exists only then).
    fn undo(&self) -> Undo {
        let (t, c, col) = (self.table.sql(), ident(&self.check), ident(&self.column));
        Undo::Actions(vec![brief(vec![
            format!("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {c};"),
            format!("ALTER TABLE {t} ALTER COLUMN {col} DROP NOT NULL;"),
        ])])
    }
}
