//! `scale-out`: spreads a Citus cluster's shards over new worker nodes
//! while the application runs. Pre-flight on the coordinator, the workers
//! and every new node before anything changes; then adds the nodes, starts
//! Citus's background rebalance (draining the coordinator in the same job
//! when asked), follows it with progress, stops it while the application
//! suffers and starts it again when calm, and verifies. What it did is kept
//! in `shardready.scale_out`, so a rerun after a failure or kill -9 picks
//! up the nodes added and the rebalance running or stopped.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::Client;

use super::guard::{self, GuardReport};
use super::{db, CitusError};
use crate::apply::Pressure;
use crate::conn::Target;
use crate::db::{self as dbx, DbError, LockPolicy, Session};
use crate::plan::estimate::human;
use crate::sql::literal;

/// A node to add: `host[:port]` (5432 when no port is given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl FromStr for NodeAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>().map_err(|_| {
                    format!("`{p}` is not a port (HOST[:PORT], e.g. worker-1:5432)")
                })?,
            ),
            _ => (s, 5432),
        };
        if host.is_empty() || port == 0 {
            return Err(format!(
                "`{s}` is not a node (HOST[:PORT], e.g. worker-1:5432)"
            ));
        }
        Ok(NodeAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How Citus copies a shard group to its new node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferMode {
    /// Logical when every table has a replica identity; refused otherwise.
    #[default]
    Auto,
    /// Logical replication: writes go on during the copy and wait only for
    /// the catch-up at its end.
    Logical,
    /// Writes to the moving shard group wait for its whole copy (faster).
    BlockWrites,
}

impl TransferMode {
    /// Citus's name for it (`shard_transfer_mode`).
    fn citus(self) -> &'static str {
        match self {
            TransferMode::BlockWrites => "block_writes",
            _ => "force_logical",
        }
    }
}

impl fmt::Display for TransferMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferMode::Auto => "auto",
            TransferMode::Logical => "logical",
            TransferMode::BlockWrites => "block-writes",
        })
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub add: Vec<NodeAddr>,
    pub drain_coordinator: bool,
    pub mode: TransferMode,
    /// Set `wal_retrieve_retry_interval` to [`TUNED_RETRY_INTERVAL`] on
    /// every node for the duration (restored after).
    pub tune: bool,
    /// Longest one call may run (None: no limit).
    pub statement_timeout: Option<Duration>,
    /// Longest a lock is waited for at a time (then retried).
    pub lock_timeout: Duration,
    /// An application transaction slower than this is slow (the governor
    /// stops the rebalance while they pile up).
    pub pause_above_ms: f64,
    /// How long the rebalance may stay stopped waiting for calm.
    pub max_pause: Duration,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            add: Vec::new(),
            drain_coordinator: false,
            mode: TransferMode::Auto,
            tune: false,
            statement_timeout: Some(Duration::from_secs(300)),
            lock_timeout: Duration::from_millis(500),
            pause_above_ms: 200.0,
            max_pause: Duration::from_secs(30),
        }
    }
}

/// The setting `--tune` lowers, and to what: PostgreSQL 15 waits this long
/// between starts of a subscription's replication workers, and each
/// logical move starts some.
pub const RETRY_INTERVAL: &str = "wal_retrieve_retry_interval";
pub const TUNED_RETRY_INTERVAL: &str = "500ms";

/// A node's shards, before or after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeShards {
    pub node: String,
    /// Shards of distributed tables it holds (reference tables apart).
    pub shards: i64,
    pub bytes: i64,
    pub should_have_shards: bool,
}

/// One new node as the pre-flight found it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeCheck {
    pub node: NodeAddr,
    /// Already a node of the cluster (an earlier run added it).
    pub in_cluster: bool,
    pub citus_version: Option<String>,
    /// Free bytes of its data directory (a server on this machine only).
    pub free_bytes: Option<i64>,
    /// What it is expected to receive.
    pub receives_bytes: i64,
    pub retry_interval_ms: Option<i64>,
}

/// What the pre-flight found: nothing changes unless `problems` is empty.
#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    pub citus_version: String,
    pub mode: TransferMode,
    pub mode_reason: String,
    pub nodes: Vec<NodeCheck>,
    pub before: Vec<NodeShards>,
    /// Shard groups (colocated shards move together).
    pub shard_groups: i64,
    pub moves_estimate: i64,
    pub bytes_estimate: i64,
    pub seconds_estimate: f64,
    pub problems: Vec<String>,
    pub advice: Vec<String>,
}

/// A stop of the rebalance by the governor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pause {
    pub at_s: f64,
    pub seconds: f64,
    pub why: String,
}

/// A setting changed for the duration, and what it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    pub node: NodeAddr,
    pub setting: String,
    /// The value `ALTER SYSTEM` had set before (None: it was not set there).
    pub before: Option<String>,
}

/// What `scale-out` did and found.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub preflight: Preflight,
    /// Picked up an unfinished earlier run.
    pub resumed: bool,
    /// Nothing was left to do (a finished scale-out rerun).
    pub already_done: bool,
    pub nodes_added: Vec<String>,
    pub drained_coordinator: bool,
    pub moves: i64,
    pub moved_bytes: i64,
    pub seconds: f64,
    pub rebalance_seconds: f64,
    /// When the rebalance started, on this run's time axis.
    pub rebalance_start_s: f64,
    pub pauses: Vec<Pause>,
    /// The commit guard at each logical move's (and reference copy's)
    /// switch.
    pub switch_guards: Vec<GuardReport>,
    pub tuned: Vec<Tuned>,
    pub after: Vec<NodeShards>,
    pub counts: Vec<super::RowsBeforeAfter>,
    pub routing: String,
    /// What the application's traffic felt (`--workload`).
    pub workload: Option<crate::workload::Summary>,
    /// Before / during / after, for the application (`--workload`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<crate::report::PhaseRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<crate::apply::signals::SignalReport>,
    /// The application after the step beside its baseline (`--workload`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub application_after: Vec<crate::after::AfterCheck>,
    /// The application's statements (pg_stat_statements) in a window after
    /// the step beside one before it: the costliest, and every one that got
    /// slower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statements_after: Option<crate::stat_statements::Comparison>,
}

const STATE_SQL: [&str; 2] = [
    "CREATE SCHEMA IF NOT EXISTS shardready",
    "CREATE TABLE IF NOT EXISTS shardready.scale_out (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    nodes jsonb NOT NULL,
    drain boolean NOT NULL,
    mode text NOT NULL,
    counts jsonb NOT NULL,
    tuned jsonb NOT NULL DEFAULT '[]',
    pauses jsonb NOT NULL DEFAULT '[]',
    moves int8 NOT NULL DEFAULT 0,
    bytes int8 NOT NULL DEFAULT 0,
    phase text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
)",
];

