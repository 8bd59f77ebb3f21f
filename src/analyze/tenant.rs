//! Tenant inference and table classification: which column is the tenant
//! (distribution) column, which table is its root, and what each table
//! becomes (root, distributed, needs the column through an FK path,
//! reference, local).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use crate::catalog::{Catalog, KeyKind, QName, Table};

use super::AnalyzeError;

/// One hop of a derivation path: `from.columns → to.ref_columns`, along a
/// foreign key, or along a polymorphic pair (`when`: only for rows whose
/// type column names `to`; `fk` is then `id_column:Type`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Hop {
    pub from: QName,
    pub fk: String,
    pub columns: Vec<String>,
    pub to: QName,
    pub ref_columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
}

/// The condition of a polymorphic hop: the row's `column` is `value`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct When {
    pub column: String,
    pub value: String,
}

impl Hop {
    /// The hop along foreign key `fk` of table `from`.
    pub(crate) fn along(from: &QName, fk: &crate::catalog::ForeignKey) -> Hop {
        Hop {
            from: from.clone(),
            fk: fk.name.clone(),
            columns: fk.columns.clone(),
            to: fk.ref_table.clone(),
            ref_columns: fk.ref_columns.clone(),
            when: None,
        }
    }

    /// A polymorphic hop's condition on the row it leaves from (`alias`):
    /// `alias."owner_type" = 'Post'`.
    pub(crate) fn when_sql(&self, alias: &str) -> Option<String> {
        self.when.as_ref().map(|w| {
            format!(
                "{alias}.{} = {}",
                crate::sql::ident(&w.column),
                crate::sql::literal(&w.value)
            )
        })
    }
}

/// A path as the reasons show it: `t.col → parent → …`.
fn via_text(path: &[Hop]) -> String {
    path.iter()
        .map(|h| format!("{}.{} → {}", h.from.name, h.columns.join(","), h.to))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// What a reason says of a nullable path with no alternative.
const NULLABLE_PATH: &str = " (a nullable path: no NOT NULL one reaches the tenant)";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum Class {
    /// The table the tenant column refers to (its key is the tenant id).
    Root,
    /// Has the tenant column already.
    Distributed,
    /// Lacks the column; it can be derived through these FK hops (the last
    /// hop reaches a table that has it). Where the path's keys are
    /// nullable, `also` holds the paths through the table's other keys,
    /// tried in order for rows the path leaves without a tenant (a payment
    /// that belongs to an invoice or to a payment request); the plan takes
    /// them when the data check finds such rows.
    NeedsColumn {
        path: Vec<Hop>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also: Vec<Vec<Hop>>,
        /// The user named these paths (`--path T=FK1,FK2`, a polymorphic
        /// pair): the plan takes them all, whatever the data check found.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        chosen: bool,
    },
    /// Becomes a Citus reference table (copied to every node).
    Reference,
    /// Stays a local table on the coordinator.
    Local,
}

impl Class {
    pub fn name(&self) -> &'static str {
        match self {
            Class::Root => "root",
            Class::Distributed => "distributed",
            Class::NeedsColumn { .. } => "needs_column",
            Class::Reference => "reference",
            Class::Local => "local",
        }
    }
    /// Tables that end up distributed by the tenant column.
    pub fn is_tenant(&self) -> bool {
        matches!(
            self,
            Class::Root | Class::Distributed | Class::NeedsColumn { .. }
        )
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Classified {
    pub table: QName,
    #[serde(flatten)]
    pub class: Class,
    /// Why (one line).
    pub reason: String,
    /// Set by --reference/--local.
    pub overridden: bool,
}

/// The tenant column and its root.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tenant {
    /// Name of the tenant column in the tenant tables.
    pub column: String,
    pub root: Option<QName>,
    /// The root's key column (`store_id` in `stores`; may be named `id`).
    pub root_key: Option<String>,
    /// The root key's type: the type the column gets where it is added.
    pub type_name: String,
    pub inferred: bool,
    pub reason: String,
}

/// User overrides of the inference.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub tenant_column: Option<String>,
    pub reference: Vec<QName>,
    pub local: Vec<QName>,
    /// Foreign keys to drop (`--drop-fk`): they cannot hold across tenants
    /// (the application writes cross-tenant rows by design). The analysis
    /// and the plan treat them as gone; the plan drops them, keeping their
    /// definitions.
    pub drop_fk: Vec<FkRef>,
    /// Derivation paths chosen by the user (`--path TABLE=FK`): the tenant
    /// of TABLE's rows comes through FK (then the referenced table's own
    /// path), whatever the default choice would be.
    pub path: Vec<FkRef>,
    /// Polymorphic pairs chosen by the user (`--path
    /// TABLE=ID_COLUMN:Type=table,…`): the tenant of TABLE's rows comes
    /// from the table their type column names.
    pub polymorphic: Vec<super::polymorphic::Polymorphic>,
    /// `--fix-fk-actions`: foreign-key actions Citus refuses (ON DELETE SET
    /// NULL/DEFAULT, ON UPDATE CASCADE/SET NULL/DEFAULT) become NO ACTION
    /// in the rewritten keys — with consent, because behaviour changes.
    pub fix_fk_actions: bool,
    /// `--keep-triggers`: triggers that only change the row being written
    /// stay (Citus accepts them under citus.enable_unsafe_triggers).
    pub keep_triggers: bool,
    /// `--accept-failing-queries`: queries Citus refuses once the tables
    /// are distributed (joins not on the tenant column) are warnings.
    pub accept_failing_queries: bool,
    /// `--queries FILE`: the application's statements (SQL, or a server
    /// log), besides pg_stat_statements and the functions.
    pub queries: Vec<std::path::PathBuf>,
    /// `--key-order TABLE=tenant-first|key-first`: the column order of
    /// TABLE's rebuilt keys, instead of the plan's choice.
    pub key_order: Vec<KeyOrderChoice>,
    /// `--refuse-lost-lookups`: a known statement that would lose its
    /// index with a rebuilt key stops `plan`/`apply` (a blocker naming the
    /// statement and the filter to add) instead of the plan keeping the old
    /// key first for it.
    pub refuse_lost_lookups: bool,
    /// `--no-lookup-index`: apply builds no index back for statements that
    /// look a table up by its old key alone (they filter by the tenant
    /// already); the plan says they lose it, and counts no such index.
    pub no_lookup_index: bool,
}

/// The order of a rebuilt key's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyOrder {
    /// `(tenant, old key…)`: lookups within a tenant use it; lookups by the
    /// old key alone no longer can.
    TenantFirst,
    /// `(old key…, tenant)`: every lookup that used the old key still uses
    /// it.
    KeyFirst,
}

impl KeyOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrder::TenantFirst => "tenant-first",
            KeyOrder::KeyFirst => "key-first",
        }
    }
}

/// `--key-order TABLE=ORDER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOrderChoice {
    pub table: QName,
    pub order: KeyOrder,
}

impl KeyOrderChoice {
    /// Parses `table=tenant-first` or `schema.table=key-first`.
    pub fn parse(s: &str) -> Option<KeyOrderChoice> {
        let (table, order) = s.split_once('=')?;
        let order = match order {
            "tenant-first" => KeyOrder::TenantFirst,
            "key-first" => KeyOrder::KeyFirst,
            _ => return None,
        };
        (!table.is_empty()).then(|| KeyOrderChoice {
            table: parse_table(table),
            order,
        })
    }
}

