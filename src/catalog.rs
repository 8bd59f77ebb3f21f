//! Reads the schema into plain structs: [`Catalog::read`] for the whole
//! picture, a few small helpers for single facts. Analyze, plan, apply,
//! verify, citus and the COPY loader ask this module (the loader through
//! [`GenericClient`], inside its own transaction). One reader remains
//! elsewhere: `db::Session` / `apply::state` read `pg_locks` for who holds
//! the advisory lock.

use crate::stat_statements::APPLICATION_STATEMENTS;
use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

mod key_views;
use key_views::read_key_views;
pub use key_views::{KeyView, ViewColumn};

/// Orders `n` items so that each comes after every item it references
/// (`references(i, j)`: item i references item j; self-references are
/// ignored), keeping the given order among items that are free to go; in a
/// cycle the first item left goes next. The one FK ordering: the COPY
/// loader and `distribute` use it.
pub fn referenced_first(n: usize, references: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let deps: Vec<Vec<usize>> = (0..n)
        .map(|i| (0..n).filter(|&j| i != j && references(i, j)).collect())
        .collect();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n)
            .find(|&i| !placed[i] && deps[i].iter().all(|&j| placed[j]))
            .or_else(|| (0..n).find(|&i| !placed[i]))
            .expect("an unplaced item remains");
        placed[next] = true;
        order.push(next);
    }
    order
}

/// `schema.name` of a relation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct QName {
    pub schema: String,
    pub name: String,
}

impl QName {
    pub fn new(schema: &str, name: &str) -> Self {
        QName {
            schema: schema.into(),
            name: name.into(),
        }
    }
    /// Quoted for SQL text.
    pub fn sql(&self) -> String {
        crate::sql::qualified(&self.schema, &self.name)
    }
}

impl std::fmt::Display for QName {
    /// `name` in `public`, `schema.name` elsewhere (for messages).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.schema == "public" {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}.{}", self.schema, self.name)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Regular,
    Partitioned,
    Partition,
    Foreign,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    pub attnum: i16,
    /// `format_type` text, e.g. `bigint`, `character varying(20)`.
    pub type_name: String,
    pub type_oid: u32,
    /// Collation when it differs from the type's default.
    pub collation: Option<String>,
    pub not_null: bool,
    pub default: Option<String>,
    /// `a` (ALWAYS) or `d` (BY DEFAULT) for identity columns.
    pub identity: Option<String>,
    /// `s` for GENERATED ... STORED.
    pub generated: Option<String>,
    /// The type has a default hash operator class (Citus can hash it).
    pub hashable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Primary,
    Unique,
    Exclusion,
}

/// PRIMARY KEY / UNIQUE / EXCLUDE constraint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyConstraint {
    pub name: String,
    pub kind: KeyKind,
    pub columns: Vec<String>,
    pub index: String,
    pub deferrable: bool,
    pub definition: String,
    /// What depends on the constraint besides its index and the views of
    /// [`Catalog::key_views`] (functions, rules), as PostgreSQL describes
    /// them: dropping the constraint would fail on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<String>,
}

