//! Query audit: reads the application's SQL the way Citus will route it.
//! Parses, with `pg_query`, the bodies of the SQL and plpgsql functions of
//! the database and, when the `pg_stat_statements` extension is installed,
//! its most-called statements; flags INSERTs into tenant tables that do not
//! write the tenant column (`insert-without-tenant`) and statements that
//! read or change a tenant table without a filter on its tenant column
//! (`query-without-tenant-filter`: a multi-shard query once distributed).
//!
//! What counts as a filter: the table's tenant column (the root's key in
//! the root) as an operand of `=`, `IN`, `= ANY` or `IS NOT DISTINCT FROM`
//! in the WHERE clause or a JOIN condition of the same query level, or in
//! a `JOIN … USING`. Unqualified names count for tables that have the
//! column today. Every query level (subqueries, CTEs) is judged on its own;
//! `INSERT … VALUES` is not a read. Dynamic SQL (`EXECUTE`) is not seen.
//! An unqualified table name is looked up in `public` first, then in any
//! schema; views and unknown names are skipped.

use crate::analyze::rules::id::RuleId;
use std::collections::BTreeSet;

use pg_query::protobuf::{self, AExprKind, Node, SelectStmt};
use pg_query::NodeEnum;
use serde::Serialize;
use tokio_postgres::Client;

use super::rules::Ctx;
use super::tenant::Class;
use super::{AnalyzeError, Finding, Severity};
use crate::catalog::{self, Catalog, Function, QName, Table};

/// pg_stat_statements entries audited (the most called).
pub const TOP_STATEMENTS: i64 = 500;

/// What one statement does wrong to one table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Issue {
    /// `insert-without-tenant` or `query-without-tenant-filter`.
    pub rule: RuleId,
    pub table: QName,
    /// `reads`, `updates`, `deletes from` or `inserts into`.
    pub verb: &'static str,
    /// The statement, whitespace collapsed, trimmed to ~120 characters.
    pub statement: String,
    /// The other table of a join Citus refuses (`non-colocated-join`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<QName>,
    /// The function a statement on a tenant table calls
    /// (`function-on-shard`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<String>,
}

/// A table named in a query.
#[derive(Debug, Clone)]
pub(super) struct Rel {
    schema: String,
    name: String,
    alias: Option<String>,
    verb: &'static str,
}

impl Rel {
    fn of(v: &protobuf::RangeVar, verb: &'static str) -> Rel {
        Rel {
            schema: v.schemaname.clone(),
            name: v.relname.clone(),
            alias: v.alias.as_ref().map(|a| a.aliasname.clone()),
            verb,
        }
    }

    /// How the statement names it: its alias, else its name.
    pub(super) fn shown(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    /// Whether `q` (a column's qualifier) names this table.
    pub(super) fn is_named(&self, q: &str) -> bool {
        self.alias.as_deref() == Some(q) || q == self.name
    }
}

/// One query level: its tables and the columns it filters on
/// (qualifier, column).
#[derive(Debug, Default)]
pub(super) struct Scope {
    pub(super) rels: Vec<Rel>,
    pub(super) filters: Vec<(Option<String>, String)>,
    /// `a.x = b.y` between two columns: what joins the tables.
    equalities: Vec<(ColRef, ColRef)>,
    /// `JOIN … USING (x)` columns.
    using: Vec<String>,
    /// An outer join at this level (Citus's message differs).
    outer: bool,
}

impl Scope {
    /// Whether this level filters `rel` (the table `t`) on `col`: qualified
    /// by its name or alias, or unqualified where `t` has the column today.
    pub(super) fn filters_on(&self, rel: &Rel, t: &Table, col: &str) -> bool {
        self.filters.iter().any(|(q, c)| {
            c == col
                && match q {
                    None => t.column(col).is_some(),
                    Some(q) => rel.is_named(q),
                }
        })
    }
}

/// A column as a query names it: (qualifier, column).
type ColRef = (Option<String>, String);

/// Walks one statement's tree, collecting query levels and inserts.
#[derive(Default)]
pub(super) struct Walk {
    ctes: BTreeSet<String>,
    pub(super) scopes: Vec<Scope>,
    /// (target, written columns; None without a column list).
    inserts: Vec<(Rel, Option<Vec<String>>)>,
    /// Functions the statement calls (names, lower case).
    calls: BTreeSet<String>,
}

fn node(n: &Node) -> Option<&NodeEnum> {
    n.node.as_ref()
}

fn boxed(n: &Option<Box<Node>>) -> Option<&NodeEnum> {
    n.as_deref().and_then(node)
}

fn sval(n: &Node) -> Option<&str> {
    match node(n) {
        Some(NodeEnum::String(s)) => Some(&s.sval),
        _ => None,
    }
}

impl Walk {
    pub(super) fn stmt(&mut self, n: &NodeEnum) {
        match n {
            NodeEnum::SelectStmt(s) => self.select(s),
            NodeEnum::InsertStmt(s) => {
                self.with(s.with_clause.as_ref());
                if let Some(rel) = &s.relation {
                    let cols = (!s.cols.is_empty()).then(|| {
                        s.cols
                            .iter()
                            .filter_map(|c| match node(c) {
                                Some(NodeEnum::ResTarget(r)) => Some(r.name.clone()),
                                _ => None,
                            })
                            .collect()
                    });
                    self.inserts.push((Rel::of(rel, "inserts into"), cols));
                }
                match boxed(&s.select_stmt) {
                    Some(NodeEnum::SelectStmt(sel)) if !sel.values_lists.is_empty() => {
                        for v in &sel.values_lists {
                            self.expr(v);
                        }
                    }
                    Some(other) => self.stmt(other),
                    None => {}
                }
            }
            NodeEnum::UpdateStmt(s) => {
                self.with(s.with_clause.as_ref());
                let mut scope = Scope::default();
                if let Some(rel) = &s.relation {
                    scope.rels.push(Rel::of(rel, "updates"));
                }
                for f in &s.from_clause {
                    self.range_item(f, &mut scope);
                }
                if let Some(w) = boxed(&s.where_clause) {
                    self.filter(w, &mut scope);
                }
                for t in &s.target_list {
                    self.expr(t);
                }
                self.scopes.push(scope);
            }
            NodeEnum::DeleteStmt(s) => {
                self.with(s.with_clause.as_ref());
                let mut scope = Scope::default();
                if let Some(rel) = &s.relation {
                    scope.rels.push(Rel::of(rel, "deletes from"));
                }
                for f in &s.using_clause {
                    self.range_item(f, &mut scope);
                }
                if let Some(w) = boxed(&s.where_clause) {
                    self.filter(w, &mut scope);
                }
                self.scopes.push(scope);
            }
            NodeEnum::ExplainStmt(s) => {
                if let Some(q) = boxed(&s.query) {
                    self.stmt(q);
                }
            }
            _ => {}
        }
    }

