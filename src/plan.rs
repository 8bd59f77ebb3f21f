//! The plan: ordered [`Step`] values built from an analysis, the SQL each
//! one runs, the lock it takes, and how each tells from the catalog whether
//! it is already done. `plan --format sql` renders a psql script a DBA can
//! review; `apply` executes the same steps.

use serde::{Deserialize, Serialize};

use crate::analyze::{Analysis, Class, Hop};
use crate::catalog::{Catalog, KeyKind, QName, Table};
use crate::sql::{ident, literal};

/// How a step affects the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) for milliseconds, under
    /// lock_timeout with retries.
    Brief,
    /// Reads the whole table under SHARE UPDATE EXCLUSIVE: writes continue.
    ScanNoBlock,
    /// CREATE INDEX CONCURRENTLY: no blocking lock; waits for older
    /// transactions.
    Concurrent,
    /// Many short transactions, each locking only the rows it updates.
    Batches,
    /// SHARE UPDATE EXCLUSIVE for milliseconds: reads and writes continue.
    NoBlock,
}

impl Impact {
    pub fn describe(self) -> &'static str {
        match self {
            Impact::Brief => "brief lock (milliseconds; lock_timeout + retry)",
            Impact::ScanNoBlock => "scans without blocking writes (SHARE UPDATE EXCLUSIVE)",
            Impact::Concurrent => "concurrent build (no blocking lock)",
            Impact::Batches => "short batches (row locks only)",
            Impact::NoBlock => {
                "SHARE UPDATE EXCLUSIVE for milliseconds (reads and writes continue)"
            }
        }
    }
}

/// A unique key to be rebuilt with the tenant column in front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyTarget {
    Primary {
        constraint: String,
    },
    Unique {
        constraint: String,
    },
    /// A unique index that backs no constraint.
    Index {
        name: String,
    },
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `ALTER TABLE … ADD COLUMN col type` (nullable, no default: instant).
    AddColumn {
        table: QName,
        column: String,
        type_name: String,
    },
    /// A BEFORE INSERT OR UPDATE trigger that fills the column from the
    /// parent along `path` when the application leaves it NULL, counting
    /// how often it had to. Its `WHEN (NEW.col IS NULL)` keeps the function
    /// out of every row that carries the column already: the backfill's own
    /// updates and the updated application's inserts cost no call.
    SyncTrigger {
        table: QName,
        column: String,
        path: Vec<Hop>,
        trigger: String,
        function: QName,
        counter: QName,
    },
    /// Keeps autovacuum off a table that is about to be rewritten row by
    /// row, until [`Step::Vacuum`] gives it back: an autovacuum of the
    /// half-updated table competes with the backfill and the index builds
    /// for the disk the application's commits wait on (measured: it is
    /// what stalled the application for 120-150 ms during the backfill).
    HoldAutovacuum { table: QName, column: String },
    /// Fills the column for existing rows in keyset batches.
    Backfill {
        table: QName,
        column: String,
        key: String,
        path: Vec<Hop>,
    },
    /// NOT NULL through a validated CHECK (no scan under ACCESS EXCLUSIVE).
    NotNull {
        table: QName,
        column: String,
        check: String,
    },
    /// CREATE UNIQUE INDEX CONCURRENTLY on (tenant, old key columns).
    UniqueIndex {
        table: QName,
        index: String,
        columns: Vec<String>,
        /// Index definition tail for expression/partial indexes (`USING
        /// btree (...) WHERE ...`), None for plain column lists.
        definition: Option<String>,
        target: KeyTarget,
    },
    /// A composite FK added NOT VALID, validated, then the old one dropped
    /// and the new one given its name.
    ForeignKey {
        table: QName,
        name: String,
        temp_name: String,
        columns: Vec<String>,
        ref_table: QName,
        ref_columns: Vec<String>,
        on_delete: String,
        on_update: String,
        replaces: Option<String>,
    },
    /// Swap a key to the new index (`DROP CONSTRAINT …, ADD … USING INDEX`),
    /// or, for a plain unique index, drop the old one concurrently and
    /// rename the new one.
    SwapKey {
        table: QName,
        index: String,
        target: KeyTarget,
        columns: Vec<String>,
    },
    /// Remove the sync trigger once the application writes the column.
    DropTrigger {
        table: QName,
        column: String,
        trigger: String,
        function: QName,
        counter: QName,
    },
    /// VACUUM at autovacuum's pace (the backfill left a dead version of
    /// every row), then autovacuum back as it was: `autovacuum` is the
    /// table's own setting before apply (None: not set).
    Vacuum {
        table: QName,
        autovacuum: Option<bool>,
    },
    /// Refresh planner statistics.
    Analyze { tables: Vec<QName> },
}

/// What the executor does for a step, in order. Statements carry the lock
/// class that decides whether they run under `lock_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Statements in one transaction; `brief`: their lock conflicts with the
    /// application (lock_timeout + retry), else they never block it.
    Txn { sql: String, brief: bool },
    /// A statement that cannot run in a transaction block (CONCURRENTLY).
    Bare { sql: String },
    /// CREATE UNIQUE INDEX CONCURRENTLY with invalid-index detection,
    /// cleanup and retry.
    BuildIndex {
        schema: String,
        index: String,
        sql: String,
    },
    /// VALIDATE of a NOT NULL check (never blocks the application): the
    /// proof that no row lacks `column`; when some do, apply names them.
    Validate {
        table: QName,
        column: String,
        sql: String,
    },
    /// The keyset backfill controller.
    Backfill,
    /// Wait until the application writes the column itself (the sync
    /// trigger's counter stops moving), or stop and say so.
    AwaitAppWrites { counter: QName },
}