/// What `shardready.scale_out` holds: the run in progress or the last one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub nodes: Vec<NodeAddr>,
    pub drain: bool,
    pub mode: TransferMode,
    pub counts: Vec<(String, i64)>,
    pub tuned: Vec<Tuned>,
    pub pauses: Vec<Pause>,
    pub moves: i64,
    pub bytes: i64,
    /// `adding`, `rebalancing`, `verifying` or `done`.
    pub phase: String,
}

async fn load(client: &Client) -> Result<Option<Saved>, CitusError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('shardready.scale_out') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db("cannot read scale-out's state"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT jsonb_build_object('nodes', nodes, 'drain', drain, 'mode', mode, \
             'counts', counts, 'tuned', tuned, 'pauses', pauses, 'moves', moves, \
             'bytes', bytes, 'phase', phase) FROM shardready.scale_out",
            &[],
        )
        .await
        .map_err(db("cannot read scale-out's state"))?;
    match row {
        None => Ok(None),
        Some(r) => serde_json::from_value(r.get(0)).map(Some).map_err(|e| {
            CitusError::BadState(format!(
                "shardready.scale_out holds a state this version cannot read: {e}"
            ))
        }),
    }
}

async fn save(client: &Client, s: &Saved) -> Result<(), CitusError> {
    let j = |v: serde_json::Value| v.to_string();
    let mut statements: Vec<String> = STATE_SQL.iter().map(|s| s.to_string()).collect();
    statements.push(format!(
        "INSERT INTO shardready.scale_out (id, nodes, drain, mode, counts, tuned, pauses, moves, \
         bytes, phase, finished_at) VALUES (1, {}::jsonb, {}, {}, {}::jsonb, {}::jsonb, \
         {}::jsonb, {}, {}, {}, CASE WHEN {} = 'done' THEN now() END) \
         ON CONFLICT (id) DO UPDATE SET nodes = excluded.nodes, drain = excluded.drain, \
         mode = excluded.mode, counts = excluded.counts, tuned = excluded.tuned, \
         pauses = excluded.pauses, moves = excluded.moves, bytes = excluded.bytes, \
         phase = excluded.phase, finished_at = excluded.finished_at, \
         started_at = CASE WHEN shardready.scale_out.phase = 'done' THEN now() \
                      ELSE shardready.scale_out.started_at END",
        literal(&j(json!(s.nodes))),
        s.drain,
        literal(&s.mode.to_string()),
        literal(&j(json!(s.counts))),
        literal(&j(json!(s.tuned))),
        literal(&j(json!(s.pauses))),
        s.moves,
        s.bytes,
        literal(&s.phase),
        literal(&s.phase),
    ));
    dbx::in_txn(client, &statements)
        .await
        .map_err(db("cannot save scale-out's state"))
}

/// Where a scale-out stands, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleStatus {
    pub nodes: Vec<String>,
    pub drain: bool,
    pub mode: TransferMode,
    pub phase: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub moves_done: i64,
    pub moves_total: i64,
    /// The moves running now, as Citus's rebalance progress shows them.
    pub running: Vec<String>,
    pub pauses: usize,
    /// Settings `--tune` changed that are not restored yet (an interrupted
    /// run: the rerun restores them).
    pub tuned: Vec<Tuned>,
}

