//! What `distribute` keeps and reads back so a rerun after any failure or
//! kill finishes the job: every foreign key it drops, saved in
//! `shardready.distribute_fk` *before* it is dropped (and restored into the
//! catalog a rerun plans from), and the live facts each statement's
//! done-check asks (which tables Citus has, which FKs exist).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tokio_postgres::Client;

use super::CitusError;
use crate::catalog::{Catalog, ForeignKey, QName};
use crate::db::{self, DbError};

const SCHEMA_SQL: [&str; 2] = [
    "CREATE SCHEMA IF NOT EXISTS shardready",
    "CREATE TABLE IF NOT EXISTS shardready.distribute_fk (
    table_schema text NOT NULL,
    table_name text NOT NULL,
    name text NOT NULL,
    fk jsonb NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name, name)
)",
];

/// A foreign key `distribute` dropped (or is about to) and must re-add.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedFk {
    pub table: QName,
    pub fk: ForeignKey,
}

/// Saves the definitions (idempotent: a key saved before stays as it was).
pub async fn save_fks(client: &Client, fks: &[SavedFk]) -> Result<(), DbError> {
    let mut statements: Vec<String> = SCHEMA_SQL.iter().map(|s| s.to_string()).collect();
    for f in fks {
        let json = serde_json::to_string(&f.fk).expect("a foreign key serializes");
        statements.push(format!(
            "INSERT INTO shardready.distribute_fk (table_schema, table_name, name, fk) \
             VALUES ({}, {}, {}, {}::jsonb) ON CONFLICT DO NOTHING",
            crate::sql::literal(&f.table.schema),
            crate::sql::literal(&f.table.name),
            crate::sql::literal(&f.fk.name),
            crate::sql::literal(&json)
        ));
    }
    db::in_txn(client, &statements).await.map_err(DbError::ctx(
        "cannot save the foreign keys distribute drops",
    ))
}

/// The saved definitions (none when nothing was ever saved).
pub async fn saved_fks(client: &Client) -> Result<Vec<SavedFk>, CitusError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('shardready.distribute_fk') IS NOT NULL",
            &[],
        )
        .await
        .map_err(DbError::ctx("cannot read distribute's state"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT table_schema, table_name, fk FROM shardready.distribute_fk \
             ORDER BY saved_at, table_schema, table_name, name",
            &[],
        )
        .await
        .map_err(DbError::ctx("cannot read the saved foreign keys"))?;
    let mut out = Vec::new();
    for r in rows {
        let v: serde_json::Value = r.get(2);
        let fk: ForeignKey = serde_json::from_value(v).map_err(|e| {
            CitusError::BadState(format!(
                "shardready.distribute_fk holds a definition this version cannot read: {e}"
            ))
        })?;
        out.push(SavedFk {
            table: QName::new(r.get(0), r.get(1)),
            fk,
        });
    }
    Ok(out)
}

/// Forgets the saved definitions once every one of them is back.
pub async fn forget_fks(client: &Client) -> Result<(), DbError> {
    db::exec(client, "DELETE FROM shardready.distribute_fk")
        .await
        .map_err(DbError::ctx("cannot clear the saved foreign keys"))
}

/// Puts saved keys that are missing back into the catalog a rerun plans
/// and analyzes from (as they were before distribute dropped them); the
/// names of those it put back.
pub fn restore_into(cat: &mut Catalog, saved: &[SavedFk]) -> Vec<String> {
    let mut restored = Vec::new();
    for s in saved {
        if let Some(t) = cat.tables.iter_mut().find(|t| t.name == s.table) {
            if !t.foreign_keys.iter().any(|f| f.name == s.fk.name) {
                t.foreign_keys.push(s.fk.clone());
                restored.push(format!("{}.{}", s.table, s.fk.name));
            }
        }
    }
    restored
}

/// What the done-checks ask, read once per batch.
#[derive(Debug, Default)]
pub struct Live {
    /// Citus tables and their type (`distributed`, `reference`, `local`).
    pub citus: BTreeMap<QName, String>,
    /// Their colocation group.
    pub colocation: BTreeMap<QName, i64>,
    /// Foreign keys present, with whether they are validated.
    pub fks: BTreeMap<(QName, String), bool>,
}