    fn with(&mut self, w: Option<&protobuf::WithClause>) {
        let Some(w) = w else { return };
        for c in &w.ctes {
            if let Some(NodeEnum::CommonTableExpr(cte)) = node(c) {
                self.ctes.insert(cte.ctename.clone());
                if let Some(q) = boxed(&cte.ctequery) {
                    self.stmt(q);
                }
            }
        }
    }

    fn select(&mut self, s: &SelectStmt) {
        self.with(s.with_clause.as_ref());
        if s.op != protobuf::SetOperation::SetopNone as i32 {
            for side in [&s.larg, &s.rarg].into_iter().flatten() {
                self.select(side);
            }
            return;
        }
        for v in &s.values_lists {
            self.expr(v);
        }
        let mut scope = Scope::default();
        for f in &s.from_clause {
            self.range_item(f, &mut scope);
        }
        if let Some(w) = boxed(&s.where_clause) {
            self.filter(w, &mut scope);
        }
        for n in s
            .target_list
            .iter()
            .chain(&s.group_clause)
            .chain(&s.sort_clause)
        {
            self.expr(n);
        }
        for n in [&s.having_clause, &s.limit_count, &s.limit_offset]
            .into_iter()
            .flatten()
        {
            self.expr(n);
        }
        if !scope.rels.is_empty() {
            self.scopes.push(scope);
        }
    }

    fn range_item(&mut self, n: &Node, scope: &mut Scope) {
        match node(n) {
            Some(NodeEnum::RangeVar(v)) => {
                if v.schemaname.is_empty() && self.ctes.contains(&v.relname) {
                    return;
                }
                scope.rels.push(Rel::of(v, "reads"));
            }
            Some(NodeEnum::JoinExpr(j)) => {
                scope.outer |= j.jointype != protobuf::JoinType::JoinInner as i32;
                for side in [&j.larg, &j.rarg].into_iter().flatten() {
                    self.range_item(side, scope);
                }
                for u in &j.using_clause {
                    if let Some(c) = sval(u) {
                        scope.filters.push((None, c.to_string()));
                        scope.using.push(c.to_string());
                    }
                }
                if let Some(q) = boxed(&j.quals) {
                    self.filter(q, scope);
                }
            }
            Some(NodeEnum::RangeSubselect(r)) => {
                if let Some(q) = boxed(&r.subquery) {
                    self.stmt(q);
                }
            }
            _ => {}
        }
    }

    /// A WHERE / ON clause: records the filtered columns of this level;
    /// subqueries become levels of their own.
    fn filter(&mut self, n: &NodeEnum, scope: &mut Scope) {
        match n {
            NodeEnum::BoolExpr(b) => {
                for a in &b.args {
                    if let Some(a) = node(a) {
                        self.filter(a, scope);
                    }
                }
            }
            NodeEnum::AExpr(e) => {
                let op = e.name.iter().filter_map(sval).next_back().unwrap_or("");
                let kind = e.kind;
                let is = |k: AExprKind| kind == k as i32;
                let equality = ((is(AExprKind::AexprOp)
                    || is(AExprKind::AexprOpAny)
                    || is(AExprKind::AexprIn))
                    && op == "=")
                    || is(AExprKind::AexprNotDistinct);
                if equality {
                    let mut sides = Vec::new();
                    for side in [&e.lexpr, &e.rexpr] {
                        let mut cols = Vec::new();
                        if let Some(s) = boxed(side) {
                            operand_columns(s, &mut cols);
                        }
                        scope.filters.extend(cols.iter().cloned());
                        sides.push(cols);
                    }
                    if let [l, r] = &sides[..] {
                        if l.len() == r.len() && is(AExprKind::AexprOp) {
                            scope
                                .equalities
                                .extend(l.iter().cloned().zip(r.iter().cloned()));
                        }
                    }
                }
                for side in [&e.lexpr, &e.rexpr] {
                    if let Some(s) = boxed(side) {
                        self.expr_enum(s);
                    }
                }
            }
            other => self.expr_enum(other),
        }
    }

    fn expr(&mut self, n: &Node) {
        if let Some(n) = node(n) {
            self.expr_enum(n);
        }
    }

