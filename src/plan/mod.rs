//! The plan: ordered [`Step`] values built from an analysis. Each step kind
//! ([`steps`]) owns the actions it runs, the lock it takes and how it tells
//! from the catalog whether it is already done. `plan --format sql` renders
//! the same actions `apply` executes as a psql script a DBA can review.

use serde::{Deserialize, Serialize};

pub mod estimate;
pub mod keys;
pub(crate) mod steps;

use crate::analyze::{Analysis, Class};
use crate::catalog::{Catalog, QName, Table, TableKind};
use crate::db::LockMode;

pub use steps::{
    AddColumn, AnalyzeTables, Backfill, CarriedView, DropForeignKey, DropTrigger, HoldAutovacuum,
    LiftForeignKey, NotNull, PartitionIndex, StandbyBudget, StepKind, SwapKey, SyncTrigger,
    TenantForeignKey, UniqueIndex, Vacuum,
};

/// How a step affects the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) for milliseconds, under
    /// lock_timeout with retries.
    Brief,
    /// Reads the whole table under SHARE UPDATE EXCLUSIVE: writes continue.
    ScanNoBlock,
    /// CREATE INDEX CONCURRENTLY: no blocking lock; waits for older
    /// transactions.
    Concurrent,
    /// Many short transactions, each locking only the rows it updates.
    Batches,
    /// SHARE UPDATE EXCLUSIVE for milliseconds: reads and writes continue.
    NoBlock,
}

impl Impact {
    /// A short name for tables (report.md's lock column).
    pub fn label(self) -> &'static str {
        match self {
            Impact::Brief => "brief lock",
            Impact::ScanNoBlock => "scan, writes continue",
            Impact::Concurrent => "concurrent build",
            Impact::Batches => "short batches",
            Impact::NoBlock => "no block",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Impact::Brief => "brief lock (milliseconds; lock_timeout + retry)",
            Impact::ScanNoBlock => "scans without blocking writes (SHARE UPDATE EXCLUSIVE)",
            Impact::Concurrent => "concurrent build (no blocking lock)",
            Impact::Batches => "short batches (row locks only)",
            Impact::NoBlock => {
                "SHARE UPDATE EXCLUSIVE for milliseconds (reads and writes continue)"
            }
        }
    }
}

/// A unique key to be rebuilt with the tenant column in front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyTarget {
    Primary {
        constraint: String,
    },
    Unique {
        constraint: String,
    },
    /// A unique index that backs no constraint.
    Index {
        name: String,
    },
}

/// One unit of work: one variant per step kind, each kind in its own file
/// under [`steps`] owning its SQL, lock class, done-check and undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    AddColumn(AddColumn),
    SyncTrigger(SyncTrigger),
    HoldAutovacuum(HoldAutovacuum),
    Backfill(Backfill),
    NotNull(NotNull),
    UniqueIndex(UniqueIndex),
    ForeignKey(TenantForeignKey),
    DropForeignKey(DropForeignKey),
    LiftForeignKey(LiftForeignKey),
    SwapKey(SwapKey),
    DropTrigger(DropTrigger),
    Vacuum(Vacuum),
    Analyze(AnalyzeTables),
}

impl Step {
    /// The step's kind, which knows everything about it.
    pub fn kind(&self) -> &dyn StepKind {
        match self {
            Step::AddColumn(s) => s,
            Step::SyncTrigger(s) => s,
            Step::HoldAutovacuum(s) => s,
            Step::Backfill(s) => s,
            Step::NotNull(s) => s,
            Step::UniqueIndex(s) => s,
            Step::ForeignKey(s) => s,
            Step::DropForeignKey(s) => s,
            Step::LiftForeignKey(s) => s,
            Step::SwapKey(s) => s,
            Step::DropTrigger(s) => s,
            Step::Vacuum(s) => s,
            Step::Analyze(s) => s,
        }
    }
    pub fn id(&self) -> String {
        self.kind().id()
    }
    pub fn table(&self) -> Option<&QName> {
        self.kind().table()
    }
    pub fn impact(&self) -> Impact {
        self.kind().impact()
    }
    pub fn describe(&self) -> String {
        self.kind().describe()
    }
    pub fn is_done(&self, cat: &Catalog) -> bool {
        self.kind().is_done(cat)
    }
    pub fn actions(&self) -> Vec<Action> {
        self.kind().actions()
    }
    pub fn on_replan(&self) -> Vec<Action> {
        self.kind().on_replan()
    }
    pub fn undo(&self) -> Undo {
        self.kind().undo()
    }
}

