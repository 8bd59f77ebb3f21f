//! The seed's step "update the application's queries", as a list a team
//! works through: the application's statements that will run on every
//! shard once distributed (no filter on the tenant column), what to add to
//! each (the filter, and where its value comes from: a new parameter or a
//! join), how often each runs (calls per second over a window of
//! `pg_stat_statements`), and its status since it was first listed (still
//! seen, idle, gone, rewritten). Listings are kept in
//! `shardready.fan_out_statements`, so the next one can tell a statement
//! the application stopped sending, or sends rewritten, from one it still
//! sends. `distribute` refuses while such a statement runs at
//! [`MEANINGFUL_CALLS_PER_S`] or more, unless the user accepts it.

use std::collections::{BTreeMap, BTreeSet};

use pg_query::NodeEnum;
use serde::Serialize;
use tokio_postgres::Client;

use super::queries::{self, Walk};
use super::rules::Ctx;
use super::{AnalyzeError, Overrides};
use crate::catalog::{Catalog, QName};
use crate::db::DbError;
use crate::stat_statements::Snapshot;

/// A statement that runs this often (calls per second over the window) or
/// more is the application's hot path: `distribute` refuses while it would
/// fan out, unless accepted.
pub const MEANINGFUL_CALLS_PER_S: f64 = 1.0;

/// What became of a listed statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Status {
    /// Called during the window; or still in its function's body or file.
    StillSeen,
    /// Known to pg_stat_statements, not called during the window, but
    /// called since the last listing (or not listed before).
    Idle,
    /// Listed before and not called since (or no longer in its function).
    Gone,
    /// Not called during the window, while a statement on the same tables
    /// with the tenant filter is: the application's change.
    Rewritten { by: String },
}

impl Status {
    fn label(&self) -> String {
        match self {
            Status::StillSeen => "still seen".into(),
            Status::Idle => "idle".into(),
            Status::Gone => "gone".into(),
            Status::Rewritten { by } => format!("rewritten ({by})"),
        }
    }
}

/// One statement that runs on every shard once distributed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FanOut {
    /// pg_stat_statements' queryid, or `fp:<fingerprint>` for a function's
    /// or a file's statement: what `--allow-multi-shard` takes.
    pub id: String,
    /// `pg_stat_statements`, `function <schema>.<name>` or `<file>:<line>`.
    pub origin: String,
    pub statement: String,
    /// The tenant tables it reads or changes without the filter.
    pub tables: Vec<QName>,
    /// What to add, e.g. `o.store_id = $3 (a new parameter: the tenant's
    /// id)` or `li.store_id = o.store_id (from the join)`.
    pub add: Vec<String>,
    /// Over the window (pg_stat_statements' statements only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_s: Option<f64>,
    #[serde(flatten)]
    pub status: Status,
    /// When it was first listed (`shardready queries`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_listed: Option<String>,
    /// Its whole text (what is recorded, and re-read to find the rewrite).
    #[serde(skip)]
    sql: String,
}

/// What `shardready queries` (and `distribute`'s check) found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Listing {
    pub schema: &'static str,
    /// The window pg_stat_statements' calls were counted over.
    pub window_s: f64,
    /// Where statements were looked for; a note when one gave none.
    pub sources: Vec<String>,
    pub statements: Vec<FanOut>,
    /// Whether this listing was recorded for the next one to compare with.
    pub recorded: bool,
}

impl Listing {
    /// The statements that block `distribute`: still seen at
    /// [`MEANINGFUL_CALLS_PER_S`] or more and not in `allow` (ids, or
    /// `all`).
    pub fn blocking(&self, allow: &[String]) -> Vec<&FanOut> {
        if allow.iter().any(|a| a == "all") {
            return Vec::new();
        }
        self.statements
            .iter()
            .filter(|f| {
                f.status == Status::StillSeen
                    && f.calls_per_s.unwrap_or(0.0) >= MEANINGFUL_CALLS_PER_S
                    && !allow.contains(&f.id)
            })
            .collect()
    }

