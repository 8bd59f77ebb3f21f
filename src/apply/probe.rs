//! Measured, not assumed: right before a key swap, the planner's cost of
//! each known statement of the application that looks the table up (read
//! again then, so a statement that appeared during apply counts), and
//! whether it will lose its index: it looks the table up by the old key's
//! first column without the tenant column, and no index left after the
//! swap (the new key, any other) leads with that column. Such a statement
//! gets its access path back before the swap: a plain index on the old
//! key's columns, built concurrently, kept until the user drops it (once
//! the statement filters by the tenant). Right after the swap, the cost
//! again: a statement costlier than [`MARGIN`] times gets the same index
//! then (what the prediction could not see), and apply stops after that
//! step. The cost is that of the generic plan (`plan_cache_mode =
//! force_generic_plan`, parameters NULL), the plan a prepared statement
//! settles on; a function's statement cannot be planned alone (its
//! variables are not parameters), so it counts in the prediction by what it
//! looks the table up by, and is not costed. Where the application runs
//! while apply does, its statements are also timed by pg_stat_statements
//! in a short window before the swap and after it: a statement several
//! times slower after (in two windows running, so a busy second is not
//! taken for a lost index) is handled like a costlier one. That catches
//! what no plan shows: a function's dynamic SQL, a custom plan.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

use crate::analyze::access;
use crate::catalog::{Catalog, QName};
use crate::plan::{object_name, SwapKey};
use crate::sql::{ident, qualified};
use crate::stat_statements::{self, Rate};

/// A statement whose generic plan costs more than this many times its
/// cost before the swap has lost its access path.
pub const MARGIN: f64 = 1.5;

/// The name the probe's prepared statement has on its own connection.
const PROBE: &str = "shardready_probe";

/// The window in which the application's statements are timed, before the
/// swap and after it...
const TIMED_WINDOW: Duration = Duration::from_secs(1);
/// ...after a first look this long that tells whether any runs at all (no
/// longer wait when the application is idle)...
const FIRST_LOOK: Duration = Duration::from_millis(200);
/// ...and, after the swap, once this long has passed (statements that
/// queued behind the swap's lock end first: their wait is not the plan's).
const SETTLE: Duration = Duration::from_millis(300);
/// A statement's mean time is judged over at least this many calls in the
/// window before the swap...
const MIN_CALLS: i64 = 20;
/// ...and this many in a window after it.
const MIN_CALLS_AFTER: i64 = 3;

/// An access path the probe put back, before a swap or after it.
#[derive(Debug, Clone, Serialize)]
pub struct KeptPath {
    pub table: QName,
    pub index: String,
    pub columns: Vec<String>,
    /// `origin: statement: cost before → after the swap → with the index`.
    pub statements: Vec<String>,
    /// What drops it once the statements filter by the tenant.
    pub drop_sql: String,
    /// `before the swap` (predicted) or `after the swap` (measured).
    pub built: &'static str,
}

impl KeptPath {
    /// One sentence for people: the index, where, when it was built, why.
    pub fn headline(&self) -> String {
        format!(
            "{} on {} ({}), built {}, because these statements lose their index with the swap",
            self.index,
            self.table,
            self.columns.join(", "),
            self.built
        )
    }
}

/// A statement watched across one swap.
struct Watched {
    origin: String,
    statement: String,
    sql: String,
    /// The columns it looks the table up by, at each level.
    lookups: Vec<std::collections::BTreeSet<String>>,
    /// Its generic plan's cost before the swap; None for a statement that
    /// cannot be planned alone (a function's, whose variables are not
    /// parameters): judged by what it looks the table up by only.
    before: Option<f64>,
}

/// The watch over one swap: the statements looking its table up, with
/// their cost before it.
pub(crate) struct Probe {
    client: Client,
    watched: Vec<Watched>,
    /// The swap watched.
    swap: SwapKey,
    /// The old key's columns, in their order, and the tenant column the
    /// swap adds (the root's key on the root).
    old: Vec<String>,
    tenant: String,
    /// The application's statements timed in a window right before the
    /// swap (those called at least [`MIN_CALLS`] times); empty when none
    /// ran or pg_stat_statements cannot be read.
    timed: Vec<Rate>,
}

