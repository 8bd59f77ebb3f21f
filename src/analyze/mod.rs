//! `analyze`: the readiness report. From one catalog read it infers the
//! tenant column ([`tenant`]), classifies every table, checks every rule
//! Citus enforces ([`rules`], one file per rule family), checks the data
//! ([`data`]), audits the application's queries ([`queries`]) and measures
//! tenant skew ([`skew`]). Everything later (plan, apply, verify,
//! distribute) starts from an [`Analysis`].

pub mod accept_all;
pub mod access;
pub mod data;
pub mod fan_out;
pub(crate) mod lost_lookups;
pub mod polymorphic;
pub(crate) mod queries;
pub(crate) mod regroup;
pub mod rules;
pub mod skew;
pub mod tenant;
#[cfg(test)]
pub(crate) mod testkit;

use serde::Serialize;
use thiserror::Error;
use tokio_postgres::Client;

use crate::catalog::{Catalog, QName};
pub use rules::id::RuleId;
pub use tenant::{Class, Classified, Hop, Overrides, Tenant};

#[derive(Debug, Error)]
pub enum AnalyzeError {
    #[error(
        "no tenant column found: no column references another table's key through a foreign \
         key. Name it with --tenant-column COLUMN"
    )]
    NoTenantColumn,
    #[error(
        "the tenant column is ambiguous: {}. The foreign keys alone do not tell the tenant from \
         a lookup here (tables reference several of them). Choose one with --tenant-column COLUMN",
        candidates.join("; ")
    )]
    AmbiguousTenantColumn { candidates: Vec<String> },
    #[error("no table has a column `{column}`{}", if suggestions.is_empty() { String::new() } else { format!("; candidates: {}", suggestions.join(", ")) })]
    UnknownTenantColumn {
        column: String,
        suggestions: Vec<String>,
    },
    #[error("no table `{0}` (give it as name or schema.name, as in the catalog)")]
    UnknownTable(String),
    #[error("--path {table}={name}: {table} has no foreign key `{name}`{}", if available.is_empty() { String::new() } else { format!("; its foreign keys: {}", available.join(", ")) })]
    UnknownForeignKey {
        table: String,
        name: String,
        available: Vec<String>,
    },
    #[error("--path {table}={name}: {why}")]
    UnusablePath {
        table: String,
        name: String,
        why: String,
    },
    #[error("the database has no tables in its user schemas: nothing to analyze")]
    Empty,
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

pub(crate) fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> AnalyzeError + '_ {
    move |e| AnalyzeError::Db(crate::db::DbError::new(context, e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Citus would refuse the table as it is (or the preparation would fail).
    Blocker,
    /// Works, but costs something or needs attention.
    Warning,
    Info,
}

/// One thing the analyzer found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    /// Stable identifier, e.g. `unique-without-tenant`.
    pub rule: RuleId,
    pub severity: Severity,
    pub table: Option<QName>,
    /// The constraint, index, column, trigger or function concerned.
    pub object: Option<String>,
    pub message: String,
    /// What Citus would say (its error text), when it would refuse.
    pub citus_error: Option<String>,
    /// What shardready's plan does about it, or what the user must do.
    pub fix: String,
    /// Whether `plan`/`apply` fix it without the user.
    pub automatic: bool,
}

impl Finding {
    /// Whether `apply` (and `plan`) must stop on it: a blocker only the
    /// user can resolve, that concerns the preparation. Queries Citus will
    /// refuse matter at `distribute`: the application keeps working while
    /// the tables are prepared.
    pub fn blocks_apply(&self) -> bool {
        self.severity == Severity::Blocker
            && !self.automatic
            && !matches!(
                self.rule,
                RuleId::NonColocatedJoin | RuleId::FunctionOnShard
            )
    }