    /// The listing for people: one block per statement.
    pub fn text(&self) -> String {
        let mut out = format!(
            "Statements that will run on every shard once distributed (sources: {}):\n",
            self.sources.join("; ")
        );
        if self.statements.is_empty() {
            out.push_str(if self.window_s > 0.0 {
                "  none: every known statement filters on the tenant column\n"
            } else {
                "  none found (without pg_stat_statements only the functions and --queries \
                 files were read)\n"
            });
            return out;
        }
        for f in &self.statements {
            let rate = f
                .calls_per_s
                .map(|r| format!(", {r:.1} calls/s"))
                .unwrap_or_default();
            out.push_str(&format!(
                "\n  {}  [{}{rate}]  {}\n    {}\n",
                f.id,
                f.status.label(),
                f.origin,
                f.statement
            ));
            for a in &f.add {
                out.push_str(&format!("    add: {a}\n"));
            }
        }
        let hot = self.blocking(&[]).len();
        out.push_str(&format!(
            "\n{} statements; {hot} still run at {MEANINGFUL_CALLS_PER_S} call/s or more over \
             the last {:.0} s{}\n",
            self.statements.len(),
            self.window_s,
            if hot > 0 {
                ": `shardready distribute` refuses while they do (--allow-multi-shard ID|all \
                 accepts them: they then run on every shard)"
            } else {
                ""
            }
        ));
        if self.recorded {
            out.push_str(
                "Recorded in shardready.fan_out_statements: after the application's change, run \
                 `shardready queries` again to see each one rewritten or gone.\n",
            );
        }
        out
    }
}

/// What to add to `sql` (one or more statements) so that every tenant
/// table it names is filtered on its tenant column: one line per table
/// (None when it does not parse; empty when nothing is missing).
pub(crate) fn additions(ctx: &Ctx, sql: &str) -> Option<Vec<(QName, String)>> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let next_param = next_parameter(sql);
    let mut out = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let Some(n) = raw.stmt.as_deref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let mut w = Walk::default();
        w.stmt(n);
        for scope in &w.scopes {
            let tenant: Vec<_> = scope
                .rels
                .iter()
                .filter_map(|r| queries::resolve_in(ctx.cat, r).map(|t| (r, t)))
                .filter(|(_, t)| {
                    ctx.class_of(ctx.cat.top_parent(t))
                        .is_some_and(|c| c.is_tenant())
                })
                .collect();
            // The value comes from a table of the level already filtered,
            // else from the first one given a parameter.
            let mut source = tenant
                .iter()
                .find(|(r, t)| scope.filters_on(r, t, ctx.tenant_column(t)))
                .map(|(r, t)| format!("{}.{}", r.shown(), ctx.tenant_column(t)));
            for (r, t) in &tenant {
                let col = ctx.tenant_column(t);
                if scope.filters_on(r, t, col) {
                    continue;
                }
                let line = match &source {
                    Some(s) => format!("{}.{col} = {s} (from the join)", r.shown()),
                    None => {
                        source = Some(format!("{}.{col}", r.shown()));
                        match next_param {
                            Some(p) => format!(
                                "{}.{col} = ${p} (a new parameter: the tenant's id)",
                                r.shown()
                            ),
                            None => format!("{}.{col} = <the tenant's id>", r.shown()),
                        }
                    }
                };
                out.push((ctx.cat.top_parent(t).clone(), line));
            }
        }
    }
    // INSERT … VALUES is not a read; the same table twice once.
    let mut seen = BTreeSet::new();
    out.retain(|x| seen.insert(x.clone()));
    Some(out)
}