/// What the executor does for a step, in order. Every statement is one
/// statement (sent as its own query) and carries the lock class that
/// decides whether it runs under `lock_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Statements in one transaction under `lock`: `Brief` when their lock
    /// conflicts with the application (lock_timeout + retry), else they
    /// never block it.
    Txn {
        statements: Vec<String>,
        lock: LockMode,
    },
    /// A statement that cannot run in a transaction block (CONCURRENTLY,
    /// VACUUM); it never blocks the application.
    Bare { sql: String },
    /// CREATE UNIQUE INDEX CONCURRENTLY with invalid-index detection,
    /// cleanup and retry.
    BuildIndex {
        schema: String,
        index: String,
        sql: String,
    },
    /// The keyset backfill controller; `psql` is what a reviewer runs
    /// instead (fixed batches).
    Backfill { step: Backfill, psql: String },
    /// Wait until the application writes the column itself (the sync
    /// trigger's counter stops moving), or stop and say so.
    AwaitAppWrites {
        table: QName,
        column: String,
        counter: QName,
    },
    /// A constraint that new rows must satisfy, added only when no row
    /// violates it, so that it cannot reject the application's writes:
    /// `violations` (the keys of offending rows, a read that never blocks)
    /// runs right before `add` (one brief transaction), `validate` (each
    /// its own transaction, never blocking) right after; when rows violate
    /// it, or validation fails, `drop` (one brief transaction) takes the
    /// new constraint away at once and apply stops, naming the rows.
    Constrain {
        table: QName,
        constraint: String,
        violations: String,
        add: Vec<String>,
        validate: Vec<String>,
        drop: Vec<String>,
        /// What the violating rows are, before their keys (e.g. "rows
        /// without store_id").
        problem: String,
        /// What stays as it was when the constraint is not added.
        kept: String,
        /// Complete command lines (or SQL) that resolve violating rows.
        resolve: Vec<String>,
    },
}

impl Action {
    /// The action as psql runs it.
    pub fn to_psql(&self) -> String {
        match self {
            Action::Txn { statements, .. } => format!("BEGIN;\n{}\nCOMMIT;\n", statements.join("\n")),
            Action::Bare { sql } => format!("{sql}\n"),
            Action::BuildIndex { schema, index, sql } => format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}; -- only if a build was interrupted (INVALID)\n{sql}\n",
                crate::sql::qualified(schema, index)
            ),
            Action::Backfill { psql, .. } => format!("{psql}\n"),
            Action::AwaitAppWrites { table, column, .. } => format!(
                "-- wait until the application writes {column} into {table} itself (apply watches the sync trigger's counter)\n"
            ),
            Action::Constrain {
                violations,
                add,
                validate,
                drop,
                ..
            } => format!(
                "-- rows the new constraint would reject (stop unless none):\n{violations};\n\
                 BEGIN;\n{}\nCOMMIT;\n{}\
                 -- if VALIDATE fails: {}\n",
                add.join("\n"),
                validate
                    .iter()
                    .map(|v| format!("BEGIN;\n{v}\nCOMMIT;\n"))
                    .collect::<String>(),
                drop.join(" ")
            ),
        }
    }

    /// Every statement the action may send (for reviews and tests).
    pub fn statements(&self) -> Vec<String> {
        match self {
            Action::Txn { statements, .. } => statements.clone(),
            Action::Bare { sql } | Action::BuildIndex { sql, .. } => vec![sql.clone()],
            Action::Backfill { psql, .. } => vec![psql.clone()],
            Action::AwaitAppWrites { .. } => Vec::new(),
            Action::Constrain {
                violations,
                add,
                validate,
                drop,
                ..
            } => std::iter::once(violations.clone())
                .chain(add.iter().cloned())
                .chain(validate.iter().cloned())
                .chain(drop.iter().cloned())
                .collect(),
        }
    }
}

/// How a step is undone when a preparation is abandoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Run these.
    Actions(Vec<Action>),
    /// The step leaves nothing to undo (or another step's undo covers it).
    Nothing,
    /// Not written yet: what it takes.
    Todo(&'static str),
}