    /// Any expression: only looks for subqueries.
    fn expr_enum(&mut self, n: &NodeEnum) {
        let each = |w: &mut Walk, v: &[Node]| v.iter().for_each(|x| w.expr(x));
        match n {
            NodeEnum::SubLink(l) => {
                if let Some(t) = boxed(&l.testexpr) {
                    self.expr_enum(t);
                }
                if let Some(q) = boxed(&l.subselect) {
                    self.stmt(q);
                }
            }
            NodeEnum::AExpr(e) => {
                for side in [&e.lexpr, &e.rexpr] {
                    if let Some(s) = boxed(side) {
                        self.expr_enum(s);
                    }
                }
            }
            NodeEnum::BoolExpr(b) => each(self, &b.args),
            NodeEnum::FuncCall(f) => {
                if let Some(name) = f.funcname.iter().filter_map(sval).next_back() {
                    self.calls.insert(name.to_lowercase());
                }
                each(self, &f.args);
                if let Some(x) = boxed(&f.agg_filter) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::TypeCast(c) => {
                if let Some(x) = boxed(&c.arg) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::NullTest(t) => {
                if let Some(x) = boxed(&t.arg) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::BooleanTest(t) => {
                if let Some(x) = boxed(&t.arg) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::CoalesceExpr(c) => each(self, &c.args),
            NodeEnum::MinMaxExpr(c) => each(self, &c.args),
            NodeEnum::CaseExpr(c) => {
                if let Some(x) = boxed(&c.arg) {
                    self.expr_enum(x);
                }
                each(self, &c.args);
                if let Some(x) = boxed(&c.defresult) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::CaseWhen(w) => {
                for x in [&w.expr, &w.result] {
                    if let Some(x) = boxed(x) {
                        self.expr_enum(x);
                    }
                }
            }
            NodeEnum::AArrayExpr(a) => each(self, &a.elements),
            NodeEnum::RowExpr(r) => each(self, &r.args),
            NodeEnum::List(l) => each(self, &l.items),
            NodeEnum::ResTarget(r) => {
                if let Some(x) = boxed(&r.val) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::AIndirection(a) => {
                if let Some(x) = boxed(&a.arg) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::CollateClause(c) => {
                if let Some(x) = boxed(&c.arg) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::NamedArgExpr(a) => {
                if let Some(x) = boxed(&a.arg) {
                    self.expr_enum(x);
                }
            }
            NodeEnum::SortBy(s) => {
                if let Some(x) = boxed(&s.node) {
                    self.expr_enum(x);
                }
            }
            _ => {}
        }
    }
}

/// The columns an equality operand names: `col`, `t.col`, `col::type`,
/// `(a, b)`, `(a, b) IN (…)` lists.
fn operand_columns(n: &NodeEnum, out: &mut Vec<(Option<String>, String)>) {
    match n {
        NodeEnum::ColumnRef(c) => {
            let f: Vec<&str> = c.fields.iter().filter_map(sval).collect();
            if let Some((col, rest)) = f.split_last() {
                out.push((rest.last().map(|s| s.to_string()), col.to_string()));
            }
        }
        NodeEnum::TypeCast(c) => {
            if let Some(x) = boxed(&c.arg) {
                operand_columns(x, out);
            }
        }
        NodeEnum::CollateClause(c) => {
            if let Some(x) = boxed(&c.arg) {
                operand_columns(x, out);
            }
        }
        NodeEnum::RowExpr(r) => {
            for a in &r.args {
                if let Some(a) = node(a) {
                    operand_columns(a, out);
                }
            }
        }
        _ => {}
    }
}

/// The catalog table a query names: exact with a schema; else `public`
/// first, then any schema.
fn resolve<'a>(ctx: &Ctx<'a>, rel: &Rel) -> Option<&'a Table> {
    resolve_in(ctx.cat, rel)
}

/// [`resolve`] in a catalog.
pub(super) fn resolve_in<'a>(cat: &'a Catalog, rel: &Rel) -> Option<&'a Table> {
    if !rel.schema.is_empty() {
        return cat.table(&QName::new(&rel.schema, &rel.name));
    }
    cat.table(&QName::new("public", &rel.name))
        .or_else(|| cat.tables.iter().find(|t| t.name.name == rel.name))
}

/// [`resolve_in`] for a name as `pg_query`'s table list gives it
/// (`schema.table` or `table`).
pub(super) fn resolve_name<'a>(cat: &'a Catalog, name: &str) -> Option<&'a Table> {
    let (schema, table) = name.split_once('.').unwrap_or(("", name));
    let rel = Rel {
        schema: schema.to_string(),
        name: table.to_string(),
        alias: None,
        verb: "names",
    };
    resolve_in(cat, &rel)
}

/// A statement quoted in messages (whitespace collapsed, trimmed).
pub use crate::stat_statements::shorten as quote;

/// Audits one parsed statement (`shown` is the text quoted in messages).
fn audit_node(ctx: &Ctx, n: &NodeEnum, shown: &str) -> Vec<Issue> {
    let mut w = Walk::default();
    w.stmt(n);
    let mut out = BTreeSet::new();
    let statement = quote(shown);
    for (rel, cols) in &w.inserts {
        let Some(t) = resolve(ctx, rel) else { continue };
        let Some(class) = ctx.class_of(ctx.cat.top_parent(t)) else {
            continue;
        };
        let col = ctx.tenant_column(t);
        let writes = cols.as_ref().is_some_and(|c| c.iter().any(|c| c == col));
        let flag = match class {
            Class::NeedsColumn { .. } => !writes,
            // A column list without the column: NULL (no default to help).
            Class::Distributed => {
                cols.is_some() && !writes && t.column(col).is_some_and(|c| c.default.is_none())
            }
            _ => false,
        };
        if flag {
            out.insert(Issue {
                rule: RuleId::InsertWithoutTenant,
                table: ctx.cat.top_parent(t).clone(),
                verb: rel.verb,
                statement: statement.clone(),
                with: None,
                calls: None,
            });
        }
    }
    for scope in &w.scopes {
        for rel in &scope.rels {
            let Some(t) = resolve(ctx, rel) else { continue };
            let top = ctx.cat.top_parent(t);
            if !ctx.class_of(top).is_some_and(|c| c.is_tenant()) {
                continue;
            }
            if !scope.filters_on(rel, t, ctx.tenant_column(t)) {
                out.insert(Issue {
                    rule: RuleId::QueryWithoutTenantFilter,
                    table: top.clone(),
                    verb: rel.verb,
                    statement: statement.clone(),
                    with: None,
                    calls: None,
                });
            }
        }
    }
    for scope in &w.scopes {
        if let Some(issue) = split_join(ctx, scope, &statement) {
            out.insert(issue);
        }
    }
    // Calls from a statement on a tenant table: candidates, kept by
    // [`keep_shard_calls`] when the callee reads tenant tables itself.
    let read = w
        .scopes
        .iter()
        .flat_map(|s| &s.rels)
        .chain(w.inserts.iter().map(|(r, _)| r))
        .filter_map(|r| resolve(ctx, r))
        .find(|t| {
            ctx.class_of(ctx.cat.top_parent(t))
                .is_some_and(|c| c.is_tenant())
        });
    if let Some(t) = read {
        for f in &w.calls {
            out.insert(Issue {
                rule: RuleId::FunctionOnShard,
                table: ctx.cat.top_parent(t).clone(),
                verb: "calls",
                statement: statement.clone(),
                with: None,
                calls: Some(f.clone()),
            });
        }
    }
    out.into_iter().collect()
}

/// The user functions whose statements read or write tenant tables: a
/// statement on a tenant table that calls one runs it on a shard, where
/// Citus refuses the distributed query inside ("cannot execute a
/// distributed query from a query on a shard").
fn reading_functions(ctx: &Ctx) -> BTreeSet<String> {
    ctx.cat
        .functions
        .iter()
        .filter(|f| {
            statements_of(f).iter().any(|sql| {
                pg_query::parse(sql, 0).is_ok_and(|p| {
                    p.protobuf
                        .stmts
                        .iter()
                        .filter_map(|s| boxed(&s.stmt))
                        .any(|n| {
                            let mut w = Walk::default();
                            w.stmt(n);
                            w.scopes
                                .iter()
                                .flat_map(|s| &s.rels)
                                .chain(w.inserts.iter().map(|(r, _)| r))
                                .filter_map(|r| resolve(ctx, r))
                                .any(|t| {
                                    ctx.class_of(ctx.cat.top_parent(t))
                                        .is_some_and(|c| c.is_tenant())
                                })
                        })
                })
            })
        })
        .map(|f| f.name.to_lowercase())
        .collect()
}

/// A function's statements as SQL texts (plpgsql expressions as SELECTs).
pub(super) fn statements_of(f: &Function) -> Vec<String> {
    match f.language.as_str() {
        "sql" => vec![f.body.clone()],
        "plpgsql" => plpgsql_candidates(f)
            .iter()
            .find_map(|text| pg_query::parse_plpgsql(text).ok())
            .map(|json| {
                let mut exprs = Vec::new();
                plpgsql_exprs(&json, &mut exprs);
                exprs
                    .into_iter()
                    .flat_map(|(q, _)| [q.clone(), format!("SELECT {q}")])
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Keeps the `function-on-shard` candidates whose callee reads tenant
/// tables.
fn keep_shard_calls(ctx: &Ctx, issues: Vec<Issue>) -> Vec<Issue> {
    let reading = ctx.reading_functions.get_or_init(|| reading_functions(ctx));
    issues
        .into_iter()
        .filter(|i| {
            i.rule != RuleId::FunctionOnShard
                || i.calls.as_ref().is_some_and(|c| reading.contains(c))
        })
        .collect()
}

/// A query level that joins tenant tables Citus cannot run together once
/// they are distributed: they fall into groups that neither an equality of
/// their tenant columns (`a.store_id = b.store_id`, `USING (store_id)`)
/// nor a filter pinning each to one tenant ties together. Citus refuses
/// such a join ("the query contains a join that requires repartitioning",
/// or "complex joins are only supported when all distributed tables are
/// co-located and joined on their distribution columns").
fn split_join(ctx: &Ctx, scope: &Scope, statement: &str) -> Option<Issue> {
    let tenant: Vec<(&Rel, &Table)> = scope
        .rels
        .iter()
        .filter_map(|r| resolve(ctx, r).map(|t| (r, t)))
        .filter(|(_, t)| {
            ctx.class_of(ctx.cat.top_parent(t))
                .is_some_and(|c| c.is_tenant())
        })
        .collect();
    if tenant.len() < 2 {
        return None;
    }
    let names =
        |r: &Rel, q: &str| r.alias.as_deref() == Some(q) || (r.alias.is_none() && r.name == q);
    let is_col = |i: usize, c: &ColRef| {
        let (r, t) = tenant[i];
        c.1 == ctx.tenant_column(t) && c.0.as_deref().is_some_and(|q| names(r, q))
    };
    // Groups: union-find over the tenant tables of this level.
    let mut group: Vec<usize> = (0..tenant.len()).collect();
    fn root(g: &mut [usize], i: usize) -> usize {
        let mut i = i;
        while g[i] != i {
            g[i] = g[g[i]];
            i = g[i];
        }
        i
    }
    let join = |g: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (root(g, a), root(g, b));
        g[ra] = rb;
    };
    let mut pinned = Vec::new();
    for i in 0..tenant.len() {
        let col = ctx.tenant_column(tenant[i].1);
        for j in 0..tenant.len() {
            if i != j
                && scope
                    .equalities
                    .iter()
                    .any(|(a, b)| (is_col(i, a) && is_col(j, b)) || (is_col(j, a) && is_col(i, b)))
            {
                join(&mut group, i, j);
            }
        }
        if scope.using.iter().any(|u| u == col) {
            pinned.push(i); // joined on the tenant column with its neighbour
        }
        // Compared with something else than a column: one tenant.
        let uses = scope.filters.iter().filter(|c| is_col(i, c)).count();
        let joins = scope
            .equalities
            .iter()
            .filter(|(a, b)| is_col(i, a) || is_col(i, b))
            .count();
        if uses > joins {
            pinned.push(i);
        }
    }
    for w in pinned.windows(2) {
        join(&mut group, w[0], w[1]);
    }
    let first = root(&mut group, 0);
    let apart = (1..tenant.len()).find(|&i| root(&mut group, i) != first)?;
    Some(Issue {
        rule: RuleId::NonColocatedJoin,
        table: ctx.cat.top_parent(tenant[0].1).clone(),
        verb: if scope.outer { "outer-joins" } else { "joins" },
        statement: statement.to_string(),
        with: Some(ctx.cat.top_parent(tenant[apart].1).clone()),
        calls: None,
    })
}

/// Audits SQL text: one or more complete statements.
pub fn audit_sql(ctx: &Ctx, sql: &str) -> Result<Vec<Issue>, String> {
    let parsed = pg_query::parse(sql, 0).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let Some(n) = boxed(&raw.stmt) else { continue };
        let start = raw.stmt_location.max(0) as usize;
        let end = if raw.stmt_len > 0 {
            start + raw.stmt_len as usize
        } else {
            sql.len()
        };
        let shown = sql.get(start..end).unwrap_or(sql);
        out.extend(audit_node(ctx, n, shown));
    }
    Ok(keep_shard_calls(ctx, out))
}

/// Audits one plpgsql expression or statement as the plpgsql parser hands
/// it out (`parse_mode`: 0 a statement, 2 an expression, 3–5 an
/// assignment `target := expr`).
fn audit_plpgsql_expr(ctx: &Ctx, query: &str, parse_mode: i64) -> Vec<Issue> {
    let attempt = |sql: &str| {
        pg_query::parse(sql, 0).ok().map(|p| {
            p.protobuf
                .stmts
                .iter()
                .filter_map(|s| boxed(&s.stmt))
                .flat_map(|n| audit_node(ctx, n, query))
                .collect::<Vec<_>>()
        })
    };
    let expr = if parse_mode >= 3 {
        match query.find(":=") {
            Some(i) => &query[i + 2..],
            None => query.find('=').map(|i| &query[i + 1..]).unwrap_or(query),
        }
    } else {
        query
    };
    if parse_mode == 0 {
        if let Some(v) = attempt(query) {
            return v;
        }
    }
    attempt(&format!("SELECT {expr}")).unwrap_or_default()
}

/// Every `PLpgSQL_expr` of a parsed function: (query, parseMode).
fn plpgsql_exprs(v: &serde_json::Value, out: &mut Vec<(String, i64)>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Object(e)) = m.get("PLpgSQL_expr") {
                if let Some(q) = e.get("query").and_then(|q| q.as_str()) {
                    let mode = e.get("parseMode").and_then(|m| m.as_i64()).unwrap_or(0);
                    out.push((q.to_string(), mode));
                }
            }
            m.values().for_each(|x| plpgsql_exprs(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| plpgsql_exprs(x, out)),
        _ => {}
    }
}

/// A dollar-quote tag that does not occur in `body`.
fn dollar_tag(body: &str) -> String {
    let mut tag = "$shardready$".to_string();
    let mut i = 0;
    while body.contains(&tag) {
        i += 1;
        tag = format!("$shardready{i}$");
    }
    tag
}

/// `CREATE FUNCTION` texts to hand to the plpgsql parser, best first: the
/// server's own definition, then the body wrapped in a block that declares
/// what a trigger function sees (`new`, `old`, `tg_*`), returning void,
/// a record or a set (libpg_query writes broken JSON for `RETURNS
/// trigger`, and RETURN must match the declared type).
fn plpgsql_candidates(f: &Function) -> Vec<String> {
    let mut out = Vec::new();
    if !f.definition.is_empty() && !f.definition.contains("RETURNS trigger") {
        out.push(f.definition.clone());
    }
    let body = f.body.trim().trim_end_matches(';');
    let tag = dollar_tag(body);
    let name = crate::sql::qualified(&f.schema, &f.name);
    for ret in ["record", "void", "SETOF record"] {
        out.push(format!(
            "CREATE FUNCTION {name}({}) RETURNS {ret} LANGUAGE plpgsql AS {tag} \
             DECLARE new record; old record; tg_op text; tg_name text; tg_when text; \
             tg_level text; tg_table_name text; tg_table_schema text; tg_relname text; \
             tg_relid oid; tg_nargs integer; tg_argv text[]; \
             BEGIN {body}; END {tag}",
            f.arguments
        ));
    }
    out
}

/// Audits a function's body (SQL or plpgsql).
pub fn audit_function(ctx: &Ctx, f: &Function) -> Result<Vec<Issue>, String> {
    match f.language.as_str() {
        "sql" => {
            if f.body.trim().is_empty() {
                return Ok(Vec::new()); // BEGIN ATOMIC bodies: prosrc is empty
            }
            audit_sql(ctx, &f.body)
        }
        "plpgsql" => {
            let mut last = String::new();
            for text in plpgsql_candidates(f) {
                match pg_query::parse_plpgsql(&text) {
                    Ok(json) => {
                        let mut exprs = Vec::new();
                        plpgsql_exprs(&json, &mut exprs);
                        let mut out = BTreeSet::new();
                        for (q, mode) in exprs {
                            out.extend(audit_plpgsql_expr(ctx, &q, mode));
                        }
                        return Ok(keep_shard_calls(ctx, out.into_iter().collect()));
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(last)
        }
        _ => Ok(Vec::new()),
    }
}

fn object_of(f: &Function) -> String {
    if f.schema == "public" {
        format!("{}({})", f.name, f.arguments)
    } else {
        format!("{}.{}({})", f.schema, f.name, f.arguments)
    }
}

/// The finding for an issue found in `object`.
pub fn finding(ctx: &Ctx, object: &str, issue: &Issue) -> Finding {
    let t = ctx.cat.table(&issue.table);
    let col = t
        .map(|t| ctx.tenant_column(t))
        .unwrap_or(&ctx.tenant.column);
    let class = ctx.class_of(&issue.table);
    match issue.rule {
        RuleId::InsertWithoutTenant => {
            let needs = matches!(class, Some(Class::NeedsColumn { .. }));
            Finding {
                rule: RuleId::InsertWithoutTenant,
                severity: Severity::Warning,
                table: Some(issue.table.clone()),
                object: Some(object.to_string()),
                message: format!(
                    "{object} inserts into {} without {col}{}: \"{}\"",
                    issue.table,
                    if needs {
                        ""
                    } else {
                        " (it has no default: NULL)"
                    },
                    issue.statement
                ),
                citus_error: Some(
                    "cannot perform an INSERT without a partition column value".into(),
                ),
                fix: if needs {
                    format!(
                        "during `apply` the sync trigger fills {col} for these rows, but the \
                         application must write {col} itself before `distribute` (the trigger \
                         goes then): add it to the column list and VALUES"
                    )
                } else {
                    format!("write {col} in every INSERT into {}", issue.table)
                },
                automatic: false,
            }
        }
        RuleId::FunctionOnShard => {
            let callee = issue.calls.clone().unwrap_or_default();
            failing_query(
                ctx,
                issue,
                object,
                format!(
                    "{object} calls {callee}() in a statement on {}, and {callee}() queries \
                     distributed tables itself: once distributed, the call runs on a shard and \
                     Citus refuses the query inside",
                    issue.table
                ),
                "cannot execute a distributed query from a query on a shard",
                format!(
                    "compute what {callee}() returns in the statement itself (a join or a \
                     subquery on {col}), or call it outside statements on distributed tables"
                ),
            )
        }
        RuleId::NonColocatedJoin => {
            let other = issue.with.clone().unwrap_or_else(|| issue.table.clone());
            failing_query(
                ctx,
                issue,
                object,
                format!(
                    "{object} joins {} and {other} on other columns than {col}: once they are \
                     distributed, Citus refuses it",
                    issue.table
                ),
                if issue.verb == "outer-joins" {
                    "complex joins are only supported when all distributed tables are co-located \
                     and joined on their distribution columns"
                } else {
                    crate::analyze::rules::id::NON_COLOCATED_ERROR
                },
                format!(
                    "join them on {col} too ({t}.{col} = {o}.{col}), or filter each on one \
                     tenant; or run it with citus.enable_repartition_joins on (inner joins \
                     only, slower)",
                    t = issue.table.name,
                    o = other.name
                ),
            )
        }
        _ => Finding {
            rule: RuleId::QueryWithoutTenantFilter,
            severity: Severity::Warning,
            table: Some(issue.table.clone()),
            object: Some(object.to_string()),
            message: format!(
                "{object} {} {} without a filter on {col}: it becomes a multi-shard query: \"{}\"",
                issue.verb, issue.table, issue.statement
            ),
            citus_error: None,
            fix: format!(
                "add `{col} = …` when the statement concerns one tenant (routed to one shard); \
                 otherwise it runs on every shard"
            ),
            automatic: false,
        },
    }
}

/// A query Citus will refuse once the tables are distributed: a blocker
/// for `verify` and `distribute`, or a warning the user accepted
/// (`--accept-failing-queries`).
fn failing_query(
    ctx: &Ctx,
    issue: &Issue,
    object: &str,
    what: String,
    citus_error: &str,
    fix: String,
) -> Finding {
    let accepted = ctx.overrides.accept_failing_queries;
    Finding {
        rule: issue.rule,
        severity: if accepted {
            Severity::Warning
        } else {
            Severity::Blocker
        },
        table: Some(issue.table.clone()),
        object: Some(object.to_string()),
        message: format!(
            "{what}{}: \"{}\"",
            if accepted {
                " (accepted: --accept-failing-queries)"
            } else {
                ""
            },
            issue.statement
        ),
        citus_error: Some(citus_error.to_string()),
        fix: format!(
            "{fix}; or accept that it fails after distribution: `shardready distribute \
             --accept-failing-queries`"
        ),
        automatic: false,
    }
}

/// Audits the functions and the views of the catalog (pure; no
/// pg_stat_statements).
pub fn audit_functions(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for v in &ctx.cat.views {
        let object = format!(
            "{} {}",
            if v.materialized {
                "materialized view"
            } else {
                "view"
            },
            if v.name.schema == "public" {
                v.name.name.clone()
            } else {
                v.name.to_string()
            }
        );
        // A view that reads tenant tables without a filter is what views
        // are for (the filter comes with the query on the view): only the
        // joins Citus refuses are worth saying.
        if let Ok(issues) = audit_sql(ctx, &v.definition) {
            out.extend(
                issues
                    .iter()
                    .filter(|i| {
                        matches!(i.rule, RuleId::NonColocatedJoin | RuleId::FunctionOnShard)
                    })
                    .map(|i| finding(ctx, &object, i)),
            );
        }
    }
    for f in &ctx.cat.functions {
        let object = object_of(f);
        match audit_function(ctx, f) {
            Ok(issues) => out.extend(issues.iter().map(|i| finding(ctx, &object, i))),
            Err(e) => out.push(Finding {
                rule: RuleId::QueryAuditSkipped,
                severity: Severity::Info,
                table: None,
                object: Some(object.clone()),
                message: format!(
                    "{object} could not be parsed, its statements were not audited: {e}"
                ),
                citus_error: None,
                fix: "review it by hand for statements without the tenant column".into(),
                automatic: false,
            }),
        }
    }
    out
}

/// Audits the functions and, when installed, pg_stat_statements.
pub async fn audit(ctx: &Ctx<'_>, client: &Client) -> Result<Vec<Finding>, AnalyzeError> {
    let mut out = audit_functions(ctx);
    if ctx.cat.has_extension("pg_stat_statements") {
        match catalog::top_statements(client, TOP_STATEMENTS).await {
            Ok(stmts) => {
                for s in stmts {
                    let object = format!("pg_stat_statements:{}", s.queryid);
                    // Unparsable entries (truncated, utility) are skipped.
                    if let Ok(issues) = audit_sql(ctx, &s.query) {
                        out.extend(issues.iter().map(|i| finding(ctx, &object, i)));
                    }
                }
            }
            Err(e) => out.push(Finding {
                rule: RuleId::QueryAuditSkipped,
                severity: Severity::Info,
                table: None,
                object: Some("pg_stat_statements".into()),
                message: format!(
                    "pg_stat_statements is installed but cannot be read: {}",
                    crate::conn::error_text(&e)
                ),
                citus_error: None,
                fix: "add pg_stat_statements to shared_preload_libraries (restart) to audit the \
                      application's statements too"
                    .into(),
                automatic: false,
            }),
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|f| seen.insert((f.rule, f.table.clone(), f.object.clone(), f.message.clone())));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    fn issues(sql: &str) -> Vec<(RuleId, String)> {
        let cat = tailspin();
        with_ctx(&cat, &Default::default(), |ctx| {
            audit_sql(ctx, sql)
                .unwrap()
                .into_iter()
                .map(|i| (i.rule, i.table.name))
                .collect()
        })
    }

    const NF: RuleId = RuleId::QueryWithoutTenantFilter;
    const IW: RuleId = RuleId::InsertWithoutTenant;

    #[test]
    fn filters_on_the_tenant_column() {
        assert!(issues("SELECT * FROM orders WHERE store_id = 5").is_empty());
        assert!(
            issues("SELECT * FROM orders o WHERE o.store_id = $1 AND o.order_id = 3").is_empty()
        );
        assert!(issues("SELECT * FROM orders WHERE store_id IN (1, 2)").is_empty());
        assert!(issues("SELECT * FROM orders WHERE store_id = ANY($1)").is_empty());
        assert!(issues("SELECT * FROM orders WHERE store_id::int = 5").is_empty());
        assert_eq!(
            issues("SELECT * FROM orders WHERE order_id = 5"),
            [(NF, "orders".into())]
        );
        assert_eq!(
            issues("SELECT * FROM orders WHERE store_id > 5"),
            [(NF, "orders".into())],
            "a range is not a single-tenant filter"
        );
        // The root is filtered by its key.
        assert!(issues("SELECT name FROM stores WHERE store_id = 1").is_empty());
        assert_eq!(
            issues("SELECT COUNT(*) FROM stores"),
            [(NF, "stores".into())]
        );
        // Not tenant tables / no tables at all.
        assert!(issues("SELECT nextval('orders_order_id_seq')").is_empty());
        assert!(issues("SELECT * FROM pg_class").is_empty());
    }

    /// Joins Citus cannot run once the tables are distributed: tenant
    /// tables tied neither by their tenant columns nor by one tenant each.
    #[test]
    fn joins_not_on_the_tenant_column_are_named() {
        const NC: RuleId = RuleId::NonColocatedJoin;
        let joins = |sql: &str| -> Vec<String> {
            issues(sql)
                .into_iter()
                .filter(|(r, _)| *r == NC)
                .map(|(_, t)| t)
                .collect()
        };
        // Tied by the tenant column: co-located.
        assert!(joins("SELECT * FROM orders o JOIN line_items li ON li.store_id = o.store_id AND li.order_id = o.order_id").is_empty());
        assert!(
            joins("SELECT * FROM orders JOIN line_items USING (store_id, order_id)").is_empty()
        );
        // Each pinned to one tenant: routed to one shard.
        assert!(joins("SELECT * FROM orders o, line_items li WHERE o.store_id = 1 AND li.store_id = 1 AND li.order_id = o.order_id").is_empty());
        // Joined on the order id only (line_items lacks store_id today):
        // fails once both are distributed, outer or not.
        assert_eq!(
            joins("SELECT * FROM orders o JOIN line_items li ON li.order_id = o.order_id"),
            ["orders"]
        );
        assert_eq!(
            joins("SELECT count(*) FROM orders o LEFT JOIN line_items li USING (order_id)"),
            ["orders"]
        );
        // A reference-free single table, or a table with a lookup: fine.
        assert!(joins("SELECT * FROM orders").is_empty());
    }

    /// A statement on a tenant table that calls a function which itself
    /// reads tenant tables (Pagila's film_in_stock calling
    /// inventory_in_stock) runs that function on a shard.
    #[test]
    fn functions_called_on_a_shard_are_named() {
        let mut cat = tailspin();
        cat.functions.push(function(
            "order_total",
            "sql",
            "o bigint",
            "SELECT sum(quantity) FROM line_items WHERE order_id = o",
        ));
        cat.functions
            .push(function("twice", "sql", "x bigint", "SELECT x * 2"));
        let found = |sql: &str| -> Vec<Option<String>> {
            with_ctx(&cat, &Default::default(), |ctx| {
                audit_sql(ctx, sql)
                    .unwrap()
                    .into_iter()
                    .filter(|i| i.rule == RuleId::FunctionOnShard)
                    .map(|i| i.calls)
                    .collect()
            })
        };
        assert_eq!(
            found("SELECT order_id FROM orders WHERE store_id = 1 AND order_total(order_id) > 3"),
            [Some("order_total".to_string())]
        );
        assert!(found("SELECT twice(order_id) FROM orders WHERE store_id = 1").is_empty());
        assert!(
            found("SELECT order_total(5)").is_empty(),
            "not on a tenant table"
        );
    }

    #[test]
    fn joins_and_qualifiers() {
        // Both filtered through the join and the WHERE.
        assert!(issues(
            "SELECT * FROM orders o JOIN products p ON p.store_id = o.store_id WHERE o.store_id = 1"
        )
        .is_empty());
        assert!(
            issues("SELECT * FROM orders JOIN products USING (store_id) WHERE store_id = 1")
                .is_empty()
        );
        // The filter names the other table only: products is read on
        // every shard, and joined to orders on another column than the
        // tenant's (Citus refuses it).
        assert_eq!(
            issues("SELECT * FROM orders o JOIN products p ON p.product_id = o.order_id WHERE o.store_id = 1"),
            [(NF, "products".into()), (RuleId::NonColocatedJoin, "orders".into())]
        );
        // line_items lacks store_id today: an unqualified store_id is
        // orders'; line_items, on every shard, joins orders on order_id.
        assert_eq!(
            issues(
                "SELECT * FROM line_items li JOIN orders o ON o.order_id = li.order_id WHERE store_id = 1"
            ),
            [(NF, "line_items".into()), (RuleId::NonColocatedJoin, "line_items".into())]
        );
        assert!(issues(
            "SELECT * FROM line_items li JOIN orders o ON o.order_id = li.order_id AND li.store_id = o.store_id WHERE o.store_id = 1"
        )
        .is_empty());
    }

    #[test]
    fn subqueries_ctes_and_set_operations_are_levels_of_their_own() {
        assert_eq!(
            issues("SELECT * FROM orders WHERE store_id = 1 AND order_id IN (SELECT order_id FROM line_items)"),
            [(NF, "line_items".into())]
        );
        assert_eq!(
            issues("WITH x AS (SELECT * FROM products) SELECT * FROM x"),
            [(NF, "products".into())],
            "the CTE name is not a table"
        );
        assert_eq!(
            issues("SELECT order_id FROM orders WHERE store_id = 1 UNION ALL SELECT order_id FROM orders"),
            [(NF, "orders".into())]
        );
        assert_eq!(
            issues("SELECT (SELECT count(*) FROM products)"),
            [(NF, "products".into())]
        );
        assert_eq!(
            issues("SELECT * FROM (SELECT * FROM orders) s WHERE s.store_id = 1"),
            [(NF, "orders".into())],
            "a filter outside the subquery is not seen (conservative)"
        );
    }

    #[test]
    fn updates_deletes_and_inserts() {
        assert_eq!(
            issues("UPDATE orders SET status = 'x' WHERE order_id = 1"),
            [(NF, "orders".into())]
        );
        assert!(
            issues("UPDATE orders SET status = 'x' WHERE order_id = 1 AND store_id = 2").is_empty()
        );
        assert_eq!(issues("DELETE FROM products"), [(NF, "products".into())]);
        assert!(issues("DELETE FROM products p WHERE p.store_id = 3").is_empty());
        // INSERT ... VALUES is not a read; line_items needs the column.
        assert_eq!(
            issues("INSERT INTO line_items (product_id, order_id) VALUES (1, 2)"),
            [(IW, "line_items".into())]
        );
        assert_eq!(
            issues("INSERT INTO line_items VALUES (1, 2, 3, 4, 5)"),
            [(IW, "line_items".into())]
        );
        assert!(issues("INSERT INTO line_items (product_id, store_id) VALUES (1, 2)").is_empty());
        assert!(issues("INSERT INTO orders (store_id, status) VALUES (1, 'x')").is_empty());
        // orders has store_id without a default: a column list without it is NULL.
        assert_eq!(
            issues("INSERT INTO orders (status) VALUES ('x')"),
            [(IW, "orders".into())]
        );
        assert!(
            issues("INSERT INTO stores (name) VALUES ('x')").is_empty(),
            "the root's key is generated"
        );
        // INSERT ... SELECT reads.
        assert_eq!(
            issues("INSERT INTO orders (store_id) SELECT store_id FROM stores"),
            [(NF, "stores".into())]
        );
    }

    fn function_issues(f: &Function) -> Vec<(RuleId, String)> {
        let cat = tailspin();
        with_ctx(&cat, &Default::default(), |ctx| {
            audit_function(ctx, f)
                .unwrap()
                .into_iter()
                .map(|i| (i.rule, i.table.name))
                .collect()
        })
    }

    fn body_of(create: &str) -> String {
        let start = create.find("$$").unwrap() + 2;
        let end = create.rfind("$$").unwrap();
        create[start..end].to_string()
    }

    #[test]
    fn seed_create_orders_inserts_line_items_without_store_id() {
        let f = function(
            "create_orders",
            "plpgsql",
            "batch_size integer",
            &body_of(crate::workload::CREATE_ORDERS_SQL),
        );
        assert_eq!(
            function_issues(&f),
            [(IW, "line_items".into()), (NF, "stores".into())],
            "the line_items INSERT, and SELECT COUNT(*) FROM stores; nextval() is not a table"
        );
        let fixed = function(
            "create_orders",
            "plpgsql",
            "batch_size integer",
            &body_of(&crate::workload::create_orders_with_store_id_sql()),
        );
        assert_eq!(function_issues(&fixed), [(NF, "stores".into())]);
        // The whole definition as the server prints it parses too.
        let mut def = f.clone();
        def.definition = crate::workload::CREATE_ORDERS_SQL.replace("CREATE OR REPLACE", "CREATE");
        assert_eq!(function_issues(&def).len(), 2);
    }

    #[test]
    fn trigger_functions_and_sql_functions() {
        let trg = function(
            "fill",
            "plpgsql",
            "",
            " BEGIN NEW.store_id := (SELECT o.store_id FROM orders o WHERE o.order_id = NEW.order_id); \
               IF TG_OP = 'UPDATE' THEN DELETE FROM products WHERE product_id = OLD.product_id; END IF; \
               RETURN NEW; END; ",
        );
        assert_eq!(
            function_issues(&trg),
            [(NF, "orders".into()), (NF, "products".into())]
        );
        let sql = function(
            "count_orders",
            "sql",
            "s bigint",
            "SELECT count(*) FROM orders WHERE store_id = s; SELECT count(*) FROM line_items",
        );
        assert_eq!(function_issues(&sql), [(NF, "line_items".into())]);
        let cat = tailspin();
        with_ctx(&cat, &Default::default(), |ctx| {
            let i = audit_function(ctx, &sql).unwrap();
            assert_eq!(i[0].statement, "SELECT count(*) FROM line_items");
            let f = finding(ctx, "count_orders(s bigint)", &i[0]);
            assert_eq!(f.severity, Severity::Warning);
            assert!(f.message.starts_with(
                "count_orders(s bigint) reads line_items without a filter on store_id"
            ));
        });
        let broken = function("broken", "plpgsql", "", "BEGIN x := ; END");
        let cat = tailspin();
        with_ctx(&cat, &Default::default(), |ctx| {
            assert!(audit_function(ctx, &broken).is_err());
        });
    }

    #[test]
    fn findings_for_the_seed_function() {
        let mut cat = tailspin();
        cat.functions.push(function(
            "create_orders",
            "plpgsql",
            "batch_size integer",
            &body_of(crate::workload::CREATE_ORDERS_SQL),
        ));
        let f = with_ctx(&cat, &Default::default(), audit_functions);
        let ins = f.iter().find(|f| f.rule == IW).unwrap();
        assert_eq!(
            ins.object.as_deref(),
            Some("create_orders(batch_size integer)")
        );
        assert_eq!(ins.table.as_ref().unwrap().name, "line_items");
        assert!(ins.message.contains("INSERT INTO line_items (line_item_id, product_id, order_id, quantity, line_amount) VALUES(DEFAULT"), "{}", ins.message);
        assert!(ins.fix.contains("sync trigger"));
        assert!(!ins.automatic);
    }

    #[test]
    fn quoting_trims() {
        assert_eq!(quote("SELECT  1\n  FROM x ;"), "SELECT 1 FROM x");
        let long = format!("SELECT {}", "a, ".repeat(100));
        let q = quote(&long);
        assert_eq!(q.chars().count(), 120);
        assert!(q.ends_with('…'));
    }
}
