//! Tenant skew: how the rows spread over the tenants, what that means for
//! Citus. Counts rows per tenant (`GROUP BY` the tenant column) in every
//! tenant table except the root (one row per tenant there): directly where
//! the table has the column, through the derivation joins where it does
//! not. Sums the counts per tenant across the tables, reports the top
//! [`TOP`] tenants and their share, notes a hot tenant (`hot-tenant`: an
//! `isolate_tenant_to_new_shard` candidate) and suggests a shard count
//! (`shard-count`, see [`suggest_shards`]).
//!
//! Bounded like the data checks: exact when the table's estimate
//! (`reltuples`) is at most [`SAMPLE_ROWS`] or with `--full`, else a
//! repeatable `TABLESAMPLE SYSTEM` of about that many rows, whose counts
//! are scaled to the estimate; every count runs under a `statement_timeout`.

use crate::analyze::rules::id::RuleId;
use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use tokio_postgres::Client;

use super::data::{self, choose_scan, Bounds, Scan, MARKER};
use super::rules::Ctx;
use super::tenant::Class;
use super::{AnalyzeError, Finding, Severity};
use crate::catalog::{self, QName, TableKind};
use crate::sql::ident;

/// Tenants listed.
pub const TOP: usize = 5;
/// Rows read per table at most without `--full`.
pub const SAMPLE_ROWS: i64 = 1_000_000;
/// Per-tenant groups fetched per table (the largest).
const GROUPS: i64 = 10_000;
/// The shard size aimed at, at most.
pub const TARGET_SHARD_BYTES: i64 = 10_000_000_000;
/// Citus's default `citus.shard_count`.
pub const DEFAULT_SHARDS: i64 = 32;
/// A tenant is hot above this share of all rows…
pub const HOT_MIN_SHARE: f64 = 0.05;
/// …and above this many times the mean tenant.
pub const HOT_TIMES_MEAN: f64 = 3.0;

/// The counts of one table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkewTable {
    pub table: QName,
    /// `column` or, for a table that lacks it, the path it is derived by.
    pub tenant_from: String,
    pub scan: Scan,
    /// Rows with a tenant among those read.
    pub rows_counted: i64,
    /// Distinct tenants among them.
    pub tenants: i64,
    /// The rows the counts stand for (scaled to the estimate when sampled).
    pub rows_estimated: i64,
    /// Set when the count could not finish.
    pub error: Option<String>,
}

/// One tenant's rows across the tenant tables.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TenantShare {
    /// The tenant value as text.
    pub tenant: String,
    /// Rows (estimated when sampled), summed across the tables.
    pub rows: i64,
    /// Fraction of all rows, 0..1.
    pub share: f64,
}

/// A shard count and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShardCount {
    pub count: i64,
    pub reason: String,
}

/// The skew report (`skew` in the JSON output).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Skew {
    pub column: String,
    /// The root, or the largest tenant table when there is none (where a
    /// hot tenant is reported).
    pub basis: Option<QName>,
    /// Whether any count is from a sample.
    pub sampled: bool,
    pub tables: Vec<SkewTable>,
    /// Rows of the tenant tables with a tenant (estimated when sampled).
    pub total_rows: i64,
    /// Distinct tenants seen.
    pub tenants: i64,
    /// The largest tenants, largest first.
    pub top: Vec<TenantShare>,
    /// The mean tenant's share (1 / tenants).
    pub mean_share: f64,
    /// Tenants above max(3 × mean, 5 %) of the rows.
    pub hot: Vec<TenantShare>,
    /// On-disk size of the tenant tables (indexes included).
    pub tenant_bytes: i64,
    pub shard_count: Option<ShardCount>,
}

fn pct(f: f64) -> String {
    let p = f * 100.0;
    if p >= 10.0 {
        format!("{p:.1}%")
    } else if p >= 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.3}%")
    }
}