/// The number a new `$n` parameter takes (None when the statement has
/// none: a function's statement, whose values are variables).
fn next_parameter(sql: &str) -> Option<usize> {
    let mut max = None;
    let b = sql.as_bytes();
    for (i, _) in sql.match_indices('$') {
        let digits: String = b[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .map(|&c| c as char)
            .collect();
        if let Ok(n) = digits.parse::<usize>() {
            max = Some(max.unwrap_or(0).max(n));
        }
    }
    max.map(|m| m + 1)
}

/// A statement's kind and the tenant tables it names with the columns it
/// looks each up by: what a rewrite keeps.
fn shape(ctx: &Ctx, sql: &str) -> Option<(String, BTreeMap<QName, BTreeSet<String>>)> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let kind = match parsed
        .protobuf
        .stmts
        .first()?
        .stmt
        .as_deref()?
        .node
        .as_ref()?
    {
        NodeEnum::SelectStmt(_) => "select",
        NodeEnum::UpdateStmt(_) => "update",
        NodeEnum::DeleteStmt(_) => "delete",
        NodeEnum::InsertStmt(_) => "insert",
        _ => return None,
    };
    let mut tables: BTreeMap<QName, BTreeSet<String>> = parsed
        .tables()
        .iter()
        .filter_map(|name| {
            let t = super::queries::resolve_name(ctx.cat, name)?;
            let top = ctx.cat.top_parent(t);
            ctx.class_of(top)
                .is_some_and(|c| c.is_tenant())
                .then(|| (top.clone(), BTreeSet::new()))
        })
        .collect();
    for l in super::access::lookups(ctx.cat, sql).unwrap_or_default() {
        if let Some(cols) = tables.get_mut(&l.table) {
            cols.extend(l.columns);
        }
    }
    Some((kind.to_string(), tables))
}

/// Whether `new` is `old` with the tenant filter: the same kind on the same
/// tenant tables, looking each up by what `old` did and its tenant column.
fn rewrites(ctx: &Ctx, old: &str, new: &str) -> bool {
    let (Some((k0, t0)), Some((k1, t1))) = (shape(ctx, old), shape(ctx, new)) else {
        return false;
    };
    k0 == k1
        && !t0.is_empty()
        && t0.keys().eq(t1.keys())
        && t0.iter().all(|(table, cols)| {
            let tenant = ctx
                .cat
                .table(table)
                .map(|t| ctx.tenant_column(t).to_string())
                .unwrap_or_default();
            let now = &t1[table];
            now.contains(&tenant) && cols.iter().all(|c| c == &tenant || now.contains(c))
        })
}

fn fingerprint(sql: &str) -> String {
    match pg_query::fingerprint(sql, 0, pg_query::FingerprintOptions::FULL_RELNAME) {
        Ok(f) => format!("fp:{}", f.hex),
        Err(_) => format!("fp:{:x}", sql.len()),
    }
}

/// A statement found now, before its status is known.
struct Found {
    id: String,
    origin: String,
    sql: String,
    add: Vec<(QName, String)>,
    calls_per_s: Option<f64>,
    /// pg_stat_statements' calls now (to compare with the next listing).
    calls: Option<i64>,
}

/// An earlier listing's row.
struct Recorded {
    origin: String,
    sql: String,
    first_listed: String,
    calls: Option<i64>,
}