/// Reads [`ScaleStatus`] (None: scale-out never ran here).
pub async fn status(client: &Client) -> Result<Option<ScaleStatus>, CitusError> {
    let Some(s) = load(client).await? else {
        return Ok(None);
    };
    let r = client
        .query_one(
            "SELECT started_at::text, finished_at::text FROM shardready.scale_out",
            &[],
        )
        .await
        .map_err(db("cannot read scale-out's state"))?;
    let unfinished = s.phase != "done";
    let left = if unfinished {
        planned_moves(client).await?.len() as i64
    } else {
        0
    };
    let running = if unfinished {
        client
            .query(
                "SELECT format('%s: shard %s from %s:%s to %s:%s (%s of %s copied)', \
                        table_name, shardid, sourcename, sourceport, targetname, targetport, \
                        pg_size_pretty(target_shard_size), pg_size_pretty(source_shard_size)) \
                   FROM pg_catalog.get_rebalance_progress() WHERE progress = 1",
                &[],
            )
            .await
            .map_err(db("cannot read the moves' progress"))?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    let total = s.moves.max(left);
    Ok(Some(ScaleStatus {
        nodes: s.nodes.iter().map(|n| n.to_string()).collect(),
        drain: s.drain,
        mode: s.mode,
        phase: s.phase,
        started_at: r.get(0),
        finished_at: r.get(1),
        moves_done: total - left,
        moves_total: total,
        running,
        pauses: s.pauses.len(),
        tuned: s.tuned,
    }))
}

/// One move of the rebalancer's plan: a shard group, from one node to
/// another.
#[derive(Debug, Clone)]
struct Move {
    /// The group's first shard (those colocated with it move along).
    shard: i64,
    table: crate::catalog::QName,
    /// Shards in the group.
    shards: i64,
    bytes: i64,
    from: NodeAddr,
    to: NodeAddr,
}

/// The moves the rebalancer plans now, in its order, a shard group each.
async fn planned_moves(client: &Client) -> Result<Vec<Move>, CitusError> {
    let rows = client
        .query(
            "WITH r AS (SELECT * FROM pg_catalog.get_rebalance_table_shards_plan() \
                        WITH ORDINALITY AS r(table_name, shardid, shard_size, sourcename, \
                                             sourceport, targetname, targetport, n)), \
                  g AS (SELECT min(r.n) AS n, (array_agg(r.shardid ORDER BY r.n))[1] AS shardid, \
                               count(*) AS shards, coalesce(sum(z.size), 0)::int8 AS bytes, \
                               r.sourcename, r.sourceport, r.targetname, r.targetport \
                          FROM r JOIN pg_catalog.pg_dist_shard s ON s.shardid = r.shardid \
                          JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = s.logicalrelid \
                          LEFT JOIN pg_catalog.citus_shard_sizes() z ON z.shard_id = r.shardid \
                         GROUP BY p.colocationid, s.shardminvalue, r.sourcename, r.sourceport, \
                                  r.targetname, r.targetport) \
             SELECT g.shardid, n.nspname::text, c.relname::text, g.shards, g.bytes, \
                    g.sourcename::text, g.sourceport::int4, g.targetname::text, g.targetport::int4 \
               FROM g JOIN pg_catalog.pg_dist_shard s ON s.shardid = g.shardid \
               JOIN pg_catalog.pg_class c ON c.oid = s.logicalrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              ORDER BY g.n",
            &[],
        )
        .await
        .map_err(db("cannot read the rebalance plan"))?;
    Ok(rows
        .iter()
        .map(|r| Move {
            shard: r.get(0),
            table: crate::catalog::QName::new(r.get(1), r.get(2)),
            shards: r.get(3),
            bytes: r.get(4),
            from: NodeAddr {
                host: r.get(5),
                port: r.get::<_, i32>(6) as u16,
            },
            to: NodeAddr {
                host: r.get(7),
                port: r.get::<_, i32>(8) as u16,
            },
        })
        .collect())
}

/// Runs one call with a lock timeout (retried while the policy lets it)
/// and the statement timeout; its rows.
async fn call(
    client: &Client,
    sql: &str,
    opts: &ScaleOptions,
) -> Result<Vec<tokio_postgres::Row>, CitusError> {
    let policy = LockPolicy {
        lock_timeout: opts.lock_timeout,
        max_wait: Some(Duration::from_secs(120)),
        max_attempts: None,
        statement_timeout: opts.statement_timeout,
    };
    for set in [
        format!("SET lock_timeout = '{}ms'", policy.lock_timeout.as_millis()),
        format!("SET statement_timeout = '{}ms'", policy.statement_ms()),
    ] {
        dbx::exec(client, &set)
            .await
            .map_err(db("cannot set the timeouts"))?;
    }
    let r = dbx::retry_on_lock_timeout(&policy, || client.query(sql, &[])).await;
    for reset in ["RESET lock_timeout", "RESET statement_timeout"] {
        let _ = dbx::exec(client, reset).await;
    }
    r.map(|(rows, _)| rows)
        .map_err(|e| super::retry_error(sql, &policy, e))
}

/// The shards of distributed tables per node (and whether the node
/// should hold shards).
pub async fn placement(client: &Client) -> Result<Vec<NodeShards>, CitusError> {
    let rows = client
        .query(
            "SELECT n.nodename || ':' || n.nodeport, n.shouldhaveshards, \
                    count(s.shardid), coalesce(sum(s.shard_size), 0)::int8 \
               FROM pg_dist_node n \
               LEFT JOIN citus_shards s ON s.nodename = n.nodename AND s.nodeport = n.nodeport \
                    AND s.citus_table_type = 'distributed' \
              WHERE n.noderole = 'primary' AND n.isactive \
              GROUP BY n.nodename, n.nodeport, n.shouldhaveshards, n.groupid \
              ORDER BY n.groupid",
            &[],
        )
        .await
        .map_err(db("cannot read where the shards are"))?;
    Ok(rows
        .iter()
        .map(|r| NodeShards {
            node: r.get(0),
            should_have_shards: r.get(1),
            shards: r.get(2),
            bytes: r.get(3),
        })
        .collect())
}

/// One rule for a setting of a node that moves shards online; a line with
/// the fix when the value does not do (None: it does, or the rule does not
/// apply). Shared with `distribute`'s pre-flight.
pub fn setting_problem(node: &str, name: &str, value: Option<&str>) -> Option<String> {
    match name {
        "wal_level" => {
            let v = value.unwrap_or_default();
            (v != "logical").then(|| {
                format!(
                    "{node}: wal_level is '{v}'; moving shards online needs logical: \
                     ALTER SYSTEM SET wal_level = logical; then restart that server"
                )
            })
        }
        "output_plugin_libraries" => {
            // NULL: this server has no such setting (nothing to allow).
            let v = value?;
            (!v.split(',').any(|l| l.trim().trim_matches('"') == "citus")).then(|| {
                format!(
                    "{node}: output_plugin_libraries is '{v}' and does not allow Citus's decoder \
                     (\"library \"citus\" may not be used as an output plugin\"): \
                     ALTER SYSTEM SET output_plugin_libraries = '{}citus'; SELECT pg_reload_conf();",
                    if v.trim().is_empty() {
                        String::new()
                    } else {
                        format!("{v}, ")
                    }
                )
            })
        }
        "max_worker_processes" => {
            let n: i64 = value.and_then(|v| v.parse().ok()).unwrap_or(0);
            (n <= 8).then(|| {
                format!(
                    "{node}: max_worker_processes is {n}; Citus's maintenance and replication \
                     workers need more: ALTER SYSTEM SET max_worker_processes = 16; then restart \
                     that server"
                )
            })
        }
        "max_replication_slots" | "max_wal_senders" | "max_logical_replication_workers" => {
            // A logical move holds a slot and a sender on its source and a
            // replication worker on its target.
            let n: i64 = value.and_then(|v| v.parse().ok()).unwrap_or(0);
            (n < 4).then(|| {
                format!(
                    "{node}: {name} is {n}; logical shard moves need replication slots, WAL \
                     senders and replication workers: ALTER SYSTEM SET {name} = 10; then \
                     restart that server"
                )
            })
        }
        _ => None,
    }
}

/// The settings [`setting_problem`] judges, for a mode.
fn settings_for(mode: TransferMode) -> &'static [&'static str] {
    match mode {
        TransferMode::BlockWrites => &["max_worker_processes"],
        _ => &[
            "wal_level",
            "output_plugin_libraries",
            "max_worker_processes",
            "max_replication_slots",
            "max_wal_senders",
            "max_logical_replication_workers",
        ],
    }
}

/// The version of Citus created in this database (None: not created).
async fn citus_version(client: &Client) -> Result<Option<String>, CitusError> {
    Ok(crate::catalog::extensions(client)
        .await
        .map_err(db("cannot read pg_extension"))?
        .into_iter()
        .find(|e| e.name == "citus")
        .map(|e| e.version))
}

/// The value `ALTER SYSTEM` set for a setting (None: it set none).
async fn auto_conf_value(client: &Client, name: &str) -> Result<Option<String>, DbError> {
    let r = client
        .query_opt(
            "SELECT setting, unit FROM pg_catalog.pg_settings WHERE name = $1 \
             AND sourcefile LIKE '%postgresql.auto.conf'",
            &[&name],
        )
        .await
        .map_err(DbError::ctx("cannot read pg_settings"))?;
    Ok(r.map(|r| {
        let (v, unit): (String, Option<String>) = (r.get(0), r.get(1));
        format!("{v}{}", unit.unwrap_or_default())
    }))
}

/// The cluster's nodes (primary, active): address, group, holds shards.
async fn cluster_nodes(client: &Client) -> Result<Vec<(NodeAddr, i32, bool)>, CitusError> {
    let rows = client
        .query(
            "SELECT nodename, nodeport, groupid, shouldhaveshards FROM pg_dist_node \
             WHERE noderole = 'primary' AND isactive ORDER BY groupid",
            &[],
        )
        .await
        .map_err(db("cannot read pg_dist_node"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                NodeAddr {
                    host: r.get(0),
                    port: r.get::<_, i32>(1) as u16,
                },
                r.get(2),
                r.get(3),
            )
        })
        .collect())
}

