//! Step: build the new unique index with the tenant column in front,
//! concurrently (an interrupted build's INVALID index is repaired).

use serde::{Deserialize, Serialize};

use super::{column_list, key_in_place, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, KeyTarget, Undo};
use crate::sql::{ident, qualified};

/// CREATE UNIQUE INDEX CONCURRENTLY on (tenant, old key columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueIndex {
    pub table: QName,
    pub index: String,
    pub columns: Vec<String>,
    /// Index definition tail for expression/partial indexes (`USING
    /// btree (...) WHERE ...`), None for plain column lists.
    pub definition: Option<String>,
    pub target: KeyTarget,
}

impl UniqueIndex {
    /// `CREATE UNIQUE INDEX CONCURRENTLY …`.
    pub fn create_sql(&self) -> String {
        let tail = match &self.definition {
            Some(d) => d.clone(),
            None => format!("({})", column_list(&self.columns)),
        };
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} {tail};",
            ident(&self.index),
            self.table.sql()
        )
    }
}

impl StepKind for UniqueIndex {
    fn id(&self) -> String {
        format!("unique-index:{}.{}", self.table, self.index)
    }
    table_step!(Impact::Concurrent);
    fn describe(&self) -> String {
        format!(
            "unique index {} on {} ({}) concurrently",
            self.index,
            self.table,
            self.columns.join(", ")
        )
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table).is_some_and(|t| {
            key_in_place(t, &self.target, &self.columns)
                || t.unique_indexes
                    .iter()
                    .any(|ix| ix.name == self.index && ix.valid)
        })
    }
    fn actions(&self) -> Vec<Action> {
        vec![Action::BuildIndex {
            schema: self.table.schema.clone(),
            index: self.index.clone(),
            sql: self.create_sql(),
        }]
    }
    /// Before the swap the new index is an extra one; after it, it is the
    /// key (the swap's own undo deals with that).
    fn undo(&self) -> Undo {
        Undo::Actions(vec![Action::Bare {
            sql: format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {};",
                qualified(&self.table.schema, &self.index)
            ),
        }])
    }
}