/// A unique index (constraint-backed or not).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Index {
    pub name: String,
    pub primary: bool,
    pub valid: bool,
    /// Key columns; None where the key is an expression.
    pub columns: Vec<Option<String>>,
    pub predicate: Option<String>,
    pub definition: String,
    /// The constraint this index backs, if any.
    pub constraint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FkAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl FkAction {
    fn from_code(c: &str) -> Self {
        match c {
            "r" => FkAction::Restrict,
            "c" => FkAction::Cascade,
            "n" => FkAction::SetNull,
            "d" => FkAction::SetDefault,
            _ => FkAction::NoAction,
        }
    }
    pub fn sql(self) -> &'static str {
        match self {
            FkAction::NoAction => "NO ACTION",
            FkAction::Restrict => "RESTRICT",
            FkAction::Cascade => "CASCADE",
            FkAction::SetNull => "SET NULL",
            FkAction::SetDefault => "SET DEFAULT",
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_table: QName,
    pub ref_columns: Vec<String>,
    pub on_delete: FkAction,
    pub on_update: FkAction,
    pub validated: bool,
    pub deferrable: bool,
    pub definition: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trigger {
    pub name: String,
    pub function: String,
    pub enabled: bool,
    pub definition: String,
    /// The function's language (`plpgsql`, `c`, `internal`, ...) and
    /// source (`prosrc`: the body, or the C symbol).
    pub language: String,
    pub source: String,
    /// A BEFORE … FOR EACH ROW trigger.
    pub before_row: bool,
    /// It fires on UPDATE (a backfill's UPDATEs fire it).
    pub on_update: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Policy {
    pub name: String,
    pub command: String,
    pub using: Option<String>,
    pub check: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table {
    pub oid: u32,
    pub name: QName,
    pub kind: TableKind,
    /// The parent of a partition.
    pub parent: Option<QName>,
    /// `PARTITION BY ...` of a partitioned table.
    pub partition_key: Option<String>,
    pub row_estimate: i64,
    /// Everything: heap, indexes, TOAST.
    pub size_bytes: i64,
    /// The heap alone (main fork), and its indexes.
    pub heap_bytes: i64,
    pub index_bytes: i64,
    pub columns: Vec<Column>,
    pub keys: Vec<KeyConstraint>,
    pub unique_indexes: Vec<Index>,
    /// Every index that is not valid (interrupted concurrent builds).
    pub invalid_indexes: Vec<String>,
    /// The first column of each valid, whole (not partial) non-unique
    /// B-tree or hash index (a plain column): lookups by it have an index
    /// besides the keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub index_leads: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Other CHECK constraints.
    pub checks: Vec<CheckConstraint>,
    pub triggers: Vec<Trigger>,
    pub rls_enabled: bool,
    pub policies: Vec<Policy>,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: String,
    /// The table's own `autovacuum_enabled` storage parameter (None: not
    /// set, the server's `autovacuum` decides).
    pub autovacuum_enabled: Option<bool>,
}

impl Table {
    /// The keys that do not include `col`: PRIMARY KEY and UNIQUE
    /// constraints (not exclusion ones), and unique indexes that are no
    /// constraint's. A tenant column must join each before Citus takes the
    /// table (the plan rebuilds them).
    pub fn keys_without<'a>(
        &'a self,
        col: &'a str,
    ) -> (
        impl Iterator<Item = &'a KeyConstraint> + 'a,
        impl Iterator<Item = &'a Index> + 'a,
    ) {
        let constraints = self
            .keys
            .iter()
            .filter(move |k| k.kind != KeyKind::Exclusion && !k.columns.iter().any(|c| c == col));
        let indexes = self.unique_indexes.iter().filter(move |ix| {
            ix.constraint.is_none() && !ix.columns.iter().any(|c| c.as_deref() == Some(col))
        });
        (constraints, indexes)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    pub fn primary_key(&self) -> Option<&KeyConstraint> {
        self.keys.iter().find(|k| k.kind == KeyKind::Primary)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckConstraint {
    pub name: String,
    /// `pg_get_constraintdef`: `CHECK (...)`, with `NOT VALID` when not validated.
    pub definition: String,
    pub validated: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sequence {
    pub name: QName,
    pub data_type: String,
    /// The column it fills (serial or identity).
    pub owned_by: Option<ColumnRef>,
}

/// A column of a table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnRef {
    pub table: QName,
    pub column: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Function {
    pub schema: String,
    pub name: String,
    pub language: String,
    pub arguments: String,
    pub body: String,
    /// The whole `CREATE OR REPLACE FUNCTION ...` text
    /// (`pg_get_functiondef`), what the plpgsql parser needs.
    pub definition: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Catalog {
    pub server_version_num: i32,
    pub database: String,
    pub tables: Vec<Table>,
    pub sequences: Vec<Sequence>,
    /// SQL and plpgsql functions in user schemas.
    pub functions: Vec<Function>,
    /// Views and materialized views in user schemas.
    #[serde(default)]
    pub views: Vec<View>,
    /// The views (and materialized views) whose query relies on a table's
    /// key, as `pg_depend` records it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_views: Vec<KeyView>,
    pub extensions: Vec<Extension>,
    /// Tables Citus already has (distributed, reference or local); empty
    /// without Citus.
    pub placed: Vec<Placement>,
}

/// A view or materialized view: its query runs on whatever the tables
/// become.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct View {
    pub name: QName,
    pub materialized: bool,
    /// `pg_get_viewdef`: the SELECT.
    pub definition: String,
}

/// A table in Citus's metadata.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Placement {
    pub table: QName,
    /// `distributed`, `reference` or `local`.
    pub kind: String,
    /// The distribution column ("" for reference and local tables).
    pub column: String,
    pub colocation_id: i64,
    pub shards: i64,
    /// All its shards' size (`citus_total_relation_size`).
    pub size_bytes: i64,
}

impl Catalog {
    pub fn table(&self, name: &QName) -> Option<&Table> {
        self.tables.iter().find(|t| &t.name == name)
    }
    /// The table at the top of a partition hierarchy (the table itself
    /// when it is not a partition).
    pub fn top_parent<'a>(&'a self, t: &'a Table) -> &'a QName {
        let mut cur = t;
        while let Some(p) = cur.parent.as_ref().and_then(|p| self.table(p)) {
            cur = p;
        }
        &cur.name
    }
    /// The leaf partitions under a partitioned table (none for others).
    pub fn partitions_of(&self, parent: &QName) -> Vec<&Table> {
        self.tables
            .iter()
            .filter(|p| p.kind != TableKind::Partitioned && p.parent.is_some())
            .filter(|p| self.top_parent(p) == parent)
            .collect()
    }
    /// The foreign keys that bind a table's rows: its own and, for a
    /// partitioned table, those declared on its partitions only (Pagila's
    /// `payment_p2022_01_customer_id_fkey`), one per shape (columns and
    /// referenced key), named after the first partition declaring it.
    pub fn foreign_keys_of<'a>(&'a self, t: &'a Table) -> Vec<&'a ForeignKey> {
        let mut out: Vec<&ForeignKey> = t.foreign_keys.iter().collect();
        if t.kind != TableKind::Partitioned {
            return out;
        }
        for p in self.partitions_of(&t.name) {
            for fk in &p.foreign_keys {
                let same = |o: &&ForeignKey| {
                    o.columns == fk.columns
                        && o.ref_table == fk.ref_table
                        && o.ref_columns == fk.ref_columns
                };
                if !out.iter().any(same) {
                    out.push(fk);
                }
            }
        }
        out
    }
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|e| e.name == name)
    }

    /// Reads every user schema (not pg_catalog, information_schema, pg_toast,
    /// nor schemas owned by extensions such as `cron` or our own
    /// `shardready`).
    pub async fn read(client: &Client) -> Result<Catalog, tokio_postgres::Error> {
        let head = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_database()::text",
                &[],
            )
            .await?;
        let mut tables: Vec<Table> = Vec::new();
        let mut by_oid: BTreeMap<u32, usize> = BTreeMap::new();
        for r in client.query(TABLES_SQL, &[]).await? {
            let oid: u32 = r.get("oid");
            by_oid.insert(oid, tables.len());
            let parent: Option<String> = r.get("parent_schema");
            tables.push(Table {
                oid,
                name: QName::new(r.get("schema"), r.get("name")),
                kind: match r.get::<_, i8>("relkind") as u8 {
                    b'p' => TableKind::Partitioned,
                    b'f' => TableKind::Foreign,
                    _ if r.get::<_, bool>("relispartition") => TableKind::Partition,
                    _ => TableKind::Regular,
                },
                parent: parent.map(|s| QName::new(&s, r.get("parent_name"))),
                partition_key: r.get("partkey"),
                row_estimate: r.get("reltuples"),
                size_bytes: r.get("size"),
                heap_bytes: r.get("heap"),
                index_bytes: r.get("indexes"),
                columns: Vec::new(),
                keys: Vec::new(),
                unique_indexes: Vec::new(),
                invalid_indexes: Vec::new(),
                index_leads: Vec::new(),
                foreign_keys: Vec::new(),
                checks: Vec::new(),
                triggers: Vec::new(),
                rls_enabled: r.get("relrowsecurity"),
                policies: Vec::new(),
                replica_identity: (r.get::<_, i8>("relreplident") as u8 as char).to_string(),
                autovacuum_enabled: r
                    .get::<_, Option<String>>("autovacuum_enabled")
                    .as_deref()
                    .and_then(pg_bool),
            });
        }
        // On a Citus node, shards are Citus's, not the user's: those it
        // knows, and those an interrupted operation left for cleanup.
        let extensions = extensions(client).await?;
        let has_citus = extensions.iter().any(|e| e.name == "citus");
        let shards = citus_shards(client, has_citus).await?;
        let placed = if has_citus {
            citus_placements(client, true).await?
        } else {
            Vec::new()
        };
        // A placed table's rows are in its shards: size it by them, not by
        // the coordinator's empty shell.
        for p in &placed {
            if let Some(t) = tables.iter_mut().find(|t| t.name == p.table) {
                t.size_bytes = p.size_bytes;
            }
        }
        // A partitioned table holds nothing itself: its rows and bytes are
        // its partitions'.
        let sums: Vec<(usize, i64, i64)> = tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == TableKind::Partitioned && t.size_bytes == 0)
            .map(|(i, t)| {
                let under = |p: &&Table| {
                    let mut cur = p.parent.as_ref();
                    while let Some(q) = cur {
                        if q == &t.name {
                            return true;
                        }
                        cur = tables
                            .iter()
                            .find(|x| &x.name == q)
                            .and_then(|x| x.parent.as_ref());
                    }
                    false
                };
                let leaves = tables
                    .iter()
                    .filter(|p| p.kind != TableKind::Partitioned)
                    .filter(under);
                let (rows, bytes) =
                    leaves.fold((0, 0), |(r, b), p| (r + p.row_estimate, b + p.size_bytes));
                (i, rows, bytes)
            })
            .collect();
        for (i, rows, bytes) in sums {
            tables[i].row_estimate = rows;
            tables[i].size_bytes = bytes;
        }
        if !shards.is_empty() {
            tables.retain(|t| !shards.contains(&t.oid));
            by_oid = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
        }
        let oids: Vec<u32> = by_oid.keys().copied().collect();
        let at = |oid: u32| by_oid.get(&oid).copied();

        for r in client.query(COLUMNS_SQL, &[&oids]).await? {
            let Some(i) = at(r.get("attrelid")) else {
                continue;
            };
            let s = |n: &str| -> Option<String> {
                let v: i8 = r.get(n);
                (v != 0).then(|| (v as u8 as char).to_string())
            };
            tables[i].columns.push(Column {
                name: r.get("attname"),
                attnum: r.get("attnum"),
                type_name: r.get("type_name"),
                type_oid: r.get("atttypid"),
                collation: r.get("collation"),
                not_null: r.get("attnotnull"),
                default: r.get("default"),
                identity: s("attidentity"),
                generated: s("attgenerated"),
                hashable: r.get("hashable"),
            });
        }
        for r in client.query(CONSTRAINTS_SQL, &[&oids]).await? {
            let Some(i) = at(r.get("conrelid")) else {
                continue;
            };
            let kind: i8 = r.get("contype");
            let name: String = r.get("conname");
            let definition: String = r.get("def");
            let columns: Vec<String> = r.get("cols");
            let validated: bool = r.get("convalidated");
            let deferrable: bool = r.get("condeferrable");
            match kind as u8 {
                b'p' | b'u' | b'x' => tables[i].keys.push(KeyConstraint {
                    name,
                    kind: match kind as u8 {
                        b'p' => KeyKind::Primary,
                        b'u' => KeyKind::Unique,
                        _ => KeyKind::Exclusion,
                    },
                    columns,
                    index: r.get::<_, Option<String>>("index").unwrap_or_default(),
                    deferrable,
                    definition,
                    dependents: r.get("dependents"),
                }),
                b'f' => {
                    let on_delete: i8 = r.get("confdeltype");
                    let on_update: i8 = r.get("confupdtype");
                    tables[i].foreign_keys.push(ForeignKey {
                        name,
                        columns,
                        ref_table: QName::new(r.get("ref_schema"), r.get("ref_name")),
                        ref_columns: r.get("ref_cols"),
                        on_delete: FkAction::from_code(&(on_delete as u8 as char).to_string()),
                        on_update: FkAction::from_code(&(on_update as u8 as char).to_string()),
                        validated,
                        deferrable,
                        definition,
                    })
                }
                b'c' => tables[i].checks.push(CheckConstraint {
                    name,
                    definition,
                    validated,
                }),
                _ => {}
            }
        }
        for r in client.query(INDEXES_SQL, &[&oids]).await? {
            let Some(i) = at(r.get("indrelid")) else {
                continue;
            };
            let name: String = r.get("name");
            let valid: bool = r.get("indisvalid");
            if !valid {
                tables[i].invalid_indexes.push(name.clone());
            }
            if !r.get::<_, bool>("indisunique") {
                // Only a whole B-tree or hash index serves an equality
                // lookup by its first column.
                let cols: Vec<Option<String>> = r.get("cols");
                let pred: Option<String> = r.get("pred");
                let equality = matches!(r.get::<_, &str>("am"), "btree" | "hash");
                if let (true, true, None, Some(Some(first))) = (valid, equality, pred, cols.first())
                {
                    tables[i].index_leads.push(first.clone());
                }
            } else {
                tables[i].unique_indexes.push(Index {
                    name,
                    primary: r.get("indisprimary"),
                    valid,
                    columns: r.get("cols"),
                    predicate: r.get("pred"),
                    definition: r.get("def"),
                    constraint: r.get("conname"),
                });
            }
        }
        for r in client.query(TRIGGERS_SQL, &[&oids]).await? {
            let Some(i) = at(r.get("tgrelid")) else {
                continue;
            };
            tables[i].triggers.push(Trigger {
                name: r.get("tgname"),
                function: r.get("func"),
                enabled: r.get::<_, i8>("tgenabled") as u8 != b'D',
                definition: r.get("def"),
                language: r.get("lang"),
                source: r.get("src"),
                before_row: r.get("before_row"),
                on_update: r.get("on_update"),
            });
        }
        for r in client.query(POLICIES_SQL, &[&oids]).await? {
            let Some(i) = at(r.get("polrelid")) else {
                continue;
            };
            tables[i].policies.push(Policy {
                name: r.get("polname"),
                command: r.get("cmd"),
                using: r.get("qual"),
                check: r.get("with_check"),
            });
        }
        let sequences = client
            .query(SEQUENCES_SQL, &[])
            .await?
            .iter()
            .map(|r| Sequence {
                name: QName::new(r.get("schema"), r.get("name")),
                data_type: r.get("data_type"),
                owned_by: r
                    .get::<_, Option<String>>("owner_schema")
                    .map(|s| ColumnRef {
                        table: QName::new(&s, r.get("owner_table")),
                        column: r.get("owner_column"),
                    }),
            })
            .collect();
        let functions = client
            .query(FUNCTIONS_SQL, &[])
            .await?
            .iter()
            .map(|r| Function {
                schema: r.get("schema"),
                name: r.get("name"),
                language: r.get("lang"),
                arguments: r.get("args"),
                body: r.get("body"),
                definition: r.get("def"),
            })
            .collect();
        let views = client
            .query(VIEWS_SQL, &[])
            .await?
            .iter()
            .map(|r| View {
                name: QName::new(r.get("schema"), r.get("name")),
                materialized: r.get("materialized"),
                definition: r.get("def"),
            })
            .collect();
        let key_views = read_key_views(client).await?;
        Ok(Catalog {
            server_version_num: head.get(0),
            database: head.get(1),
            tables,
            sequences,
            functions,
            views,
            key_views,
            extensions,
            placed,
        })
    }
}

/// A boolean as PostgreSQL reads one (`on`, `f`, `1`, `YES`, ...): a
/// storage parameter keeps the text it was given.
pub fn pg_bool(s: &str) -> Option<bool> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() {
        return None;
    }
    let prefix_of = |word: &str| word.starts_with(s.as_str());
    match s.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        // "o" alone is ambiguous (on/off).
        "o" => None,
        _ if prefix_of("true") || prefix_of("yes") || (s.len() >= 2 && prefix_of("on")) => {
            Some(true)
        }
        _ if prefix_of("false") || prefix_of("no") || (s.len() >= 2 && prefix_of("off")) => {
            Some(false)
        }
        _ => None,
    }
}