impl Probe {
    /// Reads the application's statements (pg_stat_statements, `files`)
    /// and costs those that look `swap`'s table up; None when there is none
    /// or the probe cannot connect.
    pub(crate) async fn before(
        target: &crate::conn::Target,
        cat: &Catalog,
        files: &[PathBuf],
        swap: &SwapKey,
    ) -> Option<Probe> {
        // Only a plain key or unique index gets an index back (an
        // expression's or a partitioned table's would need its own).
        if !swap.partitions.is_empty() || swap.definition.is_some() {
            return None;
        }
        let old = old_columns(cat, swap)?;
        let tenant = swap.columns.iter().find(|c| !old.contains(c))?.clone();
        let client = target
            .with_application_name("shardready-probe")
            .connect()
            .await
            .ok()?;
        // Planning takes a lock on the table: never wait long for it.
        client
            .simple_query("SET lock_timeout = '100ms' /* shardready */")
            .await
            .ok()?;
        client
            .simple_query("SET statement_timeout = '10s' /* shardready */")
            .await
            .ok()?;
        let statements = access::read(cat, &client, files).await;
        let mut watched = Vec::new();
        for k in statements.statements {
            if !k.lookups.iter().any(|l| l.table == swap.table) {
                continue;
            }
            let before = match k.sql.is_empty() {
                true => None,
                false => match generic_cost(&client, &k.sql).await {
                    Some(c) => Some(c),
                    None => continue,
                },
            };
            watched.push(Watched {
                lookups: k
                    .lookups
                    .iter()
                    .filter(|l| l.table == swap.table)
                    .map(|l| l.columns.clone())
                    .collect(),
                origin: k.origin,
                statement: k.statement,
                sql: k.sql,
                before,
            });
        }
        // A key-first swap keeps every lookup the old key served: nothing
        // to time.
        let timed = match swap.columns.starts_with(&old) {
            true => Vec::new(),
            false => timed(&client, true).await,
        };
        (!watched.is_empty() || !timed.is_empty()).then_some(Probe {
            client,
            watched,
            swap: swap.clone(),
            old,
            tenant,
            timed,
        })
    }

    /// The statements costlier than [`MARGIN`] times since [`Probe::before`];
    /// empty when none.
    async fn regressed(&self) -> Vec<Lost> {
        let mut out = Vec::new();
        for w in &self.watched {
            let Some(before) = w.before else { continue };
            if let Some(after) = generic_cost(&self.client, &w.sql).await {
                if after > before * MARGIN + 1.0 {
                    out.push(Lost {
                        origin: w.origin.clone(),
                        statement: w.statement.clone(),
                        evidence: Evidence::Cost { before, after },
                    });
                }
            }
        }
        out
    }

    /// The statements timed before the swap that are slower after it in
    /// two windows running (see [`slower`]); empty when none.
    async fn slowed(&self) -> Vec<Lost> {
        if self.timed.is_empty() {
            return Vec::new();
        }
        tokio::time::sleep(SETTLE).await;
        let first = slower(&self.timed, timed(&self.client, false).await);
        if first.is_empty() {
            return first;
        }
        let again = slower(&self.timed, timed(&self.client, false).await);
        first
            .into_iter()
            .filter(|l| again.iter().any(|a| a.origin == l.origin))
            .collect()
    }

    /// After the swap: when a statement got costlier or slower, the index
    /// that gives its access path back (the old key's columns, in their
    /// order), to build concurrently; None when every statement kept its
    /// cost and its time.
    pub(crate) async fn after(&self) -> Option<Lookback> {
        let mut lost = self.regressed().await;
        for l in self.slowed().await {
            if !lost.iter().any(|c| c.origin == l.origin) {
                lost.push(l);
            }
        }
        self.lookback(lost, false)
    }

    /// Before the swap: the statements that will lose their index with
    /// it (they look the table up by the old key's first column without
    /// the tenant column, and no index left after the swap leads with
    /// that column), and the index to build first, so the application
    /// never runs without it; None when none will.
    pub(crate) fn predict(&self, cat: &Catalog) -> Option<Lookback> {
        let first = self.old.first()?;
        let t = cat.table(&self.swap.table)?;
        if self.swap.columns.first() == Some(first) || t.index_leads.contains(first) {
            return None;
        }
        let losing = self
            .watched
            .iter()
            .filter(|w| {
                w.lookups
                    .iter()
                    .any(|cols| cols.contains(first) && !cols.contains(&self.tenant))
            })
            .map(|w| Lost {
                origin: w.origin.clone(),
                statement: w.statement.clone(),
                evidence: Evidence::LooksUp { before: w.before },
            })
            .collect();
        self.lookback(losing, true)
    }

