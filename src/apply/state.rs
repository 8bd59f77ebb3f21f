//! Persisted state in the `shardready` schema: the plan being applied, each
//! step's status and timings, and the backfill cursors — so `apply` resumes
//! after a crash and `status` can tell where things stand. (The advisory
//! lock that lets only one `apply` run at a time is [`crate::db::Session`].)

use serde::Serialize;
use tokio_postgres::Client;

use super::ApplyError;
use crate::db::{self, DbError, LOCK_KEY};
use crate::plan::Plan;

/// The statements that create the state schema, one per query.
const SCHEMA_SQL: [&str; 7] = [
    "CREATE SCHEMA IF NOT EXISTS shardready",
    "CREATE TABLE IF NOT EXISTS shardready.plan (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    plan jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
)",
    "CREATE TABLE IF NOT EXISTS shardready.step (
    position int NOT NULL,
    id text PRIMARY KEY,
    status text NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    seconds double precision,
    lock_timeouts int NOT NULL DEFAULT 0,
    detail text
)",
    "CREATE TABLE IF NOT EXISTS shardready.backfill (
    step_id text PRIMARY KEY,
    cursor bigint NOT NULL,
    max_key bigint NOT NULL,
    min_key bigint NOT NULL,
    rows_updated bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)",
    super::control::CONTROL_SQL,
    super::control::CONTROL_BUDGET_SQL,
    super::signals::CANARY_SQL,
];

/// Where a step of the stored plan stands (`shardready.step.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Done,
    Skipped,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for StepState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => StepState::Pending,
            "running" => StepState::Running,
            "done" => StepState::Done,
            "skipped" => StepState::Skipped,
            other => return Err(format!("unknown step status `{other}`")),
        })
    }
}

pub async fn ensure_schema(client: &Client) -> Result<(), ApplyError> {
    // Serialize concurrent first runs: CREATE ... IF NOT EXISTS can race.
    let mut statements = vec![format!("SELECT pg_advisory_xact_lock({})", LOCK_KEY + 1)];
    statements.extend(SCHEMA_SQL.iter().map(|s| s.to_string()));
    Ok(db::in_txn(client, &statements)
        .await
        .map_err(DbError::ctx("cannot create the shardready schema"))?)
}

/// Whether a table of shardready's state exists (`name` in the
/// `shardready` schema): the one check for state that may not be there yet.
pub(crate) async fn has_table(client: &Client, name: &str) -> Result<bool, ApplyError> {
    Ok(client
        .query_one(
            "SELECT to_regclass(format('shardready.%I', $1::text)) IS NOT NULL",
            &[&name],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read the state", e))?
        .get(0))
}

/// The stored plan and whether it finished.
pub async fn load_plan(client: &Client) -> Result<Option<(Plan, bool)>, ApplyError> {
    if !has_table(client, "plan").await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT plan, finished_at IS NOT NULL FROM shardready.plan",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read the stored plan", e))?;
    let Some(row) = row else { return Ok(None) };
    let v: serde_json::Value = row.get(0);
    let plan: Plan = serde_json::from_value(v).map_err(|e| ApplyError::BadState(e.to_string()))?;
    Ok(Some((plan, row.get(1))))
}

pub async fn save_plan(client: &Client, plan: &Plan) -> Result<(), ApplyError> {
    let v = serde_json::to_value(plan).expect("plan serializes");
    db::in_txn(
        client,
        &[
            "DELETE FROM shardready.step",
            "DELETE FROM shardready.backfill",
            "DELETE FROM shardready.plan",
        ],
    )
    .await
    .map_err(DbError::ctx("cannot reset the state"))?;
    client
        .execute("INSERT INTO shardready.plan (plan) VALUES ($1)", &[&v])
        .await
        .map_err(|e| ApplyError::db("cannot store the plan", e))?;
    for (i, s) in plan.steps.iter().enumerate() {
        client
            .execute(
                "INSERT INTO shardready.step (position, id, status) VALUES ($1, $2, 'pending')",
                &[&(i as i32), &s.id()],
            )
            .await
            .map_err(|e| ApplyError::db("cannot store the steps", e))?;
    }
    Ok(())
}

pub async fn mark(
    client: &Client,
    id: &str,
    status: StepState,
    seconds: Option<f64>,
    lock_timeouts: u32,
    detail: Option<&str>,
) -> Result<(), ApplyError> {
    client
        .execute(
            "UPDATE shardready.step SET status = $2, \
                started_at = CASE WHEN $2 = 'running' THEN now() ELSE started_at END, \
                finished_at = CASE WHEN $2 IN ('done', 'skipped') THEN now() ELSE finished_at END, \
                seconds = coalesce($3, seconds), lock_timeouts = lock_timeouts + $4, \
                detail = coalesce($5, detail) \
             WHERE id = $1",
            &[
                &id,
                &status.as_str(),
                &seconds,
                &(lock_timeouts as i32),
                &detail,
            ],
        )
        .await
        .map_err(|e| ApplyError::db("cannot record step status", e))?;
    Ok(())
}