impl Overrides {
    /// The flags that give these overrides, as a command line has them
    /// (each flag with its value).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = &self.tenant_column {
            out.push(format!("--tenant-column {c}"));
        }
        for t in &self.reference {
            out.push(format!("--reference {t}"));
        }
        for t in &self.local {
            out.push(format!("--local {t}"));
        }
        for f in &self.drop_fk {
            out.push(format!("--drop-fk {f}"));
        }
        let mut tables: Vec<&QName> = Vec::new();
        for p in &self.path {
            if !tables.contains(&&p.table) {
                tables.push(&p.table);
            }
        }
        for t in tables {
            out.push(format!(
                "--path {t}={}",
                forced_all(&self.path, t).join(",")
            ));
        }
        for p in &self.polymorphic {
            out.push(format!("--path {}", p.arg()));
        }
        if self.fix_fk_actions {
            out.push("--fix-fk-actions".to_string());
        }
        if self.keep_triggers {
            out.push("--keep-triggers".to_string());
        }
        if self.accept_failing_queries {
            out.push("--accept-failing-queries".to_string());
        }
        for q in &self.queries {
            out.push(format!("--queries {}", q.display()));
        }
        for k in &self.key_order {
            out.push(format!("--key-order {}={}", k.table, k.order.as_str()));
        }
        if self.refuse_lost_lookups {
            out.push("--refuse-lost-lookups".to_string());
        }
        if self.no_lookup_index {
            out.push("--no-lookup-index".to_string());
        }
        out
    }

    /// `text` with every `` `shardready apply …` `` command line in it
    /// completed with the flags the user gave already (those the suggested
    /// line does not replace: its own `--path` for the same table, or the
    /// same flag), so the line can be copied as it is.
    pub fn complete_commands(&self, text: &str) -> String {
        const START: &str = "`shardready apply";
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(START) {
            let Some(len) = rest[i + 1..].find('`') else {
                break;
            };
            let line = &rest[i + 1..i + 1 + len];
            let words: Vec<&str> = line.split_whitespace().collect();
            let suggested_path = |t: &QName| {
                words.windows(2).any(|w| {
                    w[0] == "--path"
                        && w[1]
                            .split_once('=')
                            .is_some_and(|(x, _)| &parse_table(x) == t)
                })
            };
            let keep = Overrides {
                tenant_column: self
                    .tenant_column
                    .clone()
                    .filter(|_| !words.contains(&"--tenant-column")),
                path: self
                    .path
                    .iter()
                    .filter(|p| !suggested_path(&p.table))
                    .cloned()
                    .collect(),
                polymorphic: self
                    .polymorphic
                    .iter()
                    .filter(|p| !suggested_path(&p.table))
                    .cloned()
                    .collect(),
                fix_fk_actions: self.fix_fk_actions && !words.contains(&"--fix-fk-actions"),
                keep_triggers: self.keep_triggers && !words.contains(&"--keep-triggers"),
                accept_failing_queries: self.accept_failing_queries
                    && !words.contains(&"--accept-failing-queries"),
                ..self.clone()
            };
            out.push_str(&rest[..i + 1]);
            out.push_str(line);
            let given = format!("{} ", words.join(" "));
            for a in keep.to_args() {
                if !given.contains(&format!(" {a} ")) {
                    out.push(' ');
                    out.push_str(&a);
                }
            }
            out.push('`');
            rest = &rest[i + 2 + len..];
        }
        out.push_str(rest);
        out
    }
}

/// A foreign key named on the command line: `table.constraint` or
/// `schema.table.constraint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FkRef {
    pub table: QName,
    pub name: String,
}

impl FkRef {
    /// Parses `table.constraint` or `schema.table.constraint` (unquoted, as
    /// in the catalog).
    pub fn parse(s: &str) -> Option<FkRef> {
        let (table, name) = s.rsplit_once('.')?;
        (!table.is_empty() && !name.is_empty()).then(|| FkRef {
            table: parse_table(table),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for FkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.table, self.name)
    }
}

impl FkRef {
    /// Parses `table=constraint` or `schema.table=constraint` (`--path`).
    pub fn parse_path(s: &str) -> Option<FkRef> {
        Self::parse_paths(s).filter(|p| p.len() == 1)?.pop()
    }

    /// Parses `table=fk1,fk2,…` (`--path` naming the keys a table's rows
    /// take their tenant through, tried in order).
    pub fn parse_paths(s: &str) -> Option<Vec<FkRef>> {
        let (table, names) = s.split_once('=')?;
        let names: Vec<&str> = names.split(',').map(str::trim).collect();
        let name_ok = |n: &&str| !n.is_empty() && !n.contains([':', '=']);
        (!table.is_empty() && names.iter().all(name_ok)).then(|| {
            names
                .into_iter()
                .map(|name| FkRef {
                    table: parse_table(table),
                    name: name.to_string(),
                })
                .collect()
        })
    }
}

/// Parses `name` or `schema.name` (unquoted; as written in the catalog).
pub fn parse_table(s: &str) -> QName {
    match s.split_once('.') {
        Some((schema, name)) => QName::new(schema, name),
        None => QName::new("public", s),
    }
}

/// Tables that take part: partitions follow their parent, so they are not
/// classified on their own.
fn candidates(cat: &Catalog) -> impl Iterator<Item = &Table> {
    cat.tables.iter().filter(|t| t.parent.is_none())
}

/// The single-column key a table is identified by (its primary key, else
/// a one-column unique constraint).
fn single_key(t: &Table) -> Option<&str> {
    match t.primary_key() {
        Some(pk) => (pk.columns.len() == 1).then(|| pk.columns[0].as_str()),
        None => t
            .keys
            .iter()
            .find(|k| k.kind == KeyKind::Unique && k.columns.len() == 1)
            .map(|k| k.columns[0].as_str()),
    }
}

/// How many tables reach `root` through chains of foreign keys (the root
/// everything hangs from is reached by the most).
fn reach(cat: &Catalog, root: &QName) -> usize {
    let mut seen: BTreeSet<&QName> = BTreeSet::from([root]);
    let mut queue: VecDeque<&QName> = VecDeque::from([root]);
    while let Some(q) = queue.pop_front() {
        for t in candidates(cat) {
            if !seen.contains(&t.name) && cat.foreign_keys_of(t).iter().any(|fk| &fk.ref_table == q)
            {
                seen.insert(&t.name);
                queue.push_back(&t.name);
            }
        }
    }
    seen.len() - 1
}

/// Finds the tenant column: the column name shared by the most tables whose
/// values reference one root table's key through single-column FKs.
pub fn infer(cat: &Catalog, overrides: &Overrides) -> Result<Tenant, AnalyzeError> {
    // (column, root) → tables whose `column` references root's key.
    let mut votes: BTreeMap<(String, QName), BTreeSet<QName>> = BTreeMap::new();
    for t in candidates(cat) {
        for fk in cat.foreign_keys_of(t) {
            if fk.columns.len() != 1 || fk.ref_table == t.name {
                continue;
            }
            let Some(root) = cat.table(&fk.ref_table) else {
                continue;
            };
            if single_key(root) != Some(fk.ref_columns[0].as_str()) {
                continue;
            }
            votes
                .entry((fk.columns[0].clone(), fk.ref_table.clone()))
                .or_default()
                .insert(t.name.clone());
        }
    }
    let type_of = |table: &QName, col: &str| {
        cat.table(table)
            .and_then(|t| t.column(col))
            .map(|c| c.type_name.clone())
    };

    if let Some(column) = &overrides.tenant_column {
        let having: Vec<&Table> = candidates(cat)
            .filter(|t| t.column(column).is_some())
            .collect();
        if having.is_empty() {
            return Err(AnalyzeError::UnknownTenantColumn {
                column: column.clone(),
                suggestions: suggestions(&votes),
            });
        }
        // The root: the table most of the column's FKs point at, else a
        // table whose single-column key is that column.
        let root = votes
            .iter()
            .filter(|((c, _), _)| c == column)
            .max_by_key(|(_, ts)| ts.len())
            .map(|((_, r), _)| r.clone())
            .or_else(|| {
                having
                    .iter()
                    .find(|t| single_key(t) == Some(column.as_str()))
                    .map(|t| t.name.clone())
            });
        let root_key = root
            .as_ref()
            .and_then(|r| cat.table(r))
            .and_then(single_key)
            .map(String::from);
        let type_name = match (&root, &root_key) {
            (Some(r), Some(k)) => type_of(r, k),
            _ => None,
        }
        .or_else(|| type_of(&having[0].name, column))
        .unwrap_or_else(|| "bigint".into());
        return Ok(Tenant {
            column: column.clone(),
            reason: match &root {
                Some(r) => format!("given with --tenant-column; root {r}"),
                None => "given with --tenant-column; no root table found".into(),
            },
            root,
            root_key,
            type_name,
            inferred: false,
        });
    }

    let mut ranked: Vec<(&(String, QName), usize)> =
        votes.iter().map(|(k, v)| (k, v.len())).collect();
    // Most referencing tables first; then the column present in more
    // tables; then the root more tables reach through FK chains (in
    // comments → posts → threads → accounts every column has one vote:
    // accounts is the one everything hangs from).
    let present = |c: &str| candidates(cat).filter(|t| t.column(c).is_some()).count();
    let strong = |k: &(String, QName), n: usize| (n, present(&k.0));
    let rank = |k: &(String, QName), n: usize| (n, present(&k.0), reach(cat, &k.1));
    ranked.sort_by(|a, b| {
        rank(b.0, b.1)
            .cmp(&rank(a.0, a.1))
            .then_with(|| a.0.cmp(b.0))
    });
    let Some((best, n)) = ranked.first().map(|(k, n)| (*k, *n)) else {
        return Err(AnalyzeError::NoTenantColumn);
    };
    let evidence = |(c, r): &(String, QName)| {
        let by: Vec<String> = votes[&(c.clone(), r.clone())]
            .iter()
            .map(|t| t.name.clone())
            .collect();
        format!("{c} → {r} (referenced from {})", by.join(", "))
    };
    let top = rank(best, n);
    let tied: Vec<String> = ranked
        .iter()
        .filter(|(k, m)| rank(k, *m) == top)
        .map(|(k, _)| evidence(k))
        .collect();
    if tied.len() > 1 {
        return Err(AnalyzeError::AmbiguousTenantColumn { candidates: tied });
    }
    // Reachability is a weak tie-break: it tells a chain of owned data
    // (comments → posts → threads → accounts, one candidate column per
    // table) but not a tenant from a lookup the tenant references (a
    // store's address). Where the candidates it separates share tables —
    // a table holds both columns — it is no proof: say so.
    let close: Vec<&(String, QName)> = ranked
        .iter()
        .filter(|(k, m)| strong(k, *m) == strong(best, n))
        .map(|(k, _)| *k)
        .collect();
    let shared = close.iter().any(|a| {
        close
            .iter()
            .any(|b| a != b && votes[a].iter().any(|t| votes[b].contains(t)))
    });
    if close.len() > 1 && shared {
        return Err(AnalyzeError::AmbiguousTenantColumn {
            candidates: close.iter().map(|k| evidence(k)).collect(),
        });
    }
    let (column, root) = best;
    let root_key = cat
        .table(root)
        .and_then(single_key)
        .map(|k| k.to_string())
        .unwrap_or_else(|| column.clone());
    Ok(Tenant {
        column: column.clone(),
        type_name: type_of(root, &root_key).unwrap_or_else(|| "bigint".into()),
        reason: format!(
            "{n} table{} reference {root}.{root_key} through a `{column}` column",
            if n == 1 { "" } else { "s" }
        ),
        root: Some(root.clone()),
        root_key: Some(root_key),
        inferred: true,
    })
}

fn suggestions(votes: &BTreeMap<(String, QName), BTreeSet<QName>>) -> Vec<String> {
    let mut v: Vec<(usize, String)> = votes
        .iter()
        .map(|((c, r), ts)| (ts.len(), format!("{c} → {r}")))
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    v.into_iter().take(3).map(|(_, s)| s).collect()
}

/// Whether `t` carries the tenant column (the root carries it as its key).
pub fn has_tenant(t: &Table, tenant: &Tenant) -> bool {
    if tenant.root.as_ref() == Some(&t.name) {
        return true;
    }
    t.column(&tenant.column).is_some()
}

/// The tenant column's name in `t` (the root's key in the root).
pub fn tenant_column_of<'a>(t: &Table, tenant: &'a Tenant) -> &'a str {
    if tenant.root.as_ref() == Some(&t.name) {
        tenant.root_key.as_deref().unwrap_or(&tenant.column)
    } else {
        &tenant.column
    }
}