    /// The index that gives `regressed` statements their access path back
    /// (the old key's columns, in their order); None when none regressed.
    fn lookback(&self, regressed: Vec<Lost>, predicted: bool) -> Option<Lookback> {
        if regressed.is_empty() {
            return None;
        }
        let (swap, columns) = (&self.swap, self.old.clone());
        let index = object_name(
            &format!("{}_{}", swap.table.name, columns.join("_")),
            "_lookup",
        );
        Some(Lookback {
            create_sql: format!(
                "CREATE INDEX CONCURRENTLY {} ON {} ({});",
                ident(&index),
                swap.table.sql(),
                columns
                    .iter()
                    .map(|c| ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            drop_sql: format!(
                "DROP INDEX CONCURRENTLY {};",
                qualified(&swap.table.schema, &index)
            ),
            table: swap.table.clone(),
            index,
            columns,
            statements: regressed,
            predicted,
        })
    }
}

/// The columns of the key `swap` replaces, as the catalog has them before
/// the swap (None once it is gone, or for an expression).
fn old_columns(cat: &Catalog, swap: &SwapKey) -> Option<Vec<String>> {
    use crate::catalog::KeyKind;
    use crate::plan::KeyTarget;
    let t = cat.table(&swap.table)?;
    match &swap.target {
        KeyTarget::Primary { .. } => t.primary_key().map(|k| k.columns.clone()),
        KeyTarget::Unique { constraint } => t
            .keys
            .iter()
            .find(|k| &k.name == constraint && k.kind == KeyKind::Unique)
            .map(|k| k.columns.clone()),
        KeyTarget::Index { name } => t
            .unique_indexes
            .iter()
            .find(|ix| &ix.name == name)
            .and_then(|ix| ix.columns.iter().cloned().collect()),
    }
    .filter(|old| !old.is_empty() && old.len() + 1 == swap.columns.len())
}

impl Probe {
    /// The statements' cost (or time) once the index is built: the kept
    /// path's record.
    pub(crate) async fn kept(&self, lookback: Lookback) -> KeptPath {
        let timed_now = match lookback.statements.iter().any(|l| l.evidence.is_timed()) {
            true => timed(&self.client, false).await,
            false => Vec::new(),
        };
        let mut statements = Vec::new();
        for l in &lookback.statements {
            let (origin, statement) = (&l.origin, &l.statement);
            let sql = self
                .watched
                .iter()
                .find(|w| &w.origin == origin)
                .map(|w| w.sql.as_str())
                .unwrap_or_default();
            let cost_now = || async { generic_cost(&self.client, sql).await.unwrap_or(f64::NAN) };
            statements.push(match l.evidence {
                Evidence::Cost { before, after } => format!(
                    "{origin}: {statement}: cost {before:.0} before the swap, {after:.0} after it, \
                     {:.0} with the index",
                    cost_now().await
                ),
                Evidence::LooksUp { before: Some(before) } => format!(
                    "{origin}: {statement}: cost {before:.0} before the swap, its index gone \
                     after it, {:.0} with the index",
                    cost_now().await
                ),
                Evidence::LooksUp { before: None } => format!(
                    "{origin}: {statement}: looks the table up by {} alone (not costed: a \
                     function's statement), its index gone after the swap",
                    lookback.columns.join(", ")
                ),
                Evidence::Mean {
                    queryid,
                    before_ms,
                    after_ms,
                } => format!(
                    "{origin}: {statement}: mean {before_ms:.2} ms before the swap, {after_ms:.2} ms \
                     after it, {} with the index (pg_stat_statements)",
                    timed_now
                        .iter()
                        .find(|r| r.queryid == queryid)
                        .map_or("not called enough to time".to_string(), |r| format!(
                            "{:.2} ms",
                            r.mean_ms
                        ))
                ),
            });
        }
        KeptPath {
            table: lookback.table,
            index: lookback.index,
            columns: lookback.columns,
            statements,
            drop_sql: lookback.drop_sql,
            built: if lookback.predicted {
                "before the swap"
            } else {
                "after the swap"
            },
        }
    }
}

impl Lookback {
    /// The statements concerned, `origin: statement`.
    pub(crate) fn named(&self) -> Vec<String> {
        self.statements
            .iter()
            .map(|l| format!("{}: {}", l.origin, l.statement))
            .collect()
    }
}

/// A statement that loses its access path with a swap, and what showed it.
struct Lost {
    origin: String,
    statement: String,
    evidence: Evidence,
}

/// What showed that a statement loses its access path.
enum Evidence {
    /// Predicted: it looks the table up by the old key's first column
    /// alone; its generic plan's cost before (None: a function's).
    LooksUp { before: Option<f64> },
    /// Measured: its generic plan's cost before and after the swap.
    Cost { before: f64, after: f64 },
    /// Measured: its mean time in pg_stat_statements, a window before the
    /// swap and after it.
    Mean {
        queryid: i64,
        before_ms: f64,
        after_ms: f64,
    },
}

impl Evidence {
    fn is_timed(&self) -> bool {
        matches!(self, Evidence::Mean { .. })
    }
}

/// The application's statements called in a window of [`TIMED_WINDOW`];
/// with `before` (the window before the swap), only those called at least
/// [`MIN_CALLS`] times, and none after [`FIRST_LOOK`] when nothing of the
/// application ran by then; after the swap, those called at least
/// [`MIN_CALLS_AFTER`] times (a lookup that lost its index may run a few
/// times a second only). Empty when pg_stat_statements cannot be read.
async fn timed(client: &Client, before: bool) -> Vec<Rate> {
    let Ok(first) = stat_statements::snapshot(client).await else {
        return Vec::new();
    };
    if before {
        match stat_statements::window(client, Some(first.clone()), FIRST_LOOK).await {
            Ok((_, peek)) if !first.until(&peek).is_empty() => {}
            _ => return Vec::new(),
        }
    }
    let least = if before { MIN_CALLS } else { MIN_CALLS_AFTER };
    match stat_statements::window(client, Some(first), TIMED_WINDOW).await {
        Ok((a, b)) => a
            .until(&b)
            .into_iter()
            .filter(|r| r.calls >= least)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The statements of `after` slower than in `before` as distribute calls
/// a statement slower ([`stat_statements::Comparison`]: a mean above
/// [`stat_statements::SLOWER_FACTOR`] times its mean before, plus 1 ms) —
/// unless the others slowed about as much: then the machine is busier,
/// and no index is to blame.
fn slower(before: &[Rate], after: Vec<Rate>) -> Vec<Lost> {
    let changes = stat_statements::Comparison::of(before, &after, usize::MAX).statements;
    let ratio = |c: &stat_statements::StatementChange| c.mean_ms_after / c.mean_ms_before;
    let judged: Vec<_> = changes
        .iter()
        .filter(|c| c.mean_ms_before > 0.0 && c.mean_ms_before.is_finite())
        .collect();
    judged
        .iter()
        .filter(|c| c.slower)
        .filter(|c| {
            let mut others: Vec<f64> = judged
                .iter()
                .filter(|o| o.queryid != c.queryid)
                .map(|o| ratio(o))
                .collect();
            others.sort_by(f64::total_cmp);
            // The others' median slowdown, when there are others.
            others
                .get(others.len() / 2)
                .is_none_or(|&median| median * 2.0 < ratio(c))
        })
        .map(|c| Lost {
            origin: format!("pg_stat_statements:{}", c.queryid),
            statement: c.statement.clone(),
            evidence: Evidence::Mean {
                queryid: c.queryid,
                before_ms: c.mean_ms_before,
                after_ms: c.mean_ms_after,
            },
        })
        .collect()
}

/// The index a swap's lost access path needs.
pub(crate) struct Lookback {
    pub(crate) table: QName,
    pub(crate) index: String,
    pub(crate) columns: Vec<String>,
    pub(crate) create_sql: String,
    pub(crate) drop_sql: String,
    statements: Vec<Lost>,
    predicted: bool,
}

/// The total cost of `sql`'s generic plan (its parameters NULL); None when
/// it cannot be prepared (a utility statement, a parameter whose type
/// cannot be inferred).
async fn generic_cost(client: &Client, sql: &str) -> Option<f64> {
    // One SELECT, INSERT, UPDATE or DELETE: prepared and explained, never
    // run.
    if !access::plannable(sql) {
        return None;
    }
    client
        .simple_query(&format!("PREPARE /* shardready */ {PROBE} AS {sql}"))
        .await
        .ok()?;
    let n: i32 = client
        .query_one(
            "SELECT /* shardready */ coalesce(cardinality(parameter_types), 0) \
             FROM pg_prepared_statements WHERE name = $1",
            &[&PROBE],
        )
        .await
        .ok()?
        .get(0);
    let args = vec!["NULL"; n.max(0) as usize].join(", ");
    let explain = if n > 0 {
        format!("EXPLAIN /* shardready */ (FORMAT JSON) EXECUTE {PROBE}({args})")
    } else {
        format!("EXPLAIN /* shardready */ (FORMAT JSON) EXECUTE {PROBE}")
    };
    let cost = async {
        client
            .simple_query("SET /* shardready */ plan_cache_mode = force_generic_plan")
            .await
            .ok()?;
        let row = client.query_one(&explain, &[]).await.ok()?;
        let v: serde_json::Value = row.get(0);
        v[0]["Plan"]["Total Cost"].as_f64()
    }
    .await;
    let _ = client
        .simple_query("RESET /* shardready */ plan_cache_mode")
        .await;
    let _ = client
        .simple_query(&format!("DEALLOCATE /* shardready */ {PROBE}"))
        .await;
    cost
}
