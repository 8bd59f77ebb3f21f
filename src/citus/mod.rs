//! `distribute`: takes a prepared database onto Citus. Plans the calls —
//! reference tables, the tenant root, its children colocated with it in FK
//! order, `truncate_local_data_after_distributing_table` — handling the
//! ordering trap (a tenant table referencing both a would-be reference
//! table and the root) in one sequential-mode transaction, and the FK
//! restrictions of `create_distributed_table_concurrently`. Runs them on a
//! Citus coordinator and verifies types, colocation, row counts and
//! single-shard routing of a tenant-scoped query.

use std::collections::BTreeSet;

use serde::Serialize;
use thiserror::Error;
use tokio_postgres::Client;

use crate::analyze::{Analysis, Class, Severity};
use crate::catalog::{Catalog, ForeignKey, QName};
use crate::db::{DbError, LockPolicy, RetryError, Session};
use crate::sql::{ident, literal};

pub mod guard;
pub mod locks;
mod routing;
pub mod scale;
pub mod state;

/// The `application_name` of the session that distributes (the signals
/// count the application's waits on its locks by it).
pub const APPLICATION_NAME: &str = "shardready-distribute";

use locks::{Lock, Mode};

#[derive(Debug, Error)]
pub enum CitusError {
    #[error(
        "{target} is not a Citus coordinator (no citus extension in this database). Point --db at \
         the coordinator, e.g. --db 'postgresql://citus@coordinator:5432/app', or run \
         `shardready distribute --dry-run` to print the SQL without running it"
    )]
    NotCitus { target: String },
    #[error(
        "no node of this Citus cluster may hold shards: add workers (SELECT \
         citus_add_node('worker-1', 5432)), or let the coordinator hold them, a single-node \
         cluster (SELECT citus_set_coordinator_host('coordinator', 5432); SELECT \
         citus_set_node_property('coordinator', 5432, 'shouldhaveshards', true)), before \
         distributing"
    )]
    NoWorkers,
    #[error(
        "analyze finds what Citus would refuse; nothing was changed:\n{}\n\
         Resolve each as its fix says (`shardready apply` makes the automatic ones).",
        .0.join("\n")
    )]
    Blocked(Vec<String>),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("another shardready apply or distribute is running ({holder}); wait for it to finish")]
    Busy { holder: String },
    #[error("gave up waiting for a lock ({attempts} lock timeouts): {context}")]
    GaveUp { context: String, attempts: u32 },
    #[error("verification failed after distributing:\n{}", .0.join("\n"))]
    Verify(Vec<String>),
    #[error("{0}; rerun after fixing it or ask for help with the state in the shardready schema")]
    BadState(String),
    #[error(
        "{table}: {count} row(s) reference no row of {parent}, so {fk} could not be validated. \
         Every table is distributed; the key stays NOT VALID, and holds for every new write. \
         The rows, to repair or delete:\n  {list}\nThen run `shardready distribute` again: it \
         validates the key and verifies"
    )]
    Orphans {
        table: QName,
        parent: QName,
        fk: String,
        count: i64,
        list: String,
    },
    #[error(
        "cannot guard the switch of {table} against losing writes the application commits \
         asynchronously ({why}). Rerun: a finished step is not repeated; or distribute with \
         --blocking, which copies without logical replication"
    )]
    Unguarded { table: QName, why: String },
    #[error("nothing was changed: the cluster lacks what this needs:\n  {}", .0.join("\n  "))]
    Prerequisites(Vec<String>),
    #[error(
        "{context}: still running after {} (--statement-timeout), so it was cancelled and rolled \
         back; the steps before it stay done and a rerun resumes here. For a large table raise \
         --statement-timeout (0: no limit); if it was waiting, pg_stat_activity shows on what",
        humantime::format_duration(*.limit)
    )]
    TimedOut {
        context: String,
        limit: std::time::Duration,
    },
}

fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> CitusError + '_ {
    move |e| CitusError::Db(DbError::new(context, e))
}

#[derive(Debug, Clone, Default)]
pub struct DistributeOptions {
    pub shard_count: Option<i64>,
    /// How the user asked the tables to be distributed.
    pub request: ModeRequest,
    /// create_distributed_table_concurrently (see [`choose_mode`]).
    pub concurrently: bool,
    /// Why this mode: shown with the plan and in the report.
    pub mode_reason: String,
    pub isolate_hot_tenants: bool,
    /// In a concurrent distribution, the tables copied with
    /// create_distributed_table all the same (see [`choose_mode`]).
    pub copy_blocking: Vec<QName>,
    /// Longest a Citus call may run (None: no limit).
    pub statement_timeout: Option<std::time::Duration>,
}

/// How the user asked the tables to be distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeRequest {
    /// Concurrently when the application writes to the tables, blocking
    /// (faster) when nothing does.
    #[default]
    Auto,
    Blocking,
    Concurrently,
}

/// What the application wrote to the tables while we watched.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WriteSample {
    pub window_s: f64,
    /// Rows inserted, updated or deleted (pg_stat_user_tables).
    pub rows_written: i64,
    /// The tables written to.
    pub tables: Vec<String>,
    /// Other sessions holding a write lock (ROW EXCLUSIVE) on one of them
    /// right now. ROW SHARE does not count: foreign key checks take it on
    /// the tables they read, and a concurrent distribution drops the keys
    /// before it copies.
    pub open_writers: i64,
    /// The tables those sessions hold write locks on.
    #[serde(skip)]
    pub locked: Vec<QName>,
}

impl WriteSample {
    /// Whether the application wrote `t` while we watched (or holds a write
    /// lock on it now).
    pub fn wrote(&self, t: &QName) -> bool {
        self.tables.contains(&t.to_string()) || self.locked.contains(t)
    }

    pub fn any(&self) -> bool {
        self.rows_written > 0 || self.open_writers > 0
    }
}

/// Watches the tables for `window`: rows written (the statistics each
/// session flushes at least every second while it works) and sessions that
/// hold a write lock on one of them at the end.
pub async fn sample_writes(
    client: &Client,
    tables: &[QName],
    window: std::time::Duration,
) -> Result<WriteSample, CitusError> {
    let names: Vec<String> = tables.iter().map(|t| t.sql()).collect();
    let read = || async {
        client
            .query(
                // A partitioned table's rows are counted on its partitions
                // (pg_partition_tree has no row for a plain table).
                "SELECT x, coalesce((SELECT sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del) \
                                      FROM (SELECT to_regclass(x) AS relid UNION \
                                            SELECT relid FROM pg_catalog.pg_partition_tree(to_regclass(x))) t \
                                      JOIN pg_catalog.pg_stat_user_tables s ON s.relid = t.relid), \
                                   0)::int8 \
                   FROM unnest($1::text[]) x",
                &[&names],
            )
            .await
            .map_err(db("cannot read the tables' write statistics"))
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                    .collect::<Vec<_>>()
            })
    };
    let before = read().await?;
    tokio::time::sleep(window).await;
    let after = read().await?;
    let mut sample = WriteSample {
        window_s: window.as_secs_f64(),
        ..Default::default()
    };
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        if a > b {
            sample.rows_written += a - b;
            if let Some(t) = tables.iter().find(|t| &t.sql() == name) {
                sample.tables.push(t.to_string());
            }
        }
    }
    let writers = client
        .query(
            "SELECT x, l.pid FROM pg_locks l \
               JOIN unnest($1::text[]) x ON l.relation = to_regclass(x)::oid \
              WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' \
                AND l.pid <> pg_backend_pid() AND l.granted",
            &[&names],
        )
        .await
        .map_err(db("cannot read the tables' locks"))?;
    let pids: BTreeSet<i32> = writers.iter().map(|r| r.get(1)).collect();
    sample.open_writers = pids.len() as i64;
    for r in &writers {
        let name: String = r.get(0);
        if let Some(t) = tables.iter().find(|t| t.sql() == name) {
            if !sample.locked.contains(t) {
                sample.locked.push(t.clone());
            }
        }
    }
    Ok(sample)
}

/// The largest table a concurrent distribution copies with
/// create_distributed_table when nothing writes it: about a second's copy.
pub const SMALL_TABLE_BYTES: i64 = 64 << 20;

/// How long [`choose_mode`] watches the tables for writes.
pub const WATCH_FOR_WRITES: std::time::Duration = std::time::Duration::from_secs(3);

