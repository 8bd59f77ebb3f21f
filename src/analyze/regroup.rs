//! Makes a view's grouping survive a key swap. A view that groups by a
//! table's primary key and selects the table's other columns relies on
//! that key (PostgreSQL's functional dependency, recorded in `pg_depend`):
//! the key cannot be dropped while the view stands, and once the key is
//! (tenant, key) the same query is refused ("must appear in the GROUP BY
//! clause"). Adding the tenant column to each such GROUP BY gives the
//! query the whole new key, and changes no group: the tenant is one value
//! per key.

use pg_query::protobuf::{self, ColumnRef, Node, SelectStmt};
use pg_query::{NodeEnum, NodeMut};

use crate::catalog::QName;

/// A key the plan replaces: its table, its columns before the swap, and
/// the tenant column the new key starts with.
#[derive(Debug, Clone, Copy)]
pub struct SwappedKey<'a> {
    pub table: &'a QName,
    pub columns: &'a [String],
    pub tenant: &'a str,
}

/// What a regrouped GROUP BY gets.
#[derive(Debug, Clone, Copy)]
pub enum Grouping<'a> {
    /// The key's tenant column: the query then relies on the new key (for
    /// a view re-created after the swap, in its transaction).
    Tenant,
    /// Every column of the key's table the view uses (each table and
    /// column, from `pg_depend`): the query relies on no key at all (for
    /// a materialized view re-created before apply, when the tenant
    /// column may not exist yet).
    Explicit(&'a [(QName, String)]),
}

/// `definition` (a view's query, as `pg_get_viewdef` gives it) with
/// `how`'s columns added to every GROUP BY that groups by all the columns
/// of one of `keys` (and not by its tenant column yet); None when no
/// GROUP BY does for every one of `keys` (the view relies on a key some
/// other way, which a partial rewrite would leave failing), or when the
/// query cannot be parsed or written back. Tables are matched by their
/// qualified name: the definitions are read with an empty search_path, so
/// an unqualified name is a CTE's.
pub fn regroup(definition: &str, keys: &[SwappedKey], how: Grouping) -> Option<String> {
    let mut parsed = pg_query::parse(definition, 0).ok()?;
    // SAFETY: the pointers come from the tree we own and hold mutably for
    // this whole block; each SelectStmt is boxed, so appending to one's
    // GROUP BY list moves no other SelectStmt.
    let mut covered = vec![false; keys.len()];
    let changed = unsafe {
        let selects: Vec<*mut SelectStmt> = parsed
            .protobuf
            .nodes_mut()
            .into_iter()
            .filter_map(|(n, _, _)| match n {
                NodeMut::SelectStmt(s) => Some(s),
                _ => None,
            })
            .collect();
        let mut changed = false;
        for s in selects {
            if let Some(s) = s.as_mut() {
                changed |= regroup_one(s, keys, how, &mut covered);
            }
        }
        changed
    };
    if !changed || covered.contains(&false) {
        return None;
    }
    parsed.protobuf.deparse(Default::default()).ok()
}

/// One SELECT: adds the tenant column of each key its GROUP BY covers.
fn regroup_one(
    s: &mut SelectStmt,
    keys: &[SwappedKey],
    how: Grouping,
    covered: &mut [bool],
) -> bool {
    if s.group_clause.is_empty() {
        return false;
    }
    let mut ranges = Vec::new();
    for item in &s.from_clause {
        ranges_of(item, &mut ranges);
    }
    // A lone relation's columns may be named bare.
    let lone = ranges.len() == 1;
    let grouped: Vec<Vec<String>> = s.group_clause.iter().filter_map(column_ref).collect();
    let mut added = Vec::new();
    for (qualifier, rv) in &ranges {
        for (i, key) in keys.iter().enumerate() {
            if rv.relname != key.table.name || rv.schemaname != key.table.schema {
                continue;
            }
            let has = |col: &str| {
                grouped.iter().any(|f| match f.as_slice() {
                    [q, c] => q == qualifier && c == col,
                    [c] => lone && c == col,
                    _ => false,
                })
            };
            if !key.columns.iter().all(|c| has(c)) || has(key.tenant) {
                continue;
            }
            covered[i] = true;
            let columns: Vec<&str> = match how {
                Grouping::Tenant => vec![key.tenant],
                Grouping::Explicit(uses) => uses
                    .iter()
                    .filter(|(t, c)| t == key.table && !has(c))
                    .map(|(_, c)| c.as_str())
                    .collect(),
            };
            let bare = lone && !grouped.iter().any(|f| f.len() == 2);
            for c in columns {
                let fields = if bare {
                    vec![c.to_string()]
                } else {
                    vec![qualifier.clone(), c.to_string()]
                };
                added.push(column_node(fields));
            }
        }
    }
    let changed = !added.is_empty();
    s.group_clause.extend(added);
    changed
}

/// The relations of a FROM item (through joins), each with the name its
/// columns are qualified by (its alias, else its name).
fn ranges_of(item: &Node, out: &mut Vec<(String, protobuf::RangeVar)>) {
    match item.node.as_ref() {
        Some(NodeEnum::RangeVar(rv)) => {
            let q = rv
                .alias
                .as_ref()
                .map_or(rv.relname.clone(), |a| a.aliasname.clone());
            out.push((q, rv.clone()));
        }
        Some(NodeEnum::JoinExpr(j)) => {
            for side in [&j.larg, &j.rarg].into_iter().flatten() {
                ranges_of(side, out);
            }
        }
        // A subquery or function: its own columns, never the key's.
        Some(_) | None => out.push((String::new(), protobuf::RangeVar::default())),
    }
}

