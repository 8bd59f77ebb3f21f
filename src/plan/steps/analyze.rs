//! Step: refresh the planner's statistics of the tables the plan changed.

use serde::{Deserialize, Serialize};

use super::StepKind;
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};

/// `ANALYZE t1, t2, …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzeTables {
    pub tables: Vec<QName>,
}

impl StepKind for AnalyzeTables {
    fn id(&self) -> String {
        "analyze".into()
    }
    fn table(&self) -> Option<&QName> {
        None
    }
    fn impact(&self) -> Impact {
        Impact::ScanNoBlock
    }
    fn describe(&self) -> String {
        format!(
            "ANALYZE {}",
            self.tables
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
    /// Statistics are never "done": a rerun refreshes them again.
    fn is_done(&self, _: &Catalog) -> bool {
        false
    }
    fn actions(&self) -> Vec<Action> {
        vec![Action::Bare {
            sql: format!(
                "ANALYZE {};",
                self.tables
                    .iter()
                    .map(|t| t.sql())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }]
    }
    fn undo(&self) -> Undo {
        Undo::Nothing
    }
}