fn human_bytes(b: i64) -> String {
    let b = b as f64;
    if b >= 1e12 {
        format!("{:.1} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// The shard count: Citus's default of 32 unless the tenant tables are so
/// large that shards would exceed 10 GB; then the smallest power of two
/// that keeps them under (powers of two divide evenly over 2, 4, 8, …
/// workers). A hot tenant is not a reason for more shards: one tenant
/// always lives in one shard, so it is isolated instead.
pub fn suggest_shards(tenant_bytes: i64, tenants: i64, hot: Option<&TenantShare>) -> ShardCount {
    let mut count = DEFAULT_SHARDS;
    while tenant_bytes / count > TARGET_SHARD_BYTES {
        count *= 2;
    }
    let mut reason = if count == DEFAULT_SHARDS {
        format!(
            "Citus's default: {} of tenant data makes shards of about {}, under the 10 GB aim",
            human_bytes(tenant_bytes),
            human_bytes(tenant_bytes / count)
        )
    } else {
        format!(
            "{} of tenant data: {count} shards keep each under 10 GB (about {})",
            human_bytes(tenant_bytes),
            human_bytes(tenant_bytes / count)
        )
    };
    reason.push_str("; round it to a multiple of your worker count");
    if tenants > 0 && tenants < count {
        let _ = write!(
            reason,
            "; only {tenants} tenants today: some shards stay empty until more arrive"
        );
    }
    if let Some(h) = hot {
        let _ = write!(
            reason,
            "; tenant {} alone holds {}: more shards do not spread it, isolate it",
            h.tenant,
            pct(h.share)
        );
    }
    ShardCount { count, reason }
}

impl Skew {
    /// `hot-tenant` for each hot tenant, `shard-count` once, and
    /// `skew-incomplete` for a table that could not be counted.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for h in &self.hot {
            let on = self.basis.clone();
            out.push(Finding {
                rule: RuleId::HotTenant,
                severity: Severity::Info,
                table: self.basis.clone(),
                object: Some(h.tenant.clone()),
                message: format!(
                    "tenant {} holds {} of the rows (mean tenant {}{}): an \
                     isolate_tenant_to_new_shard candidate",
                    h.tenant,
                    pct(h.share),
                    pct(self.mean_share),
                    if self.sampled { ", sampled" } else { "" }
                ),
                citus_error: None,
                fix: match on {
                    Some(t) => format!(
                        "after `distribute`: SELECT isolate_tenant_to_new_shard({}, {}, 'CASCADE')",
                        crate::sql::literal(&t.sql()),
                        crate::sql::literal(&h.tenant)
                    ),
                    None => "isolate it on its own shard after `distribute`".into(),
                },
                automatic: false,
            });
        }
        if let Some(s) = &self.shard_count {
            out.push(Finding {
                rule: RuleId::ShardCount,
                severity: Severity::Info,
                table: None,
                object: Some(s.count.to_string()),
                message: format!("suggested shard count {}: {}", s.count, s.reason),
                citus_error: None,
                fix: format!("shardready distribute --shard-count {}", s.count),
                automatic: false,
            });
        }
        for t in &self.tables {
            if let Some(e) = &t.error {
                out.push(Finding {
                    rule: RuleId::SkewIncomplete,
                    severity: Severity::Info,
                    table: Some(t.table.clone()),
                    object: None,
                    message: format!("rows per tenant could not be counted: {e}"),
                    citus_error: None,
                    fix: "rerun with --full (no timeout), at a quiet time".into(),
                    automatic: false,
                });
            }
        }
        out
    }

    /// A small readable block (empty when nothing was measured).
    pub fn text(&self) -> String {
        if self.tables.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  {} tenants, ~{} rows in {} table{}{}",
            self.tenants,
            self.total_rows,
            self.tables.len(),
            if self.tables.len() == 1 { "" } else { "s" },
            if self.sampled {
                " (sampled; --full for exact)"
            } else {
                " (exact)"
            }
        );
        for t in &self.tables {
            let _ = writeln!(
                out,
                "    {:<24} ~{} rows, {} tenants{}",
                t.table.to_string(),
                t.rows_estimated,
                t.tenants,
                match (&t.error, t.scan) {
                    (Some(e), _) => format!("  (not counted: {e})"),
                    (None, Scan::Sample { .. }) => "  (sampled)".to_string(),
                    _ => String::new(),
                }
            );
        }
        if !self.top.is_empty() {
            let top: Vec<String> = self
                .top
                .iter()
                .map(|t| format!("{} {}", t.tenant, pct(t.share)))
                .collect();
            let _ = writeln!(
                out,
                "  top {}: {}  (mean {})",
                self.column,
                top.join(", "),
                pct(self.mean_share)
            );
        }
        for h in &self.hot {
            let _ = writeln!(
                out,
                "  hot: {} = {} holds {} (> max(3 × mean, 5%)): isolate_tenant_to_new_shard candidate",
                self.column,
                h.tenant,
                pct(h.share)
            );
        }
        if let Some(s) = &self.shard_count {
            let _ = writeln!(out, "  shards: {} — {}", s.count, s.reason);
        }
        out
    }
}