/// The plan (`plan --format json`; schema `shardready.plan/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub schema: String,
    pub tenant_column: String,
    pub root: Option<QName>,
    /// The resolutions the user chose, as the flags that gave them
    /// (`--path …`, `--fix-fk-actions`, `--drop-fk …`, `--reference …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolutions: Vec<String>,
    pub steps: Vec<Step>,
    /// The application's statements the plan knew, and the column order
    /// it chose for each rebuilt key (and why).
    #[serde(default, skip_serializing_if = "keys::Access::is_empty")]
    pub access: keys::Access,
}

/// A name that fits PostgreSQL's 63-byte limit: `base` + `suffix`, with
/// `base` shortened (and a short hash added) when needed, so names stay
/// distinct and findable.
pub fn object_name(base: &str, suffix: &str) -> String {
    let full = format!("{base}{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let mut h: u32 = 2166136261;
    for b in base.bytes() {
        h = (h ^ b as u32).wrapping_mul(16777619);
    }
    let tag = format!("_{:06x}", h & 0xffffff);
    let room = 63 - suffix.len() - tag.len();
    let mut cut = room;
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tag}{suffix}", &base[..cut])
}

/// The path through which apply fills the NULL tenants of `table`: for a
/// table that has the tenant column, the data check found rows that it
/// gives a tenant (`null-tenant`, automatic); for one that lacks it, rows
/// that its path leaves without one and one of its alternatives gives one
/// (its `also` paths are then taken).
fn null_fill<'a>(
    analysis: &'a Analysis,
    table: &QName,
) -> Option<&'a Vec<crate::analyze::tenant::Hop>> {
    analysis.data.as_ref()?.checks.iter().find_map(|c| {
        (c.table == *table && c.rows > 0 && c.error.is_none())
            .then_some(c.fill.as_ref())
            .flatten()
    })
}

/// The views that rely on `constraint` of `table`, re-created by its swap
/// with the tenant column in their GROUP BY (a view that cannot be is a
/// blocker of the analysis: see `analyze::rules::dependents`).
/// `tenants`: each tenant table's tenant column.
fn carried_views(
    cat: &Catalog,
    table: &QName,
    constraint: &str,
    tenants: &[(QName, String)],
) -> Vec<CarriedView> {
    cat.key_views
        .iter()
        .filter(|v| !v.materialized)
        .filter(|v| v.keys.iter().any(|(t, c)| t == table && c == constraint))
        .filter_map(|v| {
            let keys = crate::analyze::rules::dependents::swapped_keys(cat, v, |t| {
                tenants
                    .iter()
                    .find(|(n, _)| n == &t.name)
                    .map(|(_, c)| c.as_str())
            });
            CarriedView::regrouped(v, &keys)
        })
        .collect()
}

/// Reads the schema, analyzes it and builds the plan (`shardready plan`).
pub async fn read(
    client: &tokio_postgres::Client,
    opts: &crate::analyze::AnalyzeOptions,
) -> Result<Plan, crate::analyze::AnalyzeError> {
    let (cat, analysis) = crate::analyze::read_with_catalog(client, opts).await?;
    Ok(build(&analysis, &cat))
}

