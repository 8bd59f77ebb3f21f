//! The views whose query relies on a table's key (a GROUP BY of a
//! primary key that selects the table's other columns, as `pg_depend`
//! records it): what a key's swap must carry through, read with every
//! name schema-qualified.

use serde::Serialize;
use tokio_postgres::Client;

use super::QName;

/// A view whose query relies on a table's primary key: it groups by the
/// key and selects the table's other columns (PostgreSQL's functional
/// dependency), so the key cannot be dropped while it stands.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyView {
    pub name: QName,
    pub materialized: bool,
    /// Its query, every name schema-qualified (`pg_get_viewdef` read with
    /// an empty search_path).
    pub definition: String,
    /// Its columns, in order.
    pub columns: Vec<ViewColumn>,
    /// Its `WITH (...)` options (`security_barrier=true`, ...).
    pub options: Vec<String>,
    /// The current role may replace it (a member of its owner).
    pub owned: bool,
    /// The keys it relies on: each table and constraint.
    pub keys: Vec<(QName, String)>,
    /// The columns of tables it uses: each table and column.
    pub uses: Vec<(QName, String)>,
}

/// A view's column: what `CREATE OR REPLACE VIEW` must keep.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ViewColumn {
    pub name: String,
    /// The type with its modifier, schema-qualified (`numeric(10,2)`).
    pub type_sql: String,
    /// The collation (`pg_catalog.default`), for collatable types.
    pub collation: Option<QName>,
}

/// The views that rely on a PRIMARY KEY or UNIQUE constraint (see
/// [`KeyView`]), read with only pg_catalog on the search_path so that
/// their queries, types and collations name every schema: apply re-creates
/// them whatever its own search_path.
const KEY_VIEWS_SQL: &str = "SELECT n.nspname::text AS schema, c.relname::text AS name, \
        c.relkind = 'm' AS materialized, pg_get_viewdef(c.oid) AS def, \
        coalesce(c.reloptions, '{}')::text[] AS options, \
        pg_has_role(c.relowner, 'MEMBER') AS owned, \
        (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod), \
                   cn.nspname, co.collname) \
                 ORDER BY a.attnum) \
           FROM pg_attribute a \
           LEFT JOIN pg_collation co ON co.oid = a.attcollation \
           LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace \
          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns, \
        (SELECT json_agg(DISTINCT jsonb_build_array(tn.nspname, t.relname, con.conname)) \
           FROM pg_rewrite rw \
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid \
                           AND d.refclassid = 'pg_constraint'::regclass \
           JOIN pg_constraint con ON con.oid = d.refobjid AND con.contype IN ('p', 'u') \
           JOIN pg_class t ON t.oid = con.conrelid \
           JOIN pg_namespace tn ON tn.oid = t.relnamespace \
          WHERE rw.ev_class = c.oid) AS keys, \
        (SELECT json_agg(DISTINCT jsonb_build_array(tn.nspname, t.relname, a.attname)) \
           FROM pg_rewrite rw \
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid \
                           AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 \
           JOIN pg_class t ON t.oid = d.refobjid \
           JOIN pg_namespace tn ON tn.oid = t.relnamespace \
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid \
          WHERE rw.ev_class = c.oid) AS uses \
 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
 WHERE c.relkind IN ('v', 'm') \
   AND EXISTS (SELECT 1 FROM pg_rewrite rw \
                 JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid \
                 JOIN pg_constraint con ON con.oid = d.refobjid AND con.contype IN ('p', 'u') \
                WHERE rw.ev_class = c.oid AND d.refclassid = 'pg_constraint'::regclass) \
 ORDER BY 1, 2";

/// Reads [`KEY_VIEWS_SQL`] with pg_catalog alone on the search_path, then
/// puts the session's search_path back.
pub(super) async fn read_key_views(client: &Client) -> Result<Vec<KeyView>, tokio_postgres::Error> {
    let path: String = client
        .query_one("SELECT current_setting('search_path')", &[])
        .await?
        .get(0);
    client
        .query_one("SELECT set_config('search_path', 'pg_catalog', false)", &[])
        .await?;
    let rows = client.query(KEY_VIEWS_SQL, &[]).await;
    client
        .query_one("SELECT set_config('search_path', $1, false)", &[&path])
        .await?;
    let texts = |v: &serde_json::Value| -> Vec<Option<String>> {
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let list = |v: Option<serde_json::Value>| -> Vec<Vec<Option<String>>> {
        v.and_then(|v| v.as_array().map(|a| a.iter().map(texts).collect()))
            .unwrap_or_default()
    };
    // (schema, table, name) triples, sorted.
    let triples = |v: Option<serde_json::Value>| -> Vec<(QName, String)> {
        let mut out: Vec<(QName, String)> = list(v)
            .into_iter()
            .map(|k| {
                let part = |i: usize| k.get(i).cloned().flatten().unwrap_or_default();
                (QName::new(&part(0), &part(1)), part(2))
            })
            .collect();
        out.sort();
        out
    };
    Ok(rows?
        .iter()
        .map(|r| KeyView {
            name: QName::new(r.get("schema"), r.get("name")),
            materialized: r.get("materialized"),
            definition: r.get("def"),
            options: r.get("options"),
            owned: r.get("owned"),
            columns: list(r.get("columns"))
                .into_iter()
                .map(|c| ViewColumn {
                    name: c.first().cloned().flatten().unwrap_or_default(),
                    type_sql: c.get(1).cloned().flatten().unwrap_or_default(),
                    collation: c
                        .get(2)
                        .cloned()
                        .flatten()
                        .zip(c.get(3).cloned().flatten())
                        .map(|(schema, name)| QName::new(&schema, &name)),
                })
                .collect(),
            keys: triples(r.get("keys")),
            uses: triples(r.get("uses")),
        })
        .collect())
}
