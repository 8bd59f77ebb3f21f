//! Which keys the plan rebuilds with the tenant column, and in which column
//! order: the tenant first, so lookups within a tenant use the key, unless
//! a known statement of the application looks the table up by the old key
//! without the tenant column; then the old key stays first and that
//! statement keeps its index (Citus needs the tenant column in the key,
//! not in front). Every choice is kept with its reason and the statements
//! behind it, for `plan` and the report.

use serde::{Deserialize, Serialize};

use super::{object_name, KeyTarget, PartitionIndex};
use crate::analyze::access::Statements;
use crate::analyze::tenant::KeyOrder;
use crate::analyze::Analysis;
use crate::catalog::{Catalog, KeyKind, QName, Table, TableKind};
use crate::sql::ident;

/// The statements named in a choice (the most called first).
const SHOWN_STATEMENTS: usize = 5;

/// A rebuilt key's column order and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChoice {
    pub table: QName,
    /// The constraint or unique index.
    pub key: String,
    pub columns: Vec<String>,
    pub order: KeyOrder,
    pub reason: String,
    /// The known statements that look the table up by the old key without
    /// the tenant column (`origin: statement (calls/s)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<String>,
    /// The index on the old key's columns apply builds before the swap so
    /// that those statements keep one (tenant first by the user's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_index: Option<String>,
}

/// What the plan knew of the application's statements, and the order it
/// chose for each rebuilt key (`plan`, `plan --format json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Access {
    /// Each source read: `pg_stat_statements: 12 statements`, or why it
    /// gave none.
    pub sources: Vec<String>,
    pub keys: Vec<KeyChoice>,
}

impl Access {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The order chosen for each rebuilt key and why, with the sources
    /// read (`plan`; the SQL script has it as comments).
    pub fn text(&self) -> String {
        use std::fmt::Write;
        if self.is_empty() {
            return String::new();
        }
        let mut s = format!(
            "\nthe application's lookups (statements read from: {})\n",
            self.sources.join("; ")
        );
        for k in &self.keys {
            let _ = writeln!(
                s,
                "  {}.{} → ({}), {}: {}",
                k.table,
                k.key,
                k.columns.join(", "),
                k.order.as_str(),
                k.reason
            );
            for st in &k.statements {
                let _ = writeln!(s, "      {st}");
            }
        }
        s
    }

    /// The sources, as read by the analysis.
    pub(crate) fn of(statements: &Statements) -> Access {
        Access {
            sources: statements
                .sources
                .iter()
                .map(|s| match &s.note {
                    Some(n) => format!("{}: {n}", s.name),
                    None => format!("{}: {} statements with lookups", s.name, s.statements),
                })
                .collect(),
            keys: Vec::new(),
        }
    }
}

/// A key (PK, UNIQUE or unique index) to rebuild with the tenant column.
pub(super) struct KeyToBuild {
    pub(super) target: KeyTarget,
    /// The new key's columns, in the chosen order.
    pub(super) columns: Vec<String>,
    /// The old key's columns (`(expr)` for an expression).
    pub(super) old: Vec<String>,
    pub(super) order: KeyOrder,
    /// The index tail for expression or partial indexes.
    pub(super) definition: Option<String>,
}

impl KeyToBuild {
    /// The constraint's or index's name.
    pub(super) fn name(&self) -> &str {
        match &self.target {
            KeyTarget::Primary { constraint } | KeyTarget::Unique { constraint } => constraint,
            KeyTarget::Index { name } => name,
        }
    }
}

/// `old` with `tenant` in the chosen place.
fn ordered(old: &[String], tenant: &str, order: KeyOrder) -> Vec<String> {
    match order {
        KeyOrder::TenantFirst => std::iter::once(tenant.to_string())
            .chain(old.iter().cloned())
            .collect(),
        KeyOrder::KeyFirst => old
            .iter()
            .cloned()
            .chain(std::iter::once(tenant.to_string()))
            .collect(),
    }
}