/// Tables of user schemas: not system ones, not ours (`shardready`), not
/// those created by extensions (pg_cron's `cron`, ...), nor extension tables.
const TABLES_SQL: &str =
    "SELECT c.oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind, \
            c.relispartition, c.relrowsecurity, c.relreplident, \
            greatest(c.reltuples, 0)::int8 AS reltuples, \
            coalesce(pg_total_relation_size(c.oid), 0)::int8 AS size, \
            coalesce(pg_relation_size(c.oid), 0)::int8 AS heap, \
            coalesce(pg_indexes_size(c.oid), 0)::int8 AS indexes, \
            pn.nspname::text AS parent_schema, p.relname::text AS parent_name, \
            CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey, \
            (SELECT o.option_value FROM pg_options_to_table(c.reloptions) o \
              WHERE o.option_name = 'autovacuum_enabled') AS autovacuum_enabled \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND c.relispartition \
     LEFT JOIN pg_class p ON p.oid = i.inhparent \
     LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'f') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shardready') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass \
                       AND d.objid = n.oid AND d.deptype = 'e') \
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                       AND d.objid = c.oid AND d.deptype = 'e') \
     ORDER BY n.nspname, c.relname";

const COLUMNS_SQL: &str = "SELECT a.attrelid, a.attname::text, a.attnum, a.atttypid, \
        format_type(a.atttypid, a.atttypmod) AS type_name, \
        CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 \
             THEN (SELECT quote_ident(collname) FROM pg_collation WHERE oid = a.attcollation) END AS collation, \
        a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid) AS default, \
        a.attidentity, a.attgenerated, \
        EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod \
                WHERE am.amname = 'hash' AND oc.opcdefault \
                  AND oc.opcintype IN (a.atttypid, t.typbasetype, \
                      CASE WHEN t.typtype = 'e' THEN 'anyenum'::regtype::oid END, \
                      CASE WHEN t.typcategory = 'A' THEN 'anyarray'::regtype::oid END)) AS hashable \
 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
 LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
 ORDER BY a.attrelid, a.attnum";

