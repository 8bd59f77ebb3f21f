//! The application's known statements and what each looks tables up by:
//! read from `pg_stat_statements` (with calls and calls per second), from
//! the bodies of the database's functions, and from files the user names
//! (`--queries FILE`: SQL statements, or a server log's `statement:` and
//! `execute …:` lines). Each statement's lookups are the columns of each
//! table it compares with `=`, `IN`, `= ANY` or `IS NOT DISTINCT FROM` at
//! one query level (join conditions included): the columns an index must
//! lead with for the statement to use it. The plan keeps those access
//! paths when it rebuilds keys.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pg_query::NodeEnum;
use serde::Serialize;
use tokio_postgres::Client;

use super::queries::{self, Walk};
use crate::catalog::{Catalog, QName};

/// Where statements were looked for, and how many each gave.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Source {
    /// `pg_stat_statements`, `functions` or the file's path.
    pub name: String,
    pub statements: usize,
    /// Why it gave none, and how to make it give some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A statement of the application and the lookups it makes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Known {
    /// `pg_stat_statements:<queryid>`, `function <name>` or `<file>:<line>`.
    pub origin: String,
    /// The statement, whitespace collapsed, trimmed.
    pub statement: String,
    /// The whole statement, as it can be planned (`$n` parameters); empty
    /// for a function's (its variables are not parameters).
    #[serde(skip)]
    pub sql: String,
    /// Calls counted by pg_stat_statements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<i64>,
    /// Calls per second since pg_stat_statements was last reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_s: Option<f64>,
    pub lookups: Vec<Lookup>,
}

/// One table looked up by these columns (equality) at one query level.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lookup {
    pub table: QName,
    pub columns: BTreeSet<String>,
}

/// What is known of the application's statements.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Statements {
    pub sources: Vec<Source>,
    pub statements: Vec<Known>,
}

impl Statements {
    /// Whether any source gave a statement.
    pub fn any(&self) -> bool {
        !self.statements.is_empty()
    }

    /// The statements that look `table` up by `column` without `tenant`.
    pub fn by_column_without<'a>(
        &'a self,
        table: &'a QName,
        column: &'a str,
        tenant: &'a str,
    ) -> impl Iterator<Item = &'a Known> + 'a {
        self.statements.iter().filter(move |k| {
            k.lookups.iter().any(|l| {
                &l.table == table && l.columns.contains(column) && !l.columns.contains(tenant)
            })
        })
    }
}

impl Known {
    /// `origin: statement (calls/s)`, as plans and findings name it.
    pub fn shown(&self) -> String {
        format!(
            "{}: {}{}",
            self.origin,
            self.statement,
            self.calls_per_s
                .map(|r| format!(" ({r:.1} calls/s)"))
                .unwrap_or_default()
        )
    }
}

/// Whether `sql` is exactly one SELECT, INSERT, UPDATE or DELETE.
pub(crate) fn plannable(sql: &str) -> bool {
    let Ok(parsed) = pg_query::parse(sql, 0) else {
        return false;
    };
    matches!(
        parsed.protobuf.stmts.as_slice(),
        [one] if matches!(
            one.stmt.as_deref().and_then(|n| n.node.as_ref()),
            Some(
                NodeEnum::SelectStmt(_)
                    | NodeEnum::InsertStmt(_)
                    | NodeEnum::UpdateStmt(_)
                    | NodeEnum::DeleteStmt(_)
            )
        )
    )
}

/// The lookups of SQL text (one or more statements); None when it does
/// not parse.
pub(crate) fn lookups(cat: &Catalog, sql: &str) -> Option<Vec<Lookup>> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let mut out = BTreeSet::new();
    for raw in &parsed.protobuf.stmts {
        if let Some(n) = raw.stmt.as_deref().and_then(|n| n.node.as_ref()) {
            out.extend(lookups_of(cat, n));
        }
    }
    Some(out.into_iter().collect())
}

/// The lookups of one parsed statement: for each table of each query
/// level, the columns compared by equality there (a qualified column goes
/// to its table; an unqualified one to every table of the level that has
/// it).
fn lookups_of(cat: &Catalog, n: &NodeEnum) -> Vec<Lookup> {
    let mut w = Walk::default();
    w.stmt(n);
    let mut out = Vec::new();
    for scope in &w.scopes {
        for rel in &scope.rels {
            let Some(t) = queries::resolve_in(cat, rel) else {
                continue;
            };
            let columns: BTreeSet<String> = scope
                .filters
                .iter()
                .filter(|(q, c)| {
                    t.column(c).is_some()
                        && match q {
                            None => true,
                            Some(q) => rel.is_named(q),
                        }
                })
                .map(|(_, c)| c.clone())
                .collect();
            if !columns.is_empty() {
                out.push(Lookup {
                    table: cat.top_parent(t).clone(),
                    columns,
                });
            }
        }
    }
    out
}