/// Every PK/UNIQUE constraint and unique index of `t` without `tcol`, each
/// with its column order chosen ([`choose`]); the choices go to `access`.
pub(super) fn keys_without(
    analysis: &Analysis,
    t: &Table,
    tcol: &str,
    access: &mut Access,
) -> Vec<KeyToBuild> {
    let mut olds: Vec<(KeyTarget, Vec<String>, Option<&str>)> = Vec::new();
    let (constraints, indexes) = t.keys_without(tcol);
    for k in constraints {
        let constraint = k.name.clone();
        let target = if k.kind == KeyKind::Primary {
            KeyTarget::Primary { constraint }
        } else {
            KeyTarget::Unique { constraint }
        };
        olds.push((target, k.columns.clone(), None));
    }
    for ix in indexes {
        let old = ix
            .columns
            .iter()
            .map(|c| c.clone().unwrap_or_else(|| "(expr)".into()))
            .collect();
        olds.push((
            KeyTarget::Index {
                name: ix.name.clone(),
            },
            old,
            Some(ix.definition.as_str()),
        ));
    }
    olds.into_iter()
        .map(|(target, old, definition)| {
            let mut key = KeyToBuild {
                target,
                columns: Vec::new(),
                old,
                order: KeyOrder::TenantFirst,
                definition: None,
            };
            let choice = choose(analysis, t, tcol, &key);
            key.order = choice.order;
            key.columns = choice.columns.clone();
            key.definition = definition.map(|d| index_tail_with(d, tcol, key.order));
            access.keys.push(choice);
            key
        })
        .collect()
}

/// The column order of `key` on `t`: the user's (`--key-order`), else the
/// old key first when a known statement looks `t` up by its first column
/// without the tenant column and no other index of `t` leads with it, else
/// the tenant first.
fn choose(analysis: &Analysis, t: &Table, tcol: &str, key: &KeyToBuild) -> KeyChoice {
    let first = key.old.first().map(String::as_str).unwrap_or("");
    let mut needing: Vec<_> = analysis
        .statements
        .by_column_without(&t.name, first, tcol)
        .collect();
    needing.sort_by_key(|k| std::cmp::Reverse(k.calls));
    let shown: Vec<String> = needing
        .iter()
        .take(SHOWN_STATEMENTS)
        .map(|k| k.shown())
        .collect();
    let other_index = t.index_leads.iter().any(|c| c == first);
    let chosen = analysis.key_order.iter().find(|c| c.table == t.name);
    // A new index an earlier run built for this key (a rerun, a replan)
    // keeps its order: the swap takes the index as it is.
    let built = t
        .unique_indexes
        .iter()
        .find(|ix| ix.name == object_name(key.name(), "_shardready"))
        .and_then(|ix| match ix.columns.first()?.as_deref() {
            Some(c) if c == tcol => Some(KeyOrder::TenantFirst),
            Some(c) if c == first => Some(KeyOrder::KeyFirst),
            _ => None,
        });
    let lookup_name = object_name(&format!("{}_{}", t.name.name, key.old.join("_")), "_lookup");
    let mut lookup_index = None;
    let (order, reason) = if let Some(order) = built {
        (
            order,
            format!(
                "its new index was built {} by an earlier run (to change the order, \
                 `shardready abort` first)",
                order.as_str()
            ),
        )
    } else if let Some(c) = chosen {
        // Tenant first while statements look the table up by the old key
        // alone: apply's probe builds them an index before the swap.
        let losing = c.order == KeyOrder::TenantFirst && !needing.is_empty() && !other_index;
        let lookup = if losing && analysis.no_lookup_index {
            format!(
                "; the statements below look it up by {first} alone and lose their index with \
                 the swap (--no-lookup-index: none is built for them)"
            )
        } else if losing {
            lookup_index = Some(lookup_name.clone());
            format!(
                "; the statements below look it up by {first} alone: apply builds the index \
                 {lookup_name} ({}) concurrently before the swap so they keep one \
                 (--no-lookup-index not to; drop it once they filter by {tcol})",
                key.old.join(", ")
            )
        } else {
            String::new()
        };
        (
            c.order,
            format!("--key-order {}={}{lookup}", t.name, c.order.as_str()),
        )
    } else if first == "(expr)" {
        (
            KeyOrder::TenantFirst,
            "an expression leads the old key: lookups by it are not traced (--key-order to choose)"
                .to_string(),
        )
    } else if !needing.is_empty() && !other_index {
        (
            KeyOrder::KeyFirst,
            format!(
                "{} known statement(s) look {} up by {first} without {tcol}: {first} stays first \
                 so they keep using the key",
                needing.len(),
                t.name
            ),
        )
    } else if !needing.is_empty() {
        (
            KeyOrder::TenantFirst,
            format!(
                "statements look {} up by {first} alone, and another index of it leads with \
                 {first}",
                t.name
            ),
        )
    } else if analysis.statements.any() {
        (
            KeyOrder::TenantFirst,
            format!(
                "no known statement looks {} up by {first} without {tcol}",
                t.name
            ),
        )
    } else {
        (
            KeyOrder::TenantFirst,
            format!(
                "no statement of the application is known: lookups of {} by {first} alone would \
                 lose their index (enable pg_stat_statements, or pass --queries FILE or \
                 --key-order {}=key-first)",
                t.name, t.name
            ),
        )
    };
    KeyChoice {
        table: t.name.clone(),
        key: key.name().to_string(),
        columns: ordered(&key.old, tcol, order),
        order,
        reason,
        statements: shown,
        lookup_index,
    }
}

