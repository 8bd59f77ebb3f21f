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
//! Logical shard moves and copies (`scale-out`) and tenant isolation end
//! with the same code, on the shard group's source node.
//!
//! The guard closes that gap from outside Citus. Before the call starts it
//! takes the same shard-metadata lock in share mode on every shard Citus
//! will block (the table's and its partitions', or the shard group's), each
//! over a connection of its own, so Citus's block has to wait for it. Citus
//! takes those locks one after another and holds them: where it waits on a
//! shard while the guard still holds others, the guard lets that one go at
//! once (Citus drains its writers itself). At the last one, once its own
//! writers are gone, every write that got through to any of the shards has
//! committed (new ones queue behind the waiting requests): the guard writes
//! one WAL record (a logical message) and commits synchronously — on the
//! shards' node first when that is not the coordinator — which flushes the
//! WAL past all of their commits, and only then lets Citus read its
//! position.
//!
//! Once it has let go, Citus reads its position and checks that its
//! subscription reached it; when it has not quite, it sleeps a full second
//! before it looks again (a 1000 ms latch wait), and every write to the
//! shards waits out that second. So, from then until the call returns, the
//! guard wakes the calling session whenever it waits in Citus: the session
//! LISTENs on a channel of its own and a NOTIFY sets its latch (the
//! notification itself is only read when the session is idle again), and
//! Citus looks again within milliseconds. An early look is safe only
//! because of the flush: the position Citus compares with is then past
//! every commit made before the block (without the guard, waking it early
//! lost writes, 2213edf).
//!
//! Writes the application sends to a worker directly (not through the
//! coordinator) are not followed: Citus locks those on the workers after
//! the coordinator's.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::{db, CitusError};
use crate::catalog::QName;
use crate::sql::{ident, literal};

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
    /// The node a shard move took the shards from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The shards whose locks it followed (the table's and its
    /// partitions', or a shard group's).
    pub shards: usize,
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
    /// How many times the guard woke Citus's catch-up check after letting
    /// it go.
    pub wakes: u64,
}

/// A guard holding the locks while its shards switch.
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
    /// A shard group a logical shard move (or copy) takes from `source`:
    /// `shard` and those colocated with it.
    Group {
        table: QName,
        shard: i64,
        source: super::scale::NodeAddr,
    },
}

impl Switch {
    /// The table it is reported under.
    pub fn table(&self) -> &QName {
        match self {
            Switch::Table(t) | Switch::Tenant { table: t, .. } | Switch::Group { table: t, .. } => {
                t
            }
        }
    }