impl Live {
    pub async fn read(client: &Client, tables: &BTreeSet<QName>) -> Result<Live, DbError> {
        let has_citus = crate::catalog::extension_installed(client, "citus")
            .await
            .map_err(DbError::ctx("cannot read pg_extension"))?;
        let mut live = Live::default();
        if has_citus {
            // The done-checks need no sizes.
            for p in crate::catalog::citus_placements(client, false)
                .await
                .map_err(DbError::ctx("cannot read Citus's tables"))?
            {
                live.colocation.insert(p.table.clone(), p.colocation_id);
                live.citus.insert(p.table, p.kind);
            }
        }
        live.fks = foreign_keys(client, tables).await?;
        Ok(live)
    }
}

/// The foreign keys declared on `tables` and on their partitions (where a
/// key of a partitioned table is added first), with whether each is
/// validated; those a partitioned table in `tables` passes down to its
/// partitions are there under the partitions' names.
async fn foreign_keys(
    client: &Client,
    tables: &BTreeSet<QName>,
) -> Result<BTreeMap<(QName, String), bool>, DbError> {
    let mut fks = BTreeMap::new();
    let (schemas, names): (Vec<String>, Vec<String>) = tables
        .iter()
        .map(|q| (q.schema.clone(), q.name.clone()))
        .unzip();
    for r in client
        .query(
            "SELECT n.nspname::text, c.relname::text, con.conname::text, con.convalidated \
                 FROM unnest($1::text[], $2::text[]) AS t(s, r) \
                 JOIN pg_catalog.pg_namespace tn ON tn.nspname = t.s \
                 JOIN pg_catalog.pg_class tc ON tc.relnamespace = tn.oid AND tc.relname = t.r \
                 CROSS JOIN LATERAL (SELECT tc.oid AS relid, 0 AS level UNION ALL \
                                     SELECT relid, level FROM pg_catalog.pg_partition_tree(tc.oid) \
                                      WHERE level > 0) pt \
                 JOIN pg_catalog.pg_constraint con ON con.conrelid = pt.relid \
                 JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE con.contype = 'f' AND (con.conparentid = 0 OR pt.level > 0)",
            &[&schemas, &names],
        )
        .await
        .map_err(DbError::ctx("cannot read the foreign keys"))?
    {
        fks.insert((QName::new(r.get(0), r.get(1)), r.get(2)), r.get(3));
    }
    Ok(fks)
}

/// Where distribution stands, for `status`: what Citus has, and the keys an
/// interrupted distribute dropped (saved; a rerun re-adds them).
#[derive(Debug, Clone, Serialize)]
pub struct DistributionStatus {
    pub citus_installed: bool,
    pub placed: Vec<crate::catalog::Placement>,
    pub dropped_fks: Vec<DroppedFk>,
}

/// A key distribute saved before dropping it.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedFk {
    pub table: String,
    pub name: String,
    pub definition: String,
    /// Whether it is back in the database.
    pub present: bool,
}

/// Reads [`DistributionStatus`] (None: no Citus and nothing saved).
pub async fn status(client: &Client) -> Result<Option<DistributionStatus>, CitusError> {
    let citus_installed = crate::catalog::extension_installed(client, "citus")
        .await
        .map_err(DbError::ctx("cannot read pg_extension"))?;
    let saved = saved_fks(client).await?;
    if !citus_installed && saved.is_empty() {
        return Ok(None);
    }
    let tables: BTreeSet<QName> = saved.iter().map(|s| s.table.clone()).collect();
    let present = foreign_keys(client, &tables).await?;
    let placed = if citus_installed {
        crate::catalog::citus_placements(client, true)
            .await
            .map_err(DbError::ctx("cannot read Citus's tables"))?
    } else {
        Vec::new()
    };
    Ok(Some(DistributionStatus {
        citus_installed,
        placed,
        dropped_fks: saved
            .iter()
            .map(|s| DroppedFk {
                table: s.table.to_string(),
                name: s.fk.name.clone(),
                definition: s.fk.definition.clone(),
                present: present.contains_key(&(s.table.clone(), s.fk.name.clone())),
            })
            .collect(),
    }))
}