/// Whether `fk` (from `t` to `r`) carries the tenant column at the same
/// position on both sides: what Citus needs of a key between colocated
/// tables. The one place this is decided (rules, plan, verify).
pub fn fk_aligned(fk: &crate::catalog::ForeignKey, t: &Table, r: &Table, tenant: &Tenant) -> bool {
    let (mine, theirs) = (tenant_column_of(t, tenant), tenant_column_of(r, tenant));
    fk.columns
        .iter()
        .zip(&fk.ref_columns)
        .any(|(a, b)| a == mine && b == theirs)
}

/// Whether a key from `t` to `r` cannot be rewritten without checking
/// every row under a lock: one to a partitioned table from a partitioned
/// table or a partition (PostgreSQL 15 adds no NOT VALID key to a
/// partitioned table, and the key it references exists only once the
/// referenced table's swap is done). Keys declared on a partitioned table
/// to another table, and keys from a plain table to a partitioned one, are
/// rewritten (through its partitions, or with the referenced key's swap).
/// The one place this is decided (rule and plan).
pub fn fk_rewrite_blocked(t: &Table, r: &Table) -> bool {
    use crate::catalog::TableKind;
    r.kind == TableKind::Partitioned && (t.kind == TableKind::Partitioned || t.parent.is_some())
}