/// For a key of a partitioned table, its copy on each partition and the
/// new index to build there (none for other tables). The copy is found
/// by its columns: a partition's key mirrors its parent's.
pub(super) fn partition_indexes(
    cat: &Catalog,
    t: &Table,
    key: &KeyToBuild,
    tenant: &str,
) -> Vec<PartitionIndex> {
    if t.kind != TableKind::Partitioned {
        return Vec::new();
    }
    let old_columns = &key.old;
    cat.partitions_of(&t.name)
        .into_iter()
        .filter_map(|p| {
            let target = match &key.target {
                KeyTarget::Primary { .. } => KeyTarget::Primary {
                    constraint: p.primary_key()?.name.clone(),
                },
                KeyTarget::Unique { .. } => KeyTarget::Unique {
                    constraint: p
                        .keys
                        .iter()
                        .find(|k| k.kind == KeyKind::Unique && &k.columns == old_columns)?
                        .name
                        .clone(),
                },
                KeyTarget::Index { .. } => KeyTarget::Index {
                    name: p
                        .unique_indexes
                        .iter()
                        .find(|ix| {
                            ix.constraint.is_none()
                                && ix.columns.iter().flatten().eq(old_columns.iter())
                        })?
                        .name
                        .clone(),
                },
            };
            let own = match &target {
                KeyTarget::Primary { constraint } | KeyTarget::Unique { constraint } => constraint,
                KeyTarget::Index { name } => name,
            };
            let definition = match &target {
                KeyTarget::Index { name } => p
                    .unique_indexes
                    .iter()
                    .find(|ix| &ix.name == name)
                    .map(|ix| index_tail_with(&ix.definition, tenant, key.order)),
                _ => None,
            };
            Some(PartitionIndex {
                table: p.name.clone(),
                index: object_name(own, "_shardready"),
                target,
                definition,
            })
        })
        .collect()
}

/// `CREATE UNIQUE INDEX name ON t USING btree (a, lower(b)) WHERE …` →
/// `USING btree (tenant, a, lower(b)) WHERE …` (tenant first) or `USING
/// btree (a, lower(b), tenant) WHERE …` (key first).
pub(super) fn index_tail_with(definition: &str, tenant: &str, order: KeyOrder) -> String {
    let Some(pos) = definition.find(" USING ") else {
        return format!("({})", ident(tenant));
    };
    let tail = &definition[pos + 1..];
    let Some(open) = tail.find('(') else {
        return tail.to_string();
    };
    match order {
        KeyOrder::TenantFirst => {
            format!("{}({}, {}", &tail[..open], ident(tenant), &tail[open + 1..])
        }
        KeyOrder::KeyFirst => {
            // The parenthesis that closes the column list.
            let mut depth = 0;
            let close = tail[open..].char_indices().find_map(|(i, ch)| {
                match ch {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(open + i);
                        }
                    }
                    _ => {}
                }
                None
            });
            match close {
                Some(c) => format!("{}, {}{}", &tail[..c], ident(tenant), &tail[c..]),
                None => tail.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_tail_gets_the_tenant_in_the_chosen_place() {
        let def = "CREATE UNIQUE INDEX u ON public.t USING btree (lower(code), (a + b)) WHERE (price > 0)";
        assert_eq!(
            index_tail_with(def, "store_id", KeyOrder::TenantFirst),
            "USING btree (\"store_id\", lower(code), (a + b)) WHERE (price > 0)"
        );
        assert_eq!(
            index_tail_with(def, "store_id", KeyOrder::KeyFirst),
            "USING btree (lower(code), (a + b), \"store_id\") WHERE (price > 0)"
        );
    }
}