/// Decides between create_distributed_table (fastest; blocks writes to each
/// table while it copies) and create_distributed_table_concurrently (writes
/// continue), and says why: concurrently when the application writes to the
/// tables still to place (watched for `window` before anything changes), or
/// when an interrupted concurrent run left keys dropped (`saved` and gone:
/// the blocking plan drops keys only inside its one transaction).
///
/// A concurrent distribution (chosen or asked for) still copies with
/// create_distributed_table the tables nothing wrote while we watched and
/// that are small ([`SMALL_TABLE_BYTES`]), returned third: blocking their
/// writes blocks nothing, their reads go on, and they are spared
/// create_distributed_table_concurrently's switch, which can fail a read
/// that runs across it (`could not find valid entry for shard`,
/// citusdata/citus#6360).
pub async fn choose_mode(
    client: &Client,
    analysis: &Analysis,
    cat: &Catalog,
    opts: &DistributeOptions,
    saved: &[state::SavedFk],
    progress: &dyn Fn(&str),
) -> Result<(bool, String, Vec<QName>), CitusError> {
    let window = WATCH_FOR_WRITES;
    let tables = plan(analysis, cat, opts).tables();
    let live = state::Live::read(client, &tables).await?;
    // A key an interrupted concurrent run dropped, or re-added and did not
    // validate (rows without a parent stopped it): the concurrent plan's
    // steps finish it.
    let resuming = saved
        .iter()
        .any(|s| live.fks.get(&(s.table.clone(), s.fk.name.clone())) != Some(&true));
    let unplaced: Vec<QName> = tables
        .into_iter()
        .filter(|t| {
            !matches!(
                live.citus.get(t).map(String::as_str),
                Some("distributed" | "reference")
            )
        })
        .collect();
    let tables = &unplaced;
    let watch = || async {
        progress(&format!(
            "watching {} table(s) for writes for {:.0} s to choose how to distribute",
            tables.len(),
            window.as_secs_f64()
        ));
        sample_writes(client, tables, window).await
    };
    // The tables a concurrent distribution copies blocking, and what the
    // reason says of them.
    let quiet = |w: &WriteSample| -> (Vec<QName>, String) {
        let q: Vec<QName> = tables
            .iter()
            .filter(|t| !w.wrote(t))
            .filter(|t| {
                cat.table(t)
                    .is_some_and(|x| x.size_bytes <= SMALL_TABLE_BYTES)
            })
            .filter(|t| class_is_tenant(analysis, t))
            .cloned()
            .collect();
        let say =
            if q.is_empty() {
                String::new()
            } else {
                format!(
                "; {} copied with create_distributed_table all the same: nothing wrote {} and {} \
                 small, so no write waits while reads go on, and no read can fail at a \
                 concurrent switch (citusdata/citus#6360)",
                q.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
                if q.len() == 1 { "it" } else { "them" },
                if q.len() == 1 { "it is" } else { "they are" },
            )
            };
        (q, say)
    };
    Ok(match opts.request {
        ModeRequest::Blocking => (
            false,
            "blocking, as asked (--blocking): each table's writes wait while it is copied".into(),
            Vec::new(),
        ),
        ModeRequest::Concurrently if resuming => (
            true,
            "concurrently, as asked (--concurrently), resuming an interrupted distribution".into(),
            Vec::new(),
        ),
        ModeRequest::Concurrently => {
            let w = watch().await?;
            let (q, say) = quiet(&w);
            (
                true,
                format!("concurrently, as asked (--concurrently): writes continue{say}"),
                q,
            )
        }
        ModeRequest::Auto if resuming => (
            true,
            "concurrently: resuming an interrupted concurrent distribution".into(),
            Vec::new(),
        ),
        ModeRequest::Auto if tables.is_empty() => {
            (false, "every table is placed already".into(), Vec::new())
        }
        ModeRequest::Auto => {
            let w = watch().await?;
            if w.any() {
                let (q, say) = quiet(&w);
                (
                    true,
                    format!(
                        "concurrently, because the application writes: {} row(s) written to {} \
                         and {} session(s) writing, in {:.0} s (--blocking to block writes instead){say}",
                        w.rows_written,
                        if w.tables.is_empty() {
                            "the tables".to_string()
                        } else {
                            w.tables.join(", ")
                        },
                        w.open_writers,
                        w.window_s
                    ),
                    q,
                )
            } else {
                (
                    false,
                    format!(
                        "blocking (fastest), because nothing wrote to the tables in {:.0} s \
                         (--concurrently to keep writes going anyway)",
                        w.window_s
                    ),
                    Vec::new(),
                )
            }
        }
    })
}

/// Whether analysis made `t` a distributed (tenant) table.
fn class_is_tenant(analysis: &Analysis, t: &QName) -> bool {
    analysis.class_of(t).is_some_and(|c| c.is_tenant())
}

/// A unit of execution: statements in one transaction, or one statement
/// that must run outside any (the concurrent variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub description: String,
    pub transaction: bool,
    pub statements: Vec<Statement>,
}

impl Batch {
    /// What its statements lock, as one set, taken before the first.
    pub fn locks(&self) -> Vec<Lock> {
        locks::merge(self.statements.iter().flat_map(|s| &s.locks))
    }
}

impl Serialize for Batch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut b = s.serialize_struct("Batch", 4)?;
        b.serialize_field("description", &self.description)?;
        b.serialize_field("transaction", &self.transaction)?;
        b.serialize_field(
            "locks",
            &self.locks().iter().map(Lock::sql).collect::<Vec<_>>(),
        )?;
        b.serialize_field("statements", &self.statements)?;
        b.end()
    }
}

/// One statement of the plan (serialized as its SQL) and how a rerun tells
/// from the database that it already took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub done: Done,
    /// What it locks on the application's tables and sequences: its batch
    /// takes these first ([`crate::db::run_txn_locked`]).
    pub locks: Vec<Lock>,
    /// The table whose concurrent switch it makes: run under the commit
    /// guard ([`guard`]), so no asynchronously committed write is left
    /// behind in the old shard.
    pub guard: Option<guard::Switch>,
}

/// When a statement has already taken effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Never by itself: it runs whenever its batch has work (a setting, or
    /// a call that is safe to repeat).
    Repeatable,
    /// Citus has the table, as this type.
    CitusTable { table: QName, kind: &'static str },
    /// Citus has the table in its metadata, of any type (a Citus local
    /// table on its way to being distributed, or further).
    InMetadata { table: QName },
    /// The foreign key is gone.
    FkAbsent { table: QName, name: String },
    /// The foreign key is there (and validated, when asked).
    FkPresent {
        table: QName,
        name: String,
        validated: bool,
    },
}

impl Done {
    /// Whether the database already shows the statement's effect (None:
    /// it has no effect to look for).
    fn holds(&self, live: &state::Live) -> Option<bool> {
        Some(match self {
            Done::Repeatable => return None,
            Done::CitusTable { table, kind } => {
                live.citus.get(table).map(String::as_str) == Some(kind)
            }
            Done::InMetadata { table } => live.citus.contains_key(table),
            Done::FkAbsent { table, name } => {
                !live.fks.contains_key(&(table.clone(), name.clone()))
            }
            Done::FkPresent {
                table,
                name,
                validated,
            } => live
                .fks
                .get(&(table.clone(), name.clone()))
                .is_some_and(|v| *v || !validated),
        })
    }
}

impl Done {
    /// Records the statement's effect in `live`, as if it had run (so the
    /// statements after it in its batch are judged against it).
    fn take_effect(&self, live: &mut state::Live) {
        match self {
            Done::Repeatable => {}
            Done::CitusTable { table, kind } => {
                live.citus.insert(table.clone(), kind.to_string());
            }
            Done::InMetadata { table } => {
                live.citus
                    .entry(table.clone())
                    .or_insert_with(|| "local".to_string());
            }
            Done::FkAbsent { table, name } => {
                live.fks.remove(&(table.clone(), name.clone()));
            }
            Done::FkPresent {
                table,
                name,
                validated,
            } => {
                live.fks.insert((table.clone(), name.clone()), *validated);
            }
        }
    }
}

/// Which of a batch's statements still have to run, judged in order: a
/// statement runs unless the database already shows its effect, where the
/// effects of the statements before it that run count as shown (a key the
/// batch drops and re-adds is re-added). None: the batch is done.
fn still_to_run(b: &Batch, mut live: state::Live) -> Option<Vec<Statement>> {
    // Dropping a key is a means: when everything else the batch is for
    // holds (tables placed, keys there), it is done.
    let goals: Vec<Option<bool>> = b
        .statements
        .iter()
        .filter(|s| !matches!(s.done, Done::FkAbsent { .. }))
        .filter_map(|s| s.done.holds(&live).map(Some))
        .collect();
    if !goals.is_empty() && goals.iter().all(|g| *g == Some(true)) {
        return None;
    }
    let mut todo = Vec::new();
    let mut checkable = false;
    let mut work = false;
    for s in &b.statements {
        match s.done.holds(&live) {
            Some(true) => checkable = true,
            Some(false) => {
                checkable = true;
                work = true;
                s.done.take_effect(&mut live);
                todo.push(s.clone());
            }
            None => todo.push(s.clone()),
        }
    }
    (work || !checkable).then_some(todo)
}

impl Serialize for Statement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.sql)
    }
}

impl std::ops::Deref for Statement {
    type Target = str;
    fn deref(&self) -> &str {
        &self.sql
    }
}

impl PartialEq<&str> for Statement {
    fn eq(&self, other: &&str) -> bool {
        self.sql == *other
    }
}

/// Citus runs DDL touching distributed tables with foreign keys to
/// reference tables over one connection per node only in sequential mode.
fn sequential() -> Statement {
    repeatable("SET LOCAL citus.multi_shard_modify_mode TO 'sequential';".to_string())
}

fn repeatable(sql: String) -> Statement {
    Statement {
        sql,
        done: Done::Repeatable,
        locks: Vec::new(),
        guard: None,
    }
}

/// The distribution plan (`distribute --dry-run --format json`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DistributionPlan {
    pub tenant_column: String,
    pub root: Option<QName>,
    pub shard_count: i64,
    pub reference: Vec<QName>,
    /// Distributed tables in the order they are distributed (root first).
    pub distributed: Vec<QName>,
    /// Whether the ordering trap forced the one-transaction form.
    pub sequential_transaction: bool,
    /// create_distributed_table_concurrently, and why this mode.
    pub concurrently: bool,
    pub mode_reason: String,
    pub batches: Vec<Batch>,
}

