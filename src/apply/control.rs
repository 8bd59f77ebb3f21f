//! Control of a running apply from anywhere: `shardready pause` / `resume`
//! write one row in `shardready.control`; the backfill reads it between
//! batches (at most once a second) and apply before each step, so a pause
//! takes effect within a batch and holds no lock while it lasts. `resume
//! --max-rate` changes the backfill's rate cap without a restart.

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

/// What the control row says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Control {
    pub paused: bool,
    /// When `shardready pause` ran (text, for messages).
    pub paused_at: Option<String>,
    /// Rows per second set by `shardready resume --max-rate`.
    pub max_rate: Option<f64>,
}

/// Reads the control row (none yet, or no state schema: not paused).
pub async fn read(client: &Client) -> Result<Control, ApplyError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('shardready.control') IS NOT NULL", &[])
        .await
        .map_err(|e| ApplyError::db("cannot read shardready.control", e))?
        .get(0);
    if !exists {
        return Ok(Control::default());
    }
    let row = client
        .query_opt(
            "SELECT paused, to_char(paused_at, 'YYYY-MM-DD HH24:MI:SS TZ'), max_rate \
             FROM shardready.control WHERE id = 1",
            &[],
        )
        .await
        .map_err(|e| ApplyError::db("cannot read shardready.control", e))?;
    Ok(row
        .map(|r| Control {
            paused: r.get(0),
            paused_at: r.get(1),
            max_rate: r.get(2),
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

async fn has_state(client: &Client) -> Result<bool, ApplyError> {
    Ok(client
        .query_one("SELECT to_regclass('shardready.plan') IS NOT NULL", &[])
        .await
        .map_err(|e| ApplyError::db("cannot read the state", e))?
        .get(0))
}

/// `shardready pause`: the backfill stops after its current batch and
/// apply does not start its next step until `resume`.
pub async fn pause(client: &Client) -> Result<Control, ApplyError> {
    if !has_state(client).await? {
        return Err(no_plan());
    }
    crate::db::exec(client, CONTROL_SQL)
        .await
        .map_err(|e| ApplyError::db("cannot create shardready.control", e))?;
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

/// `shardready resume [--max-rate N]`: goes on (a new rate cap, if given,
/// holds from the next batch).
pub async fn resume(client: &Client, max_rate: Option<f64>) -> Result<Control, ApplyError> {
    if !has_state(client).await? {
        return Err(no_plan());
    }
    crate::db::exec(client, CONTROL_SQL)
        .await
        .map_err(|e| ApplyError::db("cannot create shardready.control", e))?;
    client
        .execute(
            "INSERT INTO shardready.control (id, paused, max_rate) VALUES (1, false, $1) \
             ON CONFLICT (id) DO UPDATE SET paused = false, paused_at = NULL, \
               max_rate = coalesce($1, shardready.control.max_rate), updated_at = now()",
            &[&max_rate],
        )
        .await
        .map_err(|e| ApplyError::db("cannot resume", e))?;
    read(client).await
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