/// Checks everything before anything changes.
pub async fn preflight(
    client: &Client,
    target: &Target,
    opts: &ScaleOptions,
) -> Result<Preflight, CitusError> {
    let Some(version) = citus_version(client).await? else {
        return Err(CitusError::NotCitus {
            target: target.display(),
        });
    };
    let mut problems = Vec::new();
    let mut advice = Vec::new();
    let placed = crate::catalog::citus_placements(client, true)
        .await
        .map_err(db("cannot read Citus's tables"))?;
    let size_of = |kind: &str| -> i64 {
        placed
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.size_bytes)
            .sum()
    };
    let (dist_bytes, ref_bytes) = (size_of("distributed"), size_of("reference"));
    if !placed.iter().any(|p| p.kind == "distributed") {
        problems.push(
            "no distributed tables: nothing to spread over new nodes. Distribute first \
             (`shardready distribute`), then scale out"
                .to_string(),
        );
    }
    // The mode: logical needs every table's replica identity.
    let cat = crate::catalog::Catalog::read(client)
        .await
        .map_err(db("cannot read the catalog"))?;
    let moving: Vec<crate::catalog::QName> = placed
        .iter()
        .filter(|p| p.kind != "local")
        .map(|p| p.table.clone())
        .collect();
    let (mode, mode_reason) = match opts.mode {
        TransferMode::BlockWrites => (
            TransferMode::BlockWrites,
            "block-writes, as asked: writes to each moving shard group wait until its copy \
             is done"
                .to_string(),
        ),
        asked => {
            for p in super::without_replica_identity(&cat, &moving) {
                problems.push(format!(
                    "{p} (or --mode block-writes: writes to each moving shard group then wait \
                     for its copy)"
                ));
            }
            (
                TransferMode::Logical,
                if asked == TransferMode::Logical {
                    "logical, as asked".to_string()
                } else {
                    "logical (auto): every table has a replica identity, so the application \
                     keeps writing while a shard group copies and waits only for the catch-up \
                     at the end of each move"
                        .to_string()
                },
            )
        }
    };
    let nodes = cluster_nodes(client).await?;
    // Settings of the coordinator and the workers already there (sources
    // of the moves).
    // (The new nodes are checked below, on their own connections.)
    let wanted = settings_for(mode);
    let new_labels: Vec<String> = opts.add.iter().map(|a| format!("worker {a}")).collect();
    for name in wanted {
        for (node, v) in super::node_settings(client, name).await? {
            if !new_labels.contains(&node) {
                problems.extend(setting_problem(&node, name, v.as_deref()));
            }
        }
    }
    // Sizes: what moves and what each new node receives.
    let groups: Vec<(i32, i64)> = client
        .query(
            "SELECT pl.groupid, count(*) FROM pg_dist_placement pl \
               JOIN pg_dist_shard s USING (shardid) \
               JOIN (SELECT DISTINCT ON (colocationid) logicalrelid FROM pg_dist_partition \
                      WHERE partmethod = 'h' ORDER BY colocationid, logicalrelid) p USING (logicalrelid) \
              GROUP BY pl.groupid",
            &[],
        )
        .await
        .map_err(db("cannot count the shard groups"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let shard_groups: i64 = groups.iter().map(|g| g.1).sum();
    let new: Vec<&NodeAddr> = opts
        .add
        .iter()
        .filter(|a| !nodes.iter().any(|(n, _, _)| n == *a))
        .collect();
    let holders_after = nodes
        .iter()
        .filter(|(n, g, shards)| {
            *shards && !(opts.drain_coordinator && *g == 0) && !opts.add.contains(n)
        })
        .count()
        + opts.add.len();
    let per_holder = shard_groups as f64 / holders_after.max(1) as f64;
    let moves_estimate: i64 = groups
        .iter()
        .map(|(g, n)| {
            if *g == 0 && opts.drain_coordinator {
                *n as f64
            } else {
                (*n as f64 - per_holder).max(0.0)
            }
        })
        .sum::<f64>()
        .round() as i64;
    let bytes_estimate = if shard_groups > 0 {
        (dist_bytes as f64 * moves_estimate as f64 / shard_groups as f64) as i64
    } else {
        0
    };
    let receives = (dist_bytes as f64 / holders_after.max(1) as f64) as i64 + ref_bytes;
    // Each new node, on its own connection.
    let mut checks = Vec::new();
    let mut slow_retry = Vec::new();
    for a in &opts.add {
        let in_cluster = nodes.iter().any(|(n, _, _)| n == a);
        let mut check = NodeCheck {
            node: a.clone(),
            in_cluster,
            citus_version: None,
            free_bytes: None,
            receives_bytes: receives,
            retry_interval_ms: None,
        };
        let t = target.at(&a.host, a.port);
        let c = match t.connect().await {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!(
                    "{a}: cannot connect from here as {} ({e}): start it, or check its \
                     pg_hba.conf and the password (the same user and database as --db)",
                    t.display()
                ));
                checks.push(check);
                continue;
            }
        };
        let node_label = format!("node {a}");
        let node_version = citus_version(&c).await?;
        match &node_version {
            None => {
                let preloaded = crate::catalog::preloaded(&c, "citus")
                    .await
                    .unwrap_or(false);
                problems.push(if preloaded {
                    format!(
                        "{node_label}: Citus is loaded but not created in database {}: \
                         CREATE EXTENSION citus; there",
                        t.config.get_dbname().unwrap_or("?")
                    )
                } else {
                    format!(
                        "{node_label}: Citus is not loaded: install Citus {version} there, \
                         ALTER SYSTEM SET shared_preload_libraries = 'citus'; restart it, then \
                         CREATE EXTENSION citus;"
                    )
                });
            }
            Some(v) if *v != version => problems.push(format!(
                "{node_label}: Citus {v}, the coordinator has {version}: every node needs the \
                 same version (ALTER EXTENSION citus UPDATE on the older one after installing \
                 the same release)"
            )),
            Some(_) => {}
        }
        check.citus_version = node_version;
        for name in wanted {
            let v: Option<String> = c
                .query_one("SELECT current_setting($1, true)", &[name])
                .await
                .map_err(db("cannot read a setting"))?
                .get(0);
            problems.extend(setting_problem(&node_label, name, v.as_deref()));
        }
        check.retry_interval_ms = c
            .query_one(
                "SELECT setting::int8 FROM pg_catalog.pg_settings WHERE name = $1",
                &[&RETRY_INTERVAL],
            )
            .await
            .ok()
            .map(|r| r.get(0));
        if !in_cluster {
            // The user's tables there (what the catalog counts as theirs)
            // would make Citus refuse the node.
            let theirs = crate::catalog::Catalog::read(&c)
                .await
                .map_err(db("cannot read the node's tables"))?;
            if !theirs.tables.is_empty() {
                let names: Vec<String> = theirs.tables.iter().map(|t| t.name.to_string()).collect();
                problems.push(format!(
                    "{node_label}: already holds tables ({}); a new node must be empty: \
                     give Citus a fresh server (or database)",
                    names.join(", ")
                ));
            }
            let reachable: Option<bool> = client
                .query_one(
                    "SELECT citus_check_connection_to_node($1, $2)",
                    &[&a.host, &(a.port as i32)],
                )
                .await
                .ok()
                .map(|r| r.get(0));
            if reachable == Some(false) {
                problems.push(format!(
                    "{node_label}: the coordinator cannot connect to it (Citus connects as the \
                     same user, with the coordinator's .pgpass or pg_dist_authinfo): check its \
                     pg_hba.conf and listen_addresses"
                ));
            }
        }
        check.free_bytes = crate::plan::estimate::free_space(&c).await;
        if let Some(free) = check.free_bytes {
            if receives as f64 > free as f64 * 0.8 {
                problems.push(format!(
                    "{node_label}: receives about {} and has {} free: give it more disk",
                    human(receives),
                    human(free)
                ));
            }
        }
        if mode == TransferMode::Logical && check.retry_interval_ms.is_some_and(|ms| ms > 1000) {
            slow_retry.push(format!(
                "{a} ({} ms)",
                check.retry_interval_ms.unwrap_or_default()
            ));
        }
        checks.push(check);
    }
    let retry_s = checks
        .iter()
        .filter_map(|c| c.retry_interval_ms)
        .max()
        .unwrap_or(5000) as f64
        / 1000.0;
    let per_move = if mode == TransferMode::Logical && !opts.tune && retry_s > 1.0 {
        1.4 + retry_s / 2.0
    } else {
        1.4
    };
    let seconds_estimate = moves_estimate as f64 * per_move + bytes_estimate as f64 / 40e6;
    if !slow_retry.is_empty() && !opts.tune {
        advice.push(format!(
            "{RETRY_INTERVAL} is over 1 s on {}: PostgreSQL 15 waits that long between starts \
             of a subscription's workers, and every logical move starts some. --tune sets it \
             to {TUNED_RETRY_INTERVAL} on every node for the duration and restores it after \
             (measured on 2 cores, 137 MB: 20 moves in 78.6 s at 5 s, 31.3 s at 500 ms; the \
             application's p99 29.0 and 30.2 ms, max 104 and 102 ms)",
            slow_retry.join(", ")
        ));
    }
    if new.is_empty() && !opts.add.is_empty() {
        advice.push("every node asked for is in the cluster already".into());
    }
    Ok(Preflight {
        citus_version: version,
        mode,
        mode_reason,
        nodes: checks,
        before: placement(client).await?,
        shard_groups,
        moves_estimate,
        bytes_estimate,
        seconds_estimate,
        problems,
        advice,
    })
}

