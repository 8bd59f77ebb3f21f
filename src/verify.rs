//! `verify`: whether a prepared database is what Citus accepts — the
//! analyze rules that `apply` must have satisfied (tenant column NOT NULL,
//! keys and foreign keys include it and are validated, no user trigger on a
//! table to distribute or replicate), no blocker at all, plus apply's own
//! post-conditions (every tenant table has the column, no invalid index).

use serde::Serialize;
use tokio_postgres::Client;

use crate::analyze::{self, AnalyzeError, AnalyzeOptions, RuleId, Severity};
use crate::catalog::Catalog;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// What is wrong (empty when ok).
    pub problems: Vec<String>,
}

/// What `verify --format json` prints (schema `shardready.verify/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub schema: &'static str,
    pub ok: bool,
    pub checks: Vec<Check>,
}

fn check(name: &str, problems: Vec<String>) -> Check {
    Check {
        name: name.into(),
        ok: problems.is_empty(),
        problems,
    }
}

/// Each check but two is the findings of its rules (the rules decide what
/// Citus accepts); the two others are apply's own post-conditions: every
/// tenant table has the column (a missing column is work for the plan, not
/// a finding) and no index build was left invalid.
pub async fn verify(client: &Client, opts: &AnalyzeOptions) -> Result<Verification, AnalyzeError> {
    use RuleId::*;
    let cat = Catalog::read(client)
        .await
        .map_err(analyze::db("cannot read the catalog"))?;
    let a = analyze::analyze_read(client, &cat, opts).await?;
    let of_rules = |rules: &[RuleId]| -> Vec<String> {
        a.findings
            .iter()
            .filter(|f| rules.contains(&f.rule))
            .map(|f| f.line())
            .collect()
    };
    let missing_column = a
        .tables
        .iter()
        .filter(|s| s.class.class.is_tenant())
        .filter_map(|s| cat.table(&s.table))
        .filter_map(|t| {
            let c = analyze::tenant::tenant_column_of(t, &a.tenant);
            t.column(c)
                .is_none()
                .then(|| format!("{} has no column {c}", t.name))
        });
    let invalid = cat.tables.iter().flat_map(|t| {
        t.invalid_indexes
            .iter()
            .map(move |i| format!("{}: {i}", t.name))
    });
    let blockers = a
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .map(|f| f.line());
    let checks = vec![
        check(
            &format!("{} is NOT NULL in every tenant table", a.tenant.column),
            missing_column.chain(of_rules(&[TenantNullable])).collect(),
        ),
        check(
            "every primary key and unique key includes the tenant column",
            of_rules(&[
                PrimaryKeyWithoutTenant,
                UniqueWithoutTenant,
                UniqueIndexWithoutTenant,
            ]),
        ),
        check(
            "foreign keys are composite and validated",
            of_rules(&[FkWithoutTenant, FkNotValidated]),
        ),
        check("no invalid indexes", invalid.collect()),
        check(
            "no user triggers on tables to distribute or replicate (but those kept with --keep-triggers)",
            a.findings
                .iter()
                .filter(|f| f.rule == UserTrigger && f.severity == Severity::Blocker)
                .map(|f| f.line())
                .collect(),
        ),
        check("analyze reports no blocker", blockers.collect()),
    ];
    Ok(Verification {
        schema: "shardready.verify/v1",
        ok: checks.iter().all(|c| c.ok),
        checks,
    })
}