/// Reads every source: pg_stat_statements when it is installed in the
/// database, the functions' bodies, and `files`.
pub(crate) async fn read(cat: &Catalog, client: &Client, files: &[PathBuf]) -> Statements {
    let mut out = Statements::default();
    let stats = from_pg_stat_statements(cat, client).await;
    out.sources.push(stats.0);
    out.statements.extend(stats.1);
    let mut n = 0;
    // shardready's own helpers (the sync triggers' functions) are not the
    // application's.
    for f in cat.functions.iter().filter(|f| f.schema != "shardready") {
        let mut seen = BTreeSet::new();
        for text in queries::statements_of(f) {
            let Some(lookups) = lookups_in(cat, &text).filter(|l| !l.is_empty()) else {
                continue;
            };
            if seen.insert(queries::quote(&text)) {
                n += 1;
                out.statements.push(Known {
                    origin: format!("function {}.{}", f.schema, f.name),
                    statement: queries::quote(&text),
                    sql: String::new(),
                    calls: None,
                    calls_per_s: None,
                    lookups,
                });
            }
        }
    }
    out.sources.push(Source {
        name: "functions".into(),
        statements: n,
        note: None,
    });
    for path in files {
        let (source, known) = from_file(cat, path);
        out.sources.push(source);
        out.statements.extend(known);
    }
    out
}

/// [`lookups`] of a plpgsql expression too (`x = (SELECT …)` is tried as
/// a SELECT of its right side).
fn lookups_in(cat: &Catalog, text: &str) -> Option<Vec<Lookup>> {
    lookups(cat, text).or_else(|| {
        let expr = text.split_once(":=").map(|(_, e)| e).unwrap_or(text);
        lookups(cat, &format!("SELECT {expr}"))
    })
}

async fn from_pg_stat_statements(cat: &Catalog, client: &Client) -> (Source, Vec<Known>) {
    let name = "pg_stat_statements".to_string();
    if !cat.has_extension("pg_stat_statements") {
        return (
            Source {
                name,
                statements: 0,
                note: Some(
                    "not installed in this database: add pg_stat_statements to \
                     shared_preload_libraries (restart), run CREATE EXTENSION pg_stat_statements, \
                     and let the application run a while, so the plan sees the statements it \
                     must keep fast (or name them with --queries FILE)"
                        .into(),
                ),
            },
            Vec::new(),
        );
    }
    let rows = match crate::catalog::top_statements(client, queries::TOP_STATEMENTS).await {
        Ok(r) => r,
        Err(e) => {
            return (
                Source {
                    name,
                    statements: 0,
                    note: Some(format!(
                        "cannot be read ({}): add it to shared_preload_libraries (restart)",
                        crate::conn::error_text(&e)
                    )),
                },
                Vec::new(),
            )
        }
    };
    let since = crate::catalog::statements_age_s(client)
        .await
        .ok()
        .flatten();
    let known: Vec<Known> = rows
        .into_iter()
        .filter_map(|s| {
            Some(Known {
                calls: Some(s.calls),
                calls_per_s: since.filter(|a| *a > 0.0).map(|age| s.calls as f64 / age),
                ..Known::of(cat, format!("pg_stat_statements:{}", s.queryid), &s.query)?
            })
        })
        .collect();
    Source::gave(name, known)
}

impl Known {
    /// `sql` from `origin`, when it is one SELECT, INSERT, UPDATE or DELETE
    /// that looks a table up (else None: the probe plans it, and must
    /// never run anything else).
    fn of(cat: &Catalog, origin: String, sql: &str) -> Option<Known> {
        if !plannable(sql) {
            return None;
        }
        let lookups = lookups(cat, sql).filter(|l| !l.is_empty())?;
        Some(Known {
            origin,
            statement: queries::quote(sql),
            sql: sql.to_string(),
            calls: None,
            calls_per_s: None,
            lookups,
        })
    }
}

impl Source {
    /// A source that gave `known`.
    fn gave(name: String, known: Vec<Known>) -> (Source, Vec<Known>) {
        (
            Source {
                name,
                statements: known.len(),
                note: None,
            },
            known,
        )
    }
}

