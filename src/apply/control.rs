//! Control of a running apply from anywhere: `shardready pause` / `resume`
//! write one row in `shardready.control`; the backfill reads it between
//! batches (at most once a second) and apply before each step, so a pause
//! takes effect within a batch and holds no lock while it lasts. `resume
//! --max-rate` changes the backfill's rate cap, and `resume
//! --app-p99-limit` the application's latency budget, without a restart.

use serde::Serialize;
use tokio_postgres::Client;

use super::ApplyError;

/// The control row, created with the state schema.
pub const CONTROL_SQL: &str = "CREATE TABLE IF NOT EXISTS shardready.control (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    paused boolean NOT NULL DEFAULT false,
    paused_at timestamptz,
    max_rate double precision,
    updated_at timestamptz NOT NULL DEFAULT now()
)";

/// The later columns, added to a control row created before them: the
/// budget `resume --app-p99-limit` sets, and how long the governor holds
/// a backfill that runs in the server (`--backfill-via pg-cron`).
pub const CONTROL_BUDGET_SQL: &str =
    "ALTER TABLE shardready.control ADD COLUMN IF NOT EXISTS app_p99_limit_ms double precision, \
       ADD COLUMN IF NOT EXISTS hold_until timestamptz";

/// What the control row says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Control {
    pub paused: bool,
    /// When `shardready pause` ran (text, for messages).
    pub paused_at: Option<String>,
    /// Rows per second set by `shardready resume --max-rate`.
    pub max_rate: Option<f64>,
    /// The application's latency budget set by `shardready resume
    /// --app-p99-limit`.
    pub app_p99_limit_ms: Option<f64>,
}