/// Lists the statements that will fan out. `window` is a pair of
/// pg_stat_statements snapshots to count calls between (see
/// [`crate::stat_statements::window`]), or why there is none. `record` keeps the
/// listing in `shardready.fan_out_statements` for the next one.
pub async fn list(
    client: &Client,
    cat: &Catalog,
    overrides: &Overrides,
    window: &Result<(Snapshot, Snapshot), crate::stat_statements::Unavailable>,
    record: bool,
) -> Result<Listing, AnalyzeError> {
    let (tenant, classes, _) = super::analyze_catalog(cat, overrides)?;
    let ctx = Ctx {
        cat,
        tenant: &tenant,
        classes: &classes,
        overrides,
        reading_functions: Default::default(),
    };
    let mut sources = Vec::new();
    let mut found = Vec::new();
    let (first, now) = match window {
        Ok((a, b)) => (Some(a), Some(b)),
        Err(e) => {
            sources.push(format!("pg_stat_statements: {e}"));
            (None, None)
        }
    };
    let window_s = match (first, now) {
        (Some(a), Some(b)) => b.at.duration_since(a.at).as_secs_f64(),
        _ => 0.0,
    };
    // Every current statement with the filter it has: candidates for a
    // rewrite of a statement that is gone.
    let mut filtered: Vec<(String, String)> = Vec::new();
    if let (Some(a), Some(b)) = (first, now) {
        let mut n = 0;
        for (id, c) in &b.rows {
            if !super::access::plannable(&c.query) {
                continue;
            }
            let Some(add) = additions(&ctx, &c.query) else {
                continue;
            };
            let calls = a.calls_until(b, *id);
            if add.is_empty() {
                if calls > 0 {
                    filtered.push((id.to_string(), c.query.clone()));
                }
                continue;
            }
            n += 1;
            found.push(Found {
                id: id.to_string(),
                origin: "pg_stat_statements".into(),
                sql: c.query.clone(),
                add,
                calls_per_s: Some(calls as f64 / window_s.max(1e-3)),
                calls: Some(c.calls),
            });
        }
        sources.push(format!(
            "pg_stat_statements over {window_s:.0} s: {n} of {} statements",
            b.rows.len()
        ));
    }
    let mut n = 0;
    for f in cat.functions.iter().filter(|f| f.schema != "shardready") {
        for text in queries::statements_of(f) {
            let Some(add) = additions(&ctx, &text) else {
                continue;
            };
            let origin = format!("function {}.{}", f.schema, f.name);
            if add.is_empty() {
                filtered.push((origin, text));
                continue;
            }
            n += 1;
            found.push(Found {
                id: fingerprint(&text),
                origin,
                sql: text,
                add,
                calls_per_s: None,
                calls: None,
            });
        }
    }
    sources.push(format!("functions: {n}"));
    for path in &overrides.queries {
        match super::access::file_statements(path) {
            Ok(pieces) => {
                let mut n = 0;
                for (line, sql) in pieces {
                    let origin = format!("{}:{line}", path.display());
                    match additions(&ctx, &sql) {
                        Some(add) if !add.is_empty() => {
                            n += 1;
                            found.push(Found {
                                id: fingerprint(&sql),
                                origin,
                                sql,
                                add,
                                calls_per_s: None,
                                calls: None,
                            });
                        }
                        Some(_) => filtered.push((origin, sql)),
                        None => {}
                    }
                }
                sources.push(format!("{}: {n}", path.display()));
            }
            Err(e) => sources.push(format!("{}: {e}", path.display())),
        }
    }
    let mut seen = BTreeSet::new();
    found.retain(|f| seen.insert(f.id.clone()));
    let earlier = read_recorded(client).await?;
    let mut statements: Vec<FanOut> = found
        .iter()
        .map(|f| {
            let before = earlier.get(&f.id);
            let called_since = match (before.and_then(|r| r.calls), f.calls) {
                (Some(then), Some(now)) => now != then,
                _ => false,
            };
            let status = match f.calls_per_s {
                None => Status::StillSeen,
                Some(r) if r > 0.0 => Status::StillSeen,
                Some(_) if before.is_some() && !called_since => Status::Gone,
                Some(_) => Status::Idle,
            };
            FanOut {
                id: f.id.clone(),
                origin: f.origin.clone(),
                statement: queries::quote(&f.sql),
                tables: f
                    .add
                    .iter()
                    .map(|(t, _)| t.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                add: f.add.iter().map(|(_, a)| a.clone()).collect(),
                calls_per_s: f.calls_per_s,
                status,
                first_listed: before.map(|r| r.first_listed.clone()),
                sql: f.sql.clone(),
            }
        })
        .collect();
    // Listed before and not found now: gone (judged only by the sources
    // read this time: a file not named again, or pg_stat_statements not
    // readable now, says nothing of its statements).
    let read_now = |origin: &str| {
        if origin == "pg_stat_statements" {
            now.is_some()
        } else if origin.starts_with("function ") {
            true
        } else {
            overrides
                .queries
                .iter()
                .any(|p| origin.starts_with(&format!("{}:", p.display())))
        }
    };
    for (id, r) in &earlier {
        if seen.contains(id) || !read_now(&r.origin) {
            continue;
        }
        statements.push(FanOut {
            id: id.clone(),
            origin: r.origin.clone(),
            statement: queries::quote(&r.sql),
            tables: Vec::new(),
            add: Vec::new(),
            calls_per_s: None,
            status: Status::Gone,
            first_listed: Some(r.first_listed.clone()),
            sql: r.sql.clone(),
        });
    }
    // Not called in the window while a rewrite of it is: rewritten.
    for s in statements
        .iter_mut()
        .filter(|s| matches!(s.status, Status::Gone | Status::Idle))
    {
        if let Some((by, _)) = filtered.iter().find(|(_, new)| rewrites(&ctx, &s.sql, new)) {
            s.status = Status::Rewritten { by: by.clone() };
        }
    }
    statements.sort_by(|a, b| {
        b.calls_per_s
            .unwrap_or(-1.0)
            .total_cmp(&a.calls_per_s.unwrap_or(-1.0))
            .then(a.id.cmp(&b.id))
    });
    // Not recorded (a standby, a role without CREATE) is said, not an
    // error: the listing stands.
    let recorded = match record {
        true => match write_recorded(client, &found).await {
            Ok(()) => true,
            Err(e) => {
                sources.push(format!("not recorded for the next listing: {e}"));
                false
            }
        },
        false => false,
    };
    Ok(Listing {
        schema: "shardready.queries/v1",
        window_s,
        sources,
        statements,
        recorded,
    })
}

/// The table listings are kept in.
const TABLE: &str = "shardready.fan_out_statements";

async fn read_recorded(client: &Client) -> Result<BTreeMap<String, Recorded>, DbError> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&TABLE])
        .await
        .map_err(DbError::ctx("cannot look for the earlier listings"))?
        .get(0);
    if !exists {
        return Ok(BTreeMap::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT id, origin, sql, to_char(first_listed, 'YYYY-MM-DD HH24:MI:SS TZ'), calls \
                 FROM {TABLE}"
            ),
            &[],
        )
        .await
        .map_err(DbError::ctx("cannot read the earlier listings"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Recorded {
                    origin: r.get(1),
                    sql: r.get(2),
                    first_listed: r.get(3),
                    calls: r.get(4),
                },
            )
        })
        .collect())
}