/// The statements of a file: a server log's `statement:` / `execute …:`
/// lines when it has any, else the file as SQL statements.
fn from_file(cat: &Catalog, path: &Path) -> (Source, Vec<Known>) {
    let name = path.display().to_string();
    let pieces = match file_statements(path) {
        Ok(p) => p,
        Err(note) => {
            return (
                Source {
                    name,
                    statements: 0,
                    note: Some(note),
                },
                Vec::new(),
            )
        }
    };
    let known: Vec<Known> = pieces
        .into_iter()
        .filter_map(|(line, sql)| Known::of(cat, format!("{name}:{line}"), &sql))
        .collect();
    Source::gave(name, known)
}

/// The statements of a file, each with its line: a server log's
/// `statement:` / `execute …:` lines when it has any, else the file as SQL
/// statements.
pub(crate) fn file_statements(path: &Path) -> Result<Vec<(usize, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let logged: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| log_statement(l).map(|s| (i + 1, s.to_string())))
        .collect();
    Ok(if logged.is_empty() {
        split_sql(&text)
    } else {
        logged
    })
}

/// The statement of a server log line (`LOG:  statement: …`, `LOG:
/// execute <name>: …`, `duration: … ms  statement: …`).
fn log_statement(line: &str) -> Option<&str> {
    if !line.contains("LOG:") {
        return None;
    }
    if let Some(i) = line.find(" statement: ") {
        return Some(line[i + " statement: ".len()..].trim());
    }
    let i = line.find(" execute ")?;
    let rest = &line[i + " execute ".len()..];
    let colon = rest.find(": ")?;
    Some(rest[colon + 2..].trim())
}

/// SQL text as statements, each with the line it starts on.
fn split_sql(text: &str) -> Vec<(usize, String)> {
    let Ok(parts) = pg_query::split_with_parser(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut from = 0;
    for p in parts {
        let at = text[from..].find(p).map(|i| from + i).unwrap_or(from);
        from = at + p.len();
        let start = at + (p.len() - p.trim_start().len());
        let line = text[..start].matches('\n').count() + 1;
        out.push((line, p.trim().to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::tailspin;

    fn cols(sql: &str) -> Vec<(String, Vec<String>)> {
        lookups(&tailspin(), sql)
            .unwrap()
            .into_iter()
            .map(|l| (l.table.name, l.columns.into_iter().collect()))
            .collect()
    }

    #[test]
    fn a_lookup_by_id_names_the_table_and_column() {
        assert_eq!(
            cols("UPDATE orders SET status = $1 WHERE order_id = $2"),
            [("orders".to_string(), vec!["order_id".to_string()])]
        );
        assert_eq!(
            cols("SELECT * FROM orders o WHERE o.store_id = $1 AND o.order_id = $2"),
            [(
                "orders".to_string(),
                vec!["order_id".to_string(), "store_id".to_string()]
            )]
        );
    }

    #[test]
    fn a_join_probes_both_sides_and_unknown_names_are_ignored() {
        let got = cols(
            "SELECT li.quantity FROM line_items li JOIN orders o ON o.order_id = li.order_id \
             WHERE li.line_item_id = some_variable",
        );
        assert!(got.contains(&("orders".to_string(), vec!["order_id".to_string()])));
        assert!(got.contains(&(
            "line_items".to_string(),
            vec!["line_item_id".to_string(), "order_id".to_string()]
        )));
        assert_eq!(cols("SELECT 1 FROM nowhere WHERE id = 1"), []);
    }

    #[test]
    fn log_lines_and_sql_files_give_their_statements() {
        assert_eq!(
            log_statement("2026-12-07 UTC [12] LOG:  execute S_1: SELECT 1 FROM t WHERE id = $1"),
            Some("SELECT 1 FROM t WHERE id = $1")
        );
        assert_eq!(
            log_statement("LOG:  duration: 0.2 ms  statement: DELETE FROM t WHERE id = 4"),
            Some("DELETE FROM t WHERE id = 4")
        );
        assert_eq!(log_statement("LOG:  checkpoint complete"), None);
        assert_eq!(log_statement("-- a note on the statement: none"), None);
        assert!(plannable("UPDATE t SET a = $1 WHERE id = $2"));
        assert!(!plannable("SELECT 1; UPDATE t SET a = 1"));
        assert!(!plannable("BEGIN"));
        assert!(!plannable("VACUUM t"));
        let parts = split_sql("SELECT 1;\n\n-- a note\nSELECT 'a;b'\n  FROM t;\n");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, 1);
        assert!(parts[1].1.ends_with("FROM t"), "{parts:?}");
    }
}
