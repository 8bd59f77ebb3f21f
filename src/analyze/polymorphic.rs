//! Polymorphic associations: a `*_type`/`*_id` pair with no foreign key
//! (Rails' `commentable_type`/`commentable_id`) that points each row at a
//! row of one of several tables. Parses the `--path` that names one
//! (`comments=commentable_id:Post=posts,Photo=photos`), builds its hops
//! (one per type, each only for the rows of that type), and finds the
//! pairs a schema has, with the types its rows name, to offer that
//! `--path`.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use crate::catalog::{Catalog, QName, Table};
use crate::sql::ident;

use super::data::MARKER;
use super::rules::Ctx;
use super::tenant::{parse_table, Class, Hop, When};
use super::{Finding, RuleId, Severity};

/// One polymorphic `--path`: `table`'s rows reach a parent through
/// `id_column`, in the table `type_column` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polymorphic {
    pub table: QName,
    pub id_column: String,
    pub type_column: String,
    /// Each type value and the table it names, in the order tried.
    pub targets: Vec<(String, QName)>,
}

/// The type column beside a polymorphic id column: `X_id` → `X_type`.
fn type_column_of(id_column: &str) -> Option<String> {
    id_column
        .strip_suffix("_id")
        .filter(|x| !x.is_empty())
        .map(|x| format!("{x}_type"))
}

impl Polymorphic {
    /// Parses `table=id_column:Type=table,Type=table`.
    pub fn parse(s: &str) -> Option<Polymorphic> {
        let (table, rest) = s.split_once('=')?;
        let (id_column, targets) = rest.split_once(':')?;
        let targets: Vec<(String, QName)> = targets
            .split(',')
            .map(|t| {
                let (value, table) = t.trim().split_once('=')?;
                (!value.is_empty() && !table.is_empty())
                    .then(|| (value.to_string(), parse_table(table)))
            })
            .collect::<Option<_>>()?;
        let type_column = type_column_of(id_column)?;
        (!table.is_empty() && !targets.is_empty()).then(|| Polymorphic {
            table: parse_table(table),
            id_column: id_column.to_string(),
            type_column,
            targets,
        })
    }

    /// The `--path` value that gives it.
    pub fn arg(&self) -> String {
        format!("{}={}", self.table, self.spec())
    }

    /// What it says after `TABLE=`: `id_column:Type=table,…`.
    pub fn spec(&self) -> String {
        let targets: Vec<String> = self
            .targets
            .iter()
            .map(|(v, t)| format!("{v}={t}"))
            .collect();
        format!("{}:{}", self.id_column, targets.join(","))
    }

    /// Whether `h` is one of its hops.
    pub(crate) fn is_hop(&self, h: &Hop) -> bool {
        h.from == self.table && h.when.is_some() && h.columns == [self.id_column.as_str()]
    }

    /// Its hops, one per type, each to its table's single-column key; or
    /// why there cannot be one.
    pub(crate) fn hops(&self, cat: &Catalog) -> Result<Vec<Hop>, String> {
        let t = cat
            .table(&self.table)
            .ok_or_else(|| format!("there is no table {}", self.table))?;
        for c in [&self.id_column, &self.type_column] {
            if t.column(c).is_none() {
                return Err(format!("{} has no column {c}", self.table));
            }
        }
        self.targets
            .iter()
            .map(|(value, to)| {
                let r = cat
                    .table(to)
                    .ok_or_else(|| format!("there is no table {to} (for type {value})"))?;
                let key = single_key(r).ok_or_else(|| {
                    format!("{to} (for type {value}) has no single-column primary key")
                })?;
                Ok(Hop {
                    from: self.table.clone(),
                    fk: format!("{}:{value}", self.id_column),
                    columns: vec![self.id_column.clone()],
                    to: to.clone(),
                    ref_columns: vec![key],
                    when: Some(When {
                        column: self.type_column.clone(),
                        value: value.clone(),
                    }),
                })
            })
            .collect()
    }
}

/// The single column of `t`'s primary key.
fn single_key(t: &Table) -> Option<String> {
    match t.primary_key()?.columns.as_slice() {
        [c] => Some(c.clone()),
        _ => None,
    }
}