/// Reads the control row (none yet, or no state schema: not paused).
pub async fn read(client: &Client) -> Result<Control, ApplyError> {
    if !super::state::has_table(client, "control").await? {
        return Ok(Control::default());
    }
    let row = client
        .query_opt(
            // The budget through jsonb: a control row created before its
            // column reads as none.
            "SELECT paused, to_char(paused_at, 'YYYY-MM-DD HH24:MI:SS TZ'), max_rate, \
               (to_jsonb(c) ->> 'app_p99_limit_ms')::float8 \
             FROM shardready.control c WHERE id = 1",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read shardready.control", e))?;
    Ok(row
        .map(|r| Control {
            paused: r.get(0),
            paused_at: r.get(1),
            max_rate: r.get(2),
            app_p99_limit_ms: r.get(3),
        })
        .unwrap_or_default())
}

/// Why `pause`/`resume` cannot act.
fn no_plan() -> ApplyError {
    ApplyError::Other {
        context: "nothing to pause or resume".into(),
        detail: "no preparation is stored in this database (no shardready schema): \
                 `shardready apply` starts one"
            .into(),
    }
}

/// Refuses without a stored preparation; makes sure the control row's
/// table exists (a state schema older than it).
async fn ready(client: &Client) -> Result<(), ApplyError> {
    if !super::state::has_table(client, "plan").await? {
        return Err(no_plan());
    }
    crate::db::exec(client, CONTROL_SQL)
        .await
        .map_err(|e| ApplyError::db("cannot create shardready.control", e))?;
    crate::db::exec(client, CONTROL_BUDGET_SQL)
        .await
        .map_err(|e| ApplyError::db("cannot add the budget to shardready.control", e))
}

/// `shardready pause`: the backfill stops after its current batch and
/// apply does not start its next step until `resume`.
pub async fn pause(client: &Client) -> Result<Control, ApplyError> {
    ready(client).await?;
    client
        .execute(
            "INSERT INTO shardready.control (id, paused, paused_at) VALUES (1, true, now()) \
             ON CONFLICT (id) DO UPDATE SET paused = true, \
               paused_at = coalesce(shardready.control.paused_at, now()), updated_at = now()",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot pause", e))?;
    read(client).await
}

/// `shardready resume [--max-rate N] [--app-p99-limit MS]`: goes on (a new
/// rate cap or budget, if given, holds within a second).
pub async fn resume(
    client: &Client,
    max_rate: Option<f64>,
    app_p99_limit_ms: Option<f64>,
) -> Result<Control, ApplyError> {
    ready(client).await?;
    client
        .execute(
            "INSERT INTO shardready.control (id, paused, max_rate, app_p99_limit_ms) \
             VALUES (1, false, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET paused = false, paused_at = NULL, \
               max_rate = coalesce($1, shardready.control.max_rate), \
               app_p99_limit_ms = coalesce($2, shardready.control.app_p99_limit_ms), \
               updated_at = now()",
            &[&max_rate, &app_p99_limit_ms],
        )
        .await
        .map_err(|e| ApplyError::db("cannot resume", e))?;
    read(client).await
}

/// The governor's pause for the pg_cron job's procedure, which waits
/// before its next batch until then: the application is over its budget.
/// It expires by itself, so a job never waits for an apply that is gone.
pub async fn hold(client: &Client, pause: std::time::Duration) -> Result<(), ApplyError> {
    client
        .execute(
            "INSERT INTO shardready.control (id, hold_until) \
             VALUES (1, clock_timestamp() + $1 * interval '1 millisecond') \
             ON CONFLICT (id) DO UPDATE SET hold_until = excluded.hold_until",
            &[&(pause.as_millis() as f64)],
        )
        .await
        .map_err(|e| ApplyError::db("cannot hold the pg_cron backfill", e))?;
    Ok(())
}

/// A new apply run starts from its own flags: a rate cap or budget set by
/// `resume` for an earlier run is forgotten (a pause stays).
pub(crate) async fn new_run(client: &Client) -> Result<(), ApplyError> {
    client
        .execute(
            "UPDATE shardready.control SET max_rate = NULL, app_p99_limit_ms = NULL \
             WHERE id = 1 AND (max_rate IS NOT NULL OR app_p99_limit_ms IS NOT NULL)",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot reset shardready.control", e))?;
    Ok(())
}

/// Waits while the control row says paused, saying so once; returns how
/// long it waited. Holds no lock and no transaction while it waits.
pub async fn wait_while_paused(
    client: &Client,
    progress: bool,
) -> Result<std::time::Duration, ApplyError> {
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        let c = read(client).await?;
        if !c.paused {
            if said && progress {
                eprintln!(
                    "        resumed after {:.1} s",
                    start.elapsed().as_secs_f64()
                );
            }
            return Ok(start.elapsed());
        }
        if !said && progress {
            eprintln!(
                "        paused by `shardready pause`{}: nothing runs until `shardready resume`",
                c.paused_at
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            );
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// How far behind the standbys may fall while the backfill writes
/// (`--max-replica-lag`): by replay time or by WAL bytes not yet replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplicaBudget {
    Time(std::time::Duration),
    Bytes(i64),
}

impl std::fmt::Display for ReplicaBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaBudget::Time(d) => write!(f, "{:.1} s", d.as_secs_f64()),
            ReplicaBudget::Bytes(b) => write!(f, "{:.1} MB", *b as f64 / 1e6),
        }
    }
}

impl std::str::FromStr for ReplicaBudget {
    type Err = String;
    /// `10s`, `1500ms` (replay time) or `64MB`, `512kB`, `1GB` (WAL bytes).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let units = [("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 1.0)];
        for (unit, scale) in units {
            if let Some(n) = t.strip_suffix(unit) {
                let n: f64 = n.trim().parse().map_err(|_| format!("not a size: {s}"))?;
                if !(n.is_finite() && n > 0.0) {
                    return Err("must be greater than 0".into());
                }
                return Ok(ReplicaBudget::Bytes((n * scale) as i64));
            }
        }
        if t.starts_with('-') {
            return Err("cannot be negative".into());
        }
        let d: humantime::Duration = t
            .parse()
            .map_err(|e| format!("{e} (e.g. 10s, 1500ms, 64MB, or off)"))?;
        if std::time::Duration::from(d).is_zero() {
            return Err("must be greater than 0 (or off)".into());
        }
        Ok(ReplicaBudget::Time(d.into()))
    }
}

/// The standby furthest behind, as the primary sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaLag {
    pub name: String,
    pub seconds: f64,
    pub bytes: i64,
}

impl ReplicaLag {
    fn over(&self, budget: &ReplicaBudget) -> bool {
        match budget {
            ReplicaBudget::Time(d) => self.seconds > d.as_secs_f64(),
            ReplicaBudget::Bytes(b) => self.bytes > *b,
        }
    }
}

/// The furthest-behind standby (None without standbys, or when the role
/// may not see their positions: `pg_monitor` or superuser can).
pub async fn replica_lag(client: &Client) -> Result<Option<ReplicaLag>, ApplyError> {
    let all = super::signals::standbys(client)
        .await
        .map_err(|e| ApplyError::db("cannot read pg_stat_replication", e))?;
    Ok(all
        .into_iter()
        .max_by(|a, b| a.replay_mb.total_cmp(&b.replay_mb))
        .map(|s| ReplicaLag {
            name: s.name,
            seconds: s.replay_s,
            bytes: (s.replay_mb * 1e6) as i64,
        }))
}

