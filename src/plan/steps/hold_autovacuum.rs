//! Step: keep autovacuum off a table about to be rewritten row by row,
//! until the [`super::Vacuum`] step gives it back.

use serde::{Deserialize, Serialize};

use super::{non_blocking, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};

/// Keeps autovacuum off a table that is about to be rewritten row by
/// row, until [`super::Vacuum`] gives it back: an autovacuum of the
/// half-updated table competes with the backfill and the index builds
/// for the disk the application's commits wait on (measured: it is
/// what stalled the application for 120-150 ms during the backfill).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldAutovacuum {
    pub table: QName,
    pub column: String,
}

impl StepKind for HoldAutovacuum {
    fn id(&self) -> String {
        format!("hold-autovacuum:{}", self.table)
    }
    table_step!(Impact::NoBlock);
    fn describe(&self) -> String {
        format!(
            "autovacuum off {} until its backfill and index builds are done",
            self.table
        )
    }
    /// Held, or no longer worth holding: the backfill is over.
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table).is_some_and(|t| {
            t.autovacuum_enabled == Some(false)
                || t.column(&self.column).is_some_and(|c| c.not_null)
        })
    }
    /// SHARE UPDATE EXCLUSIVE does not hold up the application, and
    /// waiting for it without a lock timeout lets the server cancel an
    /// autovacuum that is in the way (after deadlock_timeout).
    fn actions(&self) -> Vec<Action> {
        vec![non_blocking(vec![format!(
            "ALTER TABLE {} SET (autovacuum_enabled = false);",
            self.table.sql()
        )])]
    }
    /// The matching [`super::Vacuum`] step knows the owner's setting and
    /// gives it back ([`super::Vacuum::release`], also run by its
    /// `on_replan`).
    fn undo(&self) -> Undo {
        Undo::Todo(
            "run the plan's Vacuum step's release (its on_replan) when that step is not done: \
             only it knows the owner's autovacuum setting",
        )
    }
}