/// Builds the plan for an analysis.
pub fn build(analysis: &Analysis, cat: &Catalog) -> Plan {
    let tenant = &analysis.tenant;
    let col = tenant.column.clone();
    let mut adds = Vec::new();
    let mut triggers = Vec::new();
    let mut backfills = Vec::new();
    let mut holds = Vec::new();
    let mut vacuums = Vec::new();
    let mut not_nulls = Vec::new();
    let mut indexes = Vec::new();
    let mut fks = Vec::new();
    let mut lifts = Vec::new();
    let mut swaps = Vec::new();
    let mut referrers: Vec<TenantForeignKey> = Vec::new();
    let mut follow_ups = Vec::new();
    let mut drops = Vec::new();
    let mut touched = Vec::new();
    let mut access = keys::Access::of(&analysis.statements);

    let tenant_col_of = |t: &Table| -> String {
        if tenant.root.as_ref() == Some(&t.name) {
            tenant.root_key.clone().unwrap_or_else(|| col.clone())
        } else {
            col.clone()
        }
    };

    // Each tenant table's tenant column (for the views a swap carries,
    // which may rely on several tables' keys).
    let tenants: Vec<(QName, String)> = analysis
        .tables
        .iter()
        .filter(|s| s.class.class.is_tenant())
        .filter_map(|s| cat.table(&s.table))
        .map(|t| (t.name.clone(), tenant_col_of(t)))
        .collect();

    for s in &analysis.tables {
        let Some(t) = cat.table(&s.table) else {
            continue;
        };
        let class = &s.class.class;
        if !class.is_tenant() {
            continue;
        }
        let tcol = tenant_col_of(t);
        let mut changed = false;
        // A new column is filled through the table's path; an existing one
        // with NULLs its data check found a path for, the same way.
        let fill = match class {
            Class::NeedsColumn { path, also, chosen } => {
                // Alternatives the user named are taken; the others where
                // the data check found rows that need them (else the
                // path's join alone, as fast as ever).
                let also = if *chosen || null_fill(analysis, &t.name).is_some() {
                    also.clone()
                } else {
                    Vec::new()
                };
                Some((path, also, true))
            }
            Class::Distributed => null_fill(analysis, &t.name).map(|p| (p, Vec::new(), false)),
            _ => None,
        };
        if let Some((path, also, new)) = fill {
            let base = format!("{}_{}", t.name.name, tcol);
            let trigger = object_name("shardready_sync_", &tcol);
            let function = QName::new("shardready", &object_name(&format!("sync_{base}"), ""));
            let counter = QName::new("shardready", &object_name(&format!("fills_{base}"), ""));
            if new {
                adds.push(Step::AddColumn(AddColumn {
                    table: t.name.clone(),
                    column: tcol.clone(),
                    type_name: tenant.type_name.clone(),
                }));
            }
            triggers.push(Step::SyncTrigger(SyncTrigger {
                table: t.name.clone(),
                column: tcol.clone(),
                path: path.clone(),
                also: also.clone(),
                trigger: trigger.clone(),
                function: function.clone(),
                counter: counter.clone(),
            }));
            // A partitioned table's rows are in its partitions: each is
            // held, backfilled and vacuumed on its own.
            let storage: Vec<&Table> = if t.kind == TableKind::Partitioned {
                cat.partitions_of(&t.name)
            } else {
                vec![t]
            };
            for p in storage {
                // A table whose owner turned autovacuum off stays as it is.
                if p.autovacuum_enabled != Some(false) {
                    holds.push(Step::HoldAutovacuum(HoldAutovacuum {
                        table: p.name.clone(),
                        column: tcol.clone(),
                    }));
                    vacuums.push(Step::Vacuum(Vacuum {
                        table: p.name.clone(),
                        autovacuum: p.autovacuum_enabled,
                    }));
                }
                let int_key = single_int_key(p);
                backfills.push(Step::Backfill(Backfill {
                    table: p.name.clone(),
                    column: tcol.clone(),
                    pages: int_key.is_none(),
                    key: int_key.unwrap_or_else(|| "ctid".into()),
                    path: path.clone(),
                    also: also.clone(),
                }));
            }
            drops.push(Step::DropTrigger(DropTrigger {
                table: t.name.clone(),
                column: tcol.clone(),
                trigger,
                function,
                counter,
            }));
            changed = true;
        }
        let nullable = t.column(&tcol).map(|c| !c.not_null).unwrap_or(true);
        if nullable {
            not_nulls.push(Step::NotNull(NotNull {
                table: t.name.clone(),
                column: tcol.clone(),
                check: object_name(&format!("{}_{}", t.name.name, tcol), "_not_null"),
            }));
            changed = true;
        }
        // Keys: every PK/UNIQUE and unique index without the tenant column
        // (on a partitioned table, built on each partition).
        for key in keys::keys_without(analysis, t, &tcol, &mut access) {
            let parts = keys::partition_indexes(cat, t, &key, &tcol);
            for p in &parts {
                indexes.push(Step::UniqueIndex(UniqueIndex {
                    table: p.table.clone(),
                    index: p.index.clone(),
                    columns: key.columns.clone(),
                    definition: p.definition.clone(),
                    target: p.target.clone(),
                }));
            }
            let index = object_name(key.name(), "_shardready");
            if t.kind != TableKind::Partitioned {
                indexes.push(Step::UniqueIndex(UniqueIndex {
                    table: t.name.clone(),
                    index: index.clone(),
                    columns: key.columns.clone(),
                    definition: key.definition.clone(),
                    target: key.target.clone(),
                }));
            }
            let views = match &key.target {
                KeyTarget::Primary { constraint } | KeyTarget::Unique { constraint } => {
                    carried_views(cat, &t.name, constraint, &tenants)
                }
                KeyTarget::Index { .. } => Vec::new(),
            };
            swaps.push(Step::SwapKey(SwapKey {
                table: t.name.clone(),
                index,
                target: key.target,
                columns: key.columns,
                definition: key.definition,
                partitions: parts,
                referrers: Vec::new(),
                views,
            }));
            changed = true;
        }
        // Foreign keys between tenant tables get the tenant column in front
        // (those the user drops are left alone).
        // A partitioned table's keys declared on its partitions are
        // rewritten there (PostgreSQL 15 adds no NOT VALID key to a
        // partitioned table), then declared once on the parent (`shapes`:
        // each key's final form and the partitions that have it).
        let mut shapes: Vec<(Shape, Vec<QName>, Option<String>)> = Vec::new();
        let declared = std::iter::once(t).chain(cat.partitions_of(&t.name));
        for (d, fk) in declared.flat_map(|d| d.foreign_keys.iter().map(move |fk| (d, fk))) {
            if analysis
                .dropped_fks
                .iter()
                .any(|x| x.table == d.name && x.name == fk.name)
            {
                continue;
            }
            let Some(r) = cat.table(&fk.ref_table) else {
                continue;
            };
            let mut shape = Shape {
                columns: fk.columns.clone(),
                ref_table: fk.ref_table.clone(),
                ref_columns: fk.ref_columns.clone(),
                on_delete: fk.on_delete.sql().to_string(),
                on_update: fk.on_update.sql().to_string(),
            };
            let ref_class = analysis.class_of(cat.top_parent(r));
            let rcol = tenant_col_of(r);
            let actions = TenantForeignKey::citus_actions(fk, analysis.fix_fk_actions);
            let rewrite = if !ref_class.is_some_and(|c| c.is_tenant()) {
                None
            } else if crate::analyze::tenant::fk_aligned(fk, d, r, tenant) {
                // Its shape is right; only actions Citus refuses, with
                // --fix-fk-actions, make it change.
                actions
                    .changed
                    .is_some()
                    .then(|| (fk.columns.clone(), fk.ref_columns.clone()))
            } else if tenant.root.as_ref() == Some(&r.name) && fk.ref_columns == [rcol.clone()] {
                // A second reference to the root's key (not automatic).
                None
            } else if crate::analyze::tenant::fk_rewrite_blocked(d, r) {
                // A key to a partitioned table from another partitioned
                // one: a blocker, not a step (rules::foreign_keys).
                continue;
            } else {
                let mut columns = vec![tcol.clone()];
                columns.extend(fk.columns.iter().cloned());
                let mut ref_columns = vec![rcol.clone()];
                ref_columns.extend(fk.ref_columns.iter().cloned());
                Some((columns, ref_columns))
            };
            if let Some((columns, ref_columns)) = rewrite {
                shape = Shape {
                    columns: columns.clone(),
                    ref_table: fk.ref_table.clone(),
                    ref_columns: ref_columns.clone(),
                    on_delete: actions.on_delete.clone(),
                    on_update: actions.on_update.clone(),
                };
                let key = TenantForeignKey {
                    table: d.name.clone(),
                    name: fk.name.clone(),
                    temp_name: object_name(&fk.name, "_shardready"),
                    columns,
                    ref_table: fk.ref_table.clone(),
                    ref_columns,
                    on_delete: actions.on_delete,
                    on_update: actions.on_update,
                    replaces: Some(fk.name.clone()),
                    fixed_actions: actions.changed,
                };
                if d.kind == TableKind::Partitioned {
                    // Declared on the parent: PostgreSQL 15 adds no NOT
                    // VALID key there, so each partition gets the new key
                    // (checked), then the parent's replaces the old one and
                    // attaches them.
                    shapes.push((shape, Vec::new(), Some(fk.name.clone())));
                    changed = true;
                    continue;
                } else if r.kind == TableKind::Partitioned {
                    // The referenced unique key exists once the swap of its
                    // table is done: the swap carries this key over; its own
                    // step re-adds it if a validation failed.
                    referrers.push(key.clone());
                    follow_ups.push(Step::ForeignKey(TenantForeignKey {
                        replaces: None,
                        ..key
                    }));
                } else {
                    fks.push(Step::ForeignKey(key));
                }
                changed = true;
            }
            if d.parent.is_some() {
                match shapes.iter_mut().find(|(s, _, _)| s.same_key(&shape)) {
                    Some((_, on, _)) => on.push(d.name.clone()),
                    None => shapes.push((shape, vec![d.name.clone()], None)),
                }
            }
        }
        // The tenant column references the root (the seed's
        // line_items_store_id_fkey); on a partitioned table, through its
        // partitions like the keys above.
        if let (Some(root), Some(root_key)) = (&tenant.root, &tenant.root_key) {
            let has = cat.foreign_keys_of(t).iter().any(|fk| {
                &fk.ref_table == root
                    && fk.columns == [tcol.clone()]
                    && fk.ref_columns == [root_key.clone()]
            });
            if &t.name != root && !has {
                let shape = Shape {
                    columns: vec![tcol.clone()],
                    ref_table: root.clone(),
                    ref_columns: vec![root_key.clone()],
                    on_delete: "NO ACTION".into(),
                    on_update: "NO ACTION".into(),
                };
                if t.kind == TableKind::Partitioned {
                    shapes.push((shape, Vec::new(), None));
                } else {
                    fks.push(Step::ForeignKey(shape.add_to(t, &tcol)));
                }
                changed = true;
            }
        }
        if t.kind == TableKind::Partitioned {
            for (shape, on, replaces) in shapes {
                for p in cat.partitions_of(&t.name) {
                    if !on.contains(&p.name) {
                        fks.push(Step::ForeignKey(shape.add_to(p, &shape.columns.join("_"))));
                    }
                }
                let name = replaces.clone().unwrap_or_else(|| {
                    object_name(
                        &format!("{}_{}", t.name.name, shape.columns.join("_")),
                        "_fkey",
                    )
                });
                lifts.push(Step::LiftForeignKey(LiftForeignKey {
                    table: t.name.clone(),
                    name,
                    columns: shape.columns,
                    ref_table: shape.ref_table,
                    ref_columns: shape.ref_columns,
                    on_delete: shape.on_delete,
                    on_update: shape.on_update,
                    replaces,
                }));
                changed = true;
            }
        }
        if changed {
            touched.push(t.name.clone());
        }
    }
    // Keys to a partitioned table ride on the swap of the key they
    // reference (its columns, in any order, with the tenant's).
    for key in referrers {
        let same = |cols: &[String]| {
            let mut a = cols.to_vec();
            let mut b = key.ref_columns.clone();
            a.sort();
            b.sort();
            a == b
        };
        match swaps.iter_mut().find_map(|s| match s {
            Step::SwapKey(k) if k.table == key.ref_table && same(&k.columns) => Some(k),
            _ => None,
        }) {
            Some(swap) => swap.referrers.push(key),
            // Its table's key has the tenant already: added like any other.
            None => fks.push(Step::ForeignKey(key)),
        }
    }
    // Keys the user chose to drop go first: dropping one rejects no write,
    // and nothing after it depends on them.
    let mut steps: Vec<Step> = analysis
        .dropped_fks
        .iter()
        .map(|d| {
            Step::DropForeignKey(DropForeignKey {
                table: d.table.clone(),
                name: d.name.clone(),
                definition: d.definition.clone(),
            })
        })
        .collect();
    steps.extend(adds);
    steps.extend(triggers);
    steps.extend(holds);
    steps.extend(backfills);
    steps.extend(not_nulls);
    steps.extend(indexes);
    steps.extend(fks);
    steps.extend(lifts);
    steps.extend(swaps);
    steps.extend(follow_ups);
    steps.extend(drops);
    steps.extend(vacuums);
    if !touched.is_empty() {
        steps.push(Step::Analyze(AnalyzeTables { tables: touched }));
    }
    Plan {
        schema: "shardready.plan/v1".into(),
        tenant_column: col,
        root: tenant.root.clone(),
        resolutions: analysis.resolutions.clone(),
        steps,
        access,
    }
}