const CONSTRAINTS_SQL: &str = "SELECT con.conrelid, con.conname::text, con.contype, \
        con.convalidated, con.condeferrable, pg_get_constraintdef(con.oid) AS def, \
        ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) \
              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o) AS cols, \
        ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) \
              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) AS ref_cols, \
        rn.nspname::text AS ref_schema, rc.relname::text AS ref_name, \
        con.confdeltype, con.confupdtype, ic.relname::text AS index, \
        ARRAY(SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d \
              WHERE d.refclassid = 'pg_constraint'::regclass AND d.refobjid = con.oid \
                AND d.deptype = 'n' AND con.contype IN ('p', 'u') \
                AND NOT EXISTS (SELECT 1 FROM pg_rewrite rw JOIN pg_class v ON v.oid = rw.ev_class \
                                WHERE d.classid = 'pg_rewrite'::regclass AND rw.oid = d.objid \
                                  AND v.relkind IN ('v', 'm')) \
              ORDER BY 1) AS dependents \
 FROM pg_constraint con \
 LEFT JOIN pg_class rc ON rc.oid = con.confrelid \
 LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
 LEFT JOIN pg_class ic ON ic.oid = con.conindid AND con.contype IN ('p', 'u', 'x') \
 WHERE con.conrelid = ANY($1) AND con.contype IN ('p', 'u', 'x', 'f', 'c') \
   AND (con.contype <> 'f' OR con.conparentid = 0) \
 ORDER BY con.conrelid, con.contype, con.conname";

