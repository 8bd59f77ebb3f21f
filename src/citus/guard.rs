//! The commit guard at a concurrent switch: no write the application
//! committed may be left behind when Citus moves a table onto its new
//! shards.
//!
//! `create_distributed_table_concurrently` copies the table, replicates the
//! writes made meanwhile by logical replication, and ends by blocking the
//! table's writes (an exclusive lock on the shard's metadata, which every
//! write takes in share mode), reading `pg_current_wal_lsn()` and waiting
//! for its subscription to reach that position; then it switches the table
//! to the new shards and drops the old one. `pg_current_wal_lsn()` is where
//! WAL has been *written*. A transaction the application committed with
//! `synchronous_commit = off` just before the block can lie beyond it, in
//! the WAL buffers: committed and visible, but never decoded before the
//! switch — so it stays behind in the old shard and is lost (Citus 13.2;
//! found by the seed-rate test, whose servers run with asynchronous
//! commit).
//!
//! The guard closes that gap from outside Citus. Over a connection of its
//! own it takes the same shard-metadata lock in share mode before the call
//! starts, so Citus's block has to wait for it too. Once someone waits for
//! the exclusive lock and the guard is the last holder, every write that
//! got through has committed (new ones queue behind the waiting request):
//! the guard writes one WAL record (a logical message), commits
//! synchronously — which flushes the WAL past all of their commits — and
//! only then lets Citus read its position.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::{db, CitusError};
use crate::catalog::QName;
use crate::sql::literal;

/// The `application_name` of the guard's connection.
pub const APPLICATION_NAME: &str = "shardready-switch-guard";

/// How often the guard looks whether Citus waits for it: at most this much
/// is added to the block of the table's writes at the switch.
const POLL: Duration = Duration::from_millis(5);

/// What the guard saw at one table's switch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GuardReport {
    pub table: String,
    /// The tenant split off, for an isolation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Whether Citus reached the switch while the guard held the lock (a
    /// call that failed earlier never does).
    pub switched: bool,
    /// Application transactions that still held the lock when Citus began
    /// to wait, each waited for before the flush.
    pub writers_waited_for: i64,
    /// From seeing Citus wait to letting it go on: what the guard added to
    /// the block of the table's writes.
    pub held_ms: f64,
    /// The WAL position flushed before Citus read its own.
    pub flushed_to: Option<String>,
}

/// A guard holding the lock while its table is distributed concurrently.
pub struct Guard {
    table: QName,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<GuardReport, CitusError>>,
}

/// What a guarded call moves onto new shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch {
    /// A table `create_distributed_table_concurrently` distributes (it is
    /// a Citus local table by then).
    Table(QName),
    /// The shard of a tenant `isolate_tenant_to_new_shard` splits off, and
    /// those colocated with it.
    Tenant { table: QName, value: String },
}

impl Switch {
    /// The table it is reported under.
    pub fn table(&self) -> &QName {
        match self {
            Switch::Table(t) | Switch::Tenant { table: t, .. } => t,
        }
    }