async fn write_recorded(client: &Client, found: &[Found]) -> Result<(), DbError> {
    let ctx = DbError::ctx("cannot record the listing");
    client
        .execute("CREATE SCHEMA IF NOT EXISTS shardready", &[])
        .await
        .map_err(&ctx)?;
    client
        .execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (id text PRIMARY KEY, origin text NOT NULL, \
                 sql text NOT NULL, first_listed timestamptz NOT NULL DEFAULT now(), \
                 last_listed timestamptz NOT NULL DEFAULT now(), calls bigint)"
            ),
            &[],
        )
        .await
        .map_err(&ctx)?;
    for f in found {
        client
            .execute(
                &format!(
                    "INSERT INTO {TABLE} (id, origin, sql, calls) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET last_listed = now(), calls = EXCLUDED.calls"
                ),
                &[&f.id, &f.origin, &f.sql, &f.calls],
            )
            .await
            .map_err(&ctx)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    fn with_ctx<T>(f: impl FnOnce(&Ctx) -> T) -> T {
        let cat = tailspin();
        let overrides = Overrides::default();
        let (tenant, classes, _) = crate::analyze::analyze_catalog(&cat, &overrides).unwrap();
        let ctx = Ctx {
            cat: &cat,
            tenant: &tenant,
            classes: &classes,
            overrides: &overrides,
            reading_functions: Default::default(),
        };
        f(&ctx)
    }

    fn adds(sql: &str) -> Vec<String> {
        with_ctx(|ctx| {
            additions(ctx, sql)
                .unwrap()
                .into_iter()
                .map(|(_, a)| a)
                .collect()
        })
    }

    #[test]
    fn the_filter_to_add_and_where_its_value_comes_from() {
        assert_eq!(
            adds("UPDATE orders SET status = $1 WHERE order_id = $2"),
            ["orders.store_id = $3 (a new parameter: the tenant's id)"]
        );
        assert!(adds("SELECT * FROM orders WHERE store_id = $1 AND order_id = $2").is_empty());
        // The join gives the second table its value.
        assert_eq!(
            adds(
                "SELECT li.quantity FROM orders o JOIN line_items li ON li.order_id = o.order_id \
                 WHERE o.store_id = $1 AND o.order_id = $2"
            ),
            ["li.store_id = o.store_id (from the join)"]
        );
        assert_eq!(
            adds(
                "SELECT li.quantity FROM orders o JOIN line_items li ON li.order_id = o.order_id \
                 WHERE o.order_id = $1"
            ),
            [
                "o.store_id = $2 (a new parameter: the tenant's id)",
                "li.store_id = o.store_id (from the join)"
            ]
        );
        // A function's statement: its values are variables.
        assert_eq!(
            adds("SELECT price FROM products WHERE product_id = prod_id"),
            ["products.store_id = <the tenant's id>"]
        );
        // Reference and local tables need nothing.
        assert!(adds("INSERT INTO orders (order_id, store_id) VALUES ($1, $2)").is_empty());
    }

    #[test]
    fn a_rewrite_is_the_same_statement_with_the_tenant_filter() {
        with_ctx(|ctx| {
            let old = "UPDATE orders SET status = $1 WHERE order_id = $2";
            assert!(rewrites(
                ctx,
                old,
                "UPDATE orders SET status = $1 WHERE store_id = $2 AND order_id = $3"
            ));
            // Not the same kind, tables or lookups.
            assert!(!rewrites(
                ctx,
                old,
                "SELECT * FROM orders WHERE store_id = $1 AND order_id = $2"
            ));
            assert!(!rewrites(
                ctx,
                old,
                "UPDATE orders SET status = $1 WHERE store_id = $2"
            ));
            assert!(!rewrites(
                ctx,
                old,
                "UPDATE line_items SET quantity = $1 WHERE store_id = $2 AND order_id = $3"
            ));
        })
    }

    fn fan_out(id: &str, rate: Option<f64>, status: Status) -> FanOut {
        FanOut {
            id: id.into(),
            origin: "pg_stat_statements".into(),
            statement: "UPDATE orders SET status = $1 WHERE order_id = $2".into(),
            tables: vec![QName::new("public", "orders")],
            add: vec!["orders.store_id = $3".into()],
            calls_per_s: rate,
            status,
            first_listed: None,
            sql: String::new(),
        }
    }

    #[test]
    fn distribute_is_blocked_by_hot_statements_unless_accepted() {
        let l = Listing {
            schema: "shardready.queries/v1",
            window_s: 5.0,
            sources: vec!["pg_stat_statements over 5 s: 3 of 9 statements".into()],
            statements: vec![
                fan_out("11", Some(20.0), Status::StillSeen),
                fan_out("12", Some(0.2), Status::StillSeen),
                fan_out("13", None, Status::StillSeen),
                fan_out("14", Some(0.0), Status::Gone),
            ],
            recorded: true,
        };
        let ids = |allow: &[String]| -> Vec<String> {
            l.blocking(allow).iter().map(|f| f.id.clone()).collect()
        };
        assert_eq!(ids(&[]), ["11"]);
        assert!(ids(&["11".into()]).is_empty());
        assert!(ids(&["all".into()]).is_empty());
        let text = l.text();
        assert!(text.contains("11  [still seen, 20.0 calls/s]"), "{text}");
        assert!(text.contains("add: orders.store_id = $3"), "{text}");
        assert!(text.contains("1 still run at 1 call/s or more"), "{text}");
        assert_eq!(next_parameter("SELECT $1, $12, '$x'"), Some(13));
        assert_eq!(next_parameter("SELECT 1"), None);
    }
}