impl DistributionPlan {
    /// Every table the plan places (reference and distributed).
    pub fn tables(&self) -> BTreeSet<QName> {
        self.reference
            .iter()
            .chain(&self.distributed)
            .cloned()
            .collect()
    }

    /// The plan as a psql script.
    pub fn to_sql(&self) -> String {
        let mut out = format!(
            "-- shardready distribute: {} reference, {} distributed by {} ({} shards)\n\\set ON_ERROR_STOP on\n",
            self.reference.len(),
            self.distributed.len(),
            self.tenant_column,
            self.shard_count
        );
        if !self.mode_reason.is_empty() {
            out.push_str(&format!("-- mode: {}\n", self.mode_reason));
        }
        for b in &self.batches {
            out.push_str(&format!("\n-- {}\n", b.description));
            if b.transaction {
                out.push_str("BEGIN;\n");
                for l in b.locks() {
                    out.push_str(&l.sql());
                    out.push('\n');
                }
            }
            for s in &b.statements {
                out.push_str(&s.sql);
                out.push('\n');
            }
            if b.transaction {
                out.push_str("COMMIT;\n");
            }
        }
        out
    }
}

fn fk_add(table: &QName, fk: &ForeignKey, not_valid: bool) -> Statement {
    Statement {
        sql: format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}{};",
            table.sql(),
            ident(&fk.name),
            fk.definition.trim_end_matches(" NOT VALID"),
            if not_valid { " NOT VALID" } else { "" }
        ),
        done: Done::FkPresent {
            table: table.clone(),
            name: fk.name.clone(),
            validated: false,
        },
        locks: both(table, fk, Mode::ShareRowExclusive),
        guard: None,
    }
}

/// The table of a key and the table it references, in that order.
fn both(table: &QName, fk: &ForeignKey, mode: Mode) -> Vec<Lock> {
    let mut l = vec![Lock::table(table, mode)];
    if &fk.ref_table != table {
        l.push(Lock::table(&fk.ref_table, mode));
    }
    l
}

fn fk_drop(table: &QName, fk: &ForeignKey) -> Statement {
    Statement {
        sql: format!(
            "ALTER TABLE {} DROP CONSTRAINT {};",
            table.sql(),
            ident(&fk.name)
        ),
        done: Done::FkAbsent {
            table: table.clone(),
            name: fk.name.clone(),
        },
        locks: both(table, fk, Mode::AccessExclusive),
        guard: None,
    }
}

fn fk_validate(table: &QName, fk: &ForeignKey) -> Statement {
    Statement {
        sql: format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {};",
            table.sql(),
            ident(&fk.name)
        ),
        done: Done::FkPresent {
            table: table.clone(),
            name: fk.name.clone(),
            validated: true,
        },
        // SHARE UPDATE EXCLUSIVE: the application's writes go on.
        locks: Vec::new(),
        guard: None,
    }
}

/// Tenant tables in FK order: a table comes after every tenant table it
/// references (self-references ignored), ties by name.
fn fk_order(cat: &Catalog, tables: &[QName]) -> Vec<QName> {
    let sorted: Vec<&QName> = tables.iter().collect::<BTreeSet<_>>().into_iter().collect();
    crate::catalog::referenced_first(sorted.len(), |i, j| {
        cat.table(sorted[i])
            .is_some_and(|t| t.foreign_keys.iter().any(|fk| &fk.ref_table == sorted[j]))
    })
    .into_iter()
    .map(|i| sorted[i].clone())
    .collect()
}

/// The tables `t` references among `placed_before`, in the order they were
/// placed: creating `t`'s foreign keys on the shards takes SHARE ROW
/// EXCLUSIVE on them.
fn parents(cat: &Catalog, t: &QName, placed_before: &[QName]) -> Vec<Lock> {
    let Some(tt) = cat.table(t) else {
        return Vec::new();
    };
    let parents: BTreeSet<&QName> = tt
        .foreign_keys
        .iter()
        .map(|fk| &fk.ref_table)
        .filter(|r| *r != t && placed_before.contains(r))
        .collect();
    placed_before
        .iter()
        .filter(|p| parents.contains(p))
        .map(|p| Lock::table(p, Mode::ShareRowExclusive))
        .collect()
}

/// The batches that re-add dropped keys once their tables are placed:
/// NOT VALID together (a brief lock), then each validated (writes
/// continue). Sequential: the distributed tables were just written to in
/// parallel, and Citus refuses DDL after that in parallel mode. A key of a
/// partitioned table cannot be NOT VALID (PostgreSQL 15): it is added so on
/// each partition and validated there, then declared on the partitioned
/// table, which takes the partitions' validated keys over without a scan.
fn readd(cat: &Catalog, dropped: &[(QName, ForeignKey)]) -> Vec<Batch> {
    if dropped.is_empty() {
        return Vec::new();
    }
    // Where each key is added NOT VALID and validated: the table, or its
    // partitions.
    let on = |t: &QName| -> Vec<QName> {
        let parts = cat.partitions_of(t);
        if parts.is_empty() {
            vec![t.clone()]
        } else {
            parts.iter().map(|p| p.name.clone()).collect()
        }
    };
    let mut s = vec![sequential()];
    for (t, fk) in dropped {
        s.extend(on(t).iter().map(|p| fk_add(p, fk, true)));
    }
    let mut out = vec![Batch {
        description: "re-add the foreign keys NOT VALID (brief lock)".into(),
        transaction: true,
        statements: s,
    }];
    for (t, fk) in dropped {
        for p in on(t) {
            out.push(Batch {
                description: format!("validate {} on {p} (writes continue)", fk.name),
                transaction: true,
                statements: vec![sequential(), fk_validate(&p, fk)],
            });
        }
        if on(t).first() != Some(t) {
            out.push(Batch {
                description: format!(
                    "declare {} on {t}, over its partitions' validated keys (brief lock)",
                    fk.name
                ),
                transaction: true,
                statements: vec![sequential(), fk_add(t, fk, false)],
            });
        }
    }
    out
}