/// A foreign key's final form (columns, referenced key, actions).
struct Shape {
    columns: Vec<String>,
    ref_table: QName,
    ref_columns: Vec<String>,
    on_delete: String,
    on_update: String,
}

impl Shape {
    /// Whether PostgreSQL takes one for the other when a parent's key
    /// attaches its partitions'.
    fn same_key(&self, o: &Shape) -> bool {
        self.columns == o.columns
            && self.ref_table == o.ref_table
            && self.ref_columns == o.ref_columns
    }
    /// A new key of this shape on `t`, named `<t>_<suffix>_fkey`.
    fn add_to(&self, t: &Table, suffix: &str) -> TenantForeignKey {
        let name = object_name(&format!("{}_{suffix}", t.name.name), "_fkey");
        TenantForeignKey {
            table: t.name.clone(),
            name: name.clone(),
            temp_name: name,
            columns: self.columns.clone(),
            ref_table: self.ref_table.clone(),
            ref_columns: self.ref_columns.clone(),
            on_delete: self.on_delete.clone(),
            on_update: self.on_update.clone(),
            replaces: None,
            fixed_actions: None,
        }
    }
}

/// The single integer primary key a backfill walks (else it walks pages).
fn single_int_key(t: &Table) -> Option<String> {
    t.primary_key()
        .filter(|k| k.columns.len() == 1)
        .map(|k| k.columns[0].clone())
        .filter(|c| {
            t.column(c)
                .is_some_and(|c| matches!(c.type_name.as_str(), "smallint" | "integer" | "bigint"))
        })
}