    /// The shards whose writes Citus blocks at the switch, each of them
    /// (in whatever order Citus takes them): the table's own and its
    /// partitions' for a distribution; the shard and every shard colocated
    /// with it (partitions included) for a split or a move.
    async fn shards(&self, client: &Client) -> Result<Vec<i64>, CitusError> {
        let colocated = |shard: &str| {
            format!(
                "SELECT s2.shardid FROM pg_catalog.pg_dist_shard s1 \
                   JOIN pg_catalog.pg_dist_partition p1 ON p1.logicalrelid = s1.logicalrelid \
                   JOIN pg_catalog.pg_dist_partition p2 ON p2.logicalrelid = s1.logicalrelid \
                        OR (p1.colocationid <> 0 AND p2.colocationid = p1.colocationid) \
                   JOIN pg_catalog.pg_dist_shard s2 ON s2.logicalrelid = p2.logicalrelid \
                        AND s2.shardminvalue IS NOT DISTINCT FROM s1.shardminvalue \
                  WHERE s1.shardid = ({shard}) ORDER BY 1"
            )
        };
        let sql = match self {
            Switch::Table(table) => {
                let t = literal(&table.sql());
                format!(
                    "SELECT shardid FROM pg_catalog.pg_dist_shard WHERE logicalrelid = {t}::regclass \
                     OR logicalrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree({t}::regclass)) \
                     ORDER BY shardid"
                )
            }
            Switch::Tenant { table, value } => colocated(&format!(
                "SELECT pg_catalog.get_shard_id_for_distribution_column({}, {})",
                literal(&table.sql()),
                literal(value)
            )),
            Switch::Group { shard, .. } => colocated(&shard.to_string()),
        };
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(db("cannot read the shards the switch moves"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The node whose WAL Citus reads at the switch, when it is not the
    /// coordinator the guard is connected to.
    async fn source(&self, client: &Client) -> Result<Option<super::scale::NodeAddr>, CitusError> {
        let row = match self {
            Switch::Table(_) => return Ok(None),
            Switch::Tenant { table, value } => {
                client
                    .query_opt(
                        &format!(
                            "SELECT n.nodename, n.nodeport, n.groupid \
                               FROM pg_catalog.pg_dist_placement pl \
                               JOIN pg_catalog.pg_dist_node n USING (groupid) \
                              WHERE pl.shardid = \
                                    pg_catalog.get_shard_id_for_distribution_column({}, {}) \
                              ORDER BY n.groupid LIMIT 1",
                            literal(&table.sql()),
                            literal(value)
                        ),
                        &[],
                    )
                    .await
            }
            Switch::Group { source, .. } => {
                client
                    .query_opt(
                        "SELECT nodename, nodeport, groupid FROM pg_catalog.pg_dist_node \
                      WHERE nodename = $1 AND nodeport = $2 ORDER BY groupid LIMIT 1",
                        &[&source.host, &(source.port as i32)],
                    )
                    .await
            }
        }
        .map_err(db("cannot read where the switch's shards are"))?;
        Ok(row.and_then(|r| {
            let group: i32 = r.get(2);
            (group != 0).then(|| super::scale::NodeAddr {
                host: r.get(0),
                port: r.get::<_, i32>(1) as u16,
            })
        }))
    }
}

/// Most shards one guard holds (a connection each); a switch over more is
/// refused rather than half guarded.
const MAX_SHARDS: usize = 64;

/// One shard's share lock, held by a connection of its own in an open
/// transaction (so it can be let go of alone).
struct Hold {
    client: Client,
    pid: i32,
    open: bool,
}

/// The session that will make the guarded call: its backend, and the
/// channel it listens on to be woken.
struct Caller {
    pid: i32,
    channel: String,
}

/// Connects, takes the share lock on each of the switch's shards (one
/// connection per shard) and returns once they are held; the guard then
/// waits, in the background, for Citus's block ([`Guard::finish`] ends it).
/// `session` is the connection that will make the call: it listens on a
/// channel of its own, to be woken after the switch.
pub async fn arm(
    target: &crate::conn::Target,
    switch: &Switch,
    session: &Client,
) -> Result<Guard, CitusError> {
    let table = switch.table();
    let refuse = |why: String| CitusError::Unguarded {
        table: table.clone(),
        why,
    };
    let pid = crate::db::backend_pid(session)
        .await
        .map_err(db("cannot read the session's backend"))?;
    let caller = Caller {
        pid,
        channel: format!("shardready_wake_{pid}"),
    };
    session
        .batch_execute(&format!("LISTEN {}", ident(&caller.channel)))
        .await
        .map_err(db("the session cannot listen for the guard's wake-ups"))?;
    let guard_target = target.with_application_name(APPLICATION_NAME);
    let first = guard_target
        .connect()
        .await
        .map_err(|e| refuse(e.to_string()))?;
    let ids = switch.shards(&first).await?;
    if ids.is_empty() {
        return Err(refuse("it has no shard in Citus's metadata yet".into()));
    }
    if ids.len() > MAX_SHARDS {
        return Err(refuse(format!(
            "its switch blocks {} shards, more than the {MAX_SHARDS} the guard holds at a time",
            ids.len()
        )));
    }
    let source = match switch.source(&first).await? {
        Some(node) => Some(
            guard_target
                .at(&node.host, node.port)
                .connect()
                .await
                .map_err(|e| refuse(format!("cannot connect to {node}, the shards' node: {e}")))?,
        ),
        None => None,
    };
    let mut holds = Vec::with_capacity(ids.len());
    let mut first = Some(first);
    for id in &ids {
        let client = match first.take() {
            Some(c) => c,
            None => guard_target
                .connect()
                .await
                .map_err(|e| refuse(e.to_string()))?,
        };
        let pid = crate::db::backend_pid(&client)
            .await
            .map_err(db("the switch guard cannot read its backend"))?;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(db("cannot begin the guard's transaction"))?;
        // ShareLock (5): what every write to the shard takes.
        client
            .execute(
                "SELECT pg_catalog.lock_shard_metadata(5, ARRAY[$1::bigint])",
                &[id],
            )
            .await
            .map_err(|e| refuse(crate::conn::error_text(&e)))?;
        holds.push(Hold {
            client,
            pid,
            open: true,
        });
    }
    let (stop, stopped) = oneshot::channel();
    let report = GuardReport {
        table: table.to_string(),
        tenant: match switch {
            Switch::Tenant { value, .. } => Some(value.clone()),
            _ => None,
        },
        shards: ids.len(),
        source: match switch {
            Switch::Group { source, .. } => Some(source.to_string()),
            _ => None,
        },
        switched: false,
        writers_waited_for: 0,
        held_ms: 0.0,
        flushed_to: None,
        wakes: 0,
    };
    let task = tokio::spawn(async move { watch(holds, source, caller, report, stopped).await });
    Ok(Guard {
        table: table.clone(),
        stop: Some(stop),
        task,
    })
}

/// The lock state on the tags the guard's connections (`$1`) hold, per
/// holder: whether someone waits for the exclusive lock there, and how many
/// others hold it now (whoever waits anywhere on them excepted: Citus,
/// holding the tags it took before).
const STATE: &str = "WITH l AS (SELECT * FROM pg_catalog.pg_locks WHERE locktype = 'advisory'), \
     mine AS (SELECT pid AS holder, database, classid, objid, objsubid FROM l \
              WHERE pid = ANY($1) AND granted), \
     tagged AS (SELECT mine.holder, l.pid, l.granted, l.mode FROM l \
                JOIN mine USING (database, classid, objid, objsubid) WHERE l.pid <> ALL($1)), \
     waiting AS (SELECT DISTINCT pid FROM tagged WHERE NOT granted AND mode = 'ExclusiveLock') \
     SELECT holder, bool_or(NOT granted AND mode = 'ExclusiveLock'), \
            count(DISTINCT pid) FILTER (WHERE granted AND pid NOT IN (SELECT pid FROM waiting)) \
       FROM tagged GROUP BY holder";

/// Per holder pid: (Citus waits there, writers inside).
async fn lock_state(client: &Client, pids: &[i32]) -> Result<Vec<(i32, bool, i64)>, CitusError> {
    let rows = client
        .query(STATE, &[&pids])
        .await
        .map_err(db("the switch guard cannot read pg_locks"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// A synchronous commit of one WAL record on `c`: the flush reaches past
/// every commit made there before it.
async fn flush(c: &Client, in_txn: bool) -> Result<(), CitusError> {
    if !in_txn {
        c.batch_execute("BEGIN")
            .await
            .map_err(db("the switch guard cannot begin its flush"))?;
    }
    c.batch_execute("SET LOCAL synchronous_commit = on")
        .await
        .map_err(db("the switch guard cannot turn on synchronous_commit"))?;
    c.execute(
        "SELECT pg_catalog.pg_logical_emit_message(true, 'shardready', 'switch guard')",
        &[],
    )
    .await
    .map_err(db("the switch guard cannot write its WAL record"))?;
    c.batch_execute("COMMIT")
        .await
        .map_err(db("the switch guard cannot commit"))
}

/// Follows Citus through the shards' locks: where it waits on a shard while
/// others are still held, lets that one go at once; at the last one, waits
/// for the writers still inside, flushes (on the shards' node too when it
/// is not this one) and lets go; then wakes the caller whenever it waits
/// in Citus, until told to stop. Or ends when told to (the call finished
/// or failed without a switch seen).
async fn watch(
    mut holds: Vec<Hold>,
    source: Option<Client>,
    caller: Caller,
    mut report: GuardReport,
    mut stopped: oneshot::Receiver<()>,
) -> Result<GuardReport, CitusError> {
    // Once Citus waits, new writes queue behind its exclusive request;
    // those already through finish (committing, or not) and let go.
    let mut seen: Option<Instant> = None;
    let i = loop {
        let pause = if seen.is_some() { POLL / 2 } else { POLL };
        tokio::select! {
            _ = &mut stopped => {
                for h in holds.iter().filter(|h| h.open) {
                    let _ = h.client.batch_execute("ROLLBACK").await;
                }
                return Ok(report);
            }
            _ = tokio::time::sleep(pause) => {}
        }
        let open: Vec<i32> = holds.iter().filter(|h| h.open).map(|h| h.pid).collect();
        let state = lock_state(&holds[0].client, &open).await?;
        let Some(&(pid, _, writers)) = state.iter().find(|s| s.1) else {
            continue;
        };
        let i = holds.iter().position(|h| h.pid == pid).expect("a hold");
        seen.get_or_insert_with(Instant::now);
        if open.len() > 1 {
            // Not Citus's last shard: it takes the others after this one,
            // so its writers are drained by Citus itself.
            holds[i].open = false;
            holds[i]
                .client
                .batch_execute("ROLLBACK")
                .await
                .map_err(db("the switch guard cannot let a shard go"))?;
            continue;
        }
        if !report.switched {
            report.switched = true;
            report.writers_waited_for = writers;
        }
        if writers == 0 {
            break i;
        }
    };
    if let Some(src) = &source {
        flush(src, false).await?;
    }
    flush(&holds[i].client, true).await?;
    holds[i].open = false;
    report.held_ms = seen.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
    let at = source.as_ref().unwrap_or(&holds[i].client);
    report.flushed_to = at
        .query_one("SELECT pg_catalog.pg_current_wal_flush_lsn()::text", &[])
        .await
        .ok()
        .map(|r| r.get(0));
    // Every hold is closed now; the last one's connection wakes the caller
    // while Citus checks its subscription (and, harmlessly, in whatever
    // else it waits for until the call returns).
    let waker = &holds[i].client;
    loop {
        tokio::select! {
            _ = &mut stopped => return Ok(report),
            _ = tokio::time::sleep(POLL) => {}
        }
        match waker
            .query(
                "SELECT pg_catalog.pg_notify($1, '') FROM pg_catalog.pg_stat_activity \
                 WHERE pid = $2 AND wait_event_type = 'Extension'",
                &[&caller.channel, &caller.pid],
            )
            .await
        {
            Ok(rows) => report.wakes += rows.len() as u64,
            // Without wake-ups Citus still looks again within a second.
            Err(_) => {
                let _ = stopped.await;
                return Ok(report);
            }
        }
    }
}

impl GuardReport {
    /// The progress line for it, once its call ended (`call_ok`: it
    /// succeeded); none for a call that failed before its switch.
    pub fn line(&self, call_ok: bool) -> Option<String> {
        if self.switched {
            Some(format!(
                "  commit guard: Citus blocked the writes of {}{} ({} shard(s)); after the {} \
                 write(s) still inside, the WAL was flushed{} before Citus read its position \
                 ({:.0} ms){}",
                self.table,
                self.source
                    .as_deref()
                    .map(|s| format!(" moving from {s}"))
                    .unwrap_or_default(),
                self.shards,
                self.writers_waited_for,
                self.flushed_to
                    .as_deref()
                    .map(|l| format!(" to {l}"))
                    .unwrap_or_default(),
                self.held_ms,
                if self.wakes > 0 {
                    format!("; its catch-up check woken {} time(s)", self.wakes)
                } else {
                    String::new()
                }
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
    /// Ends the guard once its call returned (`call_ok`: it succeeded),
    /// printing its line: what it saw. Its failure counts only after a call
    /// that succeeded (the caller then checks the rows); after a failed call
    /// the call's error is the one to report, and there is no report.
    pub async fn conclude(
        self,
        call_ok: bool,
        progress: &dyn Fn(&str),
    ) -> Result<Option<GuardReport>, CitusError> {
        match self.finish().await {
            Ok(rep) => {
                if let Some(line) = rep.line(call_ok) {
                    progress(&line);
                }
                Ok(Some(rep))
            }
            Err(e) if call_ok => Err(e),
            Err(_) => Ok(None),
        }
    }

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
