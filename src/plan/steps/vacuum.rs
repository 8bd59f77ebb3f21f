//! Step: VACUUM the backfilled table at autovacuum's pace, then give
//! autovacuum back as its owner left it.

use serde::{Deserialize, Serialize};

use super::{non_blocking, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};

/// VACUUM at autovacuum's pace (the backfill left a dead version of
/// every row), then autovacuum back as it was: `autovacuum` is the
/// table's own setting before apply (None: not set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vacuum {
    pub table: QName,
    pub autovacuum: Option<bool>,
}

impl Vacuum {
    /// Autovacuum back on the table as its owner left it.
    pub fn release(&self) -> Action {
        non_blocking(vec![match self.autovacuum {
            Some(v) => format!(
                "ALTER TABLE {} SET (autovacuum_enabled = {v});",
                self.table.sql()
            ),
            None => format!(
                "ALTER TABLE {} RESET (autovacuum_enabled);",
                self.table.sql()
            ),
        }])
    }
}

impl StepKind for Vacuum {
    fn id(&self) -> String {
        format!("vacuum:{}", self.table)
    }
    table_step!(Impact::ScanNoBlock);
    fn describe(&self) -> String {
        format!(
            "VACUUM {} at autovacuum's pace (the backfill's dead rows), then autovacuum on it as before",
            self.table
        )
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table)
            .is_some_and(|t| t.autovacuum_enabled != Some(false))
    }
    fn actions(&self) -> Vec<Action> {
        let bare = |sql: &str| Action::Bare { sql: sql.into() };
        vec![
            // Autovacuum's own cost-based pace, as the server sets it.
            bare(
                "SELECT set_config('vacuum_cost_delay', CASE WHEN current_setting('autovacuum_vacuum_cost_delay') LIKE '-1%' \
                 THEN current_setting('vacuum_cost_delay') ELSE current_setting('autovacuum_vacuum_cost_delay') END, false),\n       \
                 set_config('vacuum_cost_limit', CASE WHEN current_setting('autovacuum_vacuum_cost_limit') = '-1' \
                 THEN current_setting('vacuum_cost_limit') ELSE current_setting('autovacuum_vacuum_cost_limit') END, false);",
            ),
            // TRUNCATE false: no ACCESS EXCLUSIVE lock to cut the table's
            // empty tail.
            bare(&format!("VACUUM (TRUNCATE false) {};", self.table.sql())),
            bare("RESET vacuum_cost_delay;"),
            bare("RESET vacuum_cost_limit;"),
            self.release(),
        ]
    }
    /// A plan replaced before this step ran still holds autovacuum off.
    fn on_replan(&self) -> Vec<Action> {
        vec![self.release()]
    }
    /// Its effects (a vacuumed table, autovacuum as before) need no undo.
    fn undo(&self) -> Undo {
        Undo::Nothing
    }
}