const INDEXES_SQL: &str = "SELECT i.indrelid, ic.relname::text AS name, i.indisunique, \
        i.indisprimary, i.indisvalid AND i.indisready AS indisvalid, \
        ARRAY(SELECT CASE WHEN k.n = 0 THEN NULL ELSE a.attname::text END \
              FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) \
              LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n \
              WHERE k.o <= i.indnkeyatts ORDER BY k.o) AS cols, \
        pg_get_expr(i.indpred, i.indrelid) AS pred, pg_get_indexdef(i.indexrelid) AS def, \
        (SELECT amname::text FROM pg_am WHERE oid = ic.relam) AS am, \
        (SELECT conname::text FROM pg_constraint WHERE conindid = i.indexrelid \
           AND conrelid = i.indrelid AND contype IN ('p', 'u', 'x') LIMIT 1) AS conname \
 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
 WHERE i.indrelid = ANY($1) \
 ORDER BY i.indrelid, ic.relname";

const TRIGGERS_SQL: &str = "SELECT t.tgrelid, t.tgname::text, t.tgenabled, \
        p.proname::text AS func, pg_get_triggerdef(t.oid) AS def, \
        l.lanname::text AS lang, p.prosrc AS src, \
        (t.tgtype & 3) = 3 AS before_row, (t.tgtype & 16) <> 0 AS on_update \
 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
 JOIN pg_language l ON l.oid = p.prolang \
 WHERE t.tgrelid = ANY($1) AND NOT t.tgisinternal AND t.tgparentid = 0 \
 ORDER BY t.tgrelid, t.tgname";

const POLICIES_SQL: &str = "SELECT p.polrelid, p.polname::text, \
        CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' \
                      WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS cmd, \
        pg_get_expr(p.polqual, p.polrelid) AS qual, \
        pg_get_expr(p.polwithcheck, p.polrelid) AS with_check \
 FROM pg_policy p WHERE p.polrelid = ANY($1) ORDER BY p.polrelid, p.polname";

const SEQUENCES_SQL: &str = "SELECT n.nspname::text AS schema, c.relname::text AS name, \
        format_type(s.seqtypid, NULL) AS data_type, \
        tn.nspname::text AS owner_schema, tc.relname::text AS owner_table, a.attname::text AS owner_column \
 FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid \
 JOIN pg_namespace n ON n.oid = c.relnamespace \
 LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid \
      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
 LEFT JOIN pg_class tc ON tc.oid = d.refobjid \
 LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace \
 LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'shardready') \
   AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass \
                   AND e.objid = n.oid AND e.deptype = 'e') \
 ORDER BY 1, 2";

