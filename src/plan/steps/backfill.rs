//! Step: fill the tenant column of existing rows in keyset batches. All of
//! the backfill's SQL lives here — the batch, the sweep, the light VACUUM,
//! the cursor in `shardready.backfill` and the pg_cron procedure; the
//! controller that runs them (pace, governor, progress) is
//! `apply::backfill`.

use serde::{Deserialize, Serialize};

use super::{paths_end, tenant_source, StepKind};
use crate::analyze::data::MARKER;
use crate::analyze::Hop;
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};
use crate::sql::{ident, literal};

/// Fills the column for existing rows in keyset batches: over the range
/// of its single integer key (any of smallint, integer, bigint), or, for a
/// table without one (a composite, uuid, text or numeric key, or none),
/// over its pages (`ctid` ranges, a TID range scan each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    pub table: QName,
    pub column: String,
    /// The integer key walked (`ctid` when `pages`).
    pub key: String,
    pub path: Vec<Hop>,
    /// Paths that give a row its tenant where `path` leaves it NULL, in
    /// order (a table reached through one of several nullable keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Vec<Hop>>,
    /// Walk the table's pages instead of a key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pages: bool,
}

/// Keys worth one page when the walk is over pages: the controller and
/// the pg_cron procedure size batches in keys, and a page holds some tens
/// of rows.
const KEYS_PER_PAGE: i64 = 50;

/// PL/pgSQL that keeps the tables' triggers from firing for the backfill's
/// own UPDATEs where the role may (a superuser's setting): they would
/// change other columns (a last-update stamp).
const QUIET: &str = "IF current_setting('is_superuser') = 'on' THEN SET session_replication_role = replica; END IF;";

/// The statements that keep a backfill's cursor (`shardready.backfill`).
pub struct BackfillCursorSql;

impl BackfillCursorSql {
    /// `$1` step id → cursor, max_key, min_key, rows_updated, batches.
    pub const LOAD: &'static str = "SELECT cursor, max_key, min_key, rows_updated, batches FROM shardready.backfill WHERE step_id = $1";
    /// `$1` step id, `$2` first cursor (min key - 1), `$3` max key.
    pub const START: &'static str = "INSERT INTO shardready.backfill (step_id, cursor, max_key, min_key) VALUES ($1, $2, $3, $2)";
    /// `$1` step id, `$2` new cursor, `$3` rows the batch updated.
    pub const SAVE: &'static str =
        "UPDATE shardready.backfill SET cursor = $2, rows_updated = rows_updated + $3, \
             batches = batches + 1, updated_at = now() WHERE step_id = $1";
    /// `$1` step id → cursor, rows_updated, batches.
    pub const PROGRESS: &'static str =
        "SELECT cursor, rows_updated, batches FROM shardready.backfill WHERE step_id = $1";
}

/// The pg_cron way: a procedure walking the key range in batches.
pub struct PgCronProcedure {
    pub procedure: QName,
    /// The pg_cron job's name.
    pub job: String,
    /// `CREATE OR REPLACE PROCEDURE …`.
    pub create: String,
    /// The job's command.
    pub call: String,
    pub drop: String,
}

impl Backfill {
    /// Rows of `alias` in the walk's range (`lo`, `hi`] (bigint
    /// expressions): keys, or pages `lo + 1` to `hi`.
    fn in_range(&self, alias: &str, lo: &str, hi: &str) -> String {
        if self.pages {
            let page = |p: &str| format!("('(' || (({p})::bigint + 1) || ',0)')::tid");
            format!(
                "{alias}.ctid >= {} AND {alias}.ctid < {}",
                page(lo),
                page(hi)
            )
        } else {
            let k = ident(&self.key);
            format!("{alias}.{k} > ({lo})::bigint AND {alias}.{k} <= ({hi})::bigint")
        }
    }

    /// The cursor moved on by `keys` keys (a page per [`KEYS_PER_PAGE`]
    /// keys, at least one, when walking pages), as a bigint expression.
    pub fn advance_sql(&self, lo: &str, keys: &str) -> String {
        if self.pages {
            format!("{lo} + greatest(1, {keys} / {KEYS_PER_PAGE})")
        } else {
            format!("{lo} + {keys}")
        }
    }

    /// [`Self::advance_sql`] for the client's controller.
    pub fn advance(&self, cursor: i64, keys: i64) -> i64 {
        if self.pages {
            cursor + (keys / KEYS_PER_PAGE).max(1)
        } else {
            cursor + keys
        }
    }

    /// One batch over the range (`lo`, `hi`]: fills only NULLs, so reruns
    /// are idempotent.
    pub fn batch_sql(&self, lo: &str, hi: &str) -> String {
        let src = tenant_source("t", &self.path, &self.also, &self.column);
        format!(
            "UPDATE {tbl} t SET {col} = {value}\n{from}  WHERE {range} AND t.{col} IS NULL\n    AND {conds};",
            tbl = self.table.sql(),
            col = ident(&self.column),
            value = src.value,
            from = src.from.map_or(String::new(), |f| format!("  FROM {f}\n")),
            range = self.in_range("t", lo, hi),
            conds = src.conds.join(" AND ")
        )
    }