pub async fn finish_plan(client: &Client) -> Result<(), ApplyError> {
    db::exec(client, "UPDATE shardready.plan SET finished_at = now()")
        .await
        .map_err(|e| ApplyError::db("cannot record the end of the plan", e))
}

/// One row of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub position: i32,
    pub id: String,
    pub status: StepState,
    pub seconds: Option<f64>,
    pub lock_timeouts: i32,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackfillStatus {
    pub step_id: String,
    pub cursor: i64,
    pub min_key: i64,
    pub max_key: i64,
    pub rows_updated: i64,
    pub batches: i64,
    /// Share of the key range done, 0..1.
    pub progress: f64,
}

/// What `shardready status` prints (schema `shardready.status/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct ApplyStatus {
    pub schema: &'static str,
    pub plan_exists: bool,
    pub finished: bool,
    pub steps: Vec<StepStatus>,
    pub backfills: Vec<BackfillStatus>,
    pub apply_running: bool,
    /// `shardready pause` / `resume`'s row.
    pub control: super::control::Control,
    /// The database's signals as a running apply last sampled them.
    pub signals: Option<LiveSignals>,
}

/// The last second of signals a running apply wrote to `shardready.canary`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSignals {
    /// How long ago (seconds).
    pub age_s: f64,
    pub last: super::signals::SignalSecond,
}

pub async fn status(client: &Client) -> Result<ApplyStatus, ApplyError> {
    let running: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
               AND ((classid::bigint << 32) | objid::bigint) = $1)",
            &[&LOCK_KEY],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read pg_locks", e))?
        .get(0);
    let Some((_, finished)) = load_plan(client).await? else {
        return Ok(ApplyStatus {
            schema: "shardready.status/v1",
            plan_exists: false,
            finished: false,
            steps: Vec::new(),
            backfills: Vec::new(),
            apply_running: running,
            control: Default::default(),
            signals: None,
        });
    };
    let steps = client
        .query(
            "SELECT position, id, status, seconds, lock_timeouts, detail FROM shardready.step ORDER BY position",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read the steps", e))?
        .iter()
        .map(|r| StepStatus {
            position: r.get(0),
            id: r.get(1),
            status: r
                .get::<_, String>(2)
                .parse()
                .unwrap_or(StepState::Pending),
            seconds: r.get(3),
            lock_timeouts: r.get(4),
            detail: r.get(5),
        })
        .collect();
    let backfills = client
        .query(
            "SELECT step_id, cursor, min_key, max_key, rows_updated, batches FROM shardready.backfill ORDER BY step_id",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read the backfill cursors", e))?
        .iter()
        .map(|r| {
            let (cursor, min, max): (i64, i64, i64) = (r.get(1), r.get(2), r.get(3));
            BackfillStatus {
                step_id: r.get(0),
                cursor,
                min_key: min,
                max_key: max,
                rows_updated: r.get(4),
                batches: r.get(5),
                progress: if max > min {
                    ((cursor - min) as f64 / (max - min) as f64).clamp(0.0, 1.0)
                } else {
                    1.0
                },
            }
        })
        .collect();
    Ok(ApplyStatus {
        schema: "shardready.status/v1",
        plan_exists: true,
        finished,
        steps,
        backfills,
        apply_running: running,
        control: super::control::read(client).await?,
        signals: super::signals::last(client)
            .await?
            .map(|(age_s, last)| LiveSignals { age_s, last }),
    })
}

/// Removes shardready's state once nothing of a preparation is left
/// (`abort`); kept while an interrupted `distribute` still has keys saved
/// in it.
pub async fn drop_schema(client: &Client) -> Result<(), ApplyError> {
    let statements = if has_table(client, "distribute_fk").await? {
        vec![
            "DROP TABLE IF EXISTS shardready.step".to_string(),
            "DROP TABLE IF EXISTS shardready.plan".to_string(),
            "DROP TABLE IF EXISTS shardready.control".to_string(),
        ]
    } else {
        vec!["DROP SCHEMA IF EXISTS shardready CASCADE".to_string()]
    };
    Ok(db::in_txn(client, &statements)
        .await
        .map_err(DbError::ctx("cannot remove the shardready state"))?)
}