const FUNCTIONS_SQL: &str = "SELECT n.nspname::text AS schema, p.proname::text AS name, \
        l.lanname::text AS lang, pg_get_function_identity_arguments(p.oid) AS args, p.prosrc AS body, \
        pg_get_functiondef(p.oid) AS def \
 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
 JOIN pg_language l ON l.oid = p.prolang \
 WHERE l.lanname IN ('sql', 'plpgsql') AND p.prokind IN ('f', 'p') \
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shardready') \
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass \
                   AND d.objid = p.oid AND d.deptype = 'e') \
   AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass \
                   AND e.objid = n.oid AND e.deptype = 'e') \
 ORDER BY 1, 2";

const VIEWS_SQL: &str = "SELECT n.nspname::text AS schema, c.relname::text AS name, \
        c.relkind = 'm' AS materialized, pg_get_viewdef(c.oid) AS def \
 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
 WHERE c.relkind IN ('v', 'm') \
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shardready') \
   AND n.nspname NOT LIKE 'pg\\_%' \
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                   AND d.objid = c.oid AND d.deptype = 'e') \
   AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass \
                   AND e.objid = n.oid AND e.deptype = 'e') \
 ORDER BY 1, 2";

/// The relations that are Citus shards on this node (none without Citus).
async fn citus_shards(
    client: &Client,
    citus: bool,
) -> Result<std::collections::BTreeSet<u32>, tokio_postgres::Error> {
    if !citus {
        return Ok(Default::default());
    }
    Ok(client
        .query(
            "SELECT c.oid FROM pg_class c WHERE c.relkind IN ('r', 'p', 'f') \
               AND (pg_catalog.relation_is_a_known_shard(c.oid) \
                    OR c.oid IN (SELECT to_regclass(object_name) FROM pg_dist_cleanup \
                                  WHERE object_type = 1))",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The tables in Citus's metadata (call only where Citus is installed),
/// by schema and name from pg_class: regclass text quotes mixed-case names.
/// `sized`: also their shards' size, which asks every node (0 otherwise).
pub async fn citus_placements(
    client: &Client,
    sized: bool,
) -> Result<Vec<Placement>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT n.nspname::text, c.relname::text, \
                    CASE WHEN p.partkey IS NOT NULL THEN 'distributed' \
                         WHEN p.repmodel = 't' THEN 'reference' \
                         WHEN p.colocationid = 0 THEN 'local' \
                         ELSE 'distributed' END, \
                    coalesce(pg_catalog.column_to_column_name(p.logicalrelid, p.partkey), ''), \
                    p.colocationid::int8, \
                    (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid), \
                    CASE WHEN $1 THEN pg_catalog.citus_total_relation_size(p.logicalrelid)::int8 \
                         ELSE 0 END \
               FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                                AND d.objid = c.oid AND d.refclassid = 'pg_extension'::regclass \
                                AND d.deptype = 'e') \
              ORDER BY 1, 2",
            &[&sized],
        )
        .await?
        .iter()
        .map(|r| Placement {
            table: QName::new(r.get(0), r.get(1)),
            kind: r.get(2),
            column: r.get(3),
            colocation_id: r.get(4),
            shards: r.get(5),
            size_bytes: r.get(6),
        })
        .collect())
}

/// Whether an extension is created in this database.
pub async fn extension_installed(
    client: &Client,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)",
            &[&name],
        )
        .await?
        .get(0))
}

/// The materialized views whose query reads `table` (or one of its
/// partitions), qualified.
pub async fn materialized_views_on(
    client: &Client,
    table: &QName,
) -> Result<Vec<QName>, tokio_postgres::Error> {
    Ok(client
        .query(
            "WITH t AS (SELECT $1::text::regclass AS relid \
                         UNION SELECT relid FROM pg_catalog.pg_partition_tree($1::text::regclass)) \
             SELECT DISTINCT vn.nspname::text, v.relname::text \
               FROM pg_catalog.pg_depend d \
               JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid \
               JOIN pg_catalog.pg_class v ON v.oid = rw.ev_class AND v.relkind = 'm' \
               JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace \
              WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass \
                AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                AND d.refobjid IN (SELECT relid FROM t) \
              ORDER BY 1, 2",
            &[&table.sql()],
        )
        .await?
        .iter()
        .map(|r| QName::new(r.get(0), r.get(1)))
        .collect())
}

/// Whether `table` (resolved through the search_path, or `schema.table`)
/// exists.
pub async fn table_exists(client: &Client, table: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?;
    Ok(row.get(0))
}

/// Which of `tables` (plain names, quoted as identifiers) exist.
pub async fn existing_tables(
    client: &Client,
    tables: &[&str],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    Ok(client
        .query(
            "SELECT n FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
             WHERE to_regclass(quote_ident(n)) IS NOT NULL ORDER BY i",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Whether `table` (a plain name) has a live column `column`.
pub async fn has_column(
    client: &Client,
    table: &str,
    column: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute \
             WHERE attrelid = to_regclass(quote_ident($1)) AND attname = $2 \
             AND attnum > 0 AND NOT attisdropped)",
            &[&table, &column],
        )
        .await?;
    Ok(row.get(0))
}

/// Installed extensions and their versions (the seed's
/// `SELECT oid, extname, extversion FROM pg_extension`).
pub async fn extensions(client: &Client) -> Result<Vec<Extension>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT extname::text, extversion FROM pg_extension ORDER BY extname",
            &[],
        )
        .await?
        .iter()
        .map(|r| Extension {
            name: r.get(0),
            version: r.get(1),
        })
        .collect())
}