/// Plans the distribution of an analyzed (prepared) database.
pub fn plan(analysis: &Analysis, cat: &Catalog, opts: &DistributeOptions) -> DistributionPlan {
    let col = analysis.tenant.column.clone();
    let root = analysis.tenant.root.clone();
    let class_of = |q: &QName| analysis.class_of(q).cloned();
    let reference: Vec<QName> = {
        let refs: Vec<QName> = analysis
            .tables
            .iter()
            .filter(|s| s.class.class == Class::Reference)
            .map(|s| s.table.clone())
            .collect();
        fk_order(cat, &refs)
    };
    let mut tenant: Vec<QName> = analysis
        .tables
        .iter()
        .filter(|s| s.class.class.is_tenant())
        .map(|s| s.table.clone())
        .collect();
    tenant = fk_order(cat, &tenant);
    if let Some(r) = &root {
        tenant.retain(|t| t != r);
        tenant.insert(0, r.clone());
    }
    let shard_count = opts
        .shard_count
        .or_else(|| {
            analysis
                .skew
                .as_ref()
                .and_then(|s| s.shard_count.as_ref().map(|c| c.count))
        })
        .unwrap_or(32);
    let tcol = |t: &QName| -> String {
        match cat.table(t) {
            Some(tt) => crate::analyze::tenant::tenant_column_of(tt, &analysis.tenant).to_string(),
            None => col.clone(),
        }
    };
    // FKs from tenant tables into reference tables: the ordering trap.
    let mut into_reference: Vec<(QName, ForeignKey)> = Vec::new();
    // FKs between tenant tables (colocated).
    let mut colocated: Vec<(QName, ForeignKey)> = Vec::new();
    for t in &tenant {
        let Some(tt) = cat.table(t) else { continue };
        for fk in &tt.foreign_keys {
            match class_of(&fk.ref_table) {
                Some(Class::Reference) => into_reference.push((t.clone(), fk.clone())),
                Some(c) if c.is_tenant() => colocated.push((t.clone(), fk.clone())),
                _ => {}
            }
        }
    }
    // What each table's placement locks besides the table itself: the
    // tables it references that are placed before it (its keys are created
    // on the shards) and the sequences its columns own.
    let placed_before = |t: &QName| -> Vec<QName> {
        match tenant.iter().position(|x| x == t) {
            Some(pos) => reference.iter().chain(&tenant[..pos]).cloned().collect(),
            None => reference.iter().take_while(|x| *x != t).cloned().collect(),
        }
    };
    let taking_over = |t: &QName, mode: Mode| -> Vec<Lock> {
        let mut l = parents(cat, t, &placed_before(t));
        l.extend(locks::table_and_sequences(cat, t, mode));
        l
    };
    let create_ref = |t: &QName| Statement {
        sql: format!("SELECT create_reference_table({});", literal(&t.sql())),
        done: Done::CitusTable {
            table: t.clone(),
            kind: "reference",
        },
        locks: taking_over(t, Mode::Exclusive),
        guard: None,
    };
    let distribute = |t: &QName, concurrent: bool| {
        let f = if concurrent {
            "create_distributed_table_concurrently"
        } else {
            "create_distributed_table"
        };
        let sql = match &root {
            Some(r) if r != t => format!(
                "SELECT {f}({}, {}, colocate_with => {});",
                literal(&t.sql()),
                literal(&tcol(t)),
                literal(&r.sql())
            ),
            _ => format!(
                "SELECT {f}({}, {}, shard_count => {shard_count});",
                literal(&t.sql()),
                literal(&tcol(t))
            ),
        };
        Statement {
            sql,
            done: Done::CitusTable {
                table: t.clone(),
                kind: "distributed",
            },
            // The concurrent variant runs outside any transaction of
            // ours and blocks no writes while it copies.
            locks: if concurrent {
                Vec::new()
            } else {
                taking_over(t, Mode::Exclusive)
            },
            // Its switch reads a WAL position that asynchronous commits
            // can lie beyond (guard.rs).
            guard: concurrent.then(|| guard::Switch::Table(t.clone())),
        }
    };
    let truncate = |t: &QName| Statement {
        sql: format!(
            "SELECT truncate_local_data_after_distributing_table({});",
            literal(&t.sql())
        ),
        done: Done::Repeatable,
        // TRUNCATE … CASCADE: the table and every table referencing it.
        locks: locks::cascade(cat, t)
            .iter()
            .map(|x| Lock::table(x, Mode::AccessExclusive))
            .collect(),
        guard: None,
    };
    let mut batches = Vec::new();
    let trap = !into_reference.is_empty() && !reference.is_empty();
    // Keys to a tenant table distributed later (a root that references one
    // of its children — a store's manager among its staff — or any cycle):
    // Citus refuses to distribute a table whose key points at a table it
    // does not have yet, so they are dropped first (saved) and re-added
    // once both are placed.
    let pos = |q: &QName| tenant.iter().position(|t| t == q);
    let backward: Vec<(QName, ForeignKey)> = colocated
        .iter()
        .filter(|(t, fk)| &fk.ref_table != t && pos(&fk.ref_table) > pos(t))
        .cloned()
        .collect();
    if opts.concurrently {
        // create_distributed_table_concurrently: no FK from other tables to
        // the one being distributed, one at a time, outside transactions.
        let mut dropped: Vec<(QName, ForeignKey)> = colocated.clone();
        dropped.extend(into_reference.iter().cloned());
        if !dropped.is_empty() {
            let mut s = vec![sequential()];
            s.extend(dropped.iter().map(|(t, fk)| fk_drop(t, fk)));
            batches.push(Batch {
                description: "drop the foreign keys create_distributed_table_concurrently cannot keep (re-added below)".into(),
                transaction: true,
                statements: s,
            });
        }
        for r in &reference {
            batches.push(Batch {
                description: format!("reference table {r}"),
                transaction: true,
                statements: vec![create_ref(r)],
            });
        }
        for t in &tenant {
            if opts.copy_blocking.contains(t) {
                // Nothing writes it and it is small (choose_mode): copied
                // in a transaction that blocks its writes, not its reads;
                // its keys are dropped, so its parents are not locked, and
                // its local copy goes at once, TRUNCATE reaching no other
                // table while no key points at it.
                let mut copy = distribute(t, false);
                copy.locks = locks::table_and_sequences(cat, t, Mode::Exclusive);
                batches.push(Batch {
                    description: format!(
                        "distribute {t} (nothing writes it: copied, reads continue)"
                    ),
                    transaction: true,
                    statements: vec![copy],
                });
                let mut clear = truncate(t);
                clear.locks = vec![Lock::table(t, Mode::AccessExclusive)];
                batches.push(Batch {
                    description: format!(
                        "remove the local copies of {t}'s rows left on the coordinator"
                    ),
                    transaction: true,
                    statements: vec![clear],
                });
                continue;
            }
            // create_distributed_table_concurrently first adds the table to
            // Citus's metadata over a connection of its own, with no lock
            // timeout: it locks the table, then the sequences its columns
            // own — while an application transaction may hold one and wait
            // for the other (nextval before its INSERT, or a DEFAULT
            // nextval inside it). Done here as our own transaction instead,
            // every lock it needs is taken first, never waiting for one
            // while holding another (run_txn_locked).
            let s = vec![Statement {
                sql: format!(
                    "SELECT citus_add_local_table_to_metadata({});",
                    literal(&t.sql())
                ),
                done: Done::InMetadata { table: t.clone() },
                locks: locks::table_and_sequences(cat, t, Mode::AccessExclusive),
                guard: None,
            }];
            batches.push(Batch {
                description: format!("add {t} to Citus's metadata (brief lock)"),
                transaction: true,
                statements: s,
            });
            batches.push(Batch {
                description: format!("distribute {t} concurrently (writes continue)"),
                transaction: false,
                statements: vec![distribute(t, true)],
            });
        }
        batches.extend(readd(cat, &dropped));
    } else if trap {
        // One transaction: drop the FKs into the would-be reference tables
        // (and those pointing at tables distributed later), create the
        // reference tables, distribute root then children, re-add those
        // FKs — atomic, so no relationship is ever unenforced.
        let mut s = vec![sequential()];
        s.extend(into_reference.iter().map(|(t, fk)| fk_drop(t, fk)));
        s.extend(backward.iter().map(|(t, fk)| fk_drop(t, fk)));
        s.extend(reference.iter().map(create_ref));
        s.extend(tenant.iter().map(|t| distribute(t, false)));
        s.extend(into_reference.iter().map(|(t, fk)| fk_add(t, fk, false)));
        s.extend(backward.iter().map(|(t, fk)| fk_add(t, fk, false)));
        batches.push(Batch {
            description: "tenant tables reference lookup tables: everything in one sequential-mode transaction".into(),
            transaction: true,
            statements: s,
        });
    } else {
        if !backward.is_empty() {
            let mut s = vec![sequential()];
            s.extend(backward.iter().map(|(t, fk)| fk_drop(t, fk)));
            batches.push(Batch {
                description: "drop the foreign keys that point at tables distributed later \
                              (saved; re-added below)"
                    .into(),
                transaction: true,
                statements: s,
            });
        }
        for r in &reference {
            batches.push(Batch {
                description: format!("reference table {r}"),
                transaction: true,
                statements: vec![create_ref(r)],
            });
        }
        for t in &tenant {
            batches.push(Batch {
                description: format!(
                    "distribute {t}{}",
                    if Some(t) == root.as_ref() {
                        " (the tenant root)"
                    } else {
                        ", colocated with the root"
                    }
                ),
                transaction: true,
                statements: vec![distribute(t, false)],
            });
        }
        batches.extend(readd(cat, &backward));
    }
    // The coordinator's local copies of the rows are no longer needed;
    // children first, then what they reference. A concurrent distribution
    // leaves none (the table's rows moved into its shards); TRUNCATE would
    // only queue the application behind an exclusive lock.
    let mut order: Vec<QName> = if opts.concurrently {
        Vec::new()
    } else {
        tenant.iter().rev().cloned().collect()
    };
    order.extend(reference.iter().rev().cloned());
    // One transaction each: the exclusive locks are held one table (and
    // those referencing it) at a time.
    for t in &order {
        batches.push(Batch {
            description: format!("remove the local copies of {t}'s rows left on the coordinator"),
            transaction: true,
            statements: vec![truncate(t)],
        });
    }
    if opts.isolate_hot_tenants {
        if let (Some(r), Some(skew)) = (&root, &analysis.skew) {
            for h in &skew.hot {
                batches.push(Batch {
                    description: format!(
                        "isolate hot tenant {} ({:.0}% of rows) on its own shard",
                        h.tenant,
                        h.share * 100.0
                    ),
                    transaction: false,
                    statements: vec![Statement {
                        // A split by logical replication, with the same
                        // switch as a concurrent distribution (guard.rs).
                        guard: Some(guard::Switch::Tenant {
                            table: r.clone(),
                            value: h.tenant.clone(),
                        }),
                        ..repeatable(format!(
                            "SELECT isolate_tenant_to_new_shard({}, {}, cascade_option => 'CASCADE');",
                            literal(&r.sql()),
                            literal(&h.tenant)
                        ))
                    }],
                });
            }
        }
    }
    DistributionPlan {
        tenant_column: col,
        root,
        shard_count,
        reference,
        distributed: tenant,
        sequential_transaction: trap && !opts.concurrently,
        concurrently: opts.concurrently,
        mode_reason: opts.mode_reason.clone(),
        batches,
    }
}

/// Drops what interrupted Citus operations left behind (shards of a
/// `create_distributed_table_concurrently` that was killed, recorded in
/// `pg_dist_cleanup`), so a rerun neither trips over nor plans them.
pub async fn clean_up_leftovers(client: &Client) -> Result<(), CitusError> {
    if crate::catalog::extension_installed(client, "citus")
        .await
        .map_err(db("cannot read pg_extension"))?
    {
        crate::db::exec(client, "CALL pg_catalog.citus_cleanup_orphaned_resources()")
            .await
            .map_err(db("cannot clean up what interrupted Citus operations left"))?;
    }
    Ok(())
}

/// Whether the connected database is a Citus coordinator with workers.
pub async fn check_coordinator(client: &Client, target: &str) -> Result<i64, CitusError> {
    if !crate::catalog::extension_installed(client, "citus")
        .await
        .map_err(db("cannot read pg_extension"))?
    {
        return Err(CitusError::NotCitus {
            target: target.to_string(),
        });
    }
    // Workers, and whether any node (a single-node cluster's coordinator,
    // like the seed's) may hold shards.
    let r = client
        .query_one(
            "SELECT count(*) FILTER (WHERE groupid <> 0), count(*) FILTER (WHERE shouldhaveshards) \
               FROM pg_dist_node WHERE noderole = 'primary' AND isactive",
            &[],
        )
        .await
        .map_err(db("cannot read pg_dist_node"))?;
    let (workers, holders): (i64, i64) = (r.get(0), r.get(1));
    if holders == 0 {
        return Err(CitusError::NoWorkers);
    }
    Ok(workers)
}

