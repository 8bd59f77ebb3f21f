//! `verify`: the post-conditions of a prepared database — every tenant table
//! has the tenant column NOT NULL, keys and foreign keys include it and are
//! validated, no index is invalid, no user trigger is left, and analyze
//! finds nothing that blocks distribution.

use serde::Serialize;
use tokio_postgres::Client;

use crate::analyze::{self, AnalyzeError, AnalyzeOptions, Severity};
use crate::catalog::{Catalog, KeyKind};

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

pub async fn verify(client: &Client, opts: &AnalyzeOptions) -> Result<Verification, AnalyzeError> {
    let cat = Catalog::read(client)
        .await
        .map_err(analyze::db("cannot read the catalog"))?;
    let a = analyze::analyze_read(client, &cat, opts).await?;
    let tenant_tables: Vec<_> = a
        .tables
        .iter()
        .filter(|s| s.class.class.is_tenant())
        .filter_map(|s| cat.table(&s.table))
        .collect();
    let col_of =
        |t: &crate::catalog::Table| analyze::tenant::tenant_column_of(t, &a.tenant).to_string();

    let mut not_null = Vec::new();
    let mut keys = Vec::new();
    let mut fks = Vec::new();
    let mut triggers = Vec::new();
    for t in &tenant_tables {
        let c = col_of(t);
        match t.column(&c) {
            None => not_null.push(format!("{} has no column {c}", t.name)),
            Some(col) if !col.not_null => not_null.push(format!("{}.{c} allows NULL", t.name)),
            _ => {}
        }
        for k in &t.keys {
            if k.kind != KeyKind::Exclusion && !k.columns.contains(&c) {
                keys.push(format!(
                    "{}: {} ({}) lacks {c}",
                    t.name,
                    k.name,
                    k.columns.join(", ")
                ));
            }
        }
        for ix in t.unique_indexes.iter().filter(|i| i.constraint.is_none()) {
            if !ix.columns.iter().any(|x| x.as_deref() == Some(c.as_str())) {
                keys.push(format!("{}: unique index {} lacks {c}", t.name, ix.name));
            }
        }
        for fk in &t.foreign_keys {
            let to_tenant = a
                .class_of(cat.top_parent(cat.table(&fk.ref_table).unwrap_or(t)))
                .is_some_and(|cl| cl.is_tenant());
            if !fk.validated {
                fks.push(format!("{}: {} is NOT VALID", t.name, fk.name));
            }
            if to_tenant {
                let aligned = cat
                    .table(&fk.ref_table)
                    .is_some_and(|r| analyze::tenant::fk_aligned(fk, t, r, &a.tenant));
                if !aligned {
                    fks.push(format!(
                        "{}: {} does not include {c} on both sides",
                        t.name, fk.name
                    ));
                }
            }
        }
        for tg in &t.triggers {
            triggers.push(format!(
                "{}: trigger {} ({}())",
                t.name, tg.name, tg.function
            ));
        }
    }
    let invalid: Vec<String> = cat
        .tables
        .iter()
        .flat_map(|t| {
            t.invalid_indexes
                .iter()
                .map(move |i| format!("{}: {i}", t.name))
        })
        .collect();
    let blockers: Vec<String> = a
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .map(|f| f.line())
        .collect();
    let checks = vec![
        check(
            &format!("{} is NOT NULL in every tenant table", a.tenant.column),
            not_null,
        ),
        check(
            "every primary key and unique key includes the tenant column",
            keys,
        ),
        check("foreign keys are composite and validated", fks),
        check("no invalid indexes", invalid),
        check("no user triggers on tenant tables", triggers),
        check("analyze reports no blocker", blockers),
    ];
    Ok(Verification {
        schema: "shardready.verify/v1",
        ok: checks.iter().all(|c| c.ok),
        checks,
    })
}