/// An installed extension.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Extension {
    pub name: String,
    pub version: String,
}

/// Whether a library is in `shared_preload_libraries`.
pub async fn preloaded(client: &Client, library: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .await?;
    let list: String = row.get(0);
    Ok(list
        .split(',')
        .any(|l| l.trim().trim_matches('"') == library))
}

/// Whether an extension can be created (its files are installed).
pub async fn extension_available(
    client: &Client,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)",
            &[&name],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether an index exists in `schema` and is valid (None: no such index).
pub async fn index_valid(
    client: &Client,
    schema: &str,
    index: &str,
) -> Result<Option<bool>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT i.indisvalid AND i.indisready FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &index],
        )
        .await?
        .map(|r| r.get(0)))
}

/// How many values a sequence has handed out (0 when unused or missing).
pub async fn sequence_value(client: &Client, seq: &QName) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&seq.sql()])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            &format!("SELECT last_value, is_called FROM {}", seq.sql()),
            &[],
        )
        .await?;
    Ok(if row.get::<_, bool>(1) { row.get(0) } else { 0 })
}

/// One entry of `pg_stat_statements` (normalized text: constants are `$n`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatementStat {
    pub queryid: i64,
    pub query: String,
    pub calls: i64,
}

/// The `limit` most-called statements of the current database from
/// `pg_stat_statements` (the extension must be installed in it, and
/// preloaded, or the view errors). Leaves out what is not the
/// application's: statements on the system catalogs, on `pg_stat_*`, on
/// extension schemas (`cron`) and on ours (`shardready`), and the
/// statements shardready itself sends (they carry a `/* shardready */`
/// marker).
pub async fn top_statements(
    client: &Client,
    limit: i64,
) -> Result<Vec<StatementStat>, tokio_postgres::Error> {
    // One row per statement: pg_stat_statements keeps one per user and
    // (PostgreSQL 14+) per top level / nested.
    Ok(client
        .query(
            &format!(
                "SELECT s.queryid, min(s.query), sum(s.calls)::int8 \
                 FROM pg_stat_statements s WHERE {APPLICATION_STATEMENTS} \
                 GROUP BY s.queryid ORDER BY 3 DESC, 1 LIMIT $1"
            ),
            &[&limit],
        )
        .await?
        .iter()
        .map(|r| StatementStat {
            queryid: r.get(0),
            query: r.get(1),
            calls: r.get(2),
        })
        .collect())
}

/// Seconds since pg_stat_statements was last reset (its calls are counted
/// since then); None before PostgreSQL 14 (no `pg_stat_statements_info`).
pub async fn statements_age_s(client: &Client) -> Result<Option<f64>, tokio_postgres::Error> {
    let has_info = client
        .query_one(
            "SELECT to_regclass('pg_stat_statements_info') IS NOT NULL",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    if !has_info {
        return Ok(None);
    }
    Ok(client
        .query_one(
            "SELECT extract(epoch FROM now() - stats_reset)::float8 FROM pg_stat_statements_info",
            &[],
        )
        .await?
        .get(0))
}

/// The server's current `statement_timeout` (to restore it after a change).
pub async fn statement_timeout(client: &Client) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT current_setting('statement_timeout')", &[])
        .await?;
    Ok(row.get(0))
}

/// Sets `statement_timeout` for the session (`value` as in SET, e.g. `30s`
/// or `0`).
pub async fn set_statement_timeout(
    client: &Client,
    value: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .query_one(
            "SELECT set_config('statement_timeout', $1, false)",
            &[&value],
        )
        .await?;
    Ok(())
}

/// Tables among `tables` the current role may not alter (it neither owns
/// them nor is a member of their owner's role, nor superuser): (table,
/// owner).
pub async fn not_owned(
    client: &Client,
    tables: &[QName],
) -> Result<Vec<(QName, String)>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for t in tables {
        let row = client
            .query_opt(
                "SELECT pg_get_userbyid(c.relowner)::text, \
                        pg_has_role(current_user, c.relowner, 'USAGE') \
                        OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&t.schema, &t.name],
            )
            .await?;
        if let Some(r) = row {
            if !r.get::<_, bool>(1) {
                out.push((t.clone(), r.get(0)));
            }
        }
    }
    Ok(out)
}

/// Whether the current role may create the `shardready` schema (or it
/// exists and the role may use it).
pub async fn can_keep_state(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT CASE WHEN to_regnamespace('shardready') IS NULL \
                    THEN has_database_privilege(current_database(), 'CREATE') \
                    ELSE has_schema_privilege('shardready', 'CREATE, USAGE') END",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// The current role's name.
pub async fn current_role(client: &Client) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0))
}

/// A relation named by the user, as `to_regclass` resolves it through the
/// search_path (the COPY loader's targets).
#[derive(Debug, Clone)]
pub struct NamedRelation {
    pub oid: u32,
    pub name: QName,
    /// `pg_class.relkind`.
    pub relkind: String,
    /// Columns COPY can fill (live, not generated), in table order.
    pub columns: Vec<String>,
}