/// What online shard moves need on every node — `--concurrently` and
/// tenant isolation copy through logical replication — checked before
/// anything changes; each missing one says which setting to change and how.
pub async fn preflight(
    client: &Client,
    opts: &DistributeOptions,
    cat: &Catalog,
    tables: &[QName],
) -> Result<(), CitusError> {
    if !(opts.concurrently || opts.isolate_hot_tenants) {
        return Ok(());
    }
    let mut missing = without_replica_identity(cat, tables);
    if opts.concurrently {
        missing.extend(materialized_views_in_the_way(client, opts, tables).await?);
    }
    for name in [
        "wal_level",
        "output_plugin_libraries",
        "max_worker_processes",
    ] {
        for (node, v) in node_settings(client, name).await? {
            missing.extend(scale::setting_problem(&node, name, v.as_deref()));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CitusError::Prerequisites(missing))
    }
}

/// A materialized view on a table still to be distributed concurrently:
/// `create_distributed_table_concurrently` re-creates it WITH DATA when the
/// table joins Citus's metadata, which fails where its query does not run
/// on Citus (Pagila's `rental_by_category`: "complex joins are only
/// supported…"). One line per table, with the ways out.
async fn materialized_views_in_the_way(
    client: &Client,
    opts: &DistributeOptions,
    tables: &[QName],
) -> Result<Vec<String>, CitusError> {
    let mut out = Vec::new();
    for t in tables.iter().filter(|t| !opts.copy_blocking.contains(t)) {
        let distributed: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition \
                  WHERE logicalrelid = $1::text::regclass AND partmethod = 'h')",
                &[&t.sql()],
            )
            .await
            .map_err(db("cannot read Citus's tables"))?
            .get(0);
        if distributed {
            continue;
        }
        let views = crate::catalog::materialized_views_on(client, t)
            .await
            .map_err(db("cannot read the materialized views"))?;
        if views.is_empty() {
            continue;
        }
        let names: Vec<String> = views.iter().map(|v| v.sql()).collect();
        out.push(format!(
            "{t}: the materialized view(s) {} read it; create_distributed_table_concurrently \
             re-creates them WITH DATA when {t} joins Citus's metadata, and fails where their \
             query does not run on Citus. Either distribute without --concurrently (writes to {t} \
             wait while it is copied), or save their definitions (SELECT pg_get_viewdef('{}'::regclass);), \
             drop them (DROP MATERIALIZED VIEW {};) and re-create them once distributed",
            names.join(", "),
            names[0].replace('\'', "''"),
            names.join(", ")
        ));
    }
    Ok(out)
}