impl Plan {
    /// The plan as a psql script.
    pub fn to_sql(&self, lock_timeout_ms: u64) -> String {
        let mut out = format!(
            "-- shardready plan: tenant column {}{}\n-- Run with psql; each step is safe to rerun.\n\\set ON_ERROR_STOP on\nSET lock_timeout = '{lock_timeout_ms}ms';\n",
            self.tenant_column,
            self.root
                .as_ref()
                .map(|r| format!(", root {r}"))
                .unwrap_or_default()
        );
        for line in self.access.text().lines() {
            out.push_str(&format!("-- {line}\n").replace("-- \n", "--\n"));
        }
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!(
                "\n-- {}. {}\n--    lock: {}\n",
                i + 1,
                s.describe(),
                s.impact().describe()
            ));
            for action in s.actions() {
                out.push_str(&action.to_psql());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_stay_distinct() {
        assert_eq!(
            object_name("orders_pkey", "_shardready"),
            "orders_pkey_shardready"
        );
        let long_a = "a".repeat(70);
        let long_b = format!("{}b", "a".repeat(69));
        let na = object_name(&long_a, "_shardready");
        let nb = object_name(&long_b, "_shardready");
        assert!(na.len() <= 63 && nb.len() <= 63);
        assert!(na.ends_with("_shardready"));
        assert_ne!(na, nb);
        let accents = "é".repeat(40);
        assert!(object_name(&accents, "_x").len() <= 63);
    }

    /// The plan for a catalog, through the same analysis apply runs
    /// (catalog part only).
    fn plan_of(cat: &Catalog) -> Plan {
        plan_with(cat, &Default::default())
    }

    fn plan_with(cat: &Catalog, overrides: &crate::analyze::Overrides) -> Plan {
        let (tenant, classes, findings) = crate::analyze::analyze_catalog(cat, overrides).unwrap();
        let tables = classes
            .iter()
            .map(|c| crate::analyze::TableSummary {
                table: c.table.clone(),
                class: c.clone(),
                row_estimate: 0,
                size_bytes: 0,
            })
            .collect();
        let analysis = Analysis {
            schema: "shardready.analysis/v1",
            database: cat.database.clone(),
            tenant,
            tables,
            findings,
            data: None,
            skew: None,
            counts: Default::default(),
            placed: Vec::new(),
            dropped_fks: Vec::new(),
            fix_fk_actions: overrides.fix_fk_actions,
            resolutions: overrides.to_args(),
            statements: Default::default(),
            key_order: overrides.key_order.clone(),
            no_lookup_index: overrides.no_lookup_index,
        };
        build(&analysis, cat)
    }

    fn ids(p: &Plan) -> Vec<String> {
        p.steps.iter().map(|s| s.id()).collect()
    }

    #[test]
    fn autovacuum_is_held_from_before_the_backfill_to_the_end() {
        let cat = crate::analyze::testkit::tailspin();
        let ids = ids(&plan_of(&cat));
        let at = |id: &str| ids.iter().position(|x| x == id).expect(id);
        assert!(at("hold-autovacuum:line_items") < at("backfill:line_items"));
        // After every step that reads or rewrites line_items.
        assert_eq!(ids[ids.len() - 2], "vacuum:line_items");
        assert_eq!(ids.last().unwrap(), "analyze");
        // Only the backfilled table.
        assert_eq!(ids.iter().filter(|x| x.contains("autovacuum")).count(), 1);
    }

    #[test]
    fn autovacuum_comes_back_as_the_owner_left_it() {
        let release = |setting: Option<bool>| {
            let mut cat = crate::analyze::testkit::tailspin();
            cat.tables
                .iter_mut()
                .find(|t| t.name.name == "line_items")
                .unwrap()
                .autovacuum_enabled = setting;
            let plan = plan_of(&cat);
            let vacuum = plan.steps.iter().find(|s| matches!(s, Step::Vacuum(_)));
            vacuum.map(|v| {
                let actions = v.actions();
                actions.last().unwrap().statements().last().unwrap().clone()
            })
        };
        assert_eq!(
            release(None).as_deref(),
            Some("ALTER TABLE \"public\".\"line_items\" RESET (autovacuum_enabled);")
        );
        assert_eq!(
            release(Some(true)).as_deref(),
            Some("ALTER TABLE \"public\".\"line_items\" SET (autovacuum_enabled = true);")
        );
        // Turned off by its owner: neither held nor given back.
        assert_eq!(release(Some(false)), None);
    }

    #[test]
    fn every_action_sends_one_statement_per_query_with_its_lock_class() {
        let plan = plan_of(&crate::analyze::testkit::tailspin());
        for step in &plan.steps {
            for action in step.actions() {
                if matches!(action, Action::Backfill { .. }) {
                    continue; // its psql rendering is a script; apply runs prepared batches
                }
                for stmt in action.statements() {
                    let parts = crate::db::split_statements(&stmt).unwrap();
                    assert_eq!(
                        parts.len(),
                        1,
                        "{}: several statements in one: {stmt}",
                        step.id()
                    );
                }
                // What waits for a lock that conflicts with the application
                // runs under lock_timeout.
                if let Action::Txn { statements, lock } = &action {
                    let conflicting = statements.iter().any(|s| {
                        s.contains("ADD COLUMN")
                            || s.contains("CREATE TRIGGER")
                            || s.contains("DROP TRIGGER")
                            || s.contains("PRIMARY KEY USING INDEX")
                            || s.contains("SET NOT NULL")
                    });
                    if conflicting {
                        assert_eq!(*lock, LockMode::Brief, "{}: {statements:?}", step.id());
                    }
                    if statements.iter().any(|s| s.contains("VALIDATE CONSTRAINT")) {
                        assert_eq!(*lock, LockMode::NonBlocking, "{}", step.id());
                    }
                }
            }
        }
    }

    #[test]
    fn undo_is_written_or_says_what_it_takes() {
        let plan = plan_of(&crate::analyze::testkit::tailspin());
        for step in &plan.steps {
            match step.undo() {
                Undo::Actions(a) => assert!(!a.is_empty(), "{}", step.id()),
                Undo::Todo(what) => assert!(what.len() > 20, "{}", step.id()),
                Undo::Nothing => {}
            }
        }
        let add = plan
            .steps
            .iter()
            .find(|s| matches!(s, Step::AddColumn(_)))
            .unwrap();
        let Undo::Actions(a) = add.undo() else {
            panic!("adding a column is undone by dropping it")
        };
        assert_eq!(
            a[0].statements(),
            ["ALTER TABLE \"public\".\"line_items\" DROP COLUMN IF EXISTS \"store_id\";"]
        );
    }

    #[test]
    fn refused_fk_actions_are_rewritten_only_with_consent() {
        use crate::catalog::FkAction;
        // items → orders already has the tenant in front, but ON UPDATE
        // CASCADE.
        let cat = || crate::analyze::testkit::shop(|fk| fk.on_update = FkAction::Cascade);
        let fk_steps = |p: &Plan| -> Vec<TenantForeignKey> {
            p.steps
                .iter()
                .filter_map(|s| match s {
                    Step::ForeignKey(f) => Some(f.clone()),
                    _ => None,
                })
                .collect()
        };
        assert!(fk_steps(&plan_of(&cat())).is_empty(), "kept as it is");
        let p = plan_with(
            &cat(),
            &crate::analyze::Overrides {
                fix_fk_actions: true,
                ..Default::default()
            },
        );
        let f = fk_steps(&p);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].columns, ["store_id", "order_id"]);
        assert_eq!(f[0].on_update, "NO ACTION");
        assert_eq!(f[0].fixed_actions.as_deref(), Some("ON UPDATE CASCADE"));
        assert!(f[0].describe().contains("ON UPDATE CASCADE: now NO ACTION"));
        // Not done while the old key keeps its action, done once replaced.
        let mut c = cat();
        assert!(!f[0].is_done(&c));
        let items = c
            .tables
            .iter_mut()
            .find(|t| t.name.name == "items")
            .unwrap();
        let old = items
            .foreign_keys
            .iter_mut()
            .find(|k| k.name == "i_o")
            .unwrap();
        old.on_update = FkAction::NoAction;
        assert!(f[0].is_done(&c));
    }
}