/// The plan (`plan --format json`; schema `shardready.plan/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub schema: String,
    pub tenant_column: String,
    pub root: Option<QName>,
    pub steps: Vec<Step>,
}

/// A name that fits PostgreSQL's 63-byte limit: `base` + `suffix`, with
/// `base` shortened (and a short hash added) when needed, so names stay
/// distinct and findable.
pub fn object_name(base: &str, suffix: &str) -> String {
    let full = format!("{base}{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let mut h: u32 = 2166136261;
    for b in base.bytes() {
        h = (h ^ b as u32).wrapping_mul(16777619);
    }
    let tag = format!("_{:06x}", h & 0xffffff);
    let room = 63 - suffix.len() - tag.len();
    let mut cut = room;
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tag}{suffix}", &base[..cut])
}

impl Step {
    pub fn id(&self) -> String {
        match self {
            Step::AddColumn { table, column, .. } => format!("add-column:{table}.{column}"),
            Step::SyncTrigger { table, .. } => format!("sync-trigger:{table}"),
            Step::HoldAutovacuum { table, .. } => format!("hold-autovacuum:{table}"),
            Step::Backfill { table, .. } => format!("backfill:{table}"),
            Step::NotNull { table, column, .. } => format!("not-null:{table}.{column}"),
            Step::UniqueIndex { table, index, .. } => format!("unique-index:{table}.{index}"),
            Step::ForeignKey { table, name, .. } => format!("foreign-key:{table}.{name}"),
            Step::SwapKey { table, index, .. } => format!("swap-key:{table}.{index}"),
            Step::DropTrigger { table, .. } => format!("drop-trigger:{table}"),
            Step::Vacuum { table, .. } => format!("vacuum:{table}"),
            Step::Analyze { .. } => "analyze".into(),
        }
    }

    pub fn table(&self) -> Option<&QName> {
        match self {
            Step::AddColumn { table, .. }
            | Step::SyncTrigger { table, .. }
            | Step::Backfill { table, .. }
            | Step::NotNull { table, .. }
            | Step::UniqueIndex { table, .. }
            | Step::ForeignKey { table, .. }
            | Step::SwapKey { table, .. }
            | Step::DropTrigger { table, .. }
            | Step::HoldAutovacuum { table, .. }
            | Step::Vacuum { table, .. } => Some(table),
            Step::Analyze { .. } => None,
        }
    }

