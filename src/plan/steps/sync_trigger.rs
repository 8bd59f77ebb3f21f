//! Step: a trigger that fills the tenant column from the parent for rows
//! the old application writes without it, counting how often it had to.

use serde::{Deserialize, Serialize};

use super::{brief, non_blocking, paths_end, tenant_source, StepKind};
use crate::analyze::Hop;
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};
use crate::sql::{ident, literal};

/// A BEFORE INSERT OR UPDATE trigger that fills the column from the
/// parent along `path` when the application leaves it NULL, counting
/// how often it had to. Its `WHEN (NEW.col IS NULL)` keeps the function
/// out of every row that carries the column already: the backfill's own
/// updates and the updated application's inserts cost no call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTrigger {
    pub table: QName,
    pub column: String,
    pub path: Vec<Hop>,
    /// Paths tried in order where `path` gives no tenant (see
    /// [`super::Backfill::also`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Vec<Hop>>,
    pub trigger: String,
    pub function: QName,
    pub counter: QName,
}

impl SyncTrigger {
    /// The trigger function that fills `column` from the parent along
    /// `path`.
    fn function_sql(&self) -> String {
        let src = tenant_source("NEW", &self.path, &self.also, &self.column);
        let value = match src.from {
            Some(from) => format!(
                "(SELECT {} FROM {from} WHERE {})",
                src.value,
                src.conds.join(" AND ")
            ),
            None => src.value,
        };
        format!(
            "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $shardready$\n\
             BEGIN\n\
             \x20 IF NEW.{col} IS NULL THEN\n\
             \x20   NEW.{col} := {value};\n\
             \x20   IF NEW.{col} IS NOT NULL THEN\n\
             \x20     PERFORM nextval({counter});\n\
             \x20   END IF;\n\
             \x20 END IF;\n\
             \x20 RETURN NEW;\n\
             END\n$shardready$;",
            f = self.function.sql(),
            col = ident(&self.column),
            counter = literal(&self.counter.sql()),
        )
    }
}

/// Drops a sync trigger and its helpers (the [`super::DropTrigger`] step,
/// and the undo of this one).
pub(crate) fn drop_sync_trigger(
    table: &QName,
    trigger: &str,
    function: &QName,
    counter: &QName,
) -> Action {
    brief(vec![
        format!(
            "DROP TRIGGER IF EXISTS {} ON {};",
            ident(trigger),
            table.sql()
        ),
        format!("DROP FUNCTION IF EXISTS {}();", function.sql()),
        format!("DROP SEQUENCE IF EXISTS {};", counter.sql()),
    ])
}

impl StepKind for SyncTrigger {
    fn id(&self) -> String {
        format!("sync-trigger:{}", self.table)
    }
    table_step!(Impact::Brief);
    fn describe(&self) -> String {
        format!(
            "trigger on {} fills {} from {} for rows written without it",
            self.table,
            self.column,
            paths_end(&self.path, &self.also)
        )
    }
    /// In place; or its time is over: the column is NOT NULL (made so only
    /// after the trigger, and the trigger goes only at the plan's end), so
    /// a rerun after the trigger was removed does not bring it back.
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table).is_some_and(|t| {
            t.triggers.iter().any(|x| x.name == self.trigger)
                || t.column(&self.column).is_some_and(|c| c.not_null)
        })
    }
    /// The counter and the function never block the application; the
    /// trigger takes a brief SHARE ROW EXCLUSIVE lock.
    fn actions(&self) -> Vec<Action> {
        let (trg, t) = (ident(&self.trigger), self.table.sql());
        vec![
            non_blocking(vec![
                "CREATE SCHEMA IF NOT EXISTS shardready;".into(),
                format!("CREATE SEQUENCE IF NOT EXISTS {};", self.counter.sql()),
            ]),
            non_blocking(vec![self.function_sql()]),
            brief(vec![
                format!("DROP TRIGGER IF EXISTS {trg} ON {t};"),
                format!(
                    "CREATE TRIGGER {trg} BEFORE INSERT OR UPDATE ON {t}\n  FOR EACH ROW WHEN (NEW.{col} IS NULL) EXECUTE FUNCTION {f}();",
                    col = ident(&self.column),
                    f = self.function.sql()
                ),
            ]),
        ]
    }
    fn undo(&self) -> Undo {
        Undo::Actions(vec![drop_sync_trigger(
            &self.table,
            &self.trigger,
            &self.function,
            &self.counter,
        )])
    }
}