    /// The client's batch: `$1`, `$2` the range (bigint); returns the rows
    /// it filled.
    pub fn batch_query(&self) -> String {
        format!(
            "{MARKER} WITH done AS ({} RETURNING 1) SELECT count(*) FROM done",
            self.batch_sql("$1", "$2").trim_end_matches(';')
        )
    }

    /// The walk's range as two bigints: min(key) - 1 and max(key), or -1
    /// and the last page.
    pub fn key_range_sql(&self) -> String {
        if self.pages {
            format!(
                "SELECT -1::bigint, pg_relation_size({})::bigint / \
                 current_setting('block_size')::bigint - 1",
                literal(&self.table.sql())
            )
        } else {
            format!(
                "SELECT {MARKER} coalesce(min({k})::bigint - 1, 0), coalesce(max({k})::bigint, 0) FROM {t}",
                k = ident(&self.key),
                t = self.table.sql()
            )
        }
    }

    /// Final sweep: fills up to 10000 NULLs (past `past` when given, through
    /// the key's index or a TID range scan; anywhere otherwise) and returns
    /// how many.
    pub fn sweep_sql(&self, past: Option<i64>) -> String {
        let src = tenant_source("t", &self.path, &self.also, &self.column);
        let (k, order) = if self.pages {
            ("ctid".to_string(), String::new())
        } else {
            let k = ident(&self.key);
            (k.clone(), format!(" ORDER BY {k}"))
        };
        let range = match past {
            Some(max) if self.pages => format!("ctid >= '({},0)'::tid AND ", max + 1),
            Some(max) => format!("{k} > {max} AND "),
            None => String::new(),
        };
        format!(
            "{MARKER} WITH todo AS (SELECT {k} AS key FROM {t} WHERE {range}{c} IS NULL{order} LIMIT 10000), \
                  done AS (UPDATE {t} t SET {c} = {value} FROM {from}todo \
                           WHERE t.{k} = todo.key AND {conds} RETURNING 1) \
             SELECT count(*) FROM done",
            t = self.table.sql(),
            c = ident(&self.column),
            value = src.value,
            from = src.from.map_or(String::new(), |f| format!("{f}, ")),
            conds = src.conds.join(" AND "),
        )
    }

    /// The light VACUUM between batches: records the free space of the
    /// pages changed since the last one so new row versions reuse it.
    pub fn reclaim_sql(&self) -> String {
        format!(
            "VACUUM (SKIP_LOCKED, INDEX_CLEANUP off, TRUNCATE false) {}",
            self.table.sql()
        )
    }

    /// The procedure pg_cron runs: walks the key range in batches
    /// (committing each, saving the cursor, adapting the batch to
    /// `target_ms`) for a time budget per run. Between batches it obeys
    /// `shardready.control`: a pause, the governor's hold (`hold_until`,
    /// set by apply while the application is over its budget) and the rate
    /// cap (`resume --max-rate`, else `max_rate`).
    pub fn pg_cron_procedure(
        &self,
        lock_timeout_ms: u128,
        target_ms: u128,
        min_batch: i64,
        max_batch: i64,
        standbys: StandbyBudget,
        max_rate: Option<f64>,
    ) -> PgCronProcedure {
        let name =
            super::super::object_name(&format!("backfill_{}_{}", self.table.name, self.column), "");
        let procedure = QName::new("shardready", &name);
        let update = self.batch_sql("lo", &self.advance_sql("lo", "batch"));
        let create = format!(
            "CREATE OR REPLACE PROCEDURE {p}(batch bigint, budget interval)\n\
             LANGUAGE plpgsql AS $shardready$\n\
             DECLARE lo bigint; top bigint; n bigint; rate float8; t0 timestamptz := clock_timestamp(); b0 timestamptz;\n\
             BEGIN\n\
             \x20 SET lock_timeout = '{lock_timeout_ms}ms';\n\
             \x20 SET plan_cache_mode = force_custom_plan;\n\
             \x20 {QUIET}\n\
             \x20 LOOP\n\
             \x20   SELECT cursor, max_key INTO lo, top FROM shardready.backfill WHERE step_id = {id};\n\
             \x20   -- `shardready pause` stops the job here (and its next runs at once)\n\
             \x20   EXIT WHEN lo >= top OR clock_timestamp() - t0 > budget\n\
             \x20     OR coalesce((SELECT paused FROM shardready.control WHERE id = 1), false);\n\
             \x20   -- wait while the standbys replay what the last batch wrote\n\
             \x20   -- (--max-replica-lag) or while apply's governor holds the job (the\n\
             \x20   -- application is over its budget), then look again\n\
             \x20   IF {behind} OR clock_timestamp() < coalesce(\n\
             \x20       (SELECT hold_until FROM shardready.control WHERE id = 1), '-infinity') THEN\n\
             \x20     PERFORM pg_sleep(0.05);\n\
             \x20     CONTINUE;\n\
             \x20   END IF;\n\
             \x20   b0 := clock_timestamp();\n\
             \x20   {update}\n\
             \x20   GET DIAGNOSTICS n = ROW_COUNT;\n\
             \x20   UPDATE shardready.backfill SET cursor = least({next}, top), rows_updated = rows_updated + n,\n\
             \x20     batches = batches + 1, updated_at = now() WHERE step_id = {id};\n\
             \x20   COMMIT;\n\
             \x20   -- adapt the batch to the time target (at most halve or double)\n\
             \x20   batch := greatest({min_batch}, least({max_batch}, (batch * least(2.0, greatest(0.5,\n\
             \x20     {target_ms} / greatest(1, extract(epoch FROM clock_timestamp() - b0) * 1000))))::bigint));\n\
             \x20   -- the rate cap: the batch's rows take n / rate seconds (within the\n\
             \x20   -- run's budget), and a batch holds at most what the rate allows in\n\
             \x20   -- the time target\n\
             \x20   rate := coalesce((SELECT max_rate FROM shardready.control WHERE id = 1), {rate});\n\
             \x20   IF rate > 0 THEN\n\
             \x20     batch := greatest({min_batch}, least(batch, (rate * {target_ms} / 1000)::bigint));\n\
             \x20     PERFORM pg_sleep(least(greatest(0, n / rate - extract(epoch FROM clock_timestamp() - b0)),\n\
             \x20       greatest(0, extract(epoch FROM budget - (clock_timestamp() - t0)))));\n\
             \x20   END IF;\n\
             \x20 END LOOP;\n\
             END\n$shardready$;",
            p = procedure.sql(),
            id = literal(&self.id()),
            update = update.replace('\n', "\n    "),
            next = self.advance_sql("lo", "batch"),
            behind = standbys.behind_sql(),
            rate = max_rate.map_or("NULL".to_string(), |r| format!("{r}::float8")),
        );
        PgCronProcedure {
            job: format!("shardready-{name}"),
            call: format!("CALL {}(1000, '50 seconds')", procedure.sql()),
            drop: format!(
                "DROP PROCEDURE IF EXISTS {}(bigint, interval)",
                procedure.sql()
            ),
            create,
            procedure,
        }
    }