    pub fn impact(&self) -> Impact {
        match self {
            Step::AddColumn { .. }
            | Step::SyncTrigger { .. }
            | Step::DropTrigger { .. }
            | Step::SwapKey { .. } => Impact::Brief,
            Step::Backfill { .. } => Impact::Batches,
            Step::HoldAutovacuum { .. } => Impact::NoBlock,
            Step::NotNull { .. }
            | Step::ForeignKey { .. }
            | Step::Vacuum { .. }
            | Step::Analyze { .. } => Impact::ScanNoBlock,
            Step::UniqueIndex { .. } => Impact::Concurrent,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Step::AddColumn {
                table,
                column,
                type_name,
            } => format!("add {column} {type_name} to {table} (nullable, no default)"),
            Step::SyncTrigger {
                table,
                column,
                path,
                ..
            } => format!(
                "trigger on {table} fills {column} from {} for rows written without it",
                path.last().map(|h| h.to.to_string()).unwrap_or_default()
            ),
            Step::Backfill {
                table,
                column,
                key,
                path,
            } => format!(
                "backfill {table}.{column} from {} in keyset batches on {key}",
                path.last().map(|h| h.to.to_string()).unwrap_or_default()
            ),
            Step::HoldAutovacuum { table, .. } => format!(
                "autovacuum off {table} until its backfill and index builds are done"
            ),
            Step::NotNull { table, column, .. } => {
                format!("{table}.{column} NOT NULL via a validated CHECK")
            }
            Step::UniqueIndex {
                table,
                index,
                columns,
                ..
            } => format!(
                "unique index {index} on {table} ({}) concurrently",
                columns.join(", ")
            ),
            Step::ForeignKey {
                table,
                name,
                columns,
                ref_table,
                ref_columns,
                replaces,
                ..
            } => format!(
                "foreign key {name}: {table} ({}) → {ref_table} ({}){}",
                columns.join(", "),
                ref_columns.join(", "),
                match replaces {
                    Some(old) if old == name => " (replaces the single-column one)".to_string(),
                    Some(old) => format!(" (replaces {old})"),
                    None => String::new(),
                }
            ),
            Step::SwapKey {
                table,
                target,
                columns,
                ..
            } => format!(
                "{} of {table} becomes ({})",
                match target {
                    KeyTarget::Primary { constraint } => format!("primary key {constraint}"),
                    KeyTarget::Unique { constraint } => format!("unique constraint {constraint}"),
                    KeyTarget::Index { name } => format!("unique index {name}"),
                },
                columns.join(", ")
            ),
            Step::DropTrigger { table, .. } => {
                format!(
                    "remove the sync trigger from {table} once the application writes the column"
                )
            }
            Step::Vacuum { table, .. } => format!(
                "VACUUM {table} at autovacuum's pace (the backfill's dead rows), then autovacuum on it as before"
            ),
            Step::Analyze { tables } => format!(
                "ANALYZE {}",
                tables
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Whether the catalog shows the step's result already.
    pub fn is_done(&self, cat: &Catalog) -> bool {
        let t = self.table().and_then(|q| cat.table(q));
        match self {
            Step::AddColumn { column, .. } => t.is_some_and(|t| t.column(column).is_some()),
            Step::SyncTrigger { trigger, .. } => {
                t.is_some_and(|t| t.triggers.iter().any(|x| &x.name == trigger))
            }
            // Once the column is NOT NULL no row can lack it; before that
            // the controller resumes from its cursor and sweeps.
            Step::Backfill { column, .. } => {
                t.is_some_and(|t| t.column(column).is_some_and(|c| c.not_null))
            }
            // Held, or no longer worth holding: the backfill is over.
            Step::HoldAutovacuum { column, .. } => t.is_some_and(|t| {
                t.autovacuum_enabled == Some(false) || t.column(column).is_some_and(|c| c.not_null)
            }),
            Step::Vacuum { .. } => t.is_some_and(|t| t.autovacuum_enabled != Some(false)),
            Step::NotNull { column, check, .. } => t.is_some_and(|t| {
                t.column(column).is_some_and(|c| c.not_null)
                    && !t.checks.iter().any(|(n, _, _)| n == check)
            }),
            Step::UniqueIndex {
                index,
                columns,
                target,
                ..
            } => t.is_some_and(|t| {
                key_in_place(t, target, columns)
                    || t.unique_indexes
                        .iter()
                        .any(|ix| &ix.name == index && ix.valid)
            }),
            Step::ForeignKey {
                name,
                temp_name,
                columns,
                replaces,
                ..
            } => t.is_some_and(|t| {
                let new = t
                    .foreign_keys
                    .iter()
                    .find(|fk| &fk.name == name && &fk.columns == columns);
                let temp_left =
                    temp_name != name && t.foreign_keys.iter().any(|fk| &fk.name == temp_name);
                let old_left = replaces.as_ref().is_some_and(|old| {
                    t.foreign_keys
                        .iter()
                        .any(|fk| &fk.name == old && &fk.columns != columns)
                });
                new.is_some_and(|fk| fk.validated) && !temp_left && !old_left
            }),
            Step::SwapKey {
                target, columns, ..
            } => t.is_some_and(|t| key_in_place(t, target, columns)),
            Step::DropTrigger {
                trigger, column, ..
            } => t.is_some_and(|t| {
                t.column(column).is_some() && !t.triggers.iter().any(|x| &x.name == trigger)
            }),
            Step::Analyze { .. } => false,
        }
    }

    /// The SQL, as a reviewer would run it with psql (one string per
    /// transaction or non-transactional statement).
    pub fn sql(&self) -> Vec<String> {
        match self {
            Step::AddColumn {
                table,
                column,
                type_name,
            } => vec![format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {type_name};",
                table.sql(),
                ident(column)
            )],
            Step::SyncTrigger {
                table,
                column,
                path,
                trigger,
                function,
                counter,
            } => vec![
                format!(
                    "CREATE SCHEMA IF NOT EXISTS shardready;\nCREATE SEQUENCE IF NOT EXISTS {};",
                    counter.sql()
                ),
                sync_function_sql(function, counter, column, path),
                format!(
                    "DROP TRIGGER IF EXISTS {trg} ON {t};\nCREATE TRIGGER {trg} BEFORE INSERT OR UPDATE ON {t}\n  FOR EACH ROW WHEN (NEW.{col} IS NULL) EXECUTE FUNCTION {f}();",
                    trg = ident(trigger),
                    t = table.sql(),
                    col = ident(column),
                    f = function.sql()
                ),
            ],
            Step::Backfill { table, key, .. } => vec![format!(
                "-- keyset batches of 10000 keys, one transaction each (apply adapts the size\n\
                 -- to a time target and throttles on the application's latency)\n\
                 DO $shardready$\nDECLARE lo bigint := 0; top bigint;\nBEGIN\n\
                 \x20 SELECT max({k}) INTO top FROM {t};\n\
                 \x20 WHILE lo < coalesce(top, 0) LOOP\n\
                 \x20   {update}\n\
                 \x20   COMMIT;\n\
                 \x20   lo := lo + 10000;\n\
                 \x20 END LOOP;\nEND\n$shardready$;",
                k = ident(key),
                t = table.sql(),
                update = backfill_batch_sql(self, "lo", "lo + 10000")
                    .unwrap_or_default()
                    .replace('\n', "\n    ")
            )],
            Step::NotNull {
                table,
                column,
                check,
            } => vec![
                unless_constraint_exists(
                    table,
                    check,
                    &format!(
                        "ALTER TABLE {t} ADD CONSTRAINT {c} CHECK ({col} IS NOT NULL) NOT VALID;",
                        t = table.sql(),
                        c = ident(check),
                        col = ident(column)
                    ),
                ),
                format!(
                    "ALTER TABLE {} VALIDATE CONSTRAINT {};",
                    table.sql(),
                    ident(check)
                ),
                format!(
                    "ALTER TABLE {t} ALTER COLUMN {col} SET NOT NULL;\nALTER TABLE {t} DROP CONSTRAINT {c};",
                    t = table.sql(),
                    c = ident(check),
                    col = ident(column)
                ),
            ],
            Step::UniqueIndex { .. } => vec![
                format!("DROP INDEX CONCURRENTLY IF EXISTS {}; -- only if a build was interrupted (INVALID)", self.index_sql_name()),
                self.create_index_sql(),
            ],
            Step::ForeignKey {
                table,
                name,
                temp_name,
                columns,
                ref_table,
                ref_columns,
                on_delete,
                on_update,
                replaces,
            } => {
                let cols = |v: &[String]| v.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
                let mut out = vec![
                    unless_constraint_exists(
                        table,
                        temp_name,
                        &format!(
                            "ALTER TABLE {t} ADD CONSTRAINT {n} FOREIGN KEY ({c}) REFERENCES {r} ({rc}) ON DELETE {on_delete} ON UPDATE {on_update} NOT VALID;",
                            t = table.sql(),
                            n = ident(temp_name),
                            c = cols(columns),
                            r = ref_table.sql(),
                            rc = cols(ref_columns),
                        ),
                    ),
                    format!(
                        "ALTER TABLE {} VALIDATE CONSTRAINT {};",
                        table.sql(),
                        ident(temp_name)
                    ),
                ];
                let mut last = String::new();
                if let Some(old) = replaces {
                    last.push_str(&format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {};\n",
                        table.sql(),
                        ident(old)
                    ));
                }
                if temp_name != name {
                    last.push_str(&format!(
                        "ALTER TABLE {} RENAME CONSTRAINT {} TO {};",
                        table.sql(),
                        ident(temp_name),
                        ident(name)
                    ));
                }
                if !last.is_empty() {
                    out.push(last.trim_end().to_string());
                }
                out
            }
            Step::SwapKey {
                table,
                index,
                target,
                ..
            } => match target {
                KeyTarget::Primary { constraint } => vec![format!(
                    "ALTER TABLE {t} DROP CONSTRAINT {c},\n  ADD CONSTRAINT {c} PRIMARY KEY USING INDEX {i};",
                    t = table.sql(),
                    c = ident(constraint),
                    i = ident(index)
                )],
                KeyTarget::Unique { constraint } => vec![format!(
                    "ALTER TABLE {t} DROP CONSTRAINT {c},\n  ADD CONSTRAINT {c} UNIQUE USING INDEX {i};",
                    t = table.sql(),
                    c = ident(constraint),
                    i = ident(index)
                )],
                KeyTarget::Index { name } => vec![
                    format!(
                        "DROP INDEX CONCURRENTLY IF EXISTS {};",
                        crate::sql::qualified(&table.schema, name)
                    ),
                    format!(
                        "ALTER INDEX {} RENAME TO {};",
                        crate::sql::qualified(&table.schema, index),
                        ident(name)
                    ),
                ],
            },
            Step::HoldAutovacuum { table, .. } => vec![format!(
                "ALTER TABLE {} SET (autovacuum_enabled = false);",
                table.sql()
            )],
            Step::Vacuum { table, autovacuum } => vec![
                // Autovacuum's own cost-based pace, as the server sets it.
                "SELECT set_config('vacuum_cost_delay', CASE WHEN current_setting('autovacuum_vacuum_cost_delay') LIKE '-1%' \
                 THEN current_setting('vacuum_cost_delay') ELSE current_setting('autovacuum_vacuum_cost_delay') END, false),\n       \
                 set_config('vacuum_cost_limit', CASE WHEN current_setting('autovacuum_vacuum_cost_limit') = '-1' \
                 THEN current_setting('vacuum_cost_limit') ELSE current_setting('autovacuum_vacuum_cost_limit') END, false);"
                    .to_string(),
                // TRUNCATE false: no ACCESS EXCLUSIVE lock to cut the
                // table's empty tail.
                format!("VACUUM (TRUNCATE false) {};", table.sql()),
                "RESET vacuum_cost_delay;\nRESET vacuum_cost_limit;".to_string(),
                match autovacuum {
                    Some(v) => format!(
                        "ALTER TABLE {} SET (autovacuum_enabled = {v});",
                        table.sql()
                    ),
                    None => format!("ALTER TABLE {} RESET (autovacuum_enabled);", table.sql()),
                },
            ],
            Step::DropTrigger {
                table,
                trigger,
                function,
                counter,
                ..
            } => vec![format!(
                "DROP TRIGGER IF EXISTS {} ON {};\nDROP FUNCTION IF EXISTS {}();\nDROP SEQUENCE IF EXISTS {};",
                ident(trigger),
                table.sql(),
                function.sql(),
                counter.sql()
            )],
            Step::Analyze { tables } => vec![format!(
                "ANALYZE {};",
                tables.iter().map(|t| t.sql()).collect::<Vec<_>>().join(", ")
            )],
        }
    }

    /// What the executor runs for this step.
    pub fn actions(&self) -> Vec<Action> {
        let txn = |sql: &String, brief: bool| Action::Txn {
            sql: sql.clone(),
            brief,
        };
        let sql = self.sql();
        match self {
            Step::AddColumn { .. } | Step::DropTrigger { .. } => {
                let mut v = Vec::new();
                if let Step::DropTrigger { counter, .. } = self {
                    v.push(Action::AwaitAppWrites {
                        counter: counter.clone(),
                    });
                }
                v.extend(sql.iter().map(|s| txn(s, true)));
                v
            }
            Step::SyncTrigger { .. } => {
                vec![txn(&sql[0], false), txn(&sql[1], false), txn(&sql[2], true)]
            }
            // SHARE UPDATE EXCLUSIVE does not hold up the application, and
            // waiting for it without a lock timeout lets the server cancel
            // an autovacuum that is in the way (after deadlock_timeout).
            Step::HoldAutovacuum { .. } => vec![txn(&sql[0], false)],
            Step::Vacuum { .. } => {
                let mut v: Vec<Action> = sql[..3]
                    .iter()
                    .map(|s| Action::Bare { sql: s.clone() })
                    .collect();
                v.push(txn(&sql[3], false));
                v
            }
            Step::Backfill { .. } => vec![Action::Backfill],
            // ADD CHECK NOT VALID (brief), VALIDATE (no block), SET NOT NULL
            // + DROP CHECK (brief: no scan thanks to the valid check).
            Step::NotNull { table, column, .. } => vec![
                txn(&sql[0], true),
                Action::Validate {
                    table: table.clone(),
                    column: column.clone(),
                    sql: sql[1].clone(),
                },
                txn(&sql[2], true),
            ],
            Step::UniqueIndex { table, index, .. } => vec![Action::BuildIndex {
                schema: table.schema.clone(),
                index: index.clone(),
                sql: self.create_index_sql(),
            }],
            // ADD NOT VALID (brief), VALIDATE (no block), drop old + rename
            // (brief).
            Step::ForeignKey { .. } => sql
                .iter()
                .enumerate()
                .map(|(i, s)| txn(s, i != 1))
                .collect(),
            Step::SwapKey {
                target: KeyTarget::Index { .. },
                ..
            } => vec![
                Action::Bare {
                    sql: sql[0].clone(),
                },
                txn(&sql[1], true),
            ],
            Step::SwapKey { .. } => vec![txn(&sql[0], true)],
            Step::Analyze { .. } => vec![Action::Bare {
                sql: sql[0].clone(),
            }],
        }
    }

    /// Whether the statements must run outside a transaction block.
    pub fn non_transactional(&self) -> bool {
        matches!(self, Step::UniqueIndex { .. } | Step::Vacuum { .. })
            || matches!(
                self,
                Step::SwapKey {
                    target: KeyTarget::Index { .. },
                    ..
                }
            )
    }

    fn index_sql_name(&self) -> String {
        match self {
            Step::UniqueIndex { table, index, .. } | Step::SwapKey { table, index, .. } => {
                crate::sql::qualified(&table.schema, index)
            }
            _ => String::new(),
        }
    }

    /// `CREATE UNIQUE INDEX CONCURRENTLY …` of a UniqueIndex step.
    pub fn create_index_sql(&self) -> String {
        let Step::UniqueIndex {
            table,
            index,
            columns,
            definition,
            ..
        } = self
        else {
            return String::new();
        };
        let tail = match definition {
            Some(d) => d.clone(),
            None => format!(
                "({})",
                columns
                    .iter()
                    .map(|c| ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} {tail};",
            ident(index),
            table.sql()
        )
    }
}

/// `stmt`, skipped when the constraint already exists (a rerun after a
/// crash between adding and validating).
fn unless_constraint_exists(table: &QName, constraint: &str, stmt: &str) -> String {
    format!(
        "DO $shardready$ BEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = {n} AND conrelid = {t}::regclass) THEN\n    {stmt}\n  END IF;\nEND $shardready$;",
        n = literal(constraint),
        t = literal(&table.sql()),
    )
}

/// Whether the table's key (per `target`) already has exactly `columns`.
fn key_in_place(t: &Table, target: &KeyTarget, columns: &[String]) -> bool {
    match target {
        KeyTarget::Primary { .. } => t.primary_key().is_some_and(|k| k.columns == columns),
        KeyTarget::Unique { constraint } => t
            .keys
            .iter()
            .any(|k| &k.name == constraint && k.kind == KeyKind::Unique && k.columns == columns),
        KeyTarget::Index { name } => t.unique_indexes.iter().any(|ix| {
            &ix.name == name
                && ix.valid
                && ix.columns.first().and_then(|c| c.as_deref())
                    == columns.first().map(|s| s.as_str())
        }),
    }
}

/// `FROM p1 JOIN p2 …` and the join conditions for a derivation path; the
/// value is `alias_n.column` of the last hop.
fn path_joins(table_alias: &str, path: &[Hop], column: &str) -> (String, Vec<String>, String) {
    let mut from = Vec::new();
    let mut conds = Vec::new();
    let mut prev = table_alias.to_string();
    for (i, hop) in path.iter().enumerate() {
        let alias = format!("p{}", i + 1);
        from.push(format!("{} {alias}", hop.to.sql()));
        for (c, rc) in hop.columns.iter().zip(&hop.ref_columns) {
            conds.push(format!("{alias}.{} = {prev}.{}", ident(rc), ident(c)));
        }
        prev = alias;
    }
    (from.join(", "), conds, format!("{prev}.{}", ident(column)))
}

/// The trigger function that fills `column` from the parent along `path`.
fn sync_function_sql(function: &QName, counter: &QName, column: &str, path: &[Hop]) -> String {
    let (from, conds, value) = path_joins("n", path, column);
    // Conditions refer to NEW's columns as n.col: rewrite to NEW.col.
    let conds: Vec<String> = conds
        .into_iter()
        .map(|c| c.replace("= n.", "= NEW."))
        .collect();
    format!(
        "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $shardready$\n\
         BEGIN\n\
         \x20 IF NEW.{col} IS NULL THEN\n\
         \x20   NEW.{col} := (SELECT {value} FROM {from} WHERE {conds});\n\
         \x20   IF NEW.{col} IS NOT NULL THEN\n\
         \x20     PERFORM nextval({counter});\n\
         \x20   END IF;\n\
         \x20 END IF;\n\
         \x20 RETURN NEW;\n\
         END\n$shardready$;",
        f = function.sql(),
        col = ident(column),
        conds = conds.join(" AND "),
        counter = literal(&counter.sql()),
    )
}

/// For a Backfill step: the FROM list, the join conditions (ANDed) and
/// the value expression, with the table aliased `t`.
pub fn backfill_joins(step: &Step) -> Option<(String, String, String)> {
    let Step::Backfill { path, column, .. } = step else {
        return None;
    };
    let (from, conds, value) = path_joins("t", path, column);
    Some((from, conds.join(" AND "), value))
}

/// One backfill batch over the key range ($lo, $hi]: fills only NULLs, so
/// reruns are idempotent.
pub fn backfill_batch_sql(step: &Step, lo: &str, hi: &str) -> Option<String> {
    let Step::Backfill {
        table,
        column,
        key,
        path,
    } = step
    else {
        return None;
    };
    let (from, conds, value) = path_joins("t", path, column);
    Some(format!(
        "UPDATE {tbl} t SET {col} = {value}\n  FROM {from}\n  WHERE t.{k} > {lo} AND t.{k} <= {hi} AND t.{col} IS NULL\n    AND {conds};",
        tbl = table.sql(),
        col = ident(column),
        k = ident(key),
        conds = conds.join(" AND ")
    ))
}

/// Builds the plan for an analysis.
pub fn build(analysis: &Analysis, cat: &Catalog) -> Plan {
    let tenant = &analysis.tenant;
    let col = tenant.column.clone();
    let mut adds = Vec::new();
    let mut triggers = Vec::new();
    let mut backfills = Vec::new();
    let mut holds = Vec::new();
    let mut vacuums = Vec::new();
    let mut not_nulls = Vec::new();
    let mut indexes = Vec::new();
    let mut fks = Vec::new();
    let mut swaps = Vec::new();
    let mut drops = Vec::new();
    let mut touched = Vec::new();

    let tenant_col_of = |t: &Table| -> String {
        if tenant.root.as_ref() == Some(&t.name) {
            tenant.root_key.clone().unwrap_or_else(|| col.clone())
        } else {
            col.clone()
        }
    };

    for s in &analysis.tables {
        let Some(t) = cat.table(&s.table) else {
            continue;
        };
        let class = &s.class.class;
        if !class.is_tenant() {
            continue;
        }
        let tcol = tenant_col_of(t);
        let mut changed = false;
        if let Class::NeedsColumn { path } = class {
            let base = format!("{}_{}", t.name.name, tcol);
            let trigger = object_name("shardready_sync_", &tcol);
            let function = QName::new("shardready", &object_name(&format!("sync_{base}"), ""));
            let counter = QName::new("shardready", &object_name(&format!("fills_{base}"), ""));
            adds.push(Step::AddColumn {
                table: t.name.clone(),
                column: tcol.clone(),
                type_name: tenant.type_name.clone(),
            });
            triggers.push(Step::SyncTrigger {
                table: t.name.clone(),
                column: tcol.clone(),
                path: path.clone(),
                trigger: trigger.clone(),
                function: function.clone(),
                counter: counter.clone(),
            });
            if let Some(pk) = t.primary_key().filter(|k| k.columns.len() == 1) {
                // A table whose owner turned autovacuum off stays as it is.
                if t.autovacuum_enabled != Some(false) {
                    holds.push(Step::HoldAutovacuum {
                        table: t.name.clone(),
                        column: tcol.clone(),
                    });
                    vacuums.push(Step::Vacuum {
                        table: t.name.clone(),
                        autovacuum: t.autovacuum_enabled,
                    });
                }
                backfills.push(Step::Backfill {
                    table: t.name.clone(),
                    column: tcol.clone(),
                    key: pk.columns[0].clone(),
                    path: path.clone(),
                });
            }
            drops.push(Step::DropTrigger {
                table: t.name.clone(),
                column: tcol.clone(),
                trigger,
                function,
                counter,
            });
            changed = true;
        }
        let nullable = t.column(&tcol).map(|c| !c.not_null).unwrap_or(true);
        if nullable {
            not_nulls.push(Step::NotNull {
                table: t.name.clone(),
                column: tcol.clone(),
                check: object_name(&format!("{}_{}", t.name.name, tcol), "_not_null"),
            });
            changed = true;
        }
        // Keys: every PK/UNIQUE and unique index without the tenant column.
        for k in &t.keys {
            if k.kind == KeyKind::Exclusion || k.columns.contains(&tcol) {
                continue;
            }
            let mut columns = vec![tcol.clone()];
            columns.extend(k.columns.iter().cloned());
            let index = object_name(&k.name, "_shardready");
            let target = if k.kind == KeyKind::Primary {
                KeyTarget::Primary {
                    constraint: k.name.clone(),
                }
            } else {
                KeyTarget::Unique {
                    constraint: k.name.clone(),
                }
            };
            indexes.push(Step::UniqueIndex {
                table: t.name.clone(),
                index: index.clone(),
                columns: columns.clone(),
                definition: None,
                target: target.clone(),
            });
            swaps.push(Step::SwapKey {
                table: t.name.clone(),
                index,
                target,
                columns,
            });
            changed = true;
        }
        for ix in &t.unique_indexes {
            if ix.constraint.is_some() || ix.columns.iter().any(|c| c.as_deref() == Some(&tcol)) {
                continue;
            }
            let index = object_name(&ix.name, "_shardready");
            let columns: Vec<String> = std::iter::once(tcol.clone())
                .chain(
                    ix.columns
                        .iter()
                        .map(|c| c.clone().unwrap_or_else(|| "(expr)".into())),
                )
                .collect();
            indexes.push(Step::UniqueIndex {
                table: t.name.clone(),
                index: index.clone(),
                columns: columns.clone(),
                definition: Some(index_tail_with_tenant(&ix.definition, &tcol)),
                target: KeyTarget::Index {
                    name: ix.name.clone(),
                },
            });
            swaps.push(Step::SwapKey {
                table: t.name.clone(),
                index,
                target: KeyTarget::Index {
                    name: ix.name.clone(),
                },
                columns,
            });
            changed = true;
        }
        // Foreign keys between tenant tables get the tenant column in front.
        for fk in &t.foreign_keys {
            let Some(r) = cat.table(&fk.ref_table) else {
                continue;
            };
            let ref_class = analysis.class_of(cat.top_parent(r));
            if !ref_class.is_some_and(|c| c.is_tenant()) {
                continue;
            }
            let rcol = tenant_col_of(r);
            let aligned = fk
                .columns
                .iter()
                .zip(&fk.ref_columns)
                .any(|(a, b)| a == &tcol && b == &rcol);
            if aligned {
                continue;
            }
            // A second reference to the root's key (not automatic).
            if tenant.root.as_ref() == Some(&r.name) && fk.ref_columns == [rcol.clone()] {
                continue;
            }
            let mut columns = vec![tcol.clone()];
            columns.extend(fk.columns.iter().cloned());
            let mut ref_columns = vec![rcol.clone()];
            ref_columns.extend(fk.ref_columns.iter().cloned());
            fks.push(Step::ForeignKey {
                table: t.name.clone(),
                name: fk.name.clone(),
                temp_name: object_name(&fk.name, "_shardready"),
                columns,
                ref_table: fk.ref_table.clone(),
                ref_columns,
                on_delete: fk.on_delete.sql().to_string(),
                on_update: fk.on_update.sql().to_string(),
                replaces: Some(fk.name.clone()),
            });
            changed = true;
        }
        // The tenant column references the root (the seed's
        // line_items_store_id_fkey).
        if let (Some(root), Some(root_key)) = (&tenant.root, &tenant.root_key) {
            let has = t.foreign_keys.iter().any(|fk| {
                &fk.ref_table == root
                    && fk.columns == [tcol.clone()]
                    && fk.ref_columns == [root_key.clone()]
            });
            if &t.name != root && !has {
                let name = object_name(&format!("{}_{}", t.name.name, tcol), "_fkey");
                fks.push(Step::ForeignKey {
                    table: t.name.clone(),
                    name: name.clone(),
                    temp_name: name,
                    columns: vec![tcol.clone()],
                    ref_table: root.clone(),
                    ref_columns: vec![root_key.clone()],
                    on_delete: "NO ACTION".into(),
                    on_update: "NO ACTION".into(),
                    replaces: None,
                });
                changed = true;
            }
        }
        if changed {
            touched.push(t.name.clone());
        }
    }
    let mut steps = Vec::new();
    steps.extend(adds);
    steps.extend(triggers);
    steps.extend(holds);
    steps.extend(backfills);
    steps.extend(not_nulls);
    steps.extend(indexes);
    steps.extend(fks);
    steps.extend(swaps);
    steps.extend(drops);
    steps.extend(vacuums);
    if !touched.is_empty() {
        steps.push(Step::Analyze { tables: touched });
    }
    Plan {
        schema: "shardready.plan/v1".into(),
        tenant_column: col,
        root: tenant.root.clone(),
        steps,
    }
}

/// `CREATE UNIQUE INDEX name ON t USING btree (a, lower(b)) WHERE …` →
/// `USING btree (tenant, a, lower(b)) WHERE …`.
fn index_tail_with_tenant(definition: &str, tenant: &str) -> String {
    let Some(pos) = definition.find(" USING ") else {
        return format!("({})", ident(tenant));
    };
    let tail = &definition[pos + 1..];
    match tail.find('(') {
        Some(open) => format!("{}({}, {}", &tail[..open], ident(tenant), &tail[open + 1..]),
        None => tail.to_string(),
    }
}

impl Plan {
    /// The plan as a psql script.
    pub fn to_sql(&self, lock_timeout_ms: u64) -> String {
        let mut out = format!(
            "-- shardready plan: tenant column {}{}\n-- Run with psql; each step is safe to rerun.\n\\set ON_ERROR_STOP on\nSET lock_timeout = '{lock_timeout_ms}ms';\n",
            self.tenant_column,
            self.root
                .as_ref()
                .map(|r| format!(", root {r}"))
                .unwrap_or_default()
        );
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!(
                "\n-- {}. {}\n--    lock: {}\n",
                i + 1,
                s.describe(),
                s.impact().describe()
            ));
            for stmt in s.sql() {
                if s.non_transactional() || matches!(s, Step::Backfill { .. }) {
                    out.push_str(&stmt);
                    out.push('\n');
                } else {
                    out.push_str(&format!("BEGIN;\n{stmt}\nCOMMIT;\n"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_stay_distinct() {
        assert_eq!(
            object_name("orders_pkey", "_shardready"),
            "orders_pkey_shardready"
        );
        let long_a = "a".repeat(70);
        let long_b = format!("{}b", "a".repeat(69));
        let na = object_name(&long_a, "_shardready");
        let nb = object_name(&long_b, "_shardready");
        assert!(na.len() <= 63 && nb.len() <= 63);
        assert!(na.ends_with("_shardready"));
        assert_ne!(na, nb);
        let accents = "é".repeat(40);
        assert!(object_name(&accents, "_x").len() <= 63);
    }

    /// The plan for a catalog, through the same analysis apply runs
    /// (catalog part only).
    fn plan_of(cat: &Catalog) -> Plan {
        let (tenant, classes, findings) =
            crate::analyze::analyze_catalog(cat, &Default::default()).unwrap();
        let tables = classes
            .iter()
            .map(|c| crate::analyze::TableSummary {
                table: c.table.clone(),
                class: c.clone(),
                row_estimate: 0,
                size_bytes: 0,
            })
            .collect();
        let analysis = Analysis {
            schema: "shardready.analysis/v1",
            database: cat.database.clone(),
            tenant,
            tables,
            findings,
            data: None,
            skew: None,
            counts: Default::default(),
        };
        build(&analysis, cat)
    }

    fn ids(p: &Plan) -> Vec<String> {
        p.steps.iter().map(|s| s.id()).collect()
    }

    #[test]
    fn autovacuum_is_held_from_before_the_backfill_to_the_end() {
        let cat = crate::analyze::testkit::tailspin();
        let ids = ids(&plan_of(&cat));
        let at = |id: &str| ids.iter().position(|x| x == id).expect(id);
        assert!(at("hold-autovacuum:line_items") < at("backfill:line_items"));
        // After every step that reads or rewrites line_items.
        assert_eq!(ids[ids.len() - 2], "vacuum:line_items");
        assert_eq!(ids.last().unwrap(), "analyze");
        // Only the backfilled table.
        assert_eq!(ids.iter().filter(|x| x.contains("autovacuum")).count(), 1);
    }

    #[test]
    fn autovacuum_comes_back_as_the_owner_left_it() {
        let release = |setting: Option<bool>| {
            let mut cat = crate::analyze::testkit::tailspin();
            cat.tables
                .iter_mut()
                .find(|t| t.name.name == "line_items")
                .unwrap()
                .autovacuum_enabled = setting;
            let plan = plan_of(&cat);
            let vacuum = plan.steps.iter().find(|s| matches!(s, Step::Vacuum { .. }));
            vacuum.map(|v| v.sql().last().unwrap().clone())
        };
        assert_eq!(
            release(None).as_deref(),
            Some("ALTER TABLE \"public\".\"line_items\" RESET (autovacuum_enabled);")
        );
        assert_eq!(
            release(Some(true)).as_deref(),
            Some("ALTER TABLE \"public\".\"line_items\" SET (autovacuum_enabled = true);")
        );
        // Turned off by its owner: neither held nor given back.
        assert_eq!(release(Some(false)), None);
    }

    #[test]
    fn index_tail_gets_the_tenant_first() {
        assert_eq!(
            index_tail_with_tenant(
                "CREATE UNIQUE INDEX u ON public.t USING btree (lower(code)) WHERE (price > 0)",
                "store_id"
            ),
            "USING btree (\"store_id\", lower(code)) WHERE (price > 0)"
        );
    }
}