/// `X_type`/`X_id` pairs of `t` whose id column no foreign key covers,
/// the type column being text.
fn pairs(cat: &Catalog, t: &Table) -> Vec<(String, String)> {
    let covered: BTreeSet<&str> = cat
        .foreign_keys_of(t)
        .into_iter()
        .flat_map(|fk| fk.columns.iter().map(String::as_str))
        .collect();
    t.columns
        .iter()
        .filter(|c| !covered.contains(c.name.as_str()))
        .filter_map(|c| {
            let ty = type_column_of(&c.name)?;
            let tc = t.column(&ty)?;
            matches!(
                tc.type_name.as_str(),
                "text" | "character varying" | "varchar"
            )
            .then(|| (c.name.clone(), ty))
        })
        .collect()
}

/// `BlogPost` → `blog_post` (the last segment of `Admin::BlogPost`).
fn snake(value: &str) -> String {
    let last = value.rsplit("::").next().unwrap_or(value);
    let mut out = String::new();
    for (i, ch) in last.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(ch.to_lowercase());
    }
    out
}

/// The table a type value names by Rails' convention (`Post` → posts,
/// `Category` → categories, `Address` → addresses; the singular too),
/// among `tables`.
fn table_for<'a>(value: &str, tables: &[&'a QName]) -> Option<&'a QName> {
    let s = snake(value);
    let mut names = vec![s.clone(), format!("{s}s"), format!("{s}es")];
    if let Some(stem) = s.strip_suffix('y') {
        names.push(format!("{stem}ies"));
    }
    names
        .iter()
        .find_map(|n| tables.iter().find(|t| &t.name == n).copied())
}

/// The most types a pair is offered with (more: the user names them).
const MAX_TYPES: usize = 20;

/// How long reading a pair's types may take (a scan of its table).
const READ_TIMEOUT: &str = "10s";

/// `sql` run under [`READ_TIMEOUT`] (the session's own restored after,
/// as the data checks do).
async fn bounded(
    client: &Client,
    sql: &str,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let before = crate::catalog::statement_timeout(client).await?;
    crate::catalog::set_statement_timeout(client, READ_TIMEOUT).await?;
    let result = client.query(sql, &[]).await;
    crate::catalog::set_statement_timeout(client, &before).await?;
    result
}