/// The names of a plain column reference (`o.id`, `id`).
fn column_ref(n: &Node) -> Option<Vec<String>> {
    let Some(NodeEnum::ColumnRef(c)) = n.node.as_ref() else {
        return None;
    };
    c.fields
        .iter()
        .map(|f| match f.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

fn column_node(fields: Vec<String>) -> Node {
    Node {
        node: Some(NodeEnum::ColumnRef(ColumnRef {
            fields: fields
                .into_iter()
                .map(|sval| Node {
                    node: Some(NodeEnum::String(protobuf::String { sval })),
                })
                .collect(),
            location: -1,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> QName {
        QName::new("public", "orders")
    }

    fn run(sql: &str, table: &QName, cols: &[&str]) -> Option<String> {
        let cols: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
        regroup(
            sql,
            &[SwappedKey {
                table,
                columns: &cols,
                tenant: "store_id",
            }],
            Grouping::Tenant,
        )
    }

    #[test]
    fn explicit_grouping_lists_every_column_used() {
        let t = orders();
        let cols = vec!["id".to_string()];
        let uses: Vec<(QName, String)> = ["id", "note", "placed"]
            .iter()
            .map(|c| (t.clone(), c.to_string()))
            .chain([(QName::new("public", "items"), "n".to_string())])
            .collect();
        let out = regroup(
            "SELECT o.id, o.note, max(o.placed), sum(i.n) FROM public.orders o \
             JOIN public.items i ON i.order_id = o.id GROUP BY o.id",
            &[SwappedKey {
                table: &t,
                columns: &cols,
                tenant: "store_id",
            }],
            Grouping::Explicit(&uses),
        )
        .unwrap();
        assert!(out.contains("GROUP BY o.id, o.note, o.placed"), "{out}");
    }

    #[test]
    fn a_group_by_the_key_gets_the_tenant_column() {
        let t = orders();
        let out = run(
            "SELECT o.id, o.note, sum(i.n) AS total FROM public.orders o \
             JOIN public.items i ON i.order_id = o.id GROUP BY o.id",
            &t,
            &["id"],
        )
        .unwrap();
        assert!(out.contains("GROUP BY o.id, o.store_id"), "{out}");
        // A lone relation named bare.
        let out = run(
            "SELECT id, note, count(*) FROM public.orders GROUP BY id",
            &t,
            &["id"],
        )
        .unwrap();
        assert!(out.contains("GROUP BY id, store_id"), "{out}");
    }

    #[test]
    fn subqueries_and_ctes_are_regrouped_where_they_group_by_the_key() {
        let t = orders();
        let out = run(
            "WITH x AS (SELECT orders.id, orders.note FROM public.orders GROUP BY orders.id) \
             SELECT * FROM x WHERE x.id IN \
               (SELECT o2.id FROM public.orders o2 JOIN public.items i ON true GROUP BY o2.id, i.n)",
            &t,
            &["id"],
        )
        .unwrap();
        assert!(out.contains("GROUP BY orders.id, orders.store_id"), "{out}");
        assert!(out.contains("GROUP BY o2.id, i.n, o2.store_id"), "{out}");
    }

    #[test]
    fn a_view_on_two_keys_is_regrouped_for_both_or_not_at_all() {
        let (o, i) = (orders(), QName::new("public", "items"));
        let id = vec!["id".to_string()];
        let keys = [
            SwappedKey {
                table: &o,
                columns: &id,
                tenant: "store_id",
            },
            SwappedKey {
                table: &i,
                columns: &id,
                tenant: "store_id",
            },
        ];
        let both = "SELECT o.id, o.note, i.id, i.n FROM public.orders o \
                    JOIN public.items i ON i.order_id = o.id GROUP BY o.id, i.id";
        let out = regroup(both, &keys, Grouping::Tenant).unwrap();
        assert!(
            out.contains("GROUP BY o.id, i.id, o.store_id, i.store_id"),
            "{out}"
        );
        // items' key is relied on some other way: nothing is rewritten.
        let one = "SELECT o.id, o.note, max(i.n) FROM public.orders o \
                   JOIN public.items i ON i.order_id = o.id GROUP BY o.id";
        assert_eq!(regroup(one, &keys, Grouping::Tenant), None);
    }

    #[test]
    fn nothing_to_do_is_none() {
        let t = orders();
        // Grouped by the tenant already, by another column, another
        // schema's table, or part of a composite key.
        for sql in [
            "SELECT o.id, o.note FROM public.orders o GROUP BY o.id, o.store_id",
            "SELECT o.note, count(*) FROM public.orders o GROUP BY o.note",
            "SELECT o.id, o.note FROM other.orders o GROUP BY o.id",
            "SELECT note FROM public.orders",
            // A CTE of the same name.
            "WITH orders AS (SELECT 1 AS id, 2 AS note) SELECT id, note FROM orders GROUP BY id",
        ] {
            assert_eq!(run(sql, &t, &["id"]), None, "{sql}");
        }
        assert_eq!(
            run(
                "SELECT o.a, o.note FROM public.orders o GROUP BY o.a",
                &t,
                &["a", "b"]
            ),
            None
        );
    }
}
