//! Step: make the tenant column NOT NULL through a validated CHECK, so no
//! table scan ever runs under ACCESS EXCLUSIVE; the CHECK is added only
//! when no row lacks the column, so it cannot reject the application's
//! writes.

use serde::{Deserialize, Serialize};

use super::{brief, if_column_exists, unless_constraint_exists, StepKind};
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
    /// The CHECK added only when no row lacks the column (see
    /// [`Action::Constrain`]): ADD CHECK NOT VALID (brief), VALIDATE (no
    /// block); then SET NOT NULL + DROP CHECK (brief: no scan thanks to the
    /// valid check).
    fn actions(&self) -> Vec<Action> {
        let (t, c, col) = (self.table.sql(), ident(&self.check), ident(&self.column));
        vec![
            Action::Constrain {
                table: self.table.clone(),
                constraint: self.check.clone(),
                violations: format!(
                    "SELECT row_to_json(t)::text FROM {t} t WHERE t.{col} IS NULL LIMIT 5"
                ),
                add: vec![unless_constraint_exists(
                    &self.table,
                    &self.check,
                    &format!(
                        "ALTER TABLE {t} ADD CONSTRAINT {c} CHECK ({col} IS NOT NULL) NOT VALID;"
                    ),
                )],
                validate: vec![format!("ALTER TABLE {t} VALIDATE CONSTRAINT {c};")],
                drop: vec![format!("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {c};")],
                problem: format!(
                    "rows of {} have no {} (their parent row is missing or has no tenant, or \
                     they were written while the sync trigger was off)",
                    self.table, self.column
                ),
                kept: format!("{} stays nullable.", self.column),
                resolve: vec![
                    format!(
                        "fix or delete the orphans, then rerun `shardready apply`: it fills what \
                         can be derived and resumes (list them: SELECT * FROM {t} WHERE {col} IS \
                         NULL);"
                    ),
                    format!(
                        "if the application writes rows whose key to the parent is NULL, derive \
                         the tenant through a key that never is: `shardready apply --replan --path \
                         {}=CONSTRAINT` (`shardready analyze` shows the path each table takes)",
                        self.table
                    ),
                ],
            },
            brief(vec![
                format!("ALTER TABLE {t} ALTER COLUMN {col} SET NOT NULL;"),
                format!("ALTER TABLE {t} DROP CONSTRAINT {c};"),
            ]),
        ]
    }
    /// The column was nullable before (the step exists only then); it may
    /// not exist yet (apply stopped before adding it).
    fn undo(&self) -> Undo {
        let (t, c, col) = (self.table.sql(), ident(&self.check), ident(&self.column));
        Undo::Actions(vec![brief(vec![if_column_exists(
            &self.table,
            &self.column,
            &format!(
                "ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {c};\n    \
                 ALTER TABLE {t} ALTER COLUMN {col} DROP NOT NULL;"
            ),
        )])])
    }
}