/// A setting on the coordinator (`the coordinator`) and on every worker
/// of the cluster (`worker host:port`); None where the server has no such
/// setting (`output_plugin_libraries` exists only in some minor releases)
/// or the worker did not answer. `run_command_on_workers` returns a NULL
/// as an empty string, like a setting set to '': each worker's value
/// comes back prefixed with `=` so the two stay apart.
async fn node_settings(
    client: &Client,
    name: &str,
) -> Result<Vec<(String, Option<String>)>, CitusError> {
    let sql = format!(
        "SELECT 'the coordinator', current_setting({lit}, true) \
         UNION ALL \
         SELECT 'worker ' || nodename || ':' || nodeport, \
                CASE WHEN success AND left(result, 1) = '=' THEN substr(result, 2) END \
           FROM run_command_on_workers({cmd})",
        lit = literal(name),
        cmd = literal(&format!(
            "SELECT '=' || current_setting({}, true)",
            literal(name)
        ))
    );
    Ok(client
        .query(&sql, &[])
        .await
        .map_err(db("cannot read the nodes' settings"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Row counts of `tables`, by name.
async fn count_rows(client: &Client, tables: &[QName]) -> Result<Vec<(String, i64)>, CitusError> {
    let mut out = Vec::new();
    for t in tables {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", t.sql()), &[])
            .await
            .map_err(db("cannot count rows"))?
            .get(0);
        out.push((t.to_string(), n));
    }
    Ok(out)
}

/// Each table's rows before and after, and a problem for each table that
/// lost rows: the application may insert meanwhile, so rows may be added,
/// none may be lost.
fn rows_kept(
    before: &[(String, i64)],
    after: &[(String, i64)],
) -> (Vec<RowsBeforeAfter>, Vec<String>) {
    let mut problems = Vec::new();
    let rows = before
        .iter()
        .map(|(t, n)| {
            let now = after.iter().find(|(a, _)| a == t).map_or(0, |(_, v)| *v);
            if now < *n {
                problems.push(format!("{t}: {n} rows before, {now} after"));
            }
            RowsBeforeAfter {
                table: t.clone(),
                before: *n,
                after: now,
            }
        })
        .collect();
    (rows, problems)
}

/// What a statement retried under a lock policy came to, as this module's
/// error: cancelled by the policy's statement timeout, failed, or given up
/// after its lock timeouts; `context` says which statement.
fn retry_error(context: &str, policy: &LockPolicy, e: RetryError) -> CitusError {
    match e {
        RetryError::Failed(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
                && policy.statement_timeout.is_some() =>
        {
            CitusError::TimedOut {
                context: context.to_string(),
                limit: policy.statement_timeout.unwrap_or_default(),
            }
        }
        RetryError::Failed(e) => CitusError::Db(DbError::new(context.to_string(), e)),
        RetryError::GaveUp { attempts, .. } => CitusError::GaveUp {
            context: context.to_string(),
            attempts,
        },
    }
}

/// When validating a batch's key found rows without a parent: how many,
/// and the query that lists them (None: not a validation, or the key is
/// not in the catalog).
async fn orphans(client: &Client, cat: &Catalog, b: &Batch) -> Option<CitusError> {
    let (table, name) = b.statements.iter().find_map(|s| match &s.done {
        Done::FkPresent {
            table,
            name,
            validated: true,
        } => Some((table, name)),
        _ => None,
    })?;
    let fk = cat
        .table(table)?
        .foreign_keys
        .iter()
        .find(|f| &f.name == name)?;
    let cols: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("c.{}", ident(c)))
        .collect();
    let from = crate::sql::rows_without_parent(
        &table.sql(),
        &fk.columns,
        &fk.ref_table.sql(),
        &fk.ref_columns,
    );
    let count: i64 = client
        .query_one(&format!("SELECT count(*) {from}"), &[])
        .await
        .ok()?
        .get(0);
    Some(CitusError::Orphans {
        table: table.clone(),
        parent: fk.ref_table.clone(),
        fk: name.clone(),
        count,
        list: format!("SELECT {} {from};", cols.join(", ")),
    })
}

/// Moving a table's rows by logical replication replays its UPDATEs and
/// DELETEs by replica identity; without one, they fail meanwhile. One line
/// per such table among `tables`, with the fix.
fn without_replica_identity(cat: &Catalog, tables: &[QName]) -> Vec<String> {
    tables
        .iter()
        .filter_map(|q| cat.table(q))
        .filter(|t| match t.replica_identity.as_str() {
            "n" => true,
            "d" => t.primary_key().is_none(),
            _ => false,
        })
        .map(|t| {
            format!(
                "{}: no replica identity (no primary key), so the application's UPDATEs and \
                 DELETEs on it would fail while it moves: add a primary key, or \
                 ALTER TABLE {} REPLICA IDENTITY FULL;",
                t.name,
                t.name.sql()
            )
        })
        .collect()
}

/// What `distribute` did and found.
#[derive(Debug, Clone, Serialize)]
pub struct DistributeReport {
    pub plan: DistributionPlan,
    pub workers: i64,
    pub counts: Vec<RowsBeforeAfter>,
    pub citus_tables: Vec<CitusTable>,
    pub routing: String,
    /// What the application's traffic felt during the run (`--workload`).
    pub workload: Option<crate::workload::Summary>,
    /// The database's own signals during the run (canary, lock waits on
    /// shardready, WAL, standby lag), sampled beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<crate::apply::signals::SignalReport>,
    /// Shards the tenant root has now, as Citus counts them (isolating a
    /// tenant adds some to the planned count).
    pub root_shards: Option<i64>,
    /// The commit guard at each concurrent switch ([`guard`]).
    pub switch_guards: Vec<guard::GuardReport>,
    /// The application after the step beside its baseline (`--workload`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub application_after: Vec<crate::after::AfterCheck>,
    /// The application's statements (pg_stat_statements) in a window after
    /// the step beside one before it: the costliest, and every one that got
    /// slower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statements_after: Option<crate::stat_statements::Comparison>,
}

/// A table's row count before and after it was distributed.
#[derive(Debug, Clone, Serialize)]
pub struct RowsBeforeAfter {
    pub table: String,
    pub before: i64,
    pub after: i64,
}

/// A row of `citus_tables` after distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CitusTable {
    pub table: String,
    /// `distributed`, `reference` or `local`.
    pub kind: String,
    pub colocation_id: i64,
}

/// The session `distribute` runs in: it holds the advisory lock apply
/// takes, so neither runs while the other does.
pub async fn lock(client: Client) -> Result<Session, CitusError> {
    Session::lock(client).await.map_err(|e| match e {
        crate::db::LockError::Held { holder } => CitusError::Busy { holder },
        crate::db::LockError::Db(e) => CitusError::Db(e),
    })
}

/// Runs what a batch still has to do: its statements whose effect the
/// database does not show yet (a batch whose every checkable statement took
/// effect is skipped whole). A deadlock with the application (PostgreSQL's,
/// or Citus's distributed detector cancelling our side) rolls the batch
/// back; it is tried again for as long as the policy lets a lock be waited
/// for.
#[allow(clippy::too_many_arguments)]
async fn run_batch(
    client: &Session,
    target: &crate::conn::Target,
    guards: &mut Vec<guard::GuardReport>,
    b: &Batch,
    rest: &[Batch],
    tables: &BTreeSet<QName>,
    policy: &LockPolicy,
    progress: &dyn Fn(&str),
) -> Result<(), CitusError> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    let give_up_after = policy
        .max_wait
        .unwrap_or(std::time::Duration::from_secs(600));
    loop {
        attempt += 1;
        let live = state::Live::read(client, tables).await?;
        // A batch that only drops keys is there for a later distribution;
        // once every table is placed it has nothing left to make way for.
        let drops_only = b
            .statements
            .iter()
            .any(|s| matches!(s.done, Done::FkAbsent { .. }))
            && b.statements
                .iter()
                .all(|s| matches!(s.done, Done::FkAbsent { .. } | Done::Repeatable));
        let placing_left = rest.iter().flat_map(|r| &r.statements).any(|s| {
            matches!(s.done, Done::CitusTable { .. }) && s.done.holds(&live) == Some(false)
        });
        if drops_only && !placing_left {
            progress(&format!(
                "{} (not needed: every table is placed)",
                b.description
            ));
            return Ok(());
        }
        let Some(todo) = still_to_run(b, live) else {
            progress(&format!("{} (already done)", b.description));
            return Ok(());
        };
        progress(&b.description);
        let r = if b.transaction {
            let locks: Vec<String> = locks::merge(todo.iter().flat_map(|s| &s.locks))
                .iter()
                .map(Lock::sql)
                .collect();
            let sql: Vec<String> = todo.iter().map(|s| s.sql.clone()).collect();
            client.run_txn_locked(&locks, &sql, policy).await
        } else {
            let mut r = Ok(Default::default());
            for s in &todo {
                let armed = match &s.guard {
                    Some(t) => Some(guard::arm(target, t, client).await?),
                    None => None,
                };
                r = client.run_bare(s, policy).await;
                if let Some(g) = armed {
                    guards.extend(g.conclude(r.is_ok(), progress).await?);
                }
                if r.is_err() {
                    break;
                }
            }
            r
        };
        match r {
            Ok(_) => return Ok(()),
            Err(RetryError::Failed(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
                    && started.elapsed() < give_up_after =>
            {
                progress(&format!(
                    "{}: deadlock with the application, rolled back; trying again",
                    b.description
                ));
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt.min(10))).await;
            }
            Err(e) => return Err(retry_error(&b.description, policy, e)),
        }
    }
}

/// Runs the plan's batches in order ([`run_batch`]); a key that cannot be
/// validated because rows lack their parent is reported as
/// [`CitusError::Orphans`].
#[allow(clippy::too_many_arguments)]
async fn run_batches(
    client: &Session,
    target: &crate::conn::Target,
    guards: &mut Vec<guard::GuardReport>,
    cat: &Catalog,
    plan: &DistributionPlan,
    tables: &BTreeSet<QName>,
    policy: &LockPolicy,
    progress: &dyn Fn(&str),
) -> Result<(), CitusError> {
    for (i, b) in plan.batches.iter().enumerate() {
        let r = run_batch(
            client,
            target,
            guards,
            b,
            &plan.batches[i + 1..],
            tables,
            policy,
            progress,
        )
        .await;
        if let Err(CitusError::Db(e)) = &r {
            if e.source.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
                if let Some(o) = orphans(client, cat, b).await {
                    return Err(o);
                }
            }
        }
        r?;
    }
    Ok(())
}

/// Chooses the mode ([`choose_mode`], recorded in `opts`), says it, and
/// distributes ([`distribute`]).
pub async fn distribute_in_chosen_mode(
    client: &Session,
    target: &crate::conn::Target,
    analysis: &Analysis,
    cat: &Catalog,
    opts: &mut DistributeOptions,
    saved: &[state::SavedFk],
    progress: &dyn Fn(&str),
) -> Result<DistributeReport, CitusError> {
    (opts.concurrently, opts.mode_reason, opts.copy_blocking) =
        choose_mode(client, analysis, cat, opts, saved, progress).await?;
    progress(&format!("mode: {}", opts.mode_reason));
    distribute(client, target, analysis, cat, opts, progress).await
}

/// Every blocker analyze finds, one line each: what Citus would refuse.
pub fn blockers(analysis: &Analysis) -> Vec<String> {
    analysis
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .map(|f| format!("  {}", f.line()))
        .collect()
}

/// Refuses on blockers, runs the plan, verifies the result.
pub async fn distribute(
    client: &Session,
    target: &crate::conn::Target,
    analysis: &Analysis,
    cat: &Catalog,
    opts: &DistributeOptions,
    progress: &dyn Fn(&str),
) -> Result<DistributeReport, CitusError> {
    let workers = check_coordinator(client, &target.display()).await?;
    let plan = plan(analysis, cat, opts);
    preflight(client, opts, cat, &plan.distributed).await?;
    let blockers = blockers(analysis);
    if !blockers.is_empty() {
        return Err(CitusError::Blocked(blockers));
    }
    // Triggers kept with --keep-triggers (each only changes the row being
    // written): Citus accepts them under this setting, for this session.
    if analysis
        .findings
        .iter()
        .any(|f| f.rule == crate::analyze::RuleId::UserTrigger && f.severity == Severity::Warning)
    {
        progress("keeping the row-local triggers (--keep-triggers): citus.enable_unsafe_triggers on for this session");
        client
            .execute("SET citus.enable_unsafe_triggers TO on", &[])
            .await
            .map_err(db("cannot turn on citus.enable_unsafe_triggers"))?;
    }
    let all: Vec<QName> = plan
        .reference
        .iter()
        .chain(&plan.distributed)
        .cloned()
        .collect();
    let tables = plan.tables();
    // Every key the plan drops is saved before anything changes, so that a
    // rerun after a failure or a kill re-adds it.
    let drops: Vec<state::SavedFk> = plan
        .batches
        .iter()
        .flat_map(|b| &b.statements)
        .filter_map(|s| match &s.done {
            Done::FkAbsent { table, name } => cat
                .table(table)
                .and_then(|t| t.foreign_keys.iter().find(|f| &f.name == name))
                .map(|fk| state::SavedFk {
                    table: table.clone(),
                    fk: fk.clone(),
                }),
            _ => None,
        })
        .collect();
    if !drops.is_empty() {
        state::save_fks(client, &drops).await?;
    }
    let live = state::Live::read(client, &tables).await?;
    // Finished: every table placed and every key there (the drops are only
    // a means to that).
    let pending = plan
        .batches
        .iter()
        .flat_map(|b| &b.statements)
        .filter(|s| !matches!(s.done, Done::FkAbsent { .. }))
        .any(|s| s.done.holds(&live) == Some(false));
    if !pending {
        progress("already distributed: nothing to do but verify");
    }
    let before = count_rows(client, &all).await?;
    // Statements that lock tables the application writes wait at most
    // lock_timeout at a time and retry, so the application never queues
    // behind them for long — and, the wait being shorter than the server's
    // deadlock_timeout, a lock cycle with an application transaction
    // dissolves by our retry before PostgreSQL (or Citus's distributed
    // detector, later still) would cancel the application's side. Every
    // statement is sent as its own query: Citus forwards DDL on distributed
    // tables to the workers as the original query string.
    let deadlock_ms: i64 = client
        .query_one(
            "SELECT setting::int8 FROM pg_settings WHERE name = 'deadlock_timeout'",
            &[],
        )
        .await
        .map_err(db("cannot read deadlock_timeout"))?
        .get(0);
    let policy = LockPolicy {
        lock_timeout: std::time::Duration::from_millis(deadlock_ms.clamp(80, 8000) as u64 / 4),
        max_wait: Some(std::time::Duration::from_secs(600)),
        max_attempts: None,
        statement_timeout: opts.statement_timeout,
    };
    let mut guards = Vec::new();
    run_batches(
        client,
        target,
        &mut guards,
        cat,
        &plan,
        &tables,
        &policy,
        progress,
    )
    .await?;
    // Verify: types, colocation, counts, routing, every key back.
    let mut problems = Vec::new();
    let live = state::Live::read(client, &tables).await?;
    let found: Vec<(QName, CitusTable)> = live
        .citus
        .iter()
        .map(|(name, kind)| {
            let table = CitusTable {
                table: name.to_string(),
                kind: kind.clone(),
                colocation_id: live.colocation.get(name).copied().unwrap_or_default(),
            };
            (name.clone(), table)
        })
        .collect();
    let find = |t: &QName| found.iter().find(|(q, _)| q == t).map(|(_, ct)| ct);
    let root_colo = plan.root.as_ref().and_then(find).map(|ct| ct.colocation_id);
    for t in &plan.reference {
        match find(t) {
            Some(ct) if ct.kind == "reference" => {}
            other => problems.push(format!("{t}: expected a reference table, found {other:?}")),
        }
    }
    for t in &plan.distributed {
        match find(t) {
            Some(ct)
                if ct.kind == "distributed"
                    && root_colo.is_none_or(|rc| rc == ct.colocation_id) => {}
            other => problems.push(format!(
                "{t}: expected distributed and colocated with the root, found {other:?}"
            )),
        }
    }
    let (counts, lost) = rows_kept(&before, &count_rows(client, &all).await?);
    problems.extend(lost);
    let root_shards = match &plan.root {
        Some(r) => Some(
            client
                .query_one(
                    "SELECT count(*) FROM pg_dist_shard s JOIN pg_class c ON c.oid = s.logicalrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2",
                    &[&r.schema, &r.name],
                )
                .await
                .map_err(db("cannot count the shards"))?
                .get(0),
        ),
        None => None,
    };
    let routing = match plan
        .distributed
        .iter()
        .find(|t| Some(*t) != plan.root.as_ref())
    {
        Some(t) => {
            let col = cat
                .table(t)
                .map(|tt| {
                    crate::analyze::tenant::tenant_column_of(tt, &analysis.tenant).to_string()
                })
                .unwrap_or_else(|| plan.tenant_column.clone());
            // An empty table has no tenant to route: nothing to check.
            let text = routing::one_tenant_plan(client, t, &col)
                .await?
                .unwrap_or_default();
            if !text.is_empty() && !text.contains("Task Count: 1") {
                problems.push(format!(
                    "a tenant-scoped query on {t} is not routed to one shard:\n{text}"
                ));
            }
            text
        }
        None => String::new(),
    };
    // Every key distribute ever dropped is back.
    let saved = state::saved_fks(client).await?;
    for s in &saved {
        if !live.fks.contains_key(&(s.table.clone(), s.fk.name.clone())) {
            problems.push(format!(
                "{}: foreign key {} was dropped and is not back: {}",
                s.table, s.fk.name, s.fk.definition
            ));
        }
    }
    if !problems.is_empty() {
        return Err(CitusError::Verify(problems));
    }
    if !saved.is_empty() {
        state::forget_fks(client).await?;
    }
    Ok(DistributeReport {
        plan,
        workers,
        counts,
        citus_tables: found.into_iter().map(|(_, ct)| ct).collect(),
        routing,
        workload: None,
        signals: None,
        root_shards,
        switch_guards: guards,
        application_after: Vec::new(),
        statements_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::{catalog, table, TB};
    use crate::analyze::{analyze_catalog, Analysis, Counts, Overrides, TableSummary};

    fn analysis(cat: &Catalog) -> Analysis {
        let (tenant, classes, findings) = analyze_catalog(cat, &Overrides::default()).unwrap();
        Analysis {
            schema: "shardready.analysis/v1",
            database: "test".into(),
            tenant,
            tables: classes
                .iter()
                .map(|c| TableSummary {
                    table: c.table.clone(),
                    class: c.clone(),
                    row_estimate: 0,
                    size_bytes: 0,
                })
                .collect(),
            findings,
            data: None,
            skew: None,
            counts: Counts::default(),
            placed: Vec::new(),
            dropped_fks: Vec::new(),
            fix_fk_actions: false,
            resolutions: Vec::new(),
            statements: Default::default(),
            key_order: Vec::new(),
            no_lookup_index: false,
        }
    }

    fn fk(t: TB, name: &str, cols: &[&str], to: &str, refs: &[&str]) -> TB {
        let def = format!(
            "FOREIGN KEY ({}) REFERENCES {to}({})",
            cols.join(", "),
            refs.join(", ")
        );
        t.fk_with(name, cols, to, refs, |f| f.definition = def)
    }

    /// Tailspin after `apply`: composite keys and FKs.
    fn prepared_tailspin() -> Catalog {
        catalog(vec![
            table("stores")
                .serial("store_id", "bigint")
                .col("name", "text")
                .pk(&["store_id"]),
            fk(
                table("products")
                    .serial("product_id", "bigint")
                    .col_notnull("store_id", "bigint")
                    .pk(&["store_id", "product_id"]),
                "products_store_id_fkey",
                &["store_id"],
                "stores",
                &["store_id"],
            ),
            fk(
                table("orders")
                    .serial("order_id", "bigint")
                    .col_notnull("store_id", "bigint")
                    .pk(&["store_id", "order_id"]),
                "orders_store_id_fkey",
                &["store_id"],
                "stores",
                &["store_id"],
            ),
            fk(
                fk(
                    fk(
                        table("line_items")
                            .serial("line_item_id", "bigint")
                            .col("product_id", "bigint")
                            .col("order_id", "bigint")
                            .col_notnull("store_id", "bigint")
                            .pk(&["store_id", "line_item_id"]),
                        "line_items_order_id_fkey",
                        &["store_id", "order_id"],
                        "orders",
                        &["store_id", "order_id"],
                    ),
                    "line_items_product_id_fkey",
                    &["store_id", "product_id"],
                    "products",
                    &["store_id", "product_id"],
                ),
                "line_items_store_id_fkey",
                &["store_id"],
                "stores",
                &["store_id"],
            ),
        ])
    }

    #[test]
    fn a_table_without_replica_identity_is_named_with_its_fix() {
        let mut cat = prepared_tailspin();
        let orders = QName::new("public", "orders");
        let stores = QName::new("public", "stores");
        assert!(without_replica_identity(&cat, &[orders.clone(), stores.clone()]).is_empty());
        // No primary key and the default identity (which is the key): none.
        let t = cat.tables.iter_mut().find(|t| t.name == orders).unwrap();
        t.keys.clear();
        // REPLICA IDENTITY NOTHING: none either, key or not.
        let s = cat.tables.iter_mut().find(|t| t.name == stores).unwrap();
        s.replica_identity = "n".into();
        let missing = without_replica_identity(&cat, &[orders.clone(), stores.clone()]);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].contains("ALTER TABLE \"public\".\"orders\" REPLICA IDENTITY FULL;"));
        // FULL is enough without a key.
        let t = cat.tables.iter_mut().find(|t| t.name == orders).unwrap();
        t.replica_identity = "f".into();
        assert_eq!(without_replica_identity(&cat, &[orders]).len(), 0);
    }

    #[test]
    fn tailspin_root_first_then_children_in_fk_order() {
        let cat = prepared_tailspin();
        let a = analysis(&cat);
        let p = plan(&a, &cat, &DistributeOptions::default());
        assert!(p.reference.is_empty());
        let names: Vec<&str> = p.distributed.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names[0], "stores");
        assert_eq!(
            names[3], "line_items",
            "after orders and products: {names:?}"
        );
        assert!(!p.sequential_transaction);
        assert_eq!(
            p.batches[0].statements,
            ["SELECT create_distributed_table('\"public\".\"stores\"', 'store_id', shard_count => 32);"]
        );
        // line_items: it takes its parents (placed before it, in that
        // order) and itself before Citus's call runs.
        assert_eq!(
            p.batches[3].statements,
            ["SELECT create_distributed_table('\"public\".\"line_items\"', 'store_id', colocate_with => '\"public\".\"stores\"');"]
        );
        let locks: Vec<String> = p.batches[3].locks().iter().map(Lock::sql).collect();
        assert_eq!(
            locks,
            [
                "LOCK TABLE \"public\".\"stores\" IN SHARE ROW EXCLUSIVE MODE;",
                "LOCK TABLE \"public\".\"orders\" IN SHARE ROW EXCLUSIVE MODE;",
                "LOCK TABLE \"public\".\"products\" IN SHARE ROW EXCLUSIVE MODE;",
                "LOCK TABLE \"public\".\"line_items\" IN EXCLUSIVE MODE;",
            ]
        );
        // The local copies go one table at a time, children first; each
        // locks what TRUNCATE … CASCADE reaches.
        let truncates: Vec<&Batch> = p
            .batches
            .iter()
            .filter(|b| b.statements[0].contains("truncate_local_data_after_distributing_table"))
            .collect();
        assert_eq!(truncates.len(), 4);
        assert!(truncates[0].statements[0].contains("\"line_items\""));
        assert_eq!(truncates[0].locks().len(), 1);
        assert!(truncates[3].statements[0].contains("\"stores\""));
        assert_eq!(
            truncates[3].locks().len(),
            4,
            "stores and all that reference it"
        );
        let sql = p.to_sql();
        assert!(sql.contains("BEGIN;\nLOCK TABLE \"public\".\"stores\" IN EXCLUSIVE MODE;\nSELECT create_distributed_table"));
        let json = serde_json::to_value(&p.batches[3]).unwrap();
        assert_eq!(
            json["locks"][3],
            "LOCK TABLE \"public\".\"line_items\" IN EXCLUSIVE MODE;"
        );
    }

    /// A tenant table referencing a lookup and the root: the trap.
    fn trap() -> Catalog {
        catalog(vec![
            table("countries")
                .col_notnull("code", "text")
                .col("name", "text")
                .pk(&["code"]),
            fk(
                table("stores")
                    .serial("store_id", "bigint")
                    .col("country", "text")
                    .pk(&["store_id"]),
                "stores_country_fkey",
                &["country"],
                "countries",
                &["code"],
            ),
            fk(
                fk(
                    table("orders")
                        .serial("order_id", "bigint")
                        .col_notnull("store_id", "bigint")
                        .col("ship_to", "text")
                        .pk(&["store_id", "order_id"]),
                    "orders_store_id_fkey",
                    &["store_id"],
                    "stores",
                    &["store_id"],
                ),
                "orders_ship_to_fkey",
                &["ship_to"],
                "countries",
                &["code"],
            ),
        ])
    }

    #[test]
    fn the_ordering_trap_runs_in_one_sequential_transaction() {
        let cat = trap();
        let a = analysis(&cat);
        let p = plan(&a, &cat, &DistributeOptions::default());
        assert_eq!(p.reference, [QName::new("public", "countries")]);
        assert!(p.sequential_transaction);
        let b = &p.batches[0];
        assert!(b.transaction);
        let s = &b.statements;
        assert_eq!(
            s[0],
            "SET LOCAL citus.multi_shard_modify_mode TO 'sequential';"
        );
        let pos = |needle: &str| {
            s.iter()
                .position(|x| x.contains(needle))
                .unwrap_or_else(|| panic!("{needle} in {s:#?}"))
        };
        // Drop the FKs into the lookup, reference it, distribute root then
        // children, re-add the FKs — in that order.
        let drop_a = pos("DROP CONSTRAINT \"stores_country_fkey\"");
        let drop_b = pos("DROP CONSTRAINT \"orders_ship_to_fkey\"");
        let reference = pos("create_reference_table('\"public\".\"countries\"')");
        let root = pos("create_distributed_table('\"public\".\"stores\"'");
        let child = pos("create_distributed_table('\"public\".\"orders\"'");
        let add_a = pos("ADD CONSTRAINT \"stores_country_fkey\" FOREIGN KEY (country) REFERENCES countries(code);");
        let add_b = pos("ADD CONSTRAINT \"orders_ship_to_fkey\"");
        assert!(drop_a < reference && drop_b < reference);
        assert!(reference < root && root < child);
        assert!(child < add_a && child < add_b);
        assert!(
            !s[add_a].contains("NOT VALID"),
            "validated inside the transaction"
        );
    }

    #[test]
    fn concurrently_drops_and_readds_colocated_fks_around_one_table_at_a_time() {
        let mut cat = prepared_tailspin();
        let orders = QName::new("public", "orders");
        cat.sequences.push(crate::catalog::Sequence {
            name: QName::new("public", "orders_order_id_seq"),
            data_type: "bigint".into(),
            owned_by: Some(crate::catalog::ColumnRef {
                table: orders.clone(),
                column: "order_id".into(),
            }),
        });
        let a = analysis(&cat);
        let p = plan(
            &a,
            &cat,
            &DistributeOptions {
                concurrently: true,
                ..Default::default()
            },
        );
        let first = &p.batches[0];
        assert_eq!(first.statements[0], sequential());
        assert!(first.statements[1..]
            .iter()
            .all(|s| s.contains("DROP CONSTRAINT")));
        assert_eq!(first.statements.len(), 6, "every FK between tenant tables");
        let concurrent: Vec<&Batch> = p
            .batches
            .iter()
            .filter(|b| {
                b.statements
                    .iter()
                    .any(|s| s.contains("create_distributed_table_concurrently"))
            })
            .collect();
        assert_eq!(concurrent.len(), 4);
        assert!(concurrent
            .iter()
            .all(|b| !b.transaction && b.statements.len() == 1));
        let readd = p
            .batches
            .iter()
            .position(|b| b.statements.iter().any(|s| s.ends_with("NOT VALID;")))
            .unwrap();
        let validates = p
            .batches
            .iter()
            .filter(|b| {
                b.statements
                    .iter()
                    .any(|s| s.contains("VALIDATE CONSTRAINT"))
            })
            .count();
        assert_eq!(validates, 5);
        let last_concurrent = p
            .batches
            .iter()
            .rposition(|b| b.statements.iter().any(|s| s.contains("_concurrently")))
            .unwrap();
        assert!(readd > last_concurrent);
        // Each table joins Citus's metadata in a transaction of ours first,
        // which takes the table and its sequences before the call.
        for (i, b) in p.batches.iter().enumerate() {
            if b.statements.iter().any(|s| s.contains("_concurrently(")) {
                let before = &p.batches[i - 1];
                assert!(before.transaction);
                let last = before.statements.last().unwrap();
                assert!(
                    last.contains("citus_add_local_table_to_metadata"),
                    "{last:?}"
                );
                assert!(matches!(last.done, Done::InMetadata { .. }));
            }
        }
        let orders_meta = p
            .batches
            .iter()
            .find(|b| b.description.starts_with("add orders "))
            .unwrap();
        let locks: Vec<String> = orders_meta.locks().iter().map(Lock::sql).collect();
        assert_eq!(
            locks,
            [
                "LOCK TABLE \"public\".\"orders\" IN ACCESS EXCLUSIVE MODE;",
                "ALTER SEQUENCE \"public\".\"orders_order_id_seq\" OWNED BY \"public\".\"orders\".\"order_id\";"
            ]
        );
        // No TRUNCATE: the rows moved into the shards.
        assert!(!p.to_sql().contains("truncate_local_data"));
    }

    #[test]
    fn a_quiet_small_table_is_copied_within_a_concurrent_distribution() {
        let cat = prepared_tailspin();
        let a = analysis(&cat);
        let products = QName::new("public", "products");
        let p = plan(
            &a,
            &cat,
            &DistributeOptions {
                concurrently: true,
                copy_blocking: vec![products.clone()],
                ..Default::default()
            },
        );
        let at = |needle: &str| {
            p.batches
                .iter()
                .position(|b| b.statements.iter().any(|s| s.contains(needle)))
                .unwrap_or_else(|| panic!("{needle}"))
        };
        let copy = at("create_distributed_table('\"public\".\"products\"'");
        let b = &p.batches[copy];
        assert!(b.transaction);
        // Its writes wait, its reads go on; its parents are not locked (the
        // keys are dropped by then).
        assert_eq!(b.locks(), [Lock::table(&products, Mode::Exclusive)]);
        // Its local copy goes at once, reaching no other table.
        let clear = &p.batches[copy + 1];
        assert!(clear.statements[0]
            .contains("truncate_local_data_after_distributing_table('\"public\".\"products\"')"));
        assert_eq!(
            clear.locks(),
            [Lock::table(&products, Mode::AccessExclusive)]
        );
        assert!(at("DROP CONSTRAINT") < copy);
        assert!(copy < at("NOT VALID;"));
        // The others are still taken over concurrently.
        assert_eq!(
            p.batches
                .iter()
                .filter(|b| b.statements.iter().any(|s| s.contains("_concurrently(")))
                .count(),
            3
        );
        assert!(!p
            .batches
            .iter()
            .any(|b| b.statements.iter().any(
                |s| s.contains("citus_add_local_table_to_metadata('\"public\".\"products\"')")
            )));
    }

    #[test]
    fn shard_count_and_hot_tenants() {
        let cat = prepared_tailspin();
        let a = analysis(&cat);
        let p = plan(
            &a,
            &cat,
            &DistributeOptions {
                shard_count: Some(64),
                ..Default::default()
            },
        );
        assert_eq!(p.shard_count, 64);
        assert!(p.batches[0].statements[0].contains("shard_count => 64"));
    }

    #[test]
    fn a_rerun_runs_what_the_database_does_not_show_yet() {
        let t = QName::new("app", "tasks");
        let fk = ForeignKey {
            name: "tasks_plan_fkey".into(),
            columns: vec!["plan".into()],
            ref_table: QName::new("app", "plans"),
            ref_columns: vec!["code".into()],
            on_delete: crate::catalog::FkAction::NoAction,
            on_update: crate::catalog::FkAction::NoAction,
            validated: true,
            deferrable: false,
            definition: "FOREIGN KEY (plan) REFERENCES app.plans(code)".into(),
        };
        // The trap's shape: drop a key, place the table, re-add the key.
        let b = Batch {
            description: "trap".into(),
            transaction: true,
            statements: vec![
                sequential(),
                fk_drop(&t, &fk),
                Statement {
                    sql: "SELECT create_distributed_table(...)".into(),
                    done: Done::CitusTable {
                        table: t.clone(),
                        kind: "distributed",
                    },
                    locks: Vec::new(),
                    guard: None,
                },
                fk_add(&t, &fk, false),
            ],
        };
        let key = (t.clone(), fk.name.clone());
        // Nothing done: all of it, the re-add included although the key is
        // there before the batch starts.
        let mut live = state::Live::default();
        live.fks.insert(key.clone(), true);
        assert_eq!(still_to_run(&b, live).unwrap().len(), 4);
        // Everything done: the batch is skipped.
        let mut live = state::Live::default();
        live.fks.insert(key.clone(), true);
        live.citus.insert(t.clone(), "distributed".into());
        assert!(still_to_run(&b, live).is_none());
        // Killed after the drop committed elsewhere (key gone, table not
        // placed): place and re-add, no second drop.
        let todo = still_to_run(&b, state::Live::default()).unwrap();
        assert_eq!(todo.len(), 3);
        assert!(todo[1].contains("create_distributed_table") && todo[2].contains("ADD CONSTRAINT"));
    }
}