/// Counts of every distributed and reference table.
async fn counts(client: &Client) -> Result<Vec<(String, i64)>, CitusError> {
    let tables: Vec<crate::catalog::QName> = crate::catalog::citus_placements(client, false)
        .await
        .map_err(db("cannot list Citus's tables"))?
        .into_iter()
        .filter(|p| p.kind != "local")
        .map(|p| p.table)
        .collect();
    super::count_rows(client, &tables).await
}

/// A connection to a node of the cluster, as `target`'s user.
async fn connect_node(target: &Target, node: &NodeAddr) -> Result<Client, CitusError> {
    target
        .at(&node.host, node.port)
        .connect()
        .await
        .map_err(|e| CitusError::BadState(format!("cannot connect to {node}: {e}")))
}

/// Sets (`Some`) or restores a setting on a node, and reloads its
/// configuration.
async fn alter_system(c: &Client, name: &str, value: Option<&str>) -> Result<(), CitusError> {
    let sql = match value {
        Some(v) => format!(
            "ALTER SYSTEM SET {} = {}",
            crate::sql::ident(name),
            literal(v)
        ),
        None => format!("ALTER SYSTEM RESET {}", crate::sql::ident(name)),
    };
    dbx::exec(c, &sql)
        .await
        .map_err(db("cannot change a setting with ALTER SYSTEM"))?;
    dbx::exec(c, "SELECT pg_reload_conf()")
        .await
        .map_err(db("cannot reload the configuration"))
}

/// Puts back what `--tune` changed (and forgets it).
async fn restore_tuned(
    client: &Client,
    target: &Target,
    saved: &mut Saved,
    progress: &dyn Fn(&str),
) -> Result<(), CitusError> {
    for t in std::mem::take(&mut saved.tuned) {
        let c = connect_node(target, &t.node).await?;
        alter_system(&c, &t.setting, t.before.as_deref()).await?;
        progress(&format!(
            "{}: {} restored ({})",
            t.node,
            t.setting,
            t.before.as_deref().unwrap_or("its configured value")
        ));
    }
    save(client, saved).await
}

/// Whether the application suffers now, and why (None: it does not, or
/// nothing measures it): over the last `window`, more of a pressure's
/// samples slow than its share says ([`Pressure::suffering_share`]: 5% of
/// the application's transactions over `limit_ms`, half of the signals'
/// ticks), and at least 3. A move's short catch-up spike does not stop
/// the rebalance; sustained pain does.
fn suffering(pressures: &[&dyn Pressure], window: Duration, limit_ms: f64) -> Option<String> {
    let from = Instant::now().checked_sub(window)?;
    for p in pressures {
        let Some((n, slow)) = p.slow_since(from, limit_ms) else {
            continue;
        };
        if n > 0 && slow >= 3 && slow as f64 > n as f64 * p.suffering_share() {
            return Some(
                p.holding(from, limit_ms)
                    .map(|h| h.why)
                    .unwrap_or_else(|| format!("{slow} of {n} samples slow")),
            );
        }
    }
    None
}