/// Classifies every table (partitions are represented by their parent).
pub fn classify(cat: &Catalog, tenant: &Tenant, overrides: &Overrides) -> Vec<Classified> {
    let mut out: BTreeMap<QName, Classified> = BTreeMap::new();
    for t in candidates(cat) {
        if overrides.reference.contains(&t.name) {
            put(
                &mut out,
                &t.name,
                Class::Reference,
                "--reference".into(),
                true,
            );
        } else if overrides.local.contains(&t.name) {
            put(&mut out, &t.name, Class::Local, "--local".into(), true);
        } else if tenant.root.as_ref() == Some(&t.name) {
            put(
                &mut out,
                &t.name,
                Class::Root,
                format!(
                    "its key {} is the tenant id",
                    tenant.root_key.as_deref().unwrap_or(&tenant.column)
                ),
                false,
            );
        } else if t.column(&tenant.column).is_some() {
            put(
                &mut out,
                &t.name,
                Class::Distributed,
                format!("has {}", tenant.column),
                false,
            );
        }
    }
    // Tables without the column: a path of FK hops to a tenant table.
    // A path whose every column is NOT NULL comes first (a nullable hop
    // leaves rows without a tenant); then the fewest hops; ties go to the
    // larger parent, then the FK name. `--path` fixes a table's first hop.
    let is_tenant = |q: &QName, out: &BTreeMap<QName, Classified>| {
        out.get(q)
            .is_some_and(|c| matches!(c.class, Class::Root | Class::Distributed) && !c.overridden)
    };
    for t in candidates(cat) {
        if out.contains_key(&t.name) {
            continue;
        }
        let overridden = |q: &QName| out.get(q).is_some_and(|c| c.overridden);
        let search = |not_null: bool| {
            derivation_path(
                cat,
                &t.name,
                &|q| is_tenant(q, &out),
                &overridden,
                &overrides.path,
                not_null,
            )
        };
        if let Some(path) = search(true).or_else(|| search(false)) {
            let chosen: Vec<&str> = path
                .iter()
                .filter(|h| forced(&overrides.path, &h.from) == Some(h.fk.as_str()))
                .map(|h| h.fk.as_str())
                .collect();
            let mut reason = format!("no {}; derive it via {}", tenant.column, via_text(&path));
            if !chosen.is_empty() {
                reason.push_str(&format!(" (--path {})", chosen.join(", ")));
            } else if !path_not_null(cat, &path) {
                reason.push_str(NULLABLE_PATH);
            }
            out.insert(
                t.name.clone(),
                Classified {
                    table: t.name.clone(),
                    class: Class::NeedsColumn {
                        path,
                        also: Vec::new(),
                        chosen: false,
                    },
                    reason,
                    overridden: false,
                },
            );
        }
    }
    // Polymorphic pairs named by `--path`: a table without a path takes
    // its tenant from the first type's table, else from the others' (a
    // table with a path takes them after its keys: see `alternatives`).
    for p in &overrides.polymorphic {
        // Named by the user, the pair comes first even where a key gives
        // a path (the keys' paths follow it as alternatives).
        let keyed = matches!(
            out.get(&p.table),
            Some(c) if matches!(c.class, Class::NeedsColumn { .. }) && !c.overridden
        );
        if out.contains_key(&p.table) && !keyed {
            continue;
        }
        let paths = polymorphic_paths(cat, p, &out);
        let Some((first, rest)) = paths.split_first() else {
            continue;
        };
        let types: Vec<String> = p
            .targets
            .iter()
            .map(|(v, t)| format!("{v} → {t}"))
            .collect();
        put(
            &mut out,
            &p.table,
            Class::NeedsColumn {
                path: first.clone(),
                also: rest.to_vec(),
                chosen: true,
            },
            format!(
                "no {}; derive it via {}/{} (polymorphic, --path): {}",
                tenant.column,
                p.type_column,
                p.id_column,
                types.join(", ")
            ),
            false,
        );
    }
    // Tables whose keys lead to such a table (a like of a comment) reach
    // the tenant through it: its path follows theirs (its other types
    // become their alternatives below).
    let pairs: BTreeSet<QName> = overrides
        .polymorphic
        .iter()
        .filter(|p| out.get(&p.table).is_some_and(|c| !c.overridden))
        .map(|p| p.table.clone())
        .collect();
    for t in candidates(cat) {
        if pairs.is_empty() || out.contains_key(&t.name) {
            continue;
        }
        let overridden = |q: &QName| out.get(q).is_some_and(|c| c.overridden);
        let found = derivation_path(
            cat,
            &t.name,
            &|q| is_tenant(q, &out) || pairs.contains(q),
            &overridden,
            &overrides.path,
            false,
        );
        let Some(mut path) = found else { continue };
        let end = path.last().map(|h| h.to.clone());
        let Some(Class::NeedsColumn { path: tail, .. }) =
            end.as_ref().and_then(|e| out.get(e)).map(|c| &c.class)
        else {
            // Reached a table with the tenant without the pair: the
            // ordinary search above would have found it.
            continue;
        };
        path.extend(tail.iter().cloned());
        let keys = path.iter().take_while(|h| h.when.is_none()).count();
        let reason = format!(
            "no {}; derive it via {} (then its polymorphic pair)",
            tenant.column,
            via_text(&path[..keys])
        );
        put(
            &mut out,
            &t.name,
            Class::NeedsColumn {
                path,
                also: Vec::new(),
                chosen: false,
            },
            reason,
            false,
        );
    }
    // Rows a nullable path leaves without a tenant take it through the
    // table's other keys, in order: all of them, or those `--path` names
    // after the first (one key named alone is the only one taken).
    let needs: Vec<QName> = out
        .values()
        .filter(|c| {
            let Class::NeedsColumn { path, .. } = &c.class else {
                return false;
            };
            if overrides.polymorphic.iter().any(|p| p.table == c.table) {
                return true;
            }
            forced(&overrides.path, &c.table).is_some() || !path_not_null(cat, path)
        })
        .map(|c| c.table.clone())
        .collect();
    // A table's alternatives include its parents' (a refund of a payment
    // that belongs to a payment request): repeated until none grows.
    let mut grown: BTreeMap<QName, Vec<Vec<Hop>>> = BTreeMap::new();
    for _ in 0..=needs.len() {
        let mut changed = false;
        for name in &needs {
            let Some(t) = cat.table(name) else { continue };
            let also = alternatives(
                cat,
                t,
                tenant,
                &out,
                &overrides.path,
                &overrides.polymorphic,
            );
            if grown.get(name) != Some(&also) {
                let named = forced_all(&overrides.path, name).len() > 1
                    || overrides.polymorphic.iter().any(|p| &p.table == name);
                if let Some(Class::NeedsColumn {
                    also: a, chosen, ..
                }) = out.get_mut(name).map(|c| &mut c.class)
                {
                    a.clone_from(&also);
                    *chosen = named;
                }
                grown.insert(name.clone(), also);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (name, also) in grown {
        if also.is_empty() {
            continue;
        }
        if let Some(c) = out.get_mut(&name) {
            let via: Vec<String> = also.iter().map(|p| via_text(p)).collect();
            // Alternatives found: the path is no longer the only one.
            c.reason = c.reason.replace(NULLABLE_PATH, "");
            c.reason.push_str(&format!(
                ", else via {} for rows it leaves without one (nullable keys)",
                via.join(", else via ")
            ));
        }
    }
    // The rest: reference when tenant tables reference it (directly or
    // through other such lookups), local otherwise.
    let mut referenced: BTreeSet<QName> = BTreeSet::new();
    let mut queue: VecDeque<QName> = out
        .values()
        .filter(|c| c.class.is_tenant())
        .map(|c| c.table.clone())
        .collect();
    while let Some(q) = queue.pop_front() {
        let Some(t) = cat.table(&q) else { continue };
        for fk in cat.foreign_keys_of(t) {
            let r = &fk.ref_table;
            if !out.contains_key(r) && referenced.insert(r.clone()) {
                queue.push_back(r.clone());
            }
        }
    }
    // Catalogue data: a table that references such a lookup (Pagila's
    // film_actor → film), and what it references in turn (actor). Kept
    // local, Citus would make it a "citus local" table on the coordinator
    // anyway (the foreign key graph is converted with the lookup).
    let mut catalogue: BTreeMap<QName, QName> = BTreeMap::new();
    loop {
        let mut grew = false;
        for t in candidates(cat) {
            if out.contains_key(&t.name) || referenced.contains(&t.name) {
                continue;
            }
            let Some(via) = cat
                .foreign_keys_of(t)
                .iter()
                .find(|fk| referenced.contains(&fk.ref_table))
                .map(|fk| fk.ref_table.clone())
            else {
                continue;
            };
            referenced.insert(t.name.clone());
            catalogue.insert(t.name.clone(), via);
            for fk in cat.foreign_keys_of(t) {
                if !out.contains_key(&fk.ref_table) && referenced.insert(fk.ref_table.clone()) {
                    catalogue.insert(fk.ref_table.clone(), t.name.clone());
                }
            }
            grew = true;
        }
        if !grew {
            break;
        }
    }
    for t in candidates(cat) {
        if out.contains_key(&t.name) {
            continue;
        }
        if let Some(via) = catalogue.get(&t.name) {
            put(
                &mut out,
                &t.name,
                Class::Reference,
                format!(
                    "catalogue data joined with {via}, a reference table (else Citus keeps it as a \
                     \"citus local\" table on the coordinator; --local {} to keep it local)",
                    t.name
                ),
                false,
            );
        } else if referenced.contains(&t.name) {
            put(
                &mut out,
                &t.name,
                Class::Reference,
                "no tenant path; referenced by tenant tables (a lookup)".into(),
                false,
            );
        } else {
            put(
                &mut out,
                &t.name,
                Class::Local,
                "unrelated to the tenant tables".into(),
                false,
            );
        }
    }
    out.into_values().collect()
}

fn put(
    out: &mut BTreeMap<QName, Classified>,
    t: &QName,
    class: Class,
    reason: String,
    overridden: bool,
) {
    out.insert(
        t.clone(),
        Classified {
            table: t.clone(),
            class,
            reason,
            overridden,
        },
    );
}

/// The FK `--path` chose for `table` (the first where it names several).
fn forced<'a>(paths: &'a [FkRef], table: &QName) -> Option<&'a str> {
    forced_all(paths, table).into_iter().next()
}

/// Every FK `--path` names for `table`, in order.
fn forced_all<'a>(paths: &'a [FkRef], table: &QName) -> Vec<&'a str> {
    paths
        .iter()
        .filter(|p| &p.table == table)
        .map(|p| p.name.as_str())
        .collect()
}