impl NamedRelation {
    /// Whether rows can be loaded into it (table, partitioned or foreign).
    pub fn holds_rows(&self) -> bool {
        matches!(self.relkind.as_str(), "r" | "p" | "f")
    }
    /// LOCK TABLE refuses foreign tables.
    pub fn lockable(&self) -> bool {
        self.relkind != "f"
    }
    /// What it is, for messages.
    pub fn kind_label(&self) -> &'static str {
        match self.relkind.as_str() {
            "r" | "p" => "table",
            "f" => "foreign table",
            "v" => "view",
            "m" => "materialized view",
            "S" => "sequence",
            "i" | "I" => "index",
            "c" => "composite type",
            "t" => "TOAST table",
            _ => "relation",
        }
    }
}

/// Resolves `name` (as typed: `t`, `s.t`, `"T"`); None when there is no such
/// relation. A malformed name is the server's error.
pub async fn named_relation(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<NamedRelation>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.oid = to_regclass($1)",
            &[&name],
        )
        .await?
    else {
        return Ok(None);
    };
    let oid: u32 = row.get(0);
    let columns = client
        .query(
            "SELECT attname::text FROM pg_attribute \
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' \
              ORDER BY attnum",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(NamedRelation {
        oid,
        name: QName {
            schema: row.get(1),
            name: row.get(2),
        },
        relkind: row.get(3),
        columns,
    }))
}

/// A foreign key as it can be dropped and re-added verbatim.
#[derive(Debug, Clone)]
pub struct ForeignKeyDefinition {
    pub name: String,
    pub child_oid: u32,
    pub child: QName,
    pub parent_oid: u32,
    pub parent: QName,
    /// `pg_get_constraintdef`: `FOREIGN KEY (...) REFERENCES ...`.
    pub definition: String,
    pub validated: bool,
    pub comment: Option<String>,
}

/// The foreign keys defined on the relations `oids` (not the copies
/// PostgreSQL keeps on partitions).
pub async fn foreign_key_definitions(
    client: &impl GenericClient,
    oids: &[u32],
) -> Result<Vec<ForeignKeyDefinition>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT con.conname::text, con.conrelid, con.confrelid, \
                    pg_get_constraintdef(con.oid), con.convalidated, \
                    obj_description(con.oid, 'pg_constraint'), \
                    cn.nspname::text, c.relname::text, pn.nspname::text, p.relname::text \
               FROM pg_constraint con \
               JOIN pg_class c ON c.oid = con.conrelid \
               JOIN pg_namespace cn ON cn.oid = c.relnamespace \
               JOIN pg_class p ON p.oid = con.confrelid \
               JOIN pg_namespace pn ON pn.oid = p.relnamespace \
              WHERE con.contype = 'f' AND con.conparentid = 0 AND con.conrelid = ANY($1) \
              ORDER BY cn.nspname, c.relname, con.conname",
            &[&oids],
        )
        .await?
        .iter()
        .map(|r| ForeignKeyDefinition {
            name: r.get(0),
            child_oid: r.get(1),
            parent_oid: r.get(2),
            definition: r.get(3),
            validated: r.get(4),
            comment: r.get(5),
            child: QName {
                schema: r.get(6),
                name: r.get(7),
            },
            parent: QName {
                schema: r.get(8),
                name: r.get(9),
            },
        })
        .collect())
}

/// A sequence that fills a column (serial or identity).
#[derive(Debug, Clone)]
pub struct ColumnSequence {
    pub column: String,
    pub oid: u32,
    pub name: QName,
}

/// The sequences owned by the columns of relation `oid`, in column order.
pub async fn column_sequences(
    client: &impl GenericClient,
    oid: u32,
) -> Result<Vec<ColumnSequence>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT a.attname::text, s.oid, sn.nspname::text, s.relname::text \
               FROM pg_depend d \
               JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
               JOIN pg_namespace sn ON sn.oid = s.relnamespace \
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
              WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
                AND d.refobjid = $1 AND d.deptype IN ('a', 'i') \
                AND a.attnum > 0 AND NOT a.attisdropped \
              ORDER BY a.attnum",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| ColumnSequence {
            column: r.get(0),
            oid: r.get(1),
            name: QName {
                schema: r.get(2),
                name: r.get(3),
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::pg_bool;
    use super::referenced_first;

    #[test]
    fn referenced_items_come_first_and_cycles_do_not_hang() {
        // 0 references 2, 1 references 0: 2, 0, 1, then the free 3.
        let refs = [(0, 2), (1, 0)];
        let order = referenced_first(4, |i, j| refs.contains(&(i, j)));
        assert_eq!(order, [2, 0, 1, 3]);
        // A cycle 0 <-> 1: what is free goes first, then the first left.
        let order = referenced_first(3, |i, j| (i, j) == (0, 1) || (i, j) == (1, 0));
        assert_eq!(order, [2, 0, 1]);
    }

    #[test]
    fn booleans_read_as_postgres_reads_them() {
        for t in ["true", "t", "TRUE", "yes", "y", "on", "1"] {
            assert_eq!(pg_bool(t), Some(true), "{t}");
        }
        for f in ["false", "f", "no", "n", "off", "of", "0", "False"] {
            assert_eq!(pg_bool(f), Some(false), "{f}");
        }
        for x in ["", "o", "maybe", "2", "truely"] {
            assert_eq!(pg_bool(x), None, "{x}");
        }
    }
}