/// A standby watched by its own replay position (`apply --replica URL`):
/// seen even where the primary does not show it (a role without
/// pg_monitor, a cascaded standby, a standby restoring from the archive).
pub struct Standby {
    pub name: String,
    pub client: Client,
}

impl Standby {
    /// Connects to the standby at `target`; an error that says what to do
    /// when it cannot, or when it is not a standby.
    pub async fn connect(target: &crate::conn::Target) -> Result<Standby, ApplyError> {
        let name = target.display();
        let refuse = |detail: String| ApplyError::Other {
            context: format!("the standby given with --replica ({name})"),
            detail: format!(
                "{detail}; nothing was changed. Fix the URL, or leave it out (the standbys the \
                 primary shows in pg_stat_replication are watched anyway)"
            ),
        };
        let client = target
            .with_application_name("shardready-standby-watch")
            .connect()
            .await
            .map_err(|e| refuse(format!("cannot connect: {e}")))?;
        let recovering: bool = client
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await
            .map_err(|e| refuse(crate::conn::error_text(&e)))?
            .get(0);
        if !recovering {
            return Err(refuse(
                "it is not a standby (pg_is_in_recovery() is false)".into(),
            ));
        }
        Ok(Standby { name, client })
    }

    /// How far it is behind `primary`: WAL bytes the primary has written
    /// and it has not replayed, and (while it has some to replay) the age
    /// of the last transaction it replayed.
    async fn lag(&self, primary: &Client) -> Result<ReplicaLag, ApplyError> {
        let at: String = primary
            .query_one("SELECT pg_catalog.pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|e| ApplyError::db("cannot read the WAL position", e))?
            .get(0);
        let r = self
            .client
            .query_one(
                "SELECT greatest(pg_catalog.pg_wal_lsn_diff($1::text::pg_lsn, \
                        pg_catalog.pg_last_wal_replay_lsn()), 0)::bigint, \
                        coalesce(extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp()), 0)::float8",
                &[&at],
            )
            .await
            .map_err(|e| ApplyError::db("cannot read the standby's replay position", e))?;
        let bytes: i64 = r.get(0);
        Ok(ReplicaLag {
            name: self.name.clone(),
            seconds: if bytes > 0 { r.get(1) } else { 0.0 },
            bytes,
        })
    }
}

/// The standby furthest behind: those the primary shows and those given.
pub async fn worst_lag(
    client: &Client,
    standbys: &[Standby],
) -> Result<Option<ReplicaLag>, ApplyError> {
    let mut worst = replica_lag(client).await?;
    for s in standbys {
        let lag = s.lag(client).await?;
        if worst.as_ref().is_none_or(|w| lag.bytes > w.bytes) {
            worst = Some(lag);
        }
    }
    Ok(worst)
}

/// Waits while a standby is further behind than `budget`, saying once
/// which one and how far; returns how long it waited. Holds no lock.
pub async fn wait_for_replicas(
    client: &Client,
    standbys: &[Standby],
    budget: &ReplicaBudget,
    progress: bool,
) -> Result<std::time::Duration, ApplyError> {
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        match worst_lag(client, standbys).await? {
            Some(lag) if lag.over(budget) => {
                if !said && progress {
                    eprintln!(
                        "        held back by replica lag: {} is {:.1} s / {:.1} MB behind (budget {budget}); waiting",
                        lag.name,
                        lag.seconds,
                        lag.bytes as f64 / 1e6
                    );
                    said = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            _ => return Ok(start.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn replica_budgets_parse_as_time_or_size() {
        assert_eq!(
            "10s".parse::<ReplicaBudget>(),
            Ok(ReplicaBudget::Time(Duration::from_secs(10)))
        );
        assert_eq!(
            "1500ms".parse::<ReplicaBudget>(),
            Ok(ReplicaBudget::Time(Duration::from_millis(1500)))
        );
        assert_eq!(
            "64MB".parse::<ReplicaBudget>(),
            Ok(ReplicaBudget::Bytes(64_000_000))
        );
        assert_eq!(
            "512kB".parse::<ReplicaBudget>(),
            Ok(ReplicaBudget::Bytes(512_000))
        );
        assert!("-3s".parse::<ReplicaBudget>().is_err());
        assert!("0MB".parse::<ReplicaBudget>().is_err());
        let lag = ReplicaLag {
            name: "standby".into(),
            seconds: 2.0,
            bytes: 5_000_000,
        };
        assert!(lag.over(&ReplicaBudget::Time(Duration::from_secs(1))));
        assert!(!lag.over(&ReplicaBudget::Bytes(8_000_000)));
    }
}
