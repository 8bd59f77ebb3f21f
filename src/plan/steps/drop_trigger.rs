//! Step: remove the sync trigger and its helpers once the application
//! writes the tenant column itself.

use serde::{Deserialize, Serialize};

use super::sync_trigger::drop_sync_trigger;
use super::StepKind;
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};

/// Remove the sync trigger once the application writes the column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropTrigger {
    pub table: QName,
    pub column: String,
    pub trigger: String,
    pub function: QName,
    pub counter: QName,
}

impl StepKind for DropTrigger {
    fn id(&self) -> String {
        format!("drop-trigger:{}", self.table)
    }
    table_step!(Impact::Brief);
    fn describe(&self) -> String {
        format!(
            "remove the sync trigger from {} once the application writes the column",
            self.table
        )
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table).is_some_and(|t| {
            t.column(&self.column).is_some() && !t.triggers.iter().any(|x| x.name == self.trigger)
        })
    }
    /// First wait until the application writes the column (the trigger's
    /// counter stops moving), then drop the trigger, function and counter.
    fn actions(&self) -> Vec<Action> {
        vec![
            Action::AwaitAppWrites {
                table: self.table.clone(),
                column: self.column.clone(),
                counter: self.counter.clone(),
            },
            drop_sync_trigger(&self.table, &self.trigger, &self.function, &self.counter),
        ]
    }
    /// Removing a helper needs no undo (the column it served is undone by
    /// its own step).
    fn undo(&self) -> Undo {
        Undo::Nothing
    }
}