/// What to count in one table.
#[derive(Debug, Clone)]
struct Count {
    table: QName,
    tenant_from: String,
    scan: Scan,
    estimate: i64,
    sql: String,
}

/// The counting query of each tenant table (pure).
fn plan(ctx: &Ctx, full: bool, limit: i64) -> Vec<Count> {
    let mut out = Vec::new();
    for (t, class) in ctx.tables() {
        if t.parent.is_some() || t.kind == TableKind::Foreign {
            continue;
        }
        let (expr, joins, from) = match class {
            Class::Distributed => {
                let col = ctx.tenant_column(t);
                (format!("t0.{}", ident(col)), String::new(), col.to_string())
            }
            Class::NeedsColumn { path, .. } => {
                let mut next = 1;
                let Some(c) = data::chain(ctx, path, &mut next) else {
                    continue;
                };
                let via = path
                    .iter()
                    .map(|h| format!("{} → {}", h.columns.join(", "), h.to))
                    .collect::<Vec<_>>()
                    .join(" → ");
                (c.expr, c.joins, format!("via {via}"))
            }
            _ => continue,
        };
        let (rows, bytes) = data::estimate(ctx, t);
        let scan = choose_scan(rows, bytes, full, limit);
        let sql = format!(
            "SELECT {MARKER} tenant, n, (sum(n) OVER ())::int8, count(*) OVER () \
             FROM (SELECT {expr}::text AS tenant, count(*) AS n FROM {} t0{}{joins} \
                   WHERE {expr} IS NOT NULL GROUP BY 1) g \
             ORDER BY n DESC, tenant LIMIT {GROUPS}",
            t.name.sql(),
            scan.clause()
        );
        out.push(Count {
            table: t.name.clone(),
            tenant_from: from,
            scan,
            estimate: rows,
            sql,
        });
    }
    out
}

/// Sums the per-table counts into the report (pure).
fn summarize(
    ctx: &Ctx,
    tables: Vec<SkewTable>,
    per_tenant: BTreeMap<String, f64>,
    tenant_bytes: i64,
) -> Skew {
    let total: f64 = tables.iter().map(|t| t.rows_estimated as f64).sum();
    let tenants =
        (per_tenant.len() as i64).max(tables.iter().map(|t| t.tenants).max().unwrap_or(0));
    let mut ranked: Vec<(&String, &f64)> = per_tenant.iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let share = |n: f64| if total > 0.0 { n / total } else { 0.0 };
    let mean_share = if tenants > 0 {
        1.0 / tenants as f64
    } else {
        0.0
    };
    let top: Vec<TenantShare> = ranked
        .iter()
        .take(TOP)
        .map(|(t, n)| TenantShare {
            tenant: (*t).clone(),
            rows: n.round() as i64,
            share: share(**n),
        })
        .collect();
    let threshold = (HOT_TIMES_MEAN * mean_share).max(HOT_MIN_SHARE);
    let hot: Vec<TenantShare> = top
        .iter()
        .filter(|t| tenants > 1 && t.share > threshold)
        .cloned()
        .collect();
    let basis = ctx.tenant.root.clone().or_else(|| {
        ctx.tenant_tables()
            .filter(|t| t.parent.is_none())
            .max_by_key(|t| data::estimate(ctx, t).0)
            .map(|t| t.name.clone())
    });
    let measured = tables.iter().any(|t| t.error.is_none());
    Skew {
        column: ctx.tenant.column.clone(),
        basis,
        sampled: tables.iter().any(|t| matches!(t.scan, Scan::Sample { .. })),
        total_rows: total.round() as i64,
        tenants,
        mean_share,
        shard_count: measured.then(|| suggest_shards(tenant_bytes, tenants, hot.first())),
        top,
        hot,
        tables,
        tenant_bytes,
    }
}

