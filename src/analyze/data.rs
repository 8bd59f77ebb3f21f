//! Data checks: finds the rows that would make the preparation or Citus
//! fail, before anything changes. For a table that needs the tenant column,
//! rows whose derivation along the FK path yields no tenant (`orphan-rows`:
//! they would stay NULL after the backfill) and rows that reach different
//! tenants through different foreign keys (`cross-tenant-rows`: the
//! composite FK would not validate). For a table that has the column, NULL
//! tenant values (`null-tenant`) and rows whose tenant differs from the
//! tenant of the row they reference (`cross-tenant-rows`).
//!
//! Bounded by default: a table estimated above [`SAMPLE_ROWS`] rows is read
//! through `TABLESAMPLE SYSTEM (p) REPEATABLE (…)` sized to about that many
//! rows, and every check runs under a `statement_timeout` of
//! [`STATEMENT_TIMEOUT`]; a check that times out is reported
//! (`data-check-incomplete`), not fatal. `--full` scans every row with no
//! timeout. Each finding says which it was ("in a sample of N rows" or "in
//! all N rows"). Every identifier reaches the SQL through
//! [`crate::sql::ident`] / [`QName::sql`].

use crate::analyze::rules::id::RuleId;
use serde::Serialize;
use tokio_postgres::Client;

use super::rules::Ctx;
use super::tenant::{Class, Hop};
use super::{AnalyzeError, Finding, Severity};
use crate::catalog::{self, QName, Table, TableKind};
use crate::sql::ident;

/// Rows read per table by default; larger tables are sampled down to
/// about this many.
pub const SAMPLE_ROWS: i64 = 1_000_000;
/// `statement_timeout` of each bounded check.
pub const STATEMENT_TIMEOUT: &str = "60s";
/// Example keys kept per check.
pub const MAX_EXAMPLES: usize = 5;
/// Seed of `TABLESAMPLE … REPEATABLE`: the same sample for the count and
/// the examples, and from one run to the next.
const SAMPLE_SEED: i32 = 7;
/// Carried by every statement shardready sends for the analysis, so the
/// query audit leaves them out of `pg_stat_statements`.
pub const MARKER: &str = "/* shardready */";

/// How a table was read.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Scan {
    /// Every row.
    Exact,
    /// `TABLESAMPLE SYSTEM (percent)`: whole pages, about `percent` % of
    /// the table.
    Sample { percent: f64 },
}

impl Scan {
    pub(crate) fn clause(&self) -> String {
        match self {
            Scan::Exact => String::new(),
            Scan::Sample { percent } => {
                format!(" TABLESAMPLE SYSTEM ({percent:.6}) REPEATABLE ({SAMPLE_SEED})")
            }
        }
    }
    /// "in all N rows" / "in a sample of N rows (…%)".
    pub fn describe(&self, rows: i64) -> String {
        match self {
            Scan::Exact => format!("in all {rows} rows"),
            Scan::Sample { percent } => format!(
                "in a sample of {rows} rows (TABLESAMPLE SYSTEM {}%; --full for exact)",
                trim_float(*percent)
            ),
        }
    }
}

fn trim_float(p: f64) -> String {
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// One check on one table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DataCheck {
    /// `orphan-rows`, `cross-tenant-rows` or `null-tenant`.
    pub rule: RuleId,
    pub table: QName,
    /// The foreign keys involved (the derivation path first).
    pub via: Vec<String>,
    pub scan: Scan,
    /// Rows read (the sample size when sampled).
    pub rows_scanned: i64,
    /// Offending rows among them.
    pub rows: i64,
    /// Up to [`MAX_EXAMPLES`] primary keys of offending rows, as text
    /// (`ctid …` when the table has no key).
    pub examples: Vec<String>,
    pub message: String,
    pub fix: String,
    /// Set when the check could not finish (timeout, error); `rows` is
    /// then 0 and means nothing.
    pub error: Option<String>,
    /// NULL tenants this path (a foreign key to a table that has the
    /// tenant) gives a tenant: `apply` fills them online, as it backfills
    /// a new column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<Vec<Hop>>,
}

/// Everything the data checks found (`data` in the JSON output).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct DataReport {
    /// `--full`: every table read completely, no timeout.
    pub exact: bool,
    /// Rows read per table at most when not exact.
    pub sample_rows: i64,
    /// The statement_timeout of each check (None with `--full`).
    pub statement_timeout: Option<String>,
    /// Every check run, clean ones included (`rows == 0`).
    pub checks: Vec<DataCheck>,
}