    /// What `plan --format sql` shows for the backfill: a DO block of
    /// fixed-size keyset batches (apply adapts and throttles instead).
    fn psql_script(&self) -> String {
        let next = self.advance_sql("lo", "10000");
        format!(
            "-- keyset batches of 10000 keys, one transaction each (apply adapts the size\n\
             -- to a time target and throttles on the application's latency)\n\
             DO $shardready$\nDECLARE lo bigint; top bigint;\nBEGIN\n\
             \x20 {QUIET}\n\
             \x20 {range} INTO lo, top;\n\
             \x20 WHILE lo < top LOOP\n\
             \x20   {update}\n\
             \x20   COMMIT;\n\
             \x20   lo := {next};\n\
             \x20 END LOOP;\n\
             \x20 RESET session_replication_role;\nEND\n$shardready$;",
            range = self.key_range_sql(),
            update = self.batch_sql("lo", &next).replace('\n', "\n    ")
        )
    }
}

/// How far the standbys may fall behind while the pg_cron job backfills
/// (`--max-replica-lag`), as the server sees them in pg_stat_replication.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StandbyBudget {
    Off,
    Seconds(f64),
    Bytes(i64),
}

impl StandbyBudget {
    /// True while a standby is further behind than the budget.
    fn behind_sql(self) -> String {
        match self {
            StandbyBudget::Off => "false".into(),
            StandbyBudget::Seconds(s) => format!(
                "coalesce((SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication), 0) > {s}"
            ),
            StandbyBudget::Bytes(b) => format!(
                "coalesce((SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)) \
                 FROM pg_stat_replication), 0) > {b}"
            ),
        }
    }
}

impl StepKind for Backfill {
    fn id(&self) -> String {
        format!("backfill:{}", self.table)
    }
    table_step!(Impact::Batches);
    fn describe(&self) -> String {
        if self.pages {
            format!(
                "backfill {}.{} from {} in batches of pages (ctid ranges: no single integer key)",
                self.table,
                self.column,
                paths_end(&self.path, &self.also)
            )
        } else {
            format!(
                "backfill {}.{} from {} in keyset batches on {}",
                self.table,
                self.column,
                paths_end(&self.path, &self.also),
                self.key
            )
        }
    }
    /// Once the column is NOT NULL no row can lack it; before that the
    /// controller resumes from its cursor and sweeps.
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table)
            .is_some_and(|t| t.column(&self.column).is_some_and(|c| c.not_null))
    }
    fn actions(&self) -> Vec<Action> {
        vec![Action::Backfill {
            step: self.clone(),
            psql: self.psql_script(),
        }]
    }
    /// The values it wrote go with the column ([`super::AddColumn`]'s undo).
    fn undo(&self) -> Undo {
        Undo::Nothing
    }
}
