//! Whether a tenant-scoped query goes to one shard: the plan of a count
//! for one tenant key, taken from the table itself and written as a
//! literal the column's own type reads (`'3f2a…'` for a uuid, `'42'` for
//! an integer or text), so the check works whatever the key's type.

use tokio_postgres::Client;

use super::{db, CitusError};
use crate::catalog::QName;
use crate::sql::ident;

/// The EXPLAIN of `SELECT count(*) FROM table WHERE column = <a key the
/// table holds>`; None when the table holds no key to look up.
pub(crate) async fn one_tenant_plan(
    client: &Client,
    table: &QName,
    column: &str,
) -> Result<Option<String>, CitusError> {
    let (t, col) = (table.sql(), ident(column));
    let Some(row) = client
        .query_opt(
            &format!("SELECT format('%L', {col}) FROM {t} WHERE {col} IS NOT NULL LIMIT 1"),
            &[],
        )
        .await
        .map_err(db("cannot read a tenant key"))?
    else {
        return Ok(None);
    };
    let value: String = row.get(0);
    let rows = client
        .query(
            &format!("EXPLAIN SELECT count(*) FROM {t} WHERE {col} = {value}"),
            &[],
        )
        .await
        .map_err(db("cannot EXPLAIN the tenant-scoped query"))?;
    Ok(Some(
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}
