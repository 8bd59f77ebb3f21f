//! Tenant inference and table classification: which column is the tenant
//! (distribution) column, which table is its root, and what each table
//! becomes (root, distributed, needs the column through an FK path,
//! reference, local).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use crate::catalog::{Catalog, QName, Table};

use super::AnalyzeError;

/// One FK hop of a derivation path: `from.columns → to.ref_columns`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Hop {
    pub from: QName,
    pub fk: String,
    pub columns: Vec<String>,
    pub to: QName,
    pub ref_columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum Class {
    /// The table the tenant column refers to (its key is the tenant id).
    Root,
    /// Has the tenant column already.
    Distributed,
    /// Lacks the column; it can be derived through these FK hops (the last
    /// hop reaches a table that has it).
    NeedsColumn { path: Vec<Hop> },
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
    t.primary_key()
        .filter(|k| k.columns.len() == 1)
        .map(|k| k.columns[0].as_str())
}

/// Finds the tenant column: the column name shared by the most tables whose
/// values reference one root table's key through single-column FKs.
pub fn infer(cat: &Catalog, overrides: &Overrides) -> Result<Tenant, AnalyzeError> {
    // (column, root) → tables whose `column` references root's key.
    let mut votes: BTreeMap<(String, QName), BTreeSet<QName>> = BTreeMap::new();
    for t in candidates(cat) {
        for fk in &t.foreign_keys {
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
    // Most referencing tables first; then the column present in more tables.
    let present = |c: &str| candidates(cat).filter(|t| t.column(c).is_some()).count();
    ranked.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| present(&b.0 .0).cmp(&present(&a.0 .0)))
            .then_with(|| a.0.cmp(b.0))
    });
    let Some(((column, root), n)) = ranked.first().map(|(k, n)| (*k, *n)) else {
        return Err(AnalyzeError::NoTenantColumn);
    };
    if let Some((other, m)) = ranked.get(1) {
        if *m == n && present(&other.0) == present(column) {
            return Err(AnalyzeError::AmbiguousTenantColumn {
                candidates: ranked
                    .iter()
                    .filter(|(_, k)| *k == n)
                    .map(|((c, r), _)| format!("{c} → {r}"))
                    .collect(),
            });
        }
    }
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
    // Tables without the column: a path of FK hops to a tenant table
    // (breadth first: fewest hops; ties go to the larger parent, then the
    // FK name).
    let is_tenant = |q: &QName, out: &BTreeMap<QName, Classified>| {
        out.get(q)
            .is_some_and(|c| matches!(c.class, Class::Root | Class::Distributed) && !c.overridden)
    };
    for t in candidates(cat) {
        if out.contains_key(&t.name) {
            continue;
        }
        if let Some(path) = derivation_path(cat, &t.name, &|q| is_tenant(q, &out)) {
            let via: Vec<String> = path
                .iter()
                .map(|h| format!("{}.{} → {}", h.from.name, h.columns.join(","), h.to))
                .collect();
            let reason = format!("no {}; derive it via {}", tenant.column, via.join(" → "));
            out.insert(
                t.name.clone(),
                Classified {
                    table: t.name.clone(),
                    class: Class::NeedsColumn { path },
                    reason,
                    overridden: false,
                },
            );
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
        for fk in &t.foreign_keys {
            let r = &fk.ref_table;
            if !out.contains_key(r) && referenced.insert(r.clone()) {
                queue.push_back(r.clone());
            }
        }
    }
    for t in candidates(cat) {
        if out.contains_key(&t.name) {
            continue;
        }
        if referenced.contains(&t.name) {
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

/// Shortest FK path from `start` to a table accepted by `target`.
fn derivation_path(
    cat: &Catalog,
    start: &QName,
    target: &dyn Fn(&QName) -> bool,
) -> Option<Vec<Hop>> {
    let mut seen: BTreeSet<QName> = BTreeSet::from([start.clone()]);
    let mut queue: VecDeque<(QName, Vec<Hop>)> = VecDeque::from([(start.clone(), Vec::new())]);
    while let Some((q, path)) = queue.pop_front() {
        let Some(t) = cat.table(&q) else { continue };
        let mut fks: Vec<_> = t
            .foreign_keys
            .iter()
            .filter(|fk| fk.ref_table != q && !seen.contains(&fk.ref_table))
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
            next.push(Hop {
                from: q.clone(),
                fk: fk.name.clone(),
                columns: fk.columns.clone(),
                to: fk.ref_table.clone(),
                ref_columns: fk.ref_columns.clone(),
            });
            if target(&fk.ref_table) {
                return Some(next);
            }
            seen.insert(fk.ref_table.clone());
            queue.push_back((fk.ref_table.clone(), next));
        }
    }
    None
}