impl DataReport {
    /// A blocker for each check that found rows; a warning for each that
    /// could not finish.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for c in &self.checks {
            if let Some(e) = &c.error {
                out.push(Finding {
                    rule: RuleId::DataCheckIncomplete,
                    severity: Severity::Warning,
                    table: Some(c.table.clone()),
                    object: (!c.via.is_empty()).then(|| c.via.join(", ")),
                    message: format!("the {} check did not finish: {e}", c.rule),
                    citus_error: None,
                    fix: "rerun with --full (no timeout), at a quiet time".into(),
                    automatic: false,
                });
            } else if c.rows > 0 {
                out.push(Finding {
                    rule: c.rule,
                    severity: if c.fill.is_some() {
                        Severity::Warning
                    } else {
                        Severity::Blocker
                    },
                    table: Some(c.table.clone()),
                    object: (!c.via.is_empty()).then(|| c.via.join(", ")),
                    message: format!("{}; e.g. {}", c.message, c.examples.join("; ")),
                    citus_error: citus_error(c),
                    fix: c.fix.clone(),
                    automatic: c.fill.is_some(),
                });
            }
        }
        out
    }
}

fn citus_error(c: &DataCheck) -> Option<String> {
    match c.rule {
        RuleId::NullTenant | RuleId::OrphanRows => Some(format!(
            "the partition column of table {} cannot be NULL",
            c.table.name
        )),
        RuleId::CrossTenantRows => Some(
            "insert or update on table violates foreign key constraint (when the composite \
             foreign key is validated)"
                .into(),
        ),
        _ => None,
    }
}

/// What resolves cross-tenant rows that the application writes on purpose,
/// as command lines: drop the key (`--drop-fk`), or, when the referenced
/// table references nothing itself (so Citus can copy it to every node),
/// keep that table whole as a reference table.
pub(crate) fn by_design(ctx: &Ctx, t: &Table, fk: &catalog::ForeignKey) -> String {
    let mut out = format!(
        "if the application writes such rows by design, drop the key (its definition is \
         kept and printed): `shardready apply --drop-fk {}.{}`",
        t.name, fk.name
    );
    let shareable = ctx
        .cat
        .table(&fk.ref_table)
        .is_some_and(|r| r.foreign_keys.is_empty());
    if shareable {
        out.push_str(&format!(
            ", or keep {r} whole on every node: `shardready apply --reference {r}`",
            r = fk.ref_table
        ));
    }
    out
}

/// The tenant of a row of `t0`, reached through joins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chain {
    /// `LEFT JOIN … tN ON …` clauses.
    pub joins: String,
    /// `tN."col"`: the tenant at the end of the hops.
    pub expr: String,
    /// The type of that column.
    pub type_name: String,
}

/// Builds the joins from alias `t0` along `hops`; the last hop must reach
/// a table that has the tenant column. `next` numbers the aliases.
pub(crate) fn chain(ctx: &Ctx, hops: &[Hop], next: &mut usize) -> Option<Chain> {
    let mut joins = String::new();
    let mut prev = "t0".to_string();
    for h in hops {
        let a = format!("t{next}");
        *next += 1;
        let mut on: Vec<String> = h
            .columns
            .iter()
            .zip(&h.ref_columns)
            .map(|(c, rc)| format!("{a}.{} = {prev}.{}", ident(rc), ident(c)))
            .collect();
        on.extend(h.when_sql(&prev));
        joins.push_str(&format!(
            " LEFT JOIN {} {a} ON {}",
            h.to.sql(),
            on.join(" AND ")
        ));
        prev = a;
    }
    let last = ctx.cat.table(&hops.last()?.to)?;
    if !ctx.has_tenant(last) {
        return None;
    }
    let col = ctx.tenant_column(last);
    Some(Chain {
        joins,
        expr: format!("{prev}.{}", ident(col)),
        type_name: last.column(col)?.type_name.clone(),
    })
}

/// The hops from `t`'s row to its tenant through `fk`: the FK itself,
/// then the referenced table's own path when it lacks the column.
fn hops_through(ctx: &Ctx, t: &Table, fk: &catalog::ForeignKey) -> Option<Vec<Hop>> {
    let r = ctx.cat.table(&fk.ref_table)?;
    let mut hops = vec![Hop::along(&t.name, fk)];
    match ctx.class_of(ctx.cat.top_parent(r))? {
        Class::Root | Class::Distributed => {}
        Class::NeedsColumn { path, .. } => {
            if path.iter().any(|h| h.to == t.name || h.from == t.name) {
                return None; // a cycle back through t
            }
            hops.extend(path.iter().cloned());
        }
        _ => return None,
    }
    Some(hops)
}

/// `a <> b` for two tenant values (as text when their types differ, so a
/// mismatch reported elsewhere does not break the query).
fn differ(a: &Chain, b_expr: &str, b_type: &str) -> String {
    if a.type_name == b_type {
        format!(
            "({} IS NOT NULL AND {b_expr} IS NOT NULL AND {} <> {b_expr})",
            a.expr, a.expr
        )
    } else {
        format!(
            "({} IS NOT NULL AND {b_expr} IS NOT NULL AND {}::text <> {b_expr}::text)",
            a.expr, a.expr
        )
    }
}