/// Offers a `--path` for each polymorphic pair of a table that has no
/// tenant column and whose pair no `--path` names: the types its rows
/// name (read from the table, at most [`MAX_TYPES`], under a timeout),
/// each matched to a tenant table by name. A pair whose types
/// all match is offered as the command to run; one with types that match
/// no table says which.
pub(crate) async fn suggest(ctx: &Ctx<'_>, client: &Client) -> Vec<Finding> {
    let tenants: Vec<&QName> = ctx
        .classes
        .iter()
        .filter(|c| c.class.is_tenant())
        .map(|c| &c.table)
        .collect();
    let mut out = Vec::new();
    for c in ctx.classes {
        let given = ctx.overrides.polymorphic.iter().any(|p| p.table == c.table);
        if given || matches!(c.class, Class::Root | Class::Distributed) || c.overridden {
            continue;
        }
        let Some(t) = ctx.cat.table(&c.table) else {
            continue;
        };
        for (id, ty) in pairs(ctx.cat, t) {
            let sql = format!(
                "SELECT {MARKER} DISTINCT {}::text FROM {} WHERE {} IS NOT NULL LIMIT {}",
                ident(&ty),
                t.name.sql(),
                ident(&ty),
                MAX_TYPES + 1
            );
            let values: Vec<String> = match bounded(client, &sql).await {
                Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
                Err(e) => {
                    out.push(Finding {
                        rule: RuleId::DataCheckIncomplete,
                        severity: Severity::Warning,
                        table: Some(t.name.clone()),
                        object: Some(format!("{ty}/{id}")),
                        message: format!(
                            "the types {ty} names could not be read (for a polymorphic path): {}",
                            crate::conn::error_text(&e)
                        ),
                        citus_error: None,
                        fix: "rerun `shardready analyze` at a quieter time".into(),
                        automatic: false,
                    });
                    continue;
                }
            };
            if values.is_empty() {
                continue;
            }
            if values.len() > MAX_TYPES {
                out.push(Finding {
                    rule: RuleId::PolymorphicPath,
                    severity: Severity::Warning,
                    table: Some(t.name.clone()),
                    object: Some(format!("{ty}/{id}")),
                    message: format!(
                        "{} points at its parent through {ty}/{id} (no foreign key), with more \
                         than {MAX_TYPES} types",
                        t.name
                    ),
                    citus_error: None,
                    fix: format!(
                        "name each type's table: `shardready apply --path {}={id}:Type=table,…`",
                        t.name
                    ),
                    automatic: false,
                });
                continue;
            }
            let matched: Vec<(String, Option<&QName>)> = values
                .iter()
                .map(|v| (v.clone(), table_for(v, &tenants)))
                .collect();
            let unmatched: Vec<&str> = matched
                .iter()
                .filter(|(_, t)| t.is_none())
                .map(|(v, _)| v.as_str())
                .collect();
            let proposal = Polymorphic {
                table: t.name.clone(),
                id_column: id.clone(),
                type_column: ty.clone(),
                targets: matched
                    .iter()
                    .map(|(v, t)| {
                        let table = t.cloned().unwrap_or_else(|| QName::new("public", "TABLE"));
                        (v.clone(), table)
                    })
                    .collect(),
            };
            let command = format!("`shardready apply --path {}`", proposal.arg());
            let (message, fix) = if unmatched.is_empty() {
                (
                    format!(
                        "{} points at its parent through {ty}/{id} (no foreign key): its rows \
                         name {}, all tenant tables; through them each row has a tenant",
                        t.name,
                        values.join(", ")
                    ),
                    format!(
                        "take the tenant through this pair (each type from its table, checked \
                         like a foreign key): {command}"
                    ),
                )
            } else {
                (
                    format!(
                        "{} points at its parent through {ty}/{id} (no foreign key): its rows \
                         name {}; no tenant table is named after {}",
                        t.name,
                        values.join(", "),
                        unmatched.join(", ")
                    ),
                    format!(
                        "name each type's table in place of TABLE, if its rows belong to a \
                         tenant: {command}"
                    ),
                )
            };
            out.push(Finding {
                rule: RuleId::PolymorphicPath,
                severity: Severity::Warning,
                table: Some(t.name.clone()),
                object: Some(format!("{ty}/{id}")),
                message,
                citus_error: None,
                fix,
                automatic: false,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> QName {
        QName::new("public", s)
    }

    #[test]
    fn parses_and_prints_the_path() {
        let p = Polymorphic::parse("comments=commentable_id:Post=posts,Photo=app.photos").unwrap();
        assert_eq!(p.table, q("comments"));
        assert_eq!(p.type_column, "commentable_type");
        assert_eq!(
            p.targets,
            [
                ("Post".to_string(), q("posts")),
                ("Photo".to_string(), QName::new("app", "photos"))
            ]
        );
        assert_eq!(
            p.arg(),
            "comments=commentable_id:Post=posts,Photo=app.photos"
        );
        assert_eq!(Polymorphic::parse("comments=commentable_id"), None);
        assert_eq!(
            Polymorphic::parse("comments=owner:Post=posts"),
            None,
            "no _id"
        );
        assert_eq!(Polymorphic::parse("comments=x_id:Post="), None);
    }

    #[test]
    fn type_names_match_tables_by_rails_convention() {
        let (posts, categories, addresses, blog) =
            (q("posts"), q("categories"), q("addresses"), q("blog_posts"));
        let tables = [&posts, &categories, &addresses, &blog];
        assert_eq!(table_for("Post", &tables), Some(&posts));
        assert_eq!(table_for("Category", &tables), Some(&categories));
        assert_eq!(table_for("Address", &tables), Some(&addresses));
        assert_eq!(table_for("Admin::BlogPost", &tables), Some(&blog));
        assert_eq!(table_for("Video", &tables), None);
    }
}