    /// The shards whose writes Citus blocks at the switch: the table's own
    /// and its partitions', or the tenant's shard (its lock covers the
    /// shards colocated with it).
    async fn shards(&self, client: &Client) -> Result<Vec<i64>, CitusError> {
        let sql = match self {
            Switch::Table(table) => {
                let t = literal(&table.sql());
                format!(
                    "SELECT shardid FROM pg_catalog.pg_dist_shard WHERE logicalrelid = {t}::regclass \
                     OR logicalrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree({t}::regclass)) \
                     ORDER BY shardid"
                )
            }
            Switch::Tenant { table, value } => format!(
                "SELECT pg_catalog.get_shard_id_for_distribution_column({}, {})",
                literal(&table.sql()),
                literal(value)
            ),
        };
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(db("cannot read the shards the switch moves"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Connects, takes the share lock on the switch's shard metadata and returns
/// once it is held; the guard then waits, in the background, for Citus's
/// block ([`Guard::finish`] ends it).
pub async fn arm(target: &crate::conn::Target, switch: &Switch) -> Result<Guard, CitusError> {
    let table = switch.table();
    let refuse = |why: String| CitusError::Unguarded {
        table: table.clone(),
        why,
    };
    let client = target
        .with_application_name(APPLICATION_NAME)
        .connect()
        .await
        .map_err(|e| refuse(e.to_string()))?;
    let ids = switch.shards(&client).await?;
    if ids.is_empty() {
        return Err(refuse("it has no shard in Citus's metadata yet".into()));
    }
    client
        .batch_execute("BEGIN")
        .await
        .map_err(db("cannot begin the guard's transaction"))?;
    // ShareLock (5): what every write to the table takes.
    client
        .execute(
            "SELECT pg_catalog.lock_shard_metadata(5, $1::bigint[])",
            &[&ids],
        )
        .await
        .map_err(|e| refuse(crate::conn::error_text(&e)))?;
    let (stop, stopped) = oneshot::channel();
    let report = GuardReport {
        table: table.to_string(),
        tenant: match switch {
            Switch::Tenant { value, .. } => Some(value.clone()),
            Switch::Table(_) => None,
        },
        switched: false,
        writers_waited_for: 0,
        held_ms: 0.0,
        flushed_to: None,
    };
    let task = tokio::spawn(async move { watch(client, report, stopped).await });
    Ok(Guard {
        table: table.clone(),
        stop: Some(stop),
        task,
    })
}

/// The lock state on the tags the guard holds: whether someone waits for
/// the exclusive lock, and how many others hold it now (the waiters
/// excepted).
const STATE: &str = "WITH l AS (SELECT * FROM pg_catalog.pg_locks WHERE locktype = 'advisory'), \
     mine AS (SELECT database, classid, objid, objsubid FROM l \
              WHERE pid = pg_catalog.pg_backend_pid() AND granted), \
     tagged AS (SELECT l.* FROM l JOIN mine USING (database, classid, objid, objsubid)), \
     waiting AS (SELECT pid FROM tagged WHERE NOT granted AND mode = 'ExclusiveLock') \
     SELECT (SELECT count(*) FROM waiting), \
            (SELECT count(DISTINCT pid) FROM tagged WHERE granted \
              AND pid <> pg_catalog.pg_backend_pid() AND pid NOT IN (SELECT pid FROM waiting))";

async fn lock_state(client: &Client) -> Result<(i64, i64), CitusError> {
    let r = client
        .query_one(STATE, &[])
        .await
        .map_err(db("the switch guard cannot read pg_locks"))?;
    Ok((r.get(0), r.get(1)))
}

/// Waits for Citus's block, then for the writers still inside, flushes and
/// lets go; or ends when told to (the call finished or failed without a
/// switch seen).
async fn watch(
    client: Client,
    mut report: GuardReport,
    mut stopped: oneshot::Receiver<()>,
) -> Result<GuardReport, CitusError> {
    // Once Citus waits, new writes queue behind its exclusive request;
    // those already through finish (committing, or not) and let go.
    let mut seen: Option<Instant> = None;
    loop {
        let pause = if seen.is_some() { POLL / 2 } else { POLL };
        tokio::select! {
            _ = &mut stopped => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Ok(report);
            }
            _ = tokio::time::sleep(pause) => {}
        }
        let (waiting, writers) = lock_state(&client).await?;
        if seen.is_none() && waiting > 0 {
            seen = Some(Instant::now());
            report.switched = true;
            report.writers_waited_for = writers;
        }
        if seen.is_some() && writers == 0 {
            break;
        }
    }
    // One WAL record and a synchronous commit: the flush reaches past every
    // commit made before it, so Citus's position covers them.
    client
        .batch_execute("SET LOCAL synchronous_commit = on")
        .await
        .map_err(db("the switch guard cannot turn on synchronous_commit"))?;
    client
        .execute(
            "SELECT pg_catalog.pg_logical_emit_message(true, 'shardready', 'switch guard')",
            &[],
        )
        .await
        .map_err(db("the switch guard cannot write its WAL record"))?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(db("the switch guard cannot commit"))?;
    report.held_ms = seen.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
    let lsn: Option<String> = client
        .query_one("SELECT pg_catalog.pg_current_wal_flush_lsn()::text", &[])
        .await
        .ok()
        .map(|r| r.get(0));
    report.flushed_to = lsn;
    Ok(report)
}

impl GuardReport {
    /// The progress line for it, once its call ended (`call_ok`: it
    /// succeeded); none for a call that failed before its switch.
    pub fn line(&self, call_ok: bool) -> Option<String> {
        if self.switched {
            Some(format!(
                "  commit guard: Citus blocked the writes of {}; after the {} write(s) still \
                 inside, the WAL was flushed{} before Citus read its position ({:.0} ms)",
                self.table,
                self.writers_waited_for,
                self.flushed_to
                    .as_deref()
                    .map(|l| format!(" to {l}"))
                    .unwrap_or_default(),
                self.held_ms
            ))
        } else if call_ok {
            Some(format!(
                "  warning: the commit guard never saw Citus block the writes of {} (another \
                 lock in this Citus version?); a write committed asynchronously just before the \
                 switch may be missing from it",
                self.table
            ))
        } else {
            None
        }
    }
}

impl Guard {
    /// Ends the guard after its table's call returned: what it saw. An
    /// error means the guard failed while Citus was running; the caller
    /// checks the table's rows.
    pub async fn finish(mut self) -> Result<GuardReport, CitusError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(CitusError::Unguarded {
                table: self.table.clone(),
                why: format!("the guard stopped unexpectedly: {e}"),
            }),
        }
    }
}