    /// One line for lists of blockers (apply, verify and distribute print
    /// the same): `[rule] table: message — fix: fix`.
    pub fn line(&self) -> String {
        format!(
            "[{}] {}{} — fix: {}",
            self.rule,
            self.table
                .as_ref()
                .map(|t| format!("{t}: "))
                .unwrap_or_default(),
            self.message,
            self.fix
        )
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    pub overrides: Overrides,
    /// Exact data checks (full scans) instead of bounded samples.
    pub full: bool,
    /// Skip the data checks and the skew (catalog only).
    pub catalog_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableSummary {
    pub table: QName,
    #[serde(flatten)]
    pub class: Classified,
    pub row_estimate: i64,
    pub size_bytes: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
pub struct Counts {
    pub blockers: usize,
    pub warnings: usize,
    pub infos: usize,
}

/// The readiness report (`--format json` prints this; schema
/// `shardready.analysis/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub schema: &'static str,
    pub database: String,
    pub tenant: Tenant,
    pub tables: Vec<TableSummary>,
    pub findings: Vec<Finding>,
    pub data: Option<data::DataReport>,
    pub skew: Option<skew::Skew>,
    pub counts: Counts,
    /// Tables Citus already has: this database is (partly) distributed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub placed: Vec<crate::catalog::Placement>,
    /// Foreign keys the user chose to drop (`--drop-fk`), with their
    /// definitions: the analysis saw the schema without them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_fks: Vec<DroppedFk>,
    /// `--fix-fk-actions`: the plan makes the FK actions Citus refuses NO
    /// ACTION.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fix_fk_actions: bool,
    /// The overrides given, as flags (recorded in the plan and reports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolutions: Vec<String>,
    /// The application's known statements and what they look tables up
    /// by (the plan keeps those access paths).
    pub statements: access::Statements,
    /// `--key-order` choices.
    #[serde(skip)]
    pub key_order: Vec<tenant::KeyOrderChoice>,
    /// `--no-lookup-index`.
    #[serde(skip)]
    pub no_lookup_index: bool,
}

/// A foreign key dropped at the user's request, and how to restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedFk {
    pub table: QName,
    pub name: String,
    /// As `pg_get_constraintdef` gives it.
    pub definition: String,
}

/// The catalog without the foreign keys `--drop-fk` names, and those keys
/// (a key no longer there was dropped already); an unknown table is an
/// error.
pub fn without_dropped_fks(
    cat: &Catalog,
    overrides: &Overrides,
) -> Result<(Catalog, Vec<DroppedFk>), AnalyzeError> {
    let mut out = cat.clone();
    let mut dropped = Vec::new();
    for r in &overrides.drop_fk {
        let t = out
            .tables
            .iter_mut()
            .find(|t| t.name == r.table)
            .ok_or_else(|| AnalyzeError::UnknownTable(r.table.to_string()))?;
        // Not there: dropped already (a rerun, or verify afterwards).
        if let Some(i) = t.foreign_keys.iter().position(|fk| fk.name == r.name) {
            let fk = t.foreign_keys.remove(i);
            dropped.push(DroppedFk {
                table: r.table.clone(),
                name: fk.name,
                definition: fk.definition,
            });
            continue;
        }
        // A key of a partitioned table's partitions (named after one of
        // them, as analyze shows it): dropped from every partition that
        // declares it.
        let partitions = cat.partitions_of(&t.name);
        let shape = partitions
            .iter()
            .flat_map(|p| &p.foreign_keys)
            .find(|fk| fk.name == r.name)
            .map(|fk| {
                (
                    fk.columns.clone(),
                    fk.ref_table.clone(),
                    fk.ref_columns.clone(),
                )
            });
        let Some(shape) = shape else { continue };
        let names: Vec<QName> = partitions.iter().map(|p| p.name.clone()).collect();
        for p in out.tables.iter_mut().filter(|p| names.contains(&p.name)) {
            p.foreign_keys.retain(|fk| {
                let same = (
                    fk.columns.clone(),
                    fk.ref_table.clone(),
                    fk.ref_columns.clone(),
                ) == shape;
                if same {
                    dropped.push(DroppedFk {
                        table: p.name.clone(),
                        name: fk.name.clone(),
                        definition: fk.definition.clone(),
                    });
                }
                !same
            });
        }
    }
    Ok((out, dropped))
}

impl Analysis {
    pub fn has_blockers(&self) -> bool {
        self.counts.blockers > 0
    }
    pub fn class_of(&self, t: &QName) -> Option<&Class> {
        self.tables
            .iter()
            .find(|s| &s.table == t)
            .map(|s| &s.class.class)
    }
}

/// The catalog-only part: tenant, classes and rule findings (pure; what
/// the unit tests exercise).
pub fn analyze_catalog(
    cat: &Catalog,
    overrides: &Overrides,
) -> Result<(Tenant, Vec<Classified>, Vec<Finding>), AnalyzeError> {
    if cat.tables.is_empty() {
        return Err(AnalyzeError::Empty);
    }
    for t in overrides.reference.iter().chain(&overrides.local) {
        if cat.table(t).is_none() {
            return Err(AnalyzeError::UnknownTable(t.to_string()));
        }
    }
    let tenant = tenant::infer(cat, overrides)?;
    let classes = tenant::classify(cat, &tenant, overrides);
    check_paths(cat, &tenant, &classes, overrides)?;
    let ctx = rules::Ctx {
        cat,
        tenant: &tenant,
        classes: &classes,
        overrides,
        reading_functions: Default::default(),
    };
    let findings = rules::check_all(&ctx);
    Ok((tenant, classes, findings))
}

/// Each `--path TABLE=FK` names an FK of TABLE, and TABLE's tenant is
/// derived through it: otherwise the user's choice cannot be honoured, and
/// saying so beats a silent other path.
fn check_paths(
    cat: &Catalog,
    tenant: &Tenant,
    classes: &[Classified],
    overrides: &Overrides,
) -> Result<(), AnalyzeError> {
    for p in &overrides.path {
        let err = |why: String| AnalyzeError::UnusablePath {
            table: p.table.to_string(),
            name: p.name.clone(),
            why,
        };
        let t = cat
            .table(&p.table)
            .ok_or_else(|| AnalyzeError::UnknownTable(p.table.to_string()))?;
        let fks = cat.foreign_keys_of(t);
        let Some(fk) = fks.iter().find(|fk| fk.name == p.name) else {
            return Err(AnalyzeError::UnknownForeignKey {
                table: p.table.to_string(),
                name: p.name.clone(),
                available: fks.iter().map(|fk| fk.name.clone()).collect(),
            });
        };
        let Some(c) = classes.iter().find(|c| c.table == p.table) else {
            continue; // a partition: its parent's path is its own
        };
        match &c.class {
            Class::NeedsColumn { path, also, .. }
                if path[0].fk == p.name || also.iter().any(|a| a[0].fk == p.name) => {}
            Class::Root | Class::Distributed => {
                return Err(err(format!(
                    "{} has {} already ({}): there is nothing to derive",
                    p.table, tenant.column, c.reason
                )))
            }
            _ if c.overridden => {
                return Err(err(format!(
                    "{} is kept {} ({}): it takes no tenant",
                    p.table,
                    c.class.name(),
                    c.reason
                )))
            }
            _ => {
                return Err(err(format!(
                    "no table with {} can be reached through it (it leads to {})",
                    tenant.column, fk.ref_table
                )))
            }
        }
    }
    for p in &overrides.polymorphic {
        let err = |why: String| AnalyzeError::UnusablePath {
            table: p.table.to_string(),
            name: p.spec(),
            why,
        };
        let Some(c) = classes.iter().find(|c| c.table == p.table) else {
            p.hops(cat).map_err(err)?;
            continue;
        };
        if !matches!(c.class, Class::Root | Class::Distributed) {
            p.hops(cat).map_err(err)?;
        }
        match &c.class {
            Class::NeedsColumn { path, also, .. }
                if std::iter::once(path)
                    .chain(also)
                    .any(|x| x.iter().any(|h| p.is_hop(h))) => {}
            Class::Root | Class::Distributed => {
                return Err(err(format!(
                    "{} has {} already ({}): there is nothing to derive",
                    p.table, tenant.column, c.reason
                )))
            }
            _ => {
                return Err(err(format!(
                    "none of the types' tables has {} or reaches a table that has it",
                    tenant.column
                )))
            }
        }
    }
    Ok(())
}

/// "a" or "an" before `word` (by its first letter: good enough for column
/// and type names).
pub(crate) fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// Reads the catalog and runs every check.
pub async fn analyze(client: &Client, opts: &AnalyzeOptions) -> Result<Analysis, AnalyzeError> {
    let cat = Catalog::read(client)
        .await
        .map_err(db("cannot read the catalog"))?;
    analyze_read(client, &cat, opts).await
}

/// [`analyze`] on a catalog already read.
/// The catalog and its analysis, read in one go (for commands that need
/// both: `plan`, `distribute`).
pub async fn read_with_catalog(
    client: &Client,
    opts: &AnalyzeOptions,
) -> Result<(Catalog, Analysis), AnalyzeError> {
    let cat = Catalog::read(client)
        .await
        .map_err(db("cannot read the catalog"))?;
    let analysis = analyze_read(client, &cat, opts).await?;
    Ok((cat, analysis))
}

pub async fn analyze_read(
    client: &Client,
    cat: &Catalog,
    opts: &AnalyzeOptions,
) -> Result<Analysis, AnalyzeError> {
    let (without, dropped_fks) = without_dropped_fks(cat, &opts.overrides)?;
    let cat = &without;
    let (tenant, classes, mut findings) = analyze_catalog(cat, &opts.overrides)?;
    let ctx = rules::Ctx {
        cat,
        tenant: &tenant,
        classes: &classes,
        overrides: &opts.overrides,
        reading_functions: Default::default(),
    };
    findings.extend(queries::audit(&ctx, client).await?);
    let statements = access::read(cat, client, &opts.overrides.queries).await;
    findings.extend(lost_lookups::check(&ctx, &statements));
    let (data, skew) = if opts.catalog_only {
        (None, None)
    } else {
        findings.extend(polymorphic::suggest(&ctx, client).await);
        let d = data::check(&ctx, client, opts.full).await?;
        findings.extend(d.findings());
        let s = skew::measure_with(&ctx, client, opts.full).await?;
        findings.extend(s.findings());
        (Some(d), Some(s))
    };
    findings.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then_with(|| a.table.cmp(&b.table))
            .then_with(|| a.rule.as_str().cmp(b.rule.as_str()))
    });
    let counts = Counts {
        blockers: findings
            .iter()
            .filter(|f| f.severity == Severity::Blocker)
            .count(),
        warnings: findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count(),
        infos: findings
            .iter()
            .filter(|f| f.severity == Severity::Info)
            .count(),
    };
    let tables = classes
        .iter()
        .map(|c| {
            let t = cat.table(&c.table);
            TableSummary {
                table: c.table.clone(),
                class: c.clone(),
                row_estimate: t.map(|t| t.row_estimate).unwrap_or(0),
                size_bytes: t.map(|t| t.size_bytes).unwrap_or(0),
            }
        })
        .collect();
    Ok(Analysis {
        schema: "shardready.analysis/v1",
        database: cat.database.clone(),
        tenant,
        tables,
        findings,
        data,
        skew,
        counts,
        placed: cat.placed.clone(),
        dropped_fks,
        fix_fk_actions: opts.overrides.fix_fk_actions,
        resolutions: opts.overrides.to_args(),
        statements,
        key_order: opts.overrides.key_order.clone(),
        no_lookup_index: opts.overrides.no_lookup_index,
    })
}