/// The paths besides its own that give `t`'s rows a tenant, in the order
/// they are tried: through the keys `--path` names, or else every key to
/// a tenant table (the larger parent first), each followed by that
/// parent's own path or one of its alternatives; then through its
/// polymorphic pairs (`--path TABLE=ID:Type=table,…`). Only paths that
/// end at a tenant of the same type as the table's own path.
fn alternatives(
    cat: &Catalog,
    t: &Table,
    tenant: &Tenant,
    out: &BTreeMap<QName, Classified>,
    paths: &[FkRef],
    paths_poly: &[super::polymorphic::Polymorphic],
) -> Vec<Vec<Hop>> {
    let Some(Class::NeedsColumn { path, .. }) = out.get(&t.name).map(|c| &c.class) else {
        return Vec::new();
    };
    let end_type = |p: &[Hop]| {
        let end = cat.table(&p.last()?.to)?;
        Some(end.column(tenant_column_of(end, tenant))?.type_name.clone())
    };
    let own = end_type(path);
    let chosen = forced_all(paths, &t.name);
    let mut fks: Vec<&crate::catalog::ForeignKey> = cat
        .foreign_keys_of(t)
        .into_iter()
        .filter(|fk| fk.ref_table != t.name)
        .filter(|fk| chosen.is_empty() || chosen.contains(&fk.name.as_str()))
        .collect();
    if chosen.len() > 1 {
        fks.sort_by_key(|fk| chosen.iter().position(|c| *c == fk.name));
    } else {
        let rows = |fk: &&crate::catalog::ForeignKey| {
            cat.table(&fk.ref_table).map_or(0, |t| t.row_estimate)
        };
        fks.sort_by(|a, b| rows(b).cmp(&rows(a)).then_with(|| a.name.cmp(&b.name)));
    }
    let mut candidates: Vec<Vec<Hop>> = fks
        .into_iter()
        .flat_map(|fk| through(Hop::along(&t.name, fk), out))
        .collect();
    for p in overrides_of(paths_poly, &t.name) {
        candidates.extend(polymorphic_paths(cat, p, out));
    }
    let mut found = Vec::new();
    for p in candidates {
        if &p != path && !found.contains(&p) && end_type(&p) == own {
            found.push(p);
        }
    }
    found
}

/// The paths that start with `hop`: on to its parent, then the parent's
/// own path or one of its alternatives (none that come back through the
/// hop's table).
fn through(hop: Hop, out: &BTreeMap<QName, Classified>) -> Vec<Vec<Hop>> {
    let Some(parent) = out.get(&hop.to).filter(|c| !c.overridden) else {
        return Vec::new();
    };
    let tails: Vec<Vec<Hop>> = match &parent.class {
        Class::Root | Class::Distributed => vec![Vec::new()],
        Class::NeedsColumn { path, also, .. } => std::iter::once(path)
            .chain(also)
            .filter(|p| p.iter().all(|h| h.from != hop.from && h.to != hop.from))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    tails
        .into_iter()
        .map(|tail| {
            let mut p = vec![hop.clone()];
            p.extend(tail);
            p
        })
        .collect()
}

/// The paths of a polymorphic pair: one per type whose table is a tenant
/// table (or reaches one), in the order the types were named.
fn polymorphic_paths(
    cat: &Catalog,
    p: &super::polymorphic::Polymorphic,
    out: &BTreeMap<QName, Classified>,
) -> Vec<Vec<Hop>> {
    p.hops(cat)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|h| through(h, out))
        .collect()
}

/// The polymorphic `--path`s of `table`.
fn overrides_of<'a>(
    all: &'a [super::polymorphic::Polymorphic],
    table: &'a QName,
) -> impl Iterator<Item = &'a super::polymorphic::Polymorphic> {
    all.iter().filter(move |p| &p.table == table)
}

/// Whether every column of every hop is NOT NULL: each row then has a
/// parent to take its tenant from.
fn path_not_null(cat: &Catalog, path: &[Hop]) -> bool {
    path.iter()
        .all(|h| h.when.is_none() && hop_not_null(cat, &h.from, &h.columns))
}

fn hop_not_null(cat: &Catalog, table: &QName, columns: &[String]) -> bool {
    cat.table(table).is_some_and(|t| {
        columns
            .iter()
            .all(|c| t.column(c).is_some_and(|c| c.not_null))
    })
}