/// What to do, with an unfinished earlier run taken into account: a rerun
/// with no `--add` finishes it (its nodes, drain and mode); one naming other
/// nodes is refused, as it would mix two plans. The unfinished run's state.
pub async fn resolve(
    client: &Client,
    opts: &ScaleOptions,
) -> Result<(ScaleOptions, Option<Saved>), CitusError> {
    let mut opts = opts.clone();
    let unfinished = match crate::catalog::extension_installed(client, "citus").await {
        Ok(true) => load(client).await?.filter(|s| s.phase != "done"),
        _ => None,
    };
    if let Some(s) = &unfinished {
        if opts.add.is_empty() {
            opts.add = s.nodes.clone();
            opts.drain_coordinator |= s.drain;
            if opts.mode == TransferMode::Auto {
                opts.mode = s.mode;
            }
        } else if opts.add != s.nodes {
            return Err(CitusError::BadState(format!(
                "an earlier scale-out adding {} is unfinished: run `shardready scale-out` \
                 without --add to finish it first",
                s.nodes
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if opts.add.is_empty() && !opts.drain_coordinator {
        return Err(CitusError::BadState(
            "nothing to do: name the nodes to add (--add HOST[:PORT]) or --drain-coordinator"
                .into(),
        ));
    }
    Ok((opts, unfinished))
}

/// Scales out: pre-flight, add the nodes, rebalance (draining the
/// coordinator when asked), verify. `pressures` are what the governor
/// watches; `t0` the time axis of the report's phases.
pub async fn scale_out(
    client: &Session,
    target: &Target,
    opts: &ScaleOptions,
    pressures: &[&dyn Pressure],
    t0: Instant,
    progress: &dyn Fn(&str),
) -> Result<ScaleReport, CitusError> {
    let started = Instant::now();
    let (opts, unfinished) = resolve(client, opts).await?;
    let pre = preflight(client, target, &opts).await?;
    if !pre.problems.is_empty() {
        return Err(CitusError::Prerequisites(pre.problems));
    }
    let resumed = unfinished.is_some();
    let mut saved = match unfinished {
        Some(s) => {
            progress(&format!(
                "resuming the scale-out begun earlier (it stopped while {})",
                s.phase
            ));
            s
        }
        None => Saved {
            nodes: opts.add.clone(),
            drain: opts.drain_coordinator,
            mode: pre.mode,
            counts: counts(client).await?,
            tuned: Vec::new(),
            pauses: Vec::new(),
            moves: 0,
            bytes: 0,
            phase: "adding".into(),
        },
    };
    save(client, &saved).await?;
    let mut guards = Vec::new();
    let result = run(
        client,
        target,
        &opts,
        &pre,
        &mut saved,
        pressures,
        t0,
        &mut guards,
        progress,
    )
    .await;
    // What --tune changed goes back whatever happened (a kill leaves it
    // recorded: the rerun restores it).
    let tuned = saved.tuned.clone();
    if !saved.tuned.is_empty() {
        restore_tuned(client, target, &mut saved, progress).await?;
    }
    let (already_done, rebalance_start_s, rebalance_seconds) = result?;
    // Verify.
    progress("verifying: nodes, spread, rows, routing");
    let mut problems = Vec::new();
    let after = placement(client).await?;
    for a in &opts.add {
        match after.iter().find(|n| n.node == a.to_string()) {
            None => problems.push(format!("{a} is not an active node of the cluster")),
            Some(n) if n.shards == 0 && pre.shard_groups >= after.len() as i64 => {
                problems.push(format!("{a} holds no shard"))
            }
            Some(_) => {}
        }
    }
    for n in after
        .iter()
        .filter(|n| !n.should_have_shards && n.shards > 0)
    {
        problems.push(format!(
            "{} should hold no shards and still holds {}",
            n.node, n.shards
        ));
    }
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM get_rebalance_table_shards_plan()",
            &[],
        )
        .await
        .map_err(db("cannot read the rebalance plan"))?
        .get(0);
    if left > 0 {
        problems.push(format!(
            "the rebalancer still plans {left} shard moves: the shards are not spread as planned"
        ));
    }
    let (rows, lost) = super::rows_kept(&saved.counts, &counts(client).await?);
    problems.extend(lost);
    let routing = routing(client).await?;
    if !routing.is_empty() && !routing.contains("Task Count: 1") {
        problems.push(format!(
            "a tenant-scoped query is not routed to one shard:\n{routing}"
        ));
    }
    if !problems.is_empty() {
        saved.phase = "verifying".into();
        save(client, &saved).await?;
        return Err(CitusError::Verify(problems));
    }
    saved.phase = "done".into();
    save(client, &saved).await?;
    Ok(ScaleReport {
        preflight: pre,
        resumed,
        already_done,
        nodes_added: opts.add.iter().map(|n| n.to_string()).collect(),
        drained_coordinator: opts.drain_coordinator,
        moves: saved.moves,
        moved_bytes: saved.bytes,
        seconds: started.elapsed().as_secs_f64(),
        rebalance_seconds,
        rebalance_start_s,
        pauses: saved.pauses.clone(),
        switch_guards: guards,
        tuned,
        after,
        counts: rows,
        routing,
        workload: None,
        phases: Vec::new(),
        signals: None,
        application_after: Vec::new(),
        statements_after: None,
    })
}

/// A tenant-scoped query's plan on the first distributed table (empty
/// when it has no rows).
async fn routing(client: &Client) -> Result<String, CitusError> {
    let Some(first) = crate::catalog::citus_placements(client, false)
        .await
        .map_err(db("cannot read Citus's tables"))?
        .into_iter()
        .find(|p| p.kind == "distributed")
    else {
        return Ok(String::new());
    };
    Ok(
        super::routing::one_tenant_plan(client, &first.table, &first.column)
            .await?
            .unwrap_or_default(),
    )
}

/// The changing part: tune, add, drain, rebalance under the governor.
/// Whether there was nothing left to do, and when the rebalance started
/// and how long it took.
#[allow(clippy::too_many_arguments)]
async fn run(
    client: &Session,
    target: &Target,
    opts: &ScaleOptions,
    pre: &Preflight,
    saved: &mut Saved,
    pressures: &[&dyn Pressure],
    t0: Instant,
    guards: &mut Vec<GuardReport>,
    progress: &dyn Fn(&str),
) -> Result<(bool, f64, f64), CitusError> {
    refuse_background_rebalance(client).await?;
    let mut nodes = cluster_nodes(client).await?;
    let mut changed = false;
    if opts.tune && pre.mode == TransferMode::Logical {
        let mut all: Vec<NodeAddr> = nodes.iter().map(|(n, _, _)| n.clone()).collect();
        for a in &opts.add {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        for n in all {
            if saved.tuned.iter().any(|t| t.node == n) {
                continue;
            }
            let c = connect_node(target, &n).await?;
            let before = auto_conf_value(&c, RETRY_INTERVAL).await?;
            // Recorded before it changes: a kill in between still restores.
            saved.tuned.push(Tuned {
                node: n.clone(),
                setting: RETRY_INTERVAL.into(),
                before,
            });
            save(client, saved).await?;
            alter_system(&c, RETRY_INTERVAL, Some(TUNED_RETRY_INTERVAL)).await?;
            progress(&format!(
                "{n}: {RETRY_INTERVAL} = {TUNED_RETRY_INTERVAL} for the duration (--tune)"
            ));
        }
    }
    for a in &opts.add {
        if nodes.iter().any(|(n, _, _)| n == a) {
            continue;
        }
        progress(&format!("adding {a}"));
        call(
            client,
            &format!(
                "SELECT citus_add_node({}, {})",
                literal(&a.host),
                a.port as i32
            ),
            opts,
        )
        .await?;
        changed = true;
    }
    nodes = cluster_nodes(client).await?;
    if opts.drain_coordinator {
        if let Some((c, _, true)) = nodes.iter().find(|(_, g, _)| *g == 0) {
            progress("draining the coordinator: it will hold no shards");
            call(
                client,
                &format!(
                    "SELECT citus_set_node_property({}, {}, 'shouldhaveshards', false)",
                    literal(&c.host),
                    c.port as i32
                ),
                opts,
            )
            .await?;
            changed = true;
        }
    }
    saved.phase = "rebalancing".into();
    save(client, saved).await?;
    let rebalance_start = Instant::now();
    let mut moves = planned_moves(client).await?;
    if saved.moves == 0 {
        // The whole scale-out's size (a rerun keeps the first run's).
        saved.moves = moves.len() as i64;
        saved.bytes = moves.iter().map(|m| m.bytes).sum();
        save(client, saved).await?;
    }
    if !moves.is_empty() {
        changed |= copy_reference_tables(client, target, pre.mode, opts, guards, progress).await?;
    }
    let total = saved.moves.max(moves.len() as i64);
    let mut done = total - moves.len() as i64;
    let pid = crate::db::backend_pid(client)
        .await
        .map_err(db("cannot read this session's backend"))?;
    let monitor = target
        .connect()
        .await
        .map_err(|e| CitusError::BadState(format!("cannot open a second connection: {e}")))?;
    let mut governed = true;
    let mut watch_from = Instant::now();
    let mut runs = 0;
    while !moves.is_empty() {
        for m in &moves {
            runs += 1;
            if runs > 3 * total + 10 {
                return Err(CitusError::BadState(format!(
                    "the rebalancer keeps planning moves after {runs} of them: see \
                     `SELECT * FROM get_rebalance_table_shards_plan()`; rerun `shardready \
                     scale-out` to go on"
                )));
            }
            progress(&format!(
                "move {}/{total}: {} ({} shard(s), {}) from {} to {}",
                done + 1,
                m.table,
                m.shards,
                human(m.bytes),
                m.from,
                m.to
            ));
            let watching = if governed { pressures } else { &[] };
            // Suffering already: no new move starts.
            let before = (watch_from.elapsed() >= SUFFER_WINDOW)
                .then(|| suffering(watching, SUFFER_WINDOW, opts.pause_above_ms))
                .flatten();
            let moved = match before {
                Some(why) => Moved::Paused(why, false),
                None => {
                    move_group(
                        client,
                        target,
                        (&monitor, pid),
                        m,
                        pre.mode,
                        opts,
                        (watching, watch_from),
                        progress,
                    )
                    .await?
                }
            };
            changed = true;
            match moved {
                Moved::Done(g) => {
                    done += 1;
                    guards.extend(g);
                }
                Moved::Paused(why, cancelled) => {
                    let at = Instant::now();
                    progress(&format!(
                        "rebalance stopped: the application suffers ({why}){}; waiting for calm",
                        if cancelled {
                            "; the move in flight was cancelled (it runs again)"
                        } else {
                            ""
                        }
                    ));
                    let calm = wait_calm(pressures, opts).await;
                    saved.pauses.push(Pause {
                        at_s: at.duration_since(t0).as_secs_f64(),
                        seconds: at.elapsed().as_secs_f64(),
                        why,
                    });
                    save(client, saved).await?;
                    if calm {
                        progress("calm again: starting the rebalance again");
                    } else {
                        progress(&format!(
                            "still slow after {} s stopped: the rebalance is not what slows the \
                             application; going on without stopping it again",
                            opts.max_pause.as_secs()
                        ));
                    }
                    // Not calm while stopped: go on without the governor.
                    governed &= calm;
                    watch_from = Instant::now();
                    break;
                }
            }
        }
        moves = planned_moves(client).await?;
    }
    Ok((
        !changed,
        rebalance_start.duration_since(t0).as_secs_f64(),
        rebalance_start.elapsed().as_secs_f64(),
    ))
}

/// Refuses while Citus's own background rebalance runs: its moves would
/// switch shards without the commit guard, and compete with ours.
async fn refuse_background_rebalance(client: &Client) -> Result<(), CitusError> {
    let job: Option<i64> = client
        .query_opt(
            "SELECT job_id FROM pg_dist_background_job \
              WHERE job_type = 'rebalance' AND state IN ('scheduled', 'running') \
              ORDER BY job_id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(db("cannot read the background jobs"))?
        .map(|r| r.get(0));
    match job {
        Some(j) => Err(CitusError::BadState(format!(
            "Citus's background rebalance (job {j}) is running; shardready moves the shards \
             itself, each under the commit guard. Wait for it (SELECT citus_rebalance_wait();) \
             or stop it (SELECT citus_rebalance_stop();), then rerun `shardready scale-out`"
        ))),
        None => Ok(()),
    }
}

/// Copies the reference tables to the active nodes that lack them, one node
/// at a time and (logical) under the commit guard, before a move would do
/// it unguarded; whether it copied any.
async fn copy_reference_tables(
    client: &Session,
    target: &Target,
    mode: TransferMode,
    opts: &ScaleOptions,
    guards: &mut Vec<GuardReport>,
    progress: &dyn Fn(&str),
) -> Result<bool, CitusError> {
    let mut copied = false;
    loop {
        let Some(r) = client
            .query_opt(
                "SELECT s.shardid, ns.nspname::text, c.relname::text, src.nodename::text, \
                        src.nodeport::int4, n.nodename::text, n.nodeport::int4 \
                   FROM pg_catalog.pg_dist_shard s \
                   JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = s.logicalrelid \
                   JOIN pg_catalog.pg_class c ON c.oid = s.logicalrelid \
                   JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace \
                   JOIN LATERAL (SELECT x.nodename, x.nodeport FROM pg_catalog.pg_dist_placement pl \
                                   JOIN pg_catalog.pg_dist_node x ON x.groupid = pl.groupid \
                                  WHERE pl.shardid = s.shardid ORDER BY x.groupid LIMIT 1) src ON true \
                   CROSS JOIN pg_catalog.pg_dist_node n \
                  WHERE p.partmethod = 'n' AND p.repmodel = 't' \
                    AND n.noderole = 'primary' AND n.isactive \
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_placement pl \
                                     WHERE pl.shardid = s.shardid AND pl.groupid = n.groupid) \
                  ORDER BY n.groupid, s.shardid LIMIT 1",
                &[],
            )
            .await
            .map_err(db("cannot read where the reference tables are"))?
        else {
            return Ok(copied);
        };
        let (shard, table): (i64, crate::catalog::QName) =
            (r.get(0), crate::catalog::QName::new(r.get(1), r.get(2)));
        let node = |h: usize| NodeAddr {
            host: r.get(h),
            port: r.get::<_, i32>(h + 1) as u16,
        };
        let (from, to) = (node(3), node(5));
        progress(&format!(
            "copying the reference tables ({table} and those colocated) to {to}"
        ));
        let sql = format!(
            "SELECT pg_catalog.citus_copy_shard_placement({shard}, {}, {}, {}, {}, \
             transfer_mode := {})",
            literal(&from.host),
            from.port as i32,
            literal(&to.host),
            to.port as i32,
            literal(mode.citus())
        );
        let switch = guard::Switch::Group {
            table,
            shard,
            source: from,
        };
        let g = guarded(client, target, &switch, mode, &sql, opts, None, progress)
            .await
            .map_err(|e| match e {
                Interrupted::Failed(e) => e,
                Interrupted::Paused(why) => CitusError::BadState(why),
            })?;
        guards.extend(g);
        copied = true;
    }
}

/// What became of one move.
enum Moved {
    Done(Option<GuardReport>),
    /// Not made while the application suffered (true: cancelled in
    /// flight).
    Paused(String, bool),
}

/// Moves one shard group (`citus_move_shard_placement`): logical under the
/// commit guard; progress every 10 s; cancelled when the application
/// suffers (`watching`, from that instant on).
#[allow(clippy::too_many_arguments)]
async fn move_group(
    client: &Session,
    target: &Target,
    (monitor, pid): (&Client, i32),
    m: &Move,
    mode: TransferMode,
    opts: &ScaleOptions,
    watching: (&[&dyn Pressure], Instant),
    progress: &dyn Fn(&str),
) -> Result<Moved, CitusError> {
    let sql = format!(
        "SELECT pg_catalog.citus_move_shard_placement({}, {}, {}, {}, {}, \
         shard_transfer_mode := {})",
        m.shard,
        literal(&m.from.host),
        m.from.port as i32,
        literal(&m.to.host),
        m.to.port as i32,
        literal(mode.citus())
    );
    let switch = guard::Switch::Group {
        table: m.table.clone(),
        shard: m.shard,
        source: m.from.clone(),
    };
    let governor = Governor {
        monitor,
        pid,
        pressures: watching.0,
        from: watching.1,
    };
    match guarded(
        client,
        target,
        &switch,
        mode,
        &sql,
        opts,
        Some(&governor),
        progress,
    )
    .await
    {
        Ok(g) => Ok(Moved::Done(g)),
        Err(Interrupted::Paused(why)) => Ok(Moved::Paused(why, true)),
        Err(Interrupted::Failed(e)) => Err(e),
    }
}

/// Watches the application during one call: cancels it (by its backend,
/// from a second connection) when the application suffers.
struct Governor<'a> {
    monitor: &'a Client,
    pid: i32,
    pressures: &'a [&'a dyn Pressure],
    /// Suffering is looked for from this instant on.
    from: Instant,
}

/// Why a shard transfer did not finish.
enum Interrupted {
    /// Cancelled while the application suffered.
    Paused(String),
    Failed(CitusError),
}

/// Runs one shard transfer call: logical under the commit guard, a
/// progress line every 10 s, cancelled when the governor sees the
/// application suffer. What the guard saw.
#[allow(clippy::too_many_arguments)]
async fn guarded(
    client: &Session,
    target: &Target,
    switch: &guard::Switch,
    mode: TransferMode,
    sql: &str,
    opts: &ScaleOptions,
    governor: Option<&Governor<'_>>,
    progress: &dyn Fn(&str),
) -> Result<Option<GuardReport>, Interrupted> {
    let armed = match mode {
        TransferMode::BlockWrites => None,
        _ => Some(
            guard::arm(target, switch, client)
                .await
                .map_err(Interrupted::Failed)?,
        ),
    };
    let policy = LockPolicy {
        lock_timeout: opts.lock_timeout,
        max_wait: Some(Duration::from_secs(120)),
        max_attempts: None,
        statement_timeout: opts.statement_timeout,
    };
    let call = dbx::run_bare(client, sql, &policy);
    tokio::pin!(call);
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut paused: Option<String> = None;
    let r = loop {
        tokio::select! {
            r = &mut call => break r,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Some(g) = governor else {
            continue;
        };
        if last_line.elapsed() >= Duration::from_secs(10) {
            if let Ok(r) = g
                .monitor
                .query_one(
                    "SELECT coalesce(sum(target_shard_size), 0)::int8, \
                            coalesce(sum(source_shard_size), 0)::int8 \
                       FROM pg_catalog.get_rebalance_progress() WHERE progress = 1",
                    &[],
                )
                .await
            {
                progress(&format!(
                    "  copying: {} of {} ({:.0} s)",
                    human(r.get(0)),
                    human(r.get(1)),
                    started.elapsed().as_secs_f64()
                ));
            }
            last_line = Instant::now();
        }
        if paused.is_none() && g.from.elapsed() >= SUFFER_WINDOW {
            if let Some(why) = suffering(g.pressures, SUFFER_WINDOW, opts.pause_above_ms) {
                // (Citus adds a bigint overload: the cast picks PostgreSQL's.)
                match g
                    .monitor
                    .execute("SELECT pg_catalog.pg_cancel_backend($1::int4)", &[&g.pid])
                    .await
                {
                    Ok(_) => paused = Some(why),
                    Err(e) => progress(&format!(
                        "  cannot cancel the move while the application suffers: {}",
                        crate::conn::error_text(&e)
                    )),
                }
            }
        }
    };
    let report = match armed {
        Some(g) => g
            .conclude(r.is_ok(), progress)
            .await
            .map_err(Interrupted::Failed)?,
        None => None,
    };
    match (r, paused) {
        (Ok(_), _) => Ok(report),
        (Err(_), Some(why)) => Err(Interrupted::Paused(why)),
        (Err(e), None) => Err(Interrupted::Failed(super::retry_error(sql, &policy, e))),
    }
}

/// How far back the governor looks before stopping the rebalance.
const SUFFER_WINDOW: Duration = Duration::from_secs(5);

/// Waits (at most `opts.max_pause`) for two calm seconds; whether they
/// came.
async fn wait_calm(pressures: &[&dyn Pressure], opts: &ScaleOptions) -> bool {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    while start.elapsed() < opts.max_pause {
        if suffering(pressures, Duration::from_secs(2), opts.pause_above_ms).is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_parse() {
        assert_eq!(
            "worker-1".parse::<NodeAddr>().unwrap(),
            NodeAddr {
                host: "worker-1".into(),
                port: 5432
            }
        );
        assert_eq!(
            "10.0.0.5:6432".parse::<NodeAddr>().unwrap().to_string(),
            "10.0.0.5:6432"
        );
        assert_eq!(
            "[::1]:5433".parse::<NodeAddr>().unwrap(),
            NodeAddr {
                host: "::1".into(),
                port: 5433
            }
        );
        assert!("w:port"
            .parse::<NodeAddr>()
            .unwrap_err()
            .contains("not a port"));
        assert!(":5432".parse::<NodeAddr>().is_err());
    }

    #[test]
    fn settings_say_what_to_change() {
        let p = setting_problem("node a:1", "wal_level", Some("replica")).unwrap();
        assert!(p.contains("ALTER SYSTEM SET wal_level = logical"), "{p}");
        assert!(setting_problem("n", "wal_level", Some("logical")).is_none());
        assert!(setting_problem("n", "output_plugin_libraries", None).is_none());
        let p = setting_problem("n", "output_plugin_libraries", Some("pgoutput")).unwrap();
        assert!(p.contains("'pgoutput, citus'"), "{p}");
        assert!(setting_problem("n", "max_worker_processes", Some("8")).is_some());
        assert!(setting_problem("n", "max_worker_processes", Some("16")).is_none());
        let p = setting_problem("n", "max_replication_slots", Some("0")).unwrap();
        assert!(
            p.contains("ALTER SYSTEM SET max_replication_slots = 10"),
            "{p}"
        );
        assert!(setting_problem("n", "max_wal_senders", Some("10")).is_none());
    }
}