/// The primary key of a row of `t0` as text.
fn key_text(t: &Table) -> String {
    let cols: Vec<String> = match t.primary_key() {
        Some(pk) => pk.columns.clone(),
        None => t
            .unique_indexes
            .iter()
            .filter(|ix| ix.predicate.is_none() && ix.valid)
            .find_map(|ix| {
                ix.columns
                    .iter()
                    .map(|c| {
                        c.as_deref()
                            .and_then(|c| t.column(c))
                            .filter(|c| c.not_null)
                            .map(|c| c.name.clone())
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .unwrap_or_default(),
    };
    match cols.len() {
        0 if t.kind == TableKind::Partitioned => {
            "'ctid ' || t0.tableoid::regclass::text || ' ' || t0.ctid::text".into()
        }
        0 => "'ctid ' || t0.ctid::text".into(),
        1 => format!("t0.{}::text", ident(&cols[0])),
        _ => format!(
            "'(' || concat_ws(', ', {}) || ')'",
            cols.iter()
                .map(|c| format!("t0.{}::text", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Rows and bytes of a table, its partitions included (a partitioned
/// parent has no storage of its own).
pub(crate) fn estimate(ctx: &Ctx, t: &Table) -> (i64, i64) {
    if t.kind != TableKind::Partitioned {
        return (t.row_estimate, t.size_bytes);
    }
    ctx.cat
        .tables
        .iter()
        .filter(|p| p.kind != TableKind::Partitioned && ctx.cat.top_parent(p) == &t.name)
        .fold((0, 0), |(r, b), p| (r + p.row_estimate, b + p.size_bytes))
}

/// Exact when asked, or when the table is small enough; a sample of about
/// `limit` rows otherwise. A table never analyzed (no row estimate) is
/// judged by its size (100 bytes a row).
pub fn choose_scan(rows_estimate: i64, size_bytes: i64, full: bool, limit: i64) -> Scan {
    let est = if rows_estimate > 0 {
        rows_estimate
    } else {
        size_bytes / 100
    };
    if full || est <= limit {
        Scan::Exact
    } else {
        let p = (limit as f64 / est as f64 * 100.0).clamp(0.0001, 100.0);
        Scan::Sample { percent: p }
    }
}

/// One counter of a table's scan.
#[derive(Debug, Clone)]
struct Probe {
    rule: RuleId,
    via: Vec<String>,
    /// Offending rows `apply` fixes itself: NULL tenants that this path
    /// gives a tenant.
    fill: Option<Vec<Hop>>,
    /// SQL condition on the joined row: true for an offending row.
    cond: String,
    message: String,
    fix: String,
}

/// All checks of one table, sharing one scan.
#[derive(Debug, Clone)]
struct TablePlan {
    table: QName,
    scan: Scan,
    from: String,
    key: String,
    probes: Vec<Probe>,
}

impl TablePlan {
    fn count_sql(&self) -> String {
        let counters: Vec<String> = self
            .probes
            .iter()
            .map(|p| format!("count(*) FILTER (WHERE {})", p.cond))
            .collect();
        format!(
            "SELECT {MARKER} count(*), {} FROM {}",
            counters.join(", "),
            self.from
        )
    }
    fn examples_sql(&self, i: usize) -> String {
        format!(
            "SELECT {MARKER} {} FROM {} WHERE {} LIMIT {MAX_EXAMPLES}",
            self.key, self.from, self.probes[i].cond
        )
    }
}

fn arrow(h: &Hop) -> String {
    match &h.when {
        Some(w) => format!(
            "{} where {} = '{}' → {}",
            h.columns.join(", "),
            w.column,
            w.value,
            h.to
        ),
        None => format!("{} → {}", h.columns.join(", "), h.to),
    }
}

/// The other ways `t` could take its tenant (besides the keys in `used`),
/// as `--path` command lines (empty when there is none).
fn other_paths(ctx: &Ctx, t: &Table, used: &[String]) -> String {
    let lines: Vec<String> = ctx
        .cat
        .foreign_keys_of(t)
        .into_iter()
        .filter(|fk| fk.ref_table != t.name && !used.contains(&fk.name))
        .filter(|fk| hops_through(ctx, t, fk).is_some())
        .map(|fk| format!("`shardready apply --path {}={}`", t.name, fk.name))
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!(
            "; or, if another key gives every row its tenant, derive it through that one: {}",
            lines.join(" or ")
        )
    }
}

/// Plans the checks of a table that lacks the tenant column: rows that
/// no path gives a tenant (its path, else each of `also` in turn), and
/// rows whose tenant differs from what another key's parent has.
fn plan_needs(
    ctx: &Ctx,
    t: &Table,
    path: &[Hop],
    also: &[Vec<Hop>],
    scan: Scan,
) -> Option<TablePlan> {
    let col = &ctx.tenant.column;
    let mut next = 1;
    let main = chain(ctx, path, &mut next)?;
    let text = |p: &[Hop]| p.iter().map(arrow).collect::<Vec<_>>().join(" → ");
    let mut path_text = text(path);
    let mut path_fks: Vec<String> = path.iter().map(|h| h.fk.clone()).collect();
    let mut from = format!("{} t0{}{}", t.name.sql(), scan.clause(), main.joins);
    // The row's tenant: the path's, else each alternative's in turn (as
    // the backfill and the trigger take it).
    let mut row = main.clone();
    let mut exprs = vec![main.expr.clone()];
    let mut used = vec![path[0].fk.clone()];
    let mut alt_texts = Vec::new();
    let mut joined: Vec<(&[Hop], Chain)> = Vec::new();
    for a in also {
        let Some(c) = chain(ctx, a, &mut next) else {
            continue;
        };
        from.push_str(&c.joins);
        joined.push((a, c.clone()));
        exprs.push(c.expr);
        row.expr = format!("coalesce({})", exprs.join(", "));
        alt_texts.push(text(a));
        if !used.contains(&a[0].fk) {
            path_fks.push(a[0].fk.clone());
            used.push(a[0].fk.clone());
        }
    }
    // Rows the path leaves without a tenant that another one gives it:
    // apply takes them through it (found here, the plan uses the
    // alternatives; with none found, the path alone, as fast as ever).
    let fill = joined.first().map(|(first, _)| Probe {
        rule: RuleId::OrphanRows,
        via: path_fks.clone(),
        fill: Some(first.to_vec()),
        cond: format!("{} IS NULL AND {} IS NOT NULL", main.expr, row.expr),
        message: format!(
            "in {} with no {col} along {path_text} that take it along {}",
            t.name,
            alt_texts.join(" or ")
        ),
        fix: format!(
            "automatic: apply fills {col} through whichever key is set, online (batched and \
             governed like every backfill; a trigger does the same for rows written meanwhile)"
        ),
    });
    // The row's tenant as the plan takes it, for the cross-tenant checks
    // (with one alternative, a row that disagrees with another key has
    // both set: its tenant is the path's).
    let taken_text = if alt_texts.len() < 2 {
        path_text.clone()
    } else {
        format!("{path_text} (else {})", alt_texts.join(", else "))
    };
    for a in &alt_texts {
        path_text.push_str(&format!(", nor along {a}"));
    }
    let mut probes = vec![Probe {
        fill: None,
        rule: RuleId::OrphanRows,
        via: path_fks.clone(),
        cond: format!("{} IS NULL", row.expr),
        message: format!(
            "in {} with no {col} along {path_text} (the foreign key column is NULL, the parent \
             row is missing, or the parent has no {col}): they would stay NULL after the backfill",
            t.name
        ),
        fix: format!(
            "give these rows a parent that has {} {col} (or delete them) before `apply`; \
             Citus rejects NULL in the distribution column{}",
            super::article(col),
            other_paths(ctx, t, &used)
        ),
    }];
    probes.extend(fill);
    for fk in ctx.cat.foreign_keys_of(t) {
        if fk.ref_table == t.name || fk.name == path[0].fk {
            continue;
        }
        let Some(hops) = hops_through(ctx, t, fk) else {
            continue;
        };
        // An alternative joined above is not joined again.
        let other = match joined.iter().find(|(a, _)| *a == hops.as_slice()) {
            Some((_, c)) => c.clone(),
            None => {
                let Some(c) = chain(ctx, &hops, &mut next) else {
                    continue;
                };
                from.push_str(&c.joins);
                c
            }
        };
        let other_text = text(&hops);
        let mut via = path_fks.clone();
        if !via.contains(&fk.name) {
            via.push(fk.name.clone());
        }
        probes.push(Probe {
            fill: None,
            rule: RuleId::CrossTenantRows,
            via,
            cond: differ(&row, &other.expr, &other.type_name),
            message: format!(
                "in {} with one {col} along {taken_text} and another along {other_text}: the \
                 composite foreign key ({col}, {}) → {} ({col}, {}) would fail",
                t.name,
                fk.columns.join(", "),
                fk.ref_table,
                fk.ref_columns.join(", ")
            ),
            fix: format!(
                "make each row's {} point at a row of the same tenant (or delete it); {}",
                fk.columns.join(", "),
                by_design(ctx, t, fk)
            ),
        });
    }
    Some(TablePlan {
        table: t.name.clone(),
        scan,
        from,
        key: key_text(t),
        probes,
    })
}

/// Plans the checks of a table that has the tenant column.
fn plan_distributed(ctx: &Ctx, t: &Table, scan: Scan) -> Option<TablePlan> {
    let col = ctx.tenant_column(t);
    let column = t.column(col)?;
    let mine = format!("t0.{}", ident(col));
    let me = Chain {
        joins: String::new(),
        expr: mine.clone(),
        type_name: column.type_name.clone(),
    };
    let mut from = format!("{} t0{}", t.name.sql(), scan.clause());
    let mut probes = Vec::new();
    let mut next = 1;
    if !column.not_null {
        // Where the value could come from: an FK to another tenant table
        // that does not go through the tenant column itself.
        let source = ctx.cat.foreign_keys_of(t).into_iter().find(|fk| {
            fk.ref_table != t.name
                && !fk.columns.iter().any(|c| c == col)
                && ctx
                    .cat
                    .table(&fk.ref_table)
                    .and_then(|r| ctx.class_of(ctx.cat.top_parent(r)))
                    .is_some_and(|c| matches!(c, Class::Root | Class::Distributed))
        });
        // The rows the source gives a tenant are filled by apply; the
        // others need the user.
        // (Filled as `parent.<col>`: only from a table whose tenant column
        // has this name; a root keyed otherwise needs the user.)
        let source = source.and_then(|fk| {
            let r = ctx.cat.table(&fk.ref_table)?;
            if ctx.tenant_column(r) != col {
                return None;
            }
            let hops = vec![Hop::along(&t.name, fk)];
            let c = chain(ctx, &hops, &mut next)?;
            from.push_str(&c.joins);
            Some((fk, hops, c.expr))
        });
        match source {
            Some((fk, hops, parent)) => {
                let through = fk.columns.join(", ");
                probes.push(Probe {
                    rule: RuleId::NullTenant,
                    via: vec![fk.name.clone()],
                    fill: Some(hops),
                    cond: format!("{mine} IS NULL AND {parent} IS NOT NULL"),
                    message: format!(
                        "in {} with a NULL {col} that {through} gives a tenant",
                        t.name
                    ),
                    fix: format!(
                        "automatic: apply fills them from {} through {through} online (batched and \
                         governed like every backfill; a trigger fills rows written without \
                         {col} meanwhile), then sets NOT NULL",
                        fk.ref_table
                    ),
                });
                probes.push(Probe {
                    rule: RuleId::NullTenant,
                    via: Vec::new(),
                    fill: None,
                    cond: format!("{mine} IS NULL AND {parent} IS NULL"),
                    message: format!(
                        "in {} with a NULL {col} that {through} does not give a tenant",
                        t.name
                    ),
                    fix: format!(
                        "set {col} on these rows by hand, or set {through} to a row that has one, or \
                         delete them"
                    ),
                });
            }
            None => probes.push(Probe {
                rule: RuleId::NullTenant,
                via: Vec::new(),
                fill: None,
                cond: format!("{mine} IS NULL"),
                message: format!("in {} with a NULL {col}", t.name),
                fix: format!(
                    "set {col} on these rows by hand (no foreign key to derive it from), or \
                     delete them"
                ),
            }),
        }
    }
    let root = ctx.tenant.root.as_ref();
    for fk in ctx.cat.foreign_keys_of(t) {
        let Some(r) = ctx.cat.table(&fk.ref_table) else {
            continue;
        };
        let Some(rc) = ctx.class_of(ctx.cat.top_parent(r)) else {
            continue;
        };
        if !rc.is_tenant() {
            continue;
        }
        let theirs = ctx.tenant_column(r);
        let same_position = fk
            .columns
            .iter()
            .zip(&fk.ref_columns)
            .any(|(a, b)| a == col && b == theirs);
        // Enforced by the FK itself; and an FK to the root through another
        // column is dropped, not rewritten (see the FK rules).
        if same_position || root == Some(&r.name) {
            continue;
        }
        let hops = if fk.ref_table == t.name {
            vec![Hop::along(&t.name, fk)]
        } else {
            let Some(h) = hops_through(ctx, t, fk) else {
                continue;
            };
            h
        };
        let Some(other) = chain(ctx, &hops, &mut next) else {
            continue;
        };
        from.push_str(&other.joins);
        probes.push(Probe {
            fill: None,
            rule: RuleId::CrossTenantRows,
            via: vec![fk.name.clone()],
            cond: differ(&me, &other.expr, &other.type_name),
            message: format!(
                "in {} with another {col} than the {} row they reference through {}: the \
                 composite foreign key ({col}, {}) → {} ({theirs}, {}) would fail",
                t.name,
                fk.ref_table,
                fk.columns.join(", "),
                fk.columns.join(", "),
                fk.ref_table,
                fk.ref_columns.join(", ")
            ),
            fix: format!(
                "correct {col} or {} on these rows so both name the same tenant (or delete \
                 them); {}",
                fk.columns.join(", "),
                by_design(ctx, t, fk)
            ),
        });
    }
    (!probes.is_empty()).then(|| TablePlan {
        table: t.name.clone(),
        scan,
        from,
        key: key_text(t),
        probes,
    })
}

/// Plans every check (pure: what the unit tests look at).
fn plan_all(ctx: &Ctx, full: bool, limit: i64) -> Vec<TablePlan> {
    let mut out = Vec::new();
    for (t, class) in ctx.tables() {
        if t.parent.is_some() || t.kind == TableKind::Foreign {
            continue;
        }
        let (rows, bytes) = estimate(ctx, t);
        let scan = choose_scan(rows, bytes, full, limit);
        let plan = match class {
            Class::NeedsColumn { path, also, .. } if !path.is_empty() => {
                plan_needs(ctx, t, path, also, scan)
            }
            // The root too: its own keys to its tenant tables (a store's
            // manager among the staff) must stay within the tenant.
            Class::Root | Class::Distributed => plan_distributed(ctx, t, scan),
            _ => None,
        };
        out.extend(plan);
    }
    out
}

/// How far the checks go.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// Every row, no timeout (`--full`).
    pub full: bool,
    /// Rows read per table at most otherwise.
    pub sample_rows: i64,
    /// `statement_timeout` of each query otherwise (as in SET).
    pub statement_timeout: String,
}

impl Bounds {
    /// The defaults ([`SAMPLE_ROWS`], [`STATEMENT_TIMEOUT`]), or `--full`.
    pub fn new(full: bool) -> Bounds {
        Bounds {
            full,
            sample_rows: SAMPLE_ROWS,
            statement_timeout: STATEMENT_TIMEOUT.into(),
        }
    }
    /// The session's `statement_timeout` while checking.
    pub(crate) fn timeout_setting(&self) -> &str {
        if self.full {
            "0"
        } else {
            &self.statement_timeout
        }
    }
}

pub(crate) fn error_text(e: &tokio_postgres::Error, b: &Bounds) -> String {
    if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) && !b.full {
        format!(
            "timed out after {} (statement_timeout)",
            b.statement_timeout
        )
    } else {
        crate::conn::error_text(e)
    }
}

/// Runs the checks of one table.
async fn run(client: &Client, p: &TablePlan, b: &Bounds) -> Vec<DataCheck> {
    let mk = |probe: &Probe, scanned: i64, rows: i64, error: Option<String>| DataCheck {
        rule: probe.rule,
        table: p.table.clone(),
        via: probe.via.clone(),
        scan: p.scan,
        rows_scanned: scanned,
        rows,
        examples: Vec::new(),
        message: format!(
            "{rows} row{} {} ({})",
            if rows == 1 { "" } else { "s" },
            probe.message,
            p.scan.describe(scanned)
        ),
        fix: probe.fix.clone(),
        error,
        fill: probe.fill.clone(),
    };
    let row = match client.query_one(&p.count_sql(), &[]).await {
        Ok(r) => r,
        Err(e) => {
            let msg = error_text(&e, b);
            return p
                .probes
                .iter()
                .map(|probe| mk(probe, 0, 0, Some(msg.clone())))
                .collect();
        }
    };
    let scanned: i64 = row.get(0);
    let mut out = Vec::new();
    for (i, probe) in p.probes.iter().enumerate() {
        let n: i64 = row.get(i + 1);
        let mut c = mk(probe, scanned, n, None);
        if n > 0 {
            match client.query(&p.examples_sql(i), &[]).await {
                Ok(rows) => c.examples = rows.iter().map(|r| r.get(0)).collect(),
                Err(e) => {
                    c.examples = vec![format!("(examples unavailable: {})", error_text(&e, b))]
                }
            }
        }
        out.push(c);
    }
    out
}

/// Runs every data check. Bounded unless `full` (see the module doc).
pub async fn check(ctx: &Ctx<'_>, client: &Client, full: bool) -> Result<DataReport, AnalyzeError> {
    check_with(ctx, client, &Bounds::new(full)).await
}

/// [`check`] within other bounds (tests use small ones to exercise
/// sampling and timeouts on small tables).
pub async fn check_with(
    ctx: &Ctx<'_>,
    client: &Client,
    b: &Bounds,
) -> Result<DataReport, AnalyzeError> {
    let plans = plan_all(ctx, b.full, b.sample_rows);
    let timeout = b.timeout_setting();
    let mut report = DataReport {
        exact: b.full,
        sample_rows: b.sample_rows,
        statement_timeout: (!b.full).then(|| b.statement_timeout.clone()),
        checks: Vec::new(),
    };
    if plans.is_empty() {
        return Ok(report);
    }
    let before = catalog::statement_timeout(client)
        .await
        .map_err(super::db("cannot read statement_timeout"))?;
    catalog::set_statement_timeout(client, timeout)
        .await
        .map_err(super::db("cannot set statement_timeout"))?;
    for p in &plans {
        report.checks.extend(run(client, p, b).await);
    }
    catalog::set_statement_timeout(client, &before)
        .await
        .map_err(super::db("cannot restore statement_timeout"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    fn tailspin_plans(full: bool, limit: i64) -> Vec<TablePlan> {
        let cat = tailspin();
        with_ctx(&cat, &Default::default(), |ctx| plan_all(ctx, full, limit))
    }

    #[test]
    fn scan_choice() {
        assert_eq!(choose_scan(10, 0, false, 100), Scan::Exact);
        assert_eq!(choose_scan(10_000, 0, true, 100), Scan::Exact);
        assert_eq!(
            choose_scan(10_000, 0, false, 100),
            Scan::Sample { percent: 1.0 }
        );
        // Never analyzed: judged by its size.
        assert_eq!(
            choose_scan(0, 1_000_000, false, 100),
            Scan::Sample { percent: 1.0 }
        );
        assert_eq!(choose_scan(0, 8192, false, 100), Scan::Exact);
        assert!(Scan::Exact.describe(5).contains("in all 5 rows"));
        assert!(Scan::Sample { percent: 2.5 }
            .describe(5)
            .contains("in a sample of 5 rows (TABLESAMPLE SYSTEM 2.5%"));
    }

    #[test]
    fn line_items_orphans_and_cross_tenant_along_both_fks() {
        let plans = tailspin_plans(true, SAMPLE_ROWS);
        let li = plans
            .iter()
            .find(|p| p.table.name == "line_items")
            .expect("line_items is checked");
        let rules: Vec<_> = li.probes.iter().map(|p| p.rule).collect();
        // Both keys are nullable: a line item without an order takes its
        // tenant from its product (automatic), one with neither is an
        // orphan.
        assert_eq!(
            rules,
            [
                RuleId::OrphanRows,
                RuleId::OrphanRows,
                RuleId::CrossTenantRows
            ]
        );
        let both = ["line_items_order_id_fkey", "line_items_product_id_fkey"];
        assert_eq!(li.probes[0].via, both);
        assert!(li.probes[0].fill.is_none());
        assert!(li.probes[1].fill.is_some());
        assert!(li.probes[1].fix.starts_with("automatic"));
        assert_eq!(li.probes[2].via, both);
        assert!(li.probes[2].message.contains("composite foreign key"));
        let sql = li.count_sql();
        assert!(sql.starts_with("SELECT /* shardready */ count(*)"), "{sql}");
        assert!(sql.contains(
            "FROM \"public\".\"line_items\" t0 LEFT JOIN \"public\".\"orders\" t1 ON t1.\"order_id\" = t0.\"order_id\""
        ), "{sql}");
        assert!(
            sql.contains(
                "LEFT JOIN \"public\".\"products\" t2 ON t2.\"product_id\" = t0.\"product_id\""
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                "count(*) FILTER (WHERE coalesce(t1.\"store_id\", t2.\"store_id\") IS NULL)"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("coalesce(t1.\"store_id\", t2.\"store_id\") <> t2.\"store_id\""),
            "{sql}"
        );
        assert!(!sql.contains(" t3 "), "products joined once: {sql}");
        assert!(!sql.contains("TABLESAMPLE"));
        assert_eq!(li.key, "t0.\"line_item_id\"::text");
        let ex = li.examples_sql(1);
        assert!(ex.ends_with("LIMIT 5"), "{ex}");
    }

    #[test]
    fn distributed_tables_check_nulls_but_not_fks_through_the_tenant_column() {
        let plans = tailspin_plans(true, SAMPLE_ROWS);
        let orders = plans.iter().find(|p| p.table.name == "orders").unwrap();
        assert_eq!(
            orders.probes.len(),
            1,
            "only null-tenant: orders → stores is by store_id"
        );
        assert_eq!(orders.probes[0].rule, RuleId::NullTenant);
        assert!(orders.probes[0].fix.contains("by hand"));
        assert!(
            plans.iter().all(|p| p.table.name != "stores"),
            "root: nothing to check"
        );
    }

    #[test]
    fn big_tables_are_sampled() {
        let plans = tailspin_plans(false, 100);
        let li = plans.iter().find(|p| p.table.name == "line_items").unwrap();
        // 4,002,959 estimated rows, 100 wanted: 0.002498 %.
        assert!(
            li.from
                .contains("TABLESAMPLE SYSTEM (0.002498) REPEATABLE (7)"),
            "{}",
            li.from
        );
        assert!(matches!(li.scan, Scan::Sample { .. }));
    }

    #[test]
    fn distributed_child_with_fk_to_parent_is_cross_checked_and_has_a_backfill_source() {
        // line_items already has store_id (nullable), FK to orders by order_id only.
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("orders")
                .col("order_id", "bigint")
                .col_notnull("store_id", "bigint")
                .pk(&["order_id"])
                .fk(
                    "orders_store_id_fkey",
                    &["store_id"],
                    "stores",
                    &["store_id"],
                ),
            table("line_items")
                .col("id", "bigint")
                .col("order_id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("li_order", &["order_id"], "orders", &["order_id"])
                .fk("li_store", &["store_id"], "stores", &["store_id"]),
        ]);
        let plans = with_ctx(&cat, &Default::default(), |ctx| plan_all(ctx, true, 10));
        let li = plans.iter().find(|p| p.table.name == "line_items").unwrap();
        let rules: Vec<_> = li.probes.iter().map(|p| p.rule).collect();
        assert_eq!(
            rules,
            [
                RuleId::NullTenant,
                RuleId::NullTenant,
                RuleId::CrossTenantRows
            ]
        );
        // NULLs that order_id gives a tenant: apply fills them; the others
        // need the user.
        assert!(li.probes[0]
            .fix
            .contains("apply fills them from orders through order_id"));
        assert_eq!(li.probes[0].via, ["li_order"]);
        assert!(li.probes[0].fill.is_some());
        assert!(li.probes[0].cond.contains("t1.\"store_id\" IS NOT NULL"));
        assert!(li.probes[1].fill.is_none() && li.probes[1].fix.contains("by hand"));
        assert_eq!(li.probes[2].via, ["li_order"]);
        assert!(li.probes[2]
            .cond
            .contains("t0.\"store_id\" <> t2.\"store_id\""));
        let orders = plans.iter().find(|p| p.table.name == "orders");
        assert!(
            orders.is_none(),
            "NOT NULL, FK by the tenant column: nothing to check"
        );
    }

    #[test]
    fn the_roots_own_key_to_a_tenant_table_is_cross_checked() {
        // A store's manager is one of the staff: of the same store.
        let cat = catalog(vec![
            table("stores")
                .col("store_id", "bigint")
                .col("manager_id", "bigint")
                .pk(&["store_id"])
                .fk("s_manager", &["manager_id"], "staff", &["staff_id"]),
            table("staff")
                .col("staff_id", "bigint")
                .col_notnull("store_id", "bigint")
                .pk(&["staff_id"])
                .fk("staff_store", &["store_id"], "stores", &["store_id"]),
        ]);
        let o = crate::analyze::Overrides {
            tenant_column: Some("store_id".into()),
            ..Default::default()
        };
        let plans = with_ctx(&cat, &o, |ctx| plan_all(ctx, true, 10));
        let stores = plans.iter().find(|p| p.table.name == "stores").unwrap();
        assert_eq!(stores.probes.len(), 1);
        assert_eq!(stores.probes[0].rule, RuleId::CrossTenantRows);
        assert_eq!(stores.probes[0].via, ["s_manager"]);
        assert!(stores.probes[0]
            .cond
            .contains("t0.\"store_id\" <> t1.\"store_id\""));
    }

    #[test]
    fn composite_keys_and_types_that_differ_compare_as_text() {
        let cat = catalog(vec![
            table("accounts").col("id", "integer").pk(&["id"]).rows(10),
            table("projects")
                .col("account_id", "bigint")
                .col("id", "bigint")
                .pk(&["account_id", "id"])
                .fk("p_acc", &["account_id"], "accounts", &["id"])
                .rows(5000),
            table("tasks")
                .col("id", "bigint")
                .col("project_account", "bigint")
                .col("project_id", "bigint")
                .pk(&["id"])
                .fk(
                    "t_proj",
                    &["project_account", "project_id"],
                    "projects",
                    &["account_id", "id"],
                )
                .fk("t_acc", &["project_account"], "accounts", &["id"]),
        ]);
        let o = crate::analyze::Overrides {
            tenant_column: Some("account_id".into()),
            ..Default::default()
        };
        let plans = with_ctx(&cat, &o, |ctx| plan_all(ctx, true, 10));
        let tasks = plans.iter().find(|p| p.table.name == "tasks").unwrap();
        assert!(
            tasks.from.contains(
                "t1.\"account_id\" = t0.\"project_account\" AND t1.\"id\" = t0.\"project_id\""
            ),
            "{}",
            tasks.from
        );
        // tasks → accounts (integer id) vs → projects (bigint account_id).
        let x = tasks
            .probes
            .iter()
            .find(|p| p.rule == RuleId::CrossTenantRows)
            .unwrap();
        assert!(x.cond.contains("::text <> "), "{}", x.cond);
        assert_eq!(
            tasks.probes[0].via,
            ["t_proj"],
            "the larger parent is the path"
        );
        assert!(
            plans.iter().all(|p| p.table.name != "projects"),
            "NOT NULL through its key, FK to the root by the tenant column: nothing to check"
        );
    }

    #[test]
    fn findings_only_for_offending_or_incomplete_checks() {
        let base = DataCheck {
            rule: RuleId::OrphanRows,
            table: QName::new("public", "t"),
            via: vec!["t_fk".into()],
            scan: Scan::Exact,
            rows_scanned: 10,
            rows: 0,
            examples: vec![],
            message: "m".into(),
            fix: "f".into(),
            error: None,
            fill: None,
        };
        let mut bad = base.clone();
        bad.rows = 2;
        bad.examples = vec!["1".into(), "2".into()];
        let mut broken = base.clone();
        broken.error = Some("timed out".into());
        let r = DataReport {
            checks: vec![base, bad, broken],
            ..Default::default()
        };
        let f = r.findings();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].rule, RuleId::OrphanRows);
        assert_eq!(f[0].severity, Severity::Blocker);
        assert!(f[0].message.ends_with("e.g. 1; 2"));
        assert_eq!(f[1].rule, RuleId::DataCheckIncomplete);
        assert_eq!(f[1].severity, Severity::Warning);
    }

    #[test]
    fn keys_as_text() {
        let t = table("x")
            .col("a", "int")
            .col("b", "int")
            .pk(&["a", "b"])
            .build();
        assert_eq!(
            key_text(&t),
            "'(' || concat_ws(', ', t0.\"a\"::text, t0.\"b\"::text) || ')'"
        );
        let t = table("x").col("a", "int").build();
        assert_eq!(key_text(&t), "'ctid ' || t0.ctid::text");
        let t = table("x")
            .col_notnull("a", "int")
            .unique_index("x_a", &["a"])
            .build();
        assert_eq!(key_text(&t), "t0.\"a\"::text");
    }
}