/// Shortest FK path from `start` to a table accepted by `target`.
/// Tables for which `skip` holds (forced reference or local) are not
/// walked through: a row's tenant cannot come through a lookup. Where
/// `paths` names a table's FK (`--path`), only that one is followed from
/// it; with `not_null`, only hops whose columns are all NOT NULL (forced
/// ones excepted: the user chose them).
fn derivation_path(
    cat: &Catalog,
    start: &QName,
    target: &dyn Fn(&QName) -> bool,
    skip: &dyn Fn(&QName) -> bool,
    paths: &[FkRef],
    not_null: bool,
) -> Option<Vec<Hop>> {
    let mut seen: BTreeSet<QName> = BTreeSet::from([start.clone()]);
    let mut queue: VecDeque<(QName, Vec<Hop>)> = VecDeque::from([(start.clone(), Vec::new())]);
    while let Some((q, path)) = queue.pop_front() {
        let Some(t) = cat.table(&q) else { continue };
        let chosen = forced(paths, &q);
        let mut fks: Vec<_> = cat
            .foreign_keys_of(t)
            .into_iter()
            .filter(|fk| fk.ref_table != q && !seen.contains(&fk.ref_table) && !skip(&fk.ref_table))
            .filter(|fk| match chosen {
                Some(name) => fk.name == name,
                None => !not_null || hop_not_null(cat, &q, &fk.columns),
            })
            .collect();
        // The larger parent first (an order owns its line items; a product
        // is a lookup of them), then by name for a stable result.
        fks.sort_by(|a, b| {
            let rows = |fk: &&crate::catalog::ForeignKey| {
                cat.table(&fk.ref_table)
                    .map(|t| t.row_estimate)
                    .unwrap_or(0)
            };
            rows(b).cmp(&rows(a)).then_with(|| a.name.cmp(&b.name))
        });
        for fk in fks {
            let mut next = path.clone();
            next.push(Hop::along(&q, fk));
            if target(&fk.ref_table) {
                return Some(next);
            }
            seen.insert(fk.ref_table.clone());
            queue.push_back((fk.ref_table.clone(), next));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    fn classes(cat: &Catalog, o: &Overrides) -> BTreeMap<String, Class> {
        let t = infer(cat, o).unwrap();
        classify(cat, &t, o)
            .into_iter()
            .map(|c| (c.table.to_string(), c.class))
            .collect()
    }

    fn path_of(c: &Class) -> Vec<String> {
        match c {
            Class::NeedsColumn { path, .. } => path.iter().map(|h| h.fk.clone()).collect(),
            other => panic!("not needs_column: {other:?}"),
        }
    }

    #[test]
    fn tailspin() {
        let cat = crate::analyze::testkit::tailspin();
        let t = infer(&cat, &Overrides::default()).unwrap();
        assert_eq!(t.column, "store_id");
        assert_eq!(t.root, Some(q("stores")));
        assert_eq!(t.root_key.as_deref(), Some("store_id"));
        assert_eq!(t.type_name, "bigint");
        assert!(t.inferred);
        assert!(
            t.reason.contains("2 tables reference stores.store_id"),
            "{}",
            t.reason
        );
        let c = classes(&cat, &Overrides::default());
        assert_eq!(c["stores"], Class::Root);
        assert_eq!(c["products"], Class::Distributed);
        assert_eq!(c["orders"], Class::Distributed);
        assert_eq!(
            path_of(&c["line_items"]),
            ["line_items_order_id_fkey"],
            "through the larger parent, orders"
        );
    }

    #[test]
    fn another_column_name_and_type() {
        let cat = catalog(vec![
            table("accounts")
                .col("id", "uuid")
                .col("name", "text")
                .pk(&["id"]),
            table("projects")
                .col("id", "bigint")
                .col("tenant_id", "uuid")
                .pk(&["id"])
                .fk("projects_tenant", &["tenant_id"], "accounts", &["id"]),
            table("tasks")
                .col("id", "bigint")
                .col("tenant_id", "uuid")
                .col("project_id", "bigint")
                .pk(&["id"])
                .fk("tasks_tenant", &["tenant_id"], "accounts", &["id"])
                .fk("tasks_project", &["project_id"], "projects", &["id"]),
        ]);
        let t = infer(&cat, &Overrides::default()).unwrap();
        assert_eq!(t.column, "tenant_id");
        assert_eq!(
            t.root_key.as_deref(),
            Some("id"),
            "the root's key may be named id"
        );
        assert_eq!(t.type_name, "uuid");
        let c = classes(&cat, &Overrides::default());
        assert_eq!(c["accounts"], Class::Root);
        assert_eq!(c["tasks"], Class::Distributed);

        let ints = catalog(vec![
            table("tenants")
                .col("tenant_id", "integer")
                .pk(&["tenant_id"]),
            table("users")
                .col("id", "bigint")
                .col("tenant_id", "integer")
                .pk(&["id"])
                .fk("u_t", &["tenant_id"], "tenants", &["tenant_id"]),
        ]);
        let t = infer(&ints, &Overrides::default()).unwrap();
        assert_eq!(
            (t.column.as_str(), t.type_name.as_str()),
            ("tenant_id", "integer")
        );
    }

    #[test]
    fn a_root_identified_by_a_unique_column() {
        // No primary key: the one-column UNIQUE constraint identifies it.
        let cat = catalog(vec![
            table("shops")
                .col("code", "text")
                .unique("shops_code_key", &["code"]),
            table("sales")
                .col("id", "bigint")
                .col("shop", "text")
                .pk(&["id"])
                .fk("sales_shop", &["shop"], "shops", &["code"]),
        ]);
        let t = infer(&cat, &Overrides::default()).unwrap();
        assert_eq!(t.column, "shop");
        assert_eq!(t.root_key.as_deref(), Some("code"));
        assert_eq!(t.type_name, "text");
    }

    fn two_tenants() -> Catalog {
        catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("orgs").col("org_id", "bigint").pk(&["org_id"]),
            table("a")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("a_s", &["store_id"], "stores", &["store_id"]),
            table("b")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("b_s", &["store_id"], "stores", &["store_id"]),
            table("c")
                .col("id", "bigint")
                .col("org_id", "bigint")
                .pk(&["id"])
                .fk("c_o", &["org_id"], "orgs", &["org_id"]),
            table("d")
                .col("id", "bigint")
                .col("org_id", "bigint")
                .pk(&["id"])
                .fk("d_o", &["org_id"], "orgs", &["org_id"]),
        ])
    }

    #[test]
    fn ambiguous() {
        match infer(&two_tenants(), &Overrides::default()) {
            Err(AnalyzeError::AmbiguousTenantColumn { candidates }) => {
                assert_eq!(
                    candidates,
                    [
                        "org_id → orgs (referenced from c, d)",
                        "store_id → stores (referenced from a, b)"
                    ]
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn none() {
        let cat = catalog(vec![
            table("a").col("id", "bigint").pk(&["id"]),
            table("b")
                .col("id", "bigint")
                .col("a_id", "bigint")
                .pk(&["id"]),
        ]);
        assert!(matches!(
            infer(&cat, &Overrides::default()),
            Err(AnalyzeError::NoTenantColumn)
        ));
    }

    #[test]
    fn tenant_column_override() {
        let o = Overrides {
            tenant_column: Some("org_id".into()),
            ..Default::default()
        };
        let t = infer(&two_tenants(), &o).unwrap();
        assert_eq!(t.root, Some(q("orgs")));
        assert!(!t.inferred);
        let c = classes(&two_tenants(), &o);
        assert_eq!(c["c"], Class::Distributed);
        assert_eq!(c["orgs"], Class::Root);
        assert_eq!(c["a"], Class::Local, "unrelated to orgs");
        assert_eq!(c["stores"], Class::Local);

        let o = Overrides {
            tenant_column: Some("shop_id".into()),
            ..Default::default()
        };
        match infer(&two_tenants(), &o) {
            Err(AnalyzeError::UnknownTenantColumn {
                column,
                suggestions,
            }) => {
                assert_eq!(column, "shop_id");
                assert_eq!(suggestions.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        // A column no FK names: its table with that single key is the root.
        let o = Overrides {
            tenant_column: Some("id".into()),
            ..Default::default()
        };
        let t = infer(&two_tenants(), &o).unwrap();
        assert_eq!(t.column, "id");
        assert!(t.root.is_some());
    }

    #[test]
    fn reference_and_local_overrides() {
        let cat = crate::analyze::testkit::tailspin();
        let o = Overrides {
            reference: vec![q("products")],
            ..Default::default()
        };
        let c = classes(&cat, &o);
        assert_eq!(c["products"], Class::Reference);
        assert_eq!(path_of(&c["line_items"]), ["line_items_order_id_fkey"]);
        let cl = classify(&cat, &infer(&cat, &o).unwrap(), &o);
        assert!(
            cl.iter()
                .find(|c| c.table == q("products"))
                .unwrap()
                .overridden
        );

        // orders kept local: line_items derives through products instead.
        let o = Overrides {
            local: vec![q("orders")],
            ..Default::default()
        };
        let c = classes(&cat, &o);
        assert_eq!(c["orders"], Class::Local);
        assert_eq!(path_of(&c["line_items"]), ["line_items_product_id_fkey"]);

        // A forced lookup is not walked through: items → boxes → stores.
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("shelves")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("sh_s", &["store_id"], "stores", &["store_id"]),
            table("boxes")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("b_s", &["store_id"], "stores", &["store_id"]),
            table("items")
                .col("id", "bigint")
                .col("box_id", "bigint")
                .pk(&["id"])
                .fk("i_b", &["box_id"], "boxes", &["id"]),
        ]);
        let o = Overrides {
            reference: vec![q("boxes")],
            ..Default::default()
        };
        let c = classes(&cat, &o);
        assert_eq!(c["boxes"], Class::Reference);
        assert_eq!(
            c["items"],
            Class::Local,
            "no tenant path once boxes is a lookup"
        );
    }

    fn forum() -> Catalog {
        catalog(vec![
            table("accounts").col("id", "bigint").pk(&["id"]),
            table("threads")
                .col("id", "bigint")
                .col("account_id", "bigint")
                .pk(&["id"])
                .fk("threads_account", &["account_id"], "accounts", &["id"]),
            table("posts")
                .col("id", "bigint")
                .col("thread_id", "bigint")
                .pk(&["id"])
                .fk("posts_thread", &["thread_id"], "threads", &["id"]),
            table("comments")
                .col("id", "bigint")
                .col("post_id", "bigint")
                .col("reply_to", "bigint")
                .pk(&["id"])
                .fk("comments_post", &["post_id"], "posts", &["id"])
                .fk("comments_reply", &["reply_to"], "comments", &["id"]),
        ])
    }

    #[test]
    fn two_hops() {
        // Every column has one vote; accounts is reached by the most tables.
        let t = infer(&forum(), &Overrides::default()).unwrap();
        assert_eq!(t.column, "account_id");
        assert_eq!(t.root, Some(q("accounts")));
        let c = classes(&forum(), &Overrides::default());
        assert_eq!(c["threads"], Class::Distributed);
        assert_eq!(path_of(&c["posts"]), ["posts_thread"]);
        assert_eq!(
            path_of(&c["comments"]),
            ["comments_post", "posts_thread"],
            "two hops; the self-reference is no detour"
        );
        let Class::NeedsColumn { path, .. } = &c["comments"] else {
            unreachable!()
        };
        assert_eq!(path[1].from, q("posts"));
        assert_eq!(path[1].to, q("threads"));
    }

    #[test]
    fn self_references_do_not_break_the_search() {
        let cat = catalog(vec![
            table("accounts").col("id", "bigint").pk(&["id"]),
            table("categories")
                .col("id", "bigint")
                .col("account_id", "bigint")
                .col("parent_id", "bigint")
                .pk(&["id"])
                .fk("cat_account", &["account_id"], "accounts", &["id"])
                .fk("cat_parent", &["parent_id"], "categories", &["id"]),
            table("tree")
                .col("id", "bigint")
                .col("parent_id", "bigint")
                .pk(&["id"])
                .fk("tree_parent", &["parent_id"], "tree", &["id"]),
            table("folders")
                .col("id", "bigint")
                .col("parent_id", "bigint")
                .col("category_id", "bigint")
                .pk(&["id"])
                .fk("folders_parent", &["parent_id"], "folders", &["id"])
                .fk("folders_category", &["category_id"], "categories", &["id"]),
        ]);
        let t = infer(&cat, &Overrides::default()).unwrap();
        assert_eq!(t.column, "account_id", "a self-reference is no vote");
        let c = classes(&cat, &Overrides::default());
        assert_eq!(c["categories"], Class::Distributed);
        assert_eq!(c["tree"], Class::Local);
        assert_eq!(path_of(&c["folders"]), ["folders_category"]);
    }

    #[test]
    fn lookups_become_reference_tables_and_partitions_follow_their_parent() {
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("continents").col("id", "int").pk(&["id"]),
            table("countries")
                .col("code", "text")
                .col("continent", "int")
                .pk(&["code"])
                .fk("c_cont", &["continent"], "continents", &["id"]),
            table("orders")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .col("country", "text")
                .pk(&["id"])
                .fk("o_s", &["store_id"], "stores", &["store_id"])
                .fk("o_c", &["country"], "countries", &["code"]),
            table("events")
                .col("store_id", "bigint")
                .partitioned("RANGE (at)")
                .fk("e_s", &["store_id"], "stores", &["store_id"]),
            table("events_2024")
                .col("store_id", "bigint")
                .partition_of("events"),
            table("audit").col("id", "bigint").pk(&["id"]),
        ]);
        let c = classes(&cat, &Overrides::default());
        assert_eq!(c["countries"], Class::Reference);
        assert_eq!(c["continents"], Class::Reference, "a lookup of a lookup");
        assert_eq!(c["audit"], Class::Local);
        assert_eq!(c["events"], Class::Distributed);
        assert!(
            !c.contains_key("events_2024"),
            "partitions are not classified"
        );
    }

    /// A comment reaches its account through its (nullable) author in one
    /// hop, or through its task and project (NOT NULL) in two.
    fn tasks() -> Catalog {
        catalog(vec![
            table("accounts").col("id", "bigint").pk(&["id"]),
            table("users")
                .col("id", "bigint")
                .col_notnull("account_id", "bigint")
                .pk(&["id"])
                .fk("users_account", &["account_id"], "accounts", &["id"]),
            table("projects")
                .col("id", "bigint")
                .col_notnull("account_id", "bigint")
                .pk(&["id"])
                .fk("projects_account", &["account_id"], "accounts", &["id"]),
            table("tasks")
                .col("id", "bigint")
                .col_notnull("project_id", "bigint")
                .pk(&["id"])
                .fk("tasks_project", &["project_id"], "projects", &["id"]),
            table("comments")
                .col("id", "bigint")
                .col("author_id", "bigint")
                .col_notnull("task_id", "bigint")
                .pk(&["id"])
                .fk("comments_author", &["author_id"], "users", &["id"])
                .fk("comments_task", &["task_id"], "tasks", &["id"]),
        ])
    }

    /// Pagila's shape: customers and staff reference both their store and
    /// their address, the store its address; films are referenced as
    /// often. Votes and presence tie; reachability would pick the address
    /// (the store hangs from it), so it is no proof: ambiguous, with the
    /// evidence, never `address_id`.
    #[test]
    fn a_lookup_tied_with_the_tenant_is_ambiguous_not_a_coin_toss() {
        let cat = catalog(vec![
            table("address")
                .col("address_id", "integer")
                .pk(&["address_id"]),
            table("store")
                .col("store_id", "integer")
                .col("address_id", "integer")
                .pk(&["store_id"])
                .fk("store_address", &["address_id"], "address", &["address_id"]),
            table("customer")
                .col("customer_id", "integer")
                .col("store_id", "integer")
                .col("address_id", "integer")
                .pk(&["customer_id"])
                .fk("customer_store", &["store_id"], "store", &["store_id"])
                .fk(
                    "customer_address",
                    &["address_id"],
                    "address",
                    &["address_id"],
                ),
            table("staff")
                .col("staff_id", "integer")
                .col("store_id", "integer")
                .col("address_id", "integer")
                .pk(&["staff_id"])
                .fk("staff_store", &["store_id"], "store", &["store_id"])
                .fk("staff_address", &["address_id"], "address", &["address_id"]),
            table("inventory")
                .col("inventory_id", "integer")
                .col("store_id", "integer")
                .pk(&["inventory_id"])
                .fk("inventory_store", &["store_id"], "store", &["store_id"]),
        ]);
        let err = infer(&cat, &Overrides::default()).unwrap_err();
        let AnalyzeError::AmbiguousTenantColumn { candidates } = &err else {
            panic!("{err}")
        };
        assert!(
            candidates
                .iter()
                .any(|c| c == "store_id → store (referenced from customer, inventory, staff)"),
            "{err}"
        );
        assert!(
            candidates
                .iter()
                .any(|c| c.starts_with("address_id → address")),
            "{err}"
        );
        // Named, it is taken.
        let o = Overrides {
            tenant_column: Some("store_id".into()),
            ..Default::default()
        };
        assert_eq!(infer(&cat, &o).unwrap().root, Some(q("store")));
    }

    #[test]
    fn a_not_null_path_beats_a_shorter_nullable_one() {
        let c = classes(&tasks(), &Overrides::default());
        assert_eq!(
            path_of(&c["comments"]),
            ["comments_task", "tasks_project"],
            "every comment has a task; an author may be NULL"
        );
        // Only a nullable path: taken, and the reason says so.
        let mut cat = tasks();
        let comments = cat
            .tables
            .iter_mut()
            .find(|t| t.name == q("comments"))
            .unwrap();
        comments
            .foreign_keys
            .retain(|fk| fk.name == "comments_author");
        let t = infer(&cat, &Overrides::default()).unwrap();
        let all = classify(&cat, &t, &Overrides::default());
        let comments = all.iter().find(|c| c.table == q("comments")).unwrap();
        assert_eq!(path_of(&comments.class), ["comments_author"]);
        assert!(
            comments.reason.contains("a nullable path"),
            "{}",
            comments.reason
        );
    }

    /// A payment belongs to an invoice or to a payment request: neither
    /// key alone gives every row its tenant, together they do.
    fn payments() -> Catalog {
        catalog(vec![
            table("accounts").col("id", "bigint").pk(&["id"]),
            table("invoices")
                .col("id", "bigint")
                .col_notnull("account_id", "bigint")
                .pk(&["id"])
                .fk("invoices_account", &["account_id"], "accounts", &["id"]),
            table("payment_requests")
                .col("id", "bigint")
                .col_notnull("account_id", "bigint")
                .pk(&["id"])
                .fk("requests_account", &["account_id"], "accounts", &["id"]),
            table("payments")
                .col("id", "bigint")
                .col("invoice_id", "bigint")
                .col("request_id", "bigint")
                .pk(&["id"])
                .fk("payments_invoice", &["invoice_id"], "invoices", &["id"])
                .fk(
                    "payments_request",
                    &["request_id"],
                    "payment_requests",
                    &["id"],
                ),
            table("refunds")
                .col("id", "bigint")
                .col_notnull("payment_id", "bigint")
                .pk(&["id"])
                .fk("refunds_payment", &["payment_id"], "payments", &["id"]),
        ])
    }

    fn also_of(c: &Class) -> Vec<Vec<String>> {
        match c {
            Class::NeedsColumn { also, .. } => also
                .iter()
                .map(|p| p.iter().map(|h| h.fk.clone()).collect())
                .collect(),
            other => panic!("not needs_column: {other:?}"),
        }
    }

    #[test]
    fn several_nullable_keys_are_tried_in_order() {
        let cat = payments();
        let o = Overrides::default();
        let c = classes(&cat, &o);
        assert_eq!(path_of(&c["payments"]), ["payments_invoice"]);
        assert_eq!(also_of(&c["payments"]), [["payments_request"]]);
        // A child reaches the tenant through its parent's path, or through
        // each of the parent's alternatives.
        assert_eq!(
            path_of(&c["refunds"]),
            ["refunds_payment", "payments_invoice"]
        );
        assert_eq!(
            also_of(&c["refunds"]),
            [["refunds_payment", "payments_request"]]
        );
        let t = infer(&cat, &o).unwrap();
        let all = classify(&cat, &t, &o);
        let p = all.iter().find(|c| c.table == q("payments")).unwrap();
        assert!(
            p.reason
                .contains("else via payments.request_id → payment_requests"),
            "{}",
            p.reason
        );
        // `--path` with both keys: that order; with one: that one alone.
        let both = Overrides {
            path: FkRef::parse_paths("payments=payments_request,payments_invoice").unwrap(),
            ..Default::default()
        };
        let c = classes(&cat, &both);
        assert_eq!(path_of(&c["payments"]), ["payments_request"]);
        assert_eq!(also_of(&c["payments"]), [["payments_invoice"]]);
        assert_eq!(
            both.to_args(),
            ["--path payments=payments_request,payments_invoice"]
        );
        crate::analyze::analyze_catalog(&cat, &both).unwrap();
        let one = Overrides {
            path: vec![FkRef::parse_path("payments=payments_request").unwrap()],
            ..Default::default()
        };
        let c = classes(&cat, &one);
        assert_eq!(path_of(&c["payments"]), ["payments_request"]);
        assert!(also_of(&c["payments"]).is_empty());
        crate::analyze::analyze_catalog(&cat, &one).unwrap();
        assert_eq!(FkRef::parse_path("payments=a,b"), None);
        assert_eq!(FkRef::parse_paths("payments=a,"), None);
    }

    #[test]
    fn a_polymorphic_pair_named_by_path_gives_the_tenant() {
        use crate::analyze::polymorphic::Polymorphic;
        let cat = catalog(vec![
            table("accounts").col("id", "bigint").pk(&["id"]),
            table("posts")
                .col("id", "bigint")
                .col_notnull("account_id", "bigint")
                .pk(&["id"])
                .fk("posts_account", &["account_id"], "accounts", &["id"]),
            table("photos")
                .col("id", "bigint")
                .col_notnull("account_id", "bigint")
                .pk(&["id"])
                .fk("photos_account", &["account_id"], "accounts", &["id"]),
            table("comments")
                .col("id", "bigint")
                .col("commentable_type", "text")
                .col("commentable_id", "bigint")
                .pk(&["id"]),
        ]);
        assert_eq!(
            classes(&cat, &Overrides::default())["comments"],
            Class::Local,
            "no key: nothing to go by"
        );
        let o = Overrides {
            polymorphic: vec![Polymorphic::parse(
                "comments=commentable_id:Post=posts,Photo=photos",
            )
            .unwrap()],
            ..Default::default()
        };
        let c = classes(&cat, &o);
        assert_eq!(path_of(&c["comments"]), ["commentable_id:Post"]);
        assert_eq!(also_of(&c["comments"]), [["commentable_id:Photo"]]);
        let Class::NeedsColumn { path, .. } = &c["comments"] else {
            unreachable!()
        };
        assert_eq!(path[0].to, q("posts"));
        assert_eq!(path[0].ref_columns, ["id"]);
        assert_eq!(
            path[0]
                .when
                .as_ref()
                .map(|w| (w.column.as_str(), w.value.as_str())),
            Some(("commentable_type", "Post"))
        );
        assert_eq!(
            o.to_args(),
            ["--path comments=commentable_id:Post=posts,Photo=photos"]
        );
        crate::analyze::analyze_catalog(&cat, &o).unwrap();
        // A table under the pair reaches the tenant through it, each type.
        let mut likes = cat.clone();
        likes.tables.push(
            table("likes")
                .col("id", "bigint")
                .col_notnull("comment_id", "bigint")
                .pk(&["id"])
                .fk("likes_comment", &["comment_id"], "comments", &["id"])
                .build(),
        );
        let c = classes(&likes, &o);
        assert_eq!(
            path_of(&c["likes"]),
            ["likes_comment", "commentable_id:Post"]
        );
        assert_eq!(
            also_of(&c["likes"]),
            [["likes_comment", "commentable_id:Photo"]]
        );
        // A type whose table has no tenant: refused with the reason.
        let bad = Overrides {
            polymorphic: vec![Polymorphic::parse("comments=commentable_id:Account=nope").unwrap()],
            ..Default::default()
        };
        let err = crate::analyze::analyze_catalog(&cat, &bad).unwrap_err();
        assert!(err.to_string().contains("there is no table nope"), "{err}");
    }

    #[test]
    fn path_chooses_the_first_hop() {
        let o = Overrides {
            path: vec![FkRef::parse_path("comments=comments_author").unwrap()],
            ..Default::default()
        };
        let t = infer(&tasks(), &o).unwrap();
        let all = classify(&tasks(), &t, &o);
        let comments = all.iter().find(|c| c.table == q("comments")).unwrap();
        assert_eq!(path_of(&comments.class), ["comments_author"]);
        assert!(
            comments.reason.ends_with("(--path comments_author)"),
            "{}",
            comments.reason
        );
        // Other tables keep their default.
        assert_eq!(path_of(&classes(&tasks(), &o)["tasks"]), ["tasks_project"]);
    }

    #[test]
    fn printed_commands_keep_the_users_flags() {
        let o = Overrides {
            tenant_column: Some("account_id".into()),
            reference: vec![q("app.plans")],
            drop_fk: vec![FkRef::parse("h.h_doc").unwrap()],
            path: vec![
                FkRef::parse_path("tasks=tasks_assignee").unwrap(),
                FkRef::parse_path("notes=notes_task").unwrap(),
            ],
            fix_fk_actions: true,
            ..Default::default()
        };
        assert_eq!(
            o.complete_commands(
                "fix: `shardready apply --path tasks=tasks_project`, or `shardready apply \
                 --replan --drop-fk x.y` (then `shardready verify`)"
            ),
            "fix: `shardready apply --path tasks=tasks_project --tenant-column account_id \
             --reference app.plans --drop-fk h.h_doc --path notes=notes_task --fix-fk-actions`, \
             or `shardready apply --replan --drop-fk x.y --tenant-column account_id --reference \
             app.plans --drop-fk h.h_doc --path tasks=tasks_assignee --path notes=notes_task \
             --fix-fk-actions` (then `shardready verify`)"
        );
        // Nothing to add, nothing changed; a flag already there not twice.
        assert_eq!(
            Overrides::default().complete_commands("`shardready apply --fix-fk-actions`"),
            "`shardready apply --fix-fk-actions`"
        );
        let fix = Overrides {
            fix_fk_actions: true,
            ..Default::default()
        };
        assert_eq!(
            fix.complete_commands("a `shardready apply --fix-fk-actions` b `c`"),
            "a `shardready apply --fix-fk-actions` b `c`"
        );
    }

    #[test]
    fn a_path_that_cannot_be_honoured_is_an_error() {
        use crate::analyze::{analyze_catalog, AnalyzeError};
        let with = |p: &str| Overrides {
            path: vec![FkRef::parse_path(p).unwrap()],
            ..Default::default()
        };
        let err = analyze_catalog(&tasks(), &with("comments=nope")).unwrap_err();
        assert!(
            matches!(&err, AnalyzeError::UnknownForeignKey { available, .. } if available == &["comments_author", "comments_task"]),
            "{err}"
        );
        let err = analyze_catalog(&tasks(), &with("users=users_account")).unwrap_err();
        assert!(
            err.to_string().contains("users has account_id already"),
            "{err}"
        );
        let err = analyze_catalog(&tasks(), &with("nowhere=x")).unwrap_err();
        assert!(matches!(err, AnalyzeError::UnknownTable(_)), "{err}");
        // The FK leads to a table kept local: no tenant through it.
        let o = Overrides {
            local: vec![q("users")],
            ..with("comments=comments_author")
        };
        let err = analyze_catalog(&tasks(), &o).unwrap_err();
        assert!(
            err.to_string()
                .contains("no table with account_id can be reached through it"),
            "{err}"
        );
        assert_eq!(FkRef::parse_path("comments"), None);
        assert_eq!(FkRef::parse_path("=x"), None);
    }
}