/// Measures the skew, bounded (see the module doc).
pub async fn measure(ctx: &Ctx<'_>, client: &Client) -> Result<Skew, AnalyzeError> {
    measure_with(ctx, client, false).await
}

/// [`measure`]; `full` counts every row, with no timeout.
pub async fn measure_with(
    ctx: &Ctx<'_>,
    client: &Client,
    full: bool,
) -> Result<Skew, AnalyzeError> {
    let b = Bounds {
        sample_rows: SAMPLE_ROWS,
        ..Bounds::new(full)
    };
    measure_bounded(ctx, client, &b).await
}

/// [`measure`] within other bounds.
pub async fn measure_bounded(
    ctx: &Ctx<'_>,
    client: &Client,
    b: &Bounds,
) -> Result<Skew, AnalyzeError> {
    let counts = plan(ctx, b.full, b.sample_rows);
    let tenant_bytes: i64 = ctx
        .tenant_tables()
        .filter(|t| t.parent.is_none())
        .map(|t| data::estimate(ctx, t).1)
        .sum();
    if counts.is_empty() {
        return Ok(Skew {
            column: ctx.tenant.column.clone(),
            basis: ctx.tenant.root.clone(),
            tenant_bytes,
            ..Default::default()
        });
    }
    let before = catalog::statement_timeout(client)
        .await
        .map_err(super::db("cannot read statement_timeout"))?;
    catalog::set_statement_timeout(client, b.timeout_setting())
        .await
        .map_err(super::db("cannot set statement_timeout"))?;
    let mut tables = Vec::new();
    let mut per_tenant: BTreeMap<String, f64> = BTreeMap::new();
    for c in &counts {
        let mut st = SkewTable {
            table: c.table.clone(),
            tenant_from: c.tenant_from.clone(),
            scan: c.scan,
            rows_counted: 0,
            tenants: 0,
            rows_estimated: 0,
            error: None,
        };
        match client.query(&c.sql, &[]).await {
            Ok(rows) => {
                if let Some(first) = rows.first() {
                    st.rows_counted = first.get(2);
                    st.tenants = first.get(3);
                }
                // A sample stands for the table's estimate.
                let scale = match c.scan {
                    Scan::Sample { .. } if st.rows_counted > 0 && c.estimate > 0 => {
                        c.estimate as f64 / st.rows_counted as f64
                    }
                    _ => 1.0,
                };
                st.rows_estimated = (st.rows_counted as f64 * scale).round() as i64;
                for r in &rows {
                    let tenant: String = r.get(0);
                    let n: i64 = r.get(1);
                    *per_tenant.entry(tenant).or_default() += n as f64 * scale;
                }
            }
            Err(e) => st.error = Some(data::error_text(&e, b)),
        }
        tables.push(st);
    }
    catalog::set_statement_timeout(client, &before)
        .await
        .map_err(super::db("cannot restore statement_timeout"))?;
    Ok(summarize(ctx, tables, per_tenant, tenant_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    #[test]
    fn counts_every_tenant_table_but_the_root() {
        let cat = tailspin();
        let c = with_ctx(&cat, &Default::default(), |ctx| {
            plan(ctx, false, SAMPLE_ROWS)
        });
        let names: Vec<_> = c.iter().map(|c| c.table.name.as_str()).collect();
        assert_eq!(names, ["products", "orders", "line_items"]);
        let li = &c[2];
        assert_eq!(li.tenant_from, "via order_id → orders");
        assert!(
            li.sql.contains("t1.\"store_id\"::text AS tenant"),
            "{}",
            li.sql
        );
        assert!(li.sql.contains("TABLESAMPLE SYSTEM"), "4M rows are sampled");
        assert!(li.sql.contains("LEFT JOIN \"public\".\"orders\" t1"));
        let products = &c[0];
        assert_eq!(
            products.scan,
            Scan::Exact,
            "10,002 rows are counted exactly"
        );
        assert!(products.sql.contains("GROUP BY 1"));
        let exact = with_ctx(&cat, &Default::default(), |ctx| {
            plan(ctx, true, SAMPLE_ROWS)
        });
        assert!(exact.iter().all(|c| c.scan == Scan::Exact));
    }

    fn table_counted(name: &str, rows: i64, tenants: i64) -> SkewTable {
        SkewTable {
            table: q(name),
            tenant_from: "store_id".into(),
            scan: Scan::Exact,
            rows_counted: rows,
            tenants,
            rows_estimated: rows,
            error: None,
        }
    }

    #[test]
    fn hot_tenant_and_top_shares() {
        let cat = tailspin();
        // 20 tenants: tenant "5" has 300 rows, the others 10 each (490 rows).
        let mut per: BTreeMap<String, f64> = (1..=20).map(|i| (i.to_string(), 10.0)).collect();
        per.insert("5".into(), 300.0);
        let s = with_ctx(&cat, &Default::default(), |ctx| {
            summarize(ctx, vec![table_counted("orders", 490, 20)], per, 1_000_000)
        });
        assert_eq!(s.tenants, 20);
        assert_eq!(s.total_rows, 490);
        assert_eq!(s.top.len(), TOP);
        assert_eq!(s.top[0].tenant, "5");
        assert!((s.top[0].share - 300.0 / 490.0).abs() < 1e-9);
        assert_eq!(s.top[1].tenant, "1", "ties by tenant text");
        assert_eq!(s.hot.len(), 1);
        assert!((s.mean_share - 0.05).abs() < 1e-9);
        let f = s.findings();
        let hot = f.iter().find(|f| f.rule == RuleId::HotTenant).unwrap();
        assert_eq!(hot.object.as_deref(), Some("5"));
        assert_eq!(hot.severity, Severity::Info);
        assert!(hot
            .message
            .contains("isolate_tenant_to_new_shard candidate"));
        assert!(
            hot.fix
                .contains("isolate_tenant_to_new_shard('\"public\".\"stores\"', '5', 'CASCADE')"),
            "{}",
            hot.fix
        );
        assert_eq!(hot.table.as_ref().unwrap().name, "stores");
        let sc = f.iter().find(|f| f.rule == RuleId::ShardCount).unwrap();
        assert_eq!(sc.object.as_deref(), Some("32"));
        assert!(sc.message.contains("isolate it"));
        let text = s.text();
        assert!(text.contains("top store_id: 5 61.2%"), "{text}");
        assert!(text.contains("hot: store_id = 5"), "{text}");
        assert!(text.contains("shards: 32"), "{text}");
    }

    #[test]
    fn no_hot_tenant_when_even_or_alone() {
        let cat = tailspin();
        let per: BTreeMap<String, f64> = (1..=4).map(|i| (i.to_string(), 25.0)).collect();
        let s = with_ctx(&cat, &Default::default(), |ctx| {
            summarize(ctx, vec![table_counted("orders", 100, 4)], per, 0)
        });
        assert!(s.hot.is_empty(), "4 equal tenants: 25% each is the mean");
        let per: BTreeMap<String, f64> = [("1".to_string(), 100.0)].into();
        let s = with_ctx(&cat, &Default::default(), |ctx| {
            summarize(ctx, vec![table_counted("orders", 100, 1)], per, 0)
        });
        assert!(s.hot.is_empty(), "one tenant is not skew");
    }

    #[test]
    fn shard_count_rule() {
        let s = suggest_shards(1_000_000_000, 442, None);
        assert_eq!(s.count, 32);
        assert!(s.reason.starts_with("Citus's default"));
        // 1 TB: 32 shards of 31 GB are too big; 128 of 7.8 GB fit.
        let s = suggest_shards(1_000_000_000_000, 10_000, None);
        assert_eq!(s.count, 128);
        assert!(s.reason.contains("128 shards keep each under 10 GB"));
        let s = suggest_shards(1_000_000, 5, None);
        assert!(s.reason.contains("only 5 tenants"));
    }

    #[test]
    fn nothing_measured_renders_nothing() {
        assert_eq!(Skew::default().text(), "");
        assert!(Skew::default().findings().is_empty());
    }
}
