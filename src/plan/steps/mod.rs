//! The step kinds: one file each, owning its description, lock class, how
//! it tells from the catalog that it is done, the actions it runs (each
//! carrying its SQL, its lock mode and whether it runs in a transaction)
//! and how it is undone. Shared SQL helpers of several kinds live here.

/// The two facts most step kinds state the same way: the table they
/// change (their `table` field) and how they affect the application.
macro_rules! table_step {
    ($impact:expr) => {
        fn table(&self) -> Option<&crate::catalog::QName> {
            Some(&self.table)
        }
        fn impact(&self) -> crate::plan::Impact {
            $impact
        }
    };
}

mod add_column;
mod analyze;
mod backfill;
mod drop_foreign_key;
mod drop_trigger;
mod foreign_key;
mod hold_autovacuum;
mod lift_foreign_key;
mod not_null;
mod swap_key;
mod sync_trigger;
mod unique_index;
mod vacuum;

pub use add_column::AddColumn;
pub use analyze::AnalyzeTables;
pub use backfill::{Backfill, BackfillCursorSql, StandbyBudget};
pub use drop_foreign_key::DropForeignKey;
pub use drop_trigger::DropTrigger;
pub use foreign_key::TenantForeignKey;
pub use hold_autovacuum::HoldAutovacuum;
pub use lift_foreign_key::LiftForeignKey;
pub use not_null::NotNull;
pub use swap_key::{CarriedView, PartitionIndex, SwapKey};
pub use sync_trigger::SyncTrigger;
pub use unique_index::UniqueIndex;
pub use vacuum::Vacuum;

use crate::analyze::Hop;
use crate::catalog::{Catalog, KeyKind, QName, Table};
use crate::sql::{ident, literal};

use super::{Action, Impact, KeyTarget, Undo};

/// What every step kind tells about itself.
pub trait StepKind {
    /// Stable id (state rows and reports key on it).
    fn id(&self) -> String;
    /// The table it changes, if one.
    fn table(&self) -> Option<&QName>;
    /// How it affects the application.
    fn impact(&self) -> Impact;
    /// One line for people.
    fn describe(&self) -> String;
    /// Whether the catalog shows its result already.
    fn is_done(&self, cat: &Catalog) -> bool;
    /// What the executor runs, in order; `plan --format sql` renders the
    /// same actions.
    fn actions(&self) -> Vec<Action>;
    /// What must be given back when a newer plan replaces this unfinished
    /// one (`apply --replan`) and the step is not done: nothing for most.
    fn on_replan(&self) -> Vec<Action> {
        Vec::new()
    }
    /// How the step is undone when a preparation is abandoned.
    fn undo(&self) -> Undo;
}

/// `stmt`, skipped when the constraint already exists (a rerun after a
/// crash between adding and validating).
pub(crate) fn unless_constraint_exists(table: &QName, constraint: &str, stmt: &str) -> String {
    format!(
        "DO $shardready$ BEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = {n} AND conrelid = {t}::regclass) THEN\n    {stmt}\n  END IF;\nEND $shardready$;",
        n = literal(constraint),
        t = literal(&table.sql()),
    )
}

/// `stmt` run only when `table` has `column` (an undo that must also hold
/// when the step adding the column never ran).
pub(crate) fn if_column_exists(table: &QName, column: &str, stmt: &str) -> String {
    format!(
        "DO $shardready$ BEGIN\n  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {t}::regclass AND attname = {c} AND NOT attisdropped) THEN\n    {stmt}\n  END IF;\nEND $shardready$;",
        c = literal(column),
        t = literal(&table.sql()),
    )
}

/// Whether the table's key (per `target`) already has exactly `columns`.
pub(crate) fn key_in_place(t: &Table, target: &KeyTarget, columns: &[String]) -> bool {
    match target {
        KeyTarget::Primary { .. } => t.primary_key().is_some_and(|k| k.columns == columns),
        KeyTarget::Unique { constraint } => t
            .keys
            .iter()
            .any(|k| &k.name == constraint && k.kind == KeyKind::Unique && k.columns == columns),
        // Expressions show as `(expr)` in `columns`.
        KeyTarget::Index { name } => t.unique_indexes.iter().any(|ix| {
            &ix.name == name
                && ix.valid
                && ix
                    .columns
                    .iter()
                    .map(|c| c.as_deref().unwrap_or("(expr)"))
                    .eq(columns.iter().map(String::as_str))
        }),
    }
}

/// `FROM p1 JOIN p2 …` and the join conditions for a derivation path; the
/// value is `alias_n.column` of the last hop.
pub(crate) fn path_joins(
    table_alias: &str,
    path: &[Hop],
    column: &str,
) -> (String, Vec<String>, String) {
    let mut from = Vec::new();
    let mut conds = Vec::new();
    let mut prev = table_alias.to_string();
    for (i, hop) in path.iter().enumerate() {
        let alias = format!("p{}", i + 1);
        from.push(format!("{} {alias}", hop.to.sql()));
        for (c, rc) in hop.columns.iter().zip(&hop.ref_columns) {
            conds.push(format!("{alias}.{} = {prev}.{}", ident(rc), ident(c)));
        }
        conds.extend(hop.when_sql(&prev));
        prev = alias;
    }
    (from.join(", "), conds, format!("{prev}.{}", ident(column)))
}

/// Where a row of `table_alias` takes its tenant from: its derivation
/// path's joins, or, when other paths back it up (`also`: a table reached
/// through one of several nullable keys), the first tenant that one of
/// them gives, in order. `from` is the joined tables (None for the
/// latter: each path is a scalar subquery in `value`), `conds` what must
/// hold for a row to have a tenant.
pub(crate) struct TenantSource {
    pub from: Option<String>,
    pub conds: Vec<String>,
    pub value: String,
}

pub(crate) fn tenant_source(
    table_alias: &str,
    path: &[Hop],
    also: &[Vec<Hop>],
    column: &str,
) -> TenantSource {
    let (from, mut conds, value) = path_joins(table_alias, path, column);
    if also.is_empty() {
        // A parent without a tenant gives none: the row is left as it is
        // (the sweep, which counts what it filled, then ends).
        conds.push(format!("{value} IS NOT NULL"));
        return TenantSource {
            from: Some(from),
            conds,
            value,
        };
    }
    let scalar = |path: &[Hop]| {
        let (from, conds, value) = path_joins(table_alias, path, column);
        format!("(SELECT {value} FROM {from} WHERE {})", conds.join(" AND "))
    };
    let value = format!(
        "coalesce({})",
        std::iter::once(path)
            .chain(also.iter().map(Vec::as_slice))
            .map(scalar)
            .collect::<Vec<_>>()
            .join(", ")
    );
    TenantSource {
        from: None,
        conds: vec![format!("{value} IS NOT NULL")],
        value,
    }
}

/// The parents a derivation path and its alternatives end at (for
/// messages): `a`, or `a or b`.
pub(crate) fn paths_end(path: &[Hop], also: &[Vec<Hop>]) -> String {
    std::iter::once(path)
        .chain(also.iter().map(Vec::as_slice))
        .map(path_end)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The parent a derivation path ends at (for messages).
pub(crate) fn path_end(path: &[Hop]) -> String {
    path.last().map(|h| h.to.to_string()).unwrap_or_default()
}

/// `"a", "b"`.
pub(crate) fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY …` with its actions, and
/// `tail` (` NOT VALID` or nothing).
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_fk_sql(
    table: &QName,
    name: &str,
    columns: &[String],
    ref_table: &QName,
    ref_columns: &[String],
    on_delete: &str,
    on_update: &str,
    tail: &str,
) -> String {
    format!(
        "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {on_delete} ON UPDATE {on_update}{tail};",
        table.sql(),
        ident(name),
        column_list(columns),
        ref_table.sql(),
        column_list(ref_columns),
    )
}

/// Whether `t` has a foreign key on `columns` to `ref_table (ref_columns)`.
pub(crate) fn has_key(
    t: &Table,
    columns: &[String],
    ref_table: &QName,
    ref_columns: &[String],
) -> bool {
    t.foreign_keys.iter().any(|fk| {
        fk.columns == columns && &fk.ref_table == ref_table && fk.ref_columns == ref_columns
    })
}

/// A brief-lock transaction of `statements`.
pub(crate) fn brief(statements: Vec<String>) -> Action {
    Action::Txn {
        statements,
        lock: crate::db::LockMode::Brief,
    }
}

/// A transaction of `statements` that never blocks the application.
pub(crate) fn non_blocking(statements: Vec<String>) -> Action {
    Action::Txn {
        statements,
        lock: crate::db::LockMode::NonBlocking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::tenant::When;

    fn hop(fk: &str, to: &str, col: &str, when: Option<&str>) -> Hop {
        Hop {
            from: QName::new("public", "payments"),
            fk: fk.into(),
            columns: vec![col.into()],
            to: QName::new("public", to),
            ref_columns: vec!["id".into()],
            when: when.map(|v| When {
                column: "owner_type".into(),
                value: v.into(),
            }),
        }
    }

    #[test]
    fn a_row_takes_the_first_tenant_a_path_gives_and_only_a_tenant() {
        let main = vec![hop("p_invoice", "invoices", "invoice_id", None)];
        // One path: the join, and no row set to a NULL tenant.
        let one = tenant_source("t", &main, &[], "shop_id");
        assert_eq!(one.from.as_deref(), Some("\"public\".\"invoices\" p1"));
        assert_eq!(
            one.conds,
            ["p1.\"id\" = t.\"invoice_id\"", "p1.\"shop_id\" IS NOT NULL"]
        );
        // Alternatives (one through a polymorphic pair's type): the first
        // tenant any gives, each a scalar subquery on the row.
        let also = vec![vec![hop(
            "owner_id:Request",
            "requests",
            "owner_id",
            Some("Request"),
        )]];
        let many = tenant_source("NEW", &main, &also, "shop_id");
        assert_eq!(many.from, None);
        assert_eq!(
            many.value,
            "coalesce((SELECT p1.\"shop_id\" FROM \"public\".\"invoices\" p1 WHERE p1.\"id\" = NEW.\"invoice_id\"), \
             (SELECT p1.\"shop_id\" FROM \"public\".\"requests\" p1 WHERE p1.\"id\" = NEW.\"owner_id\" AND NEW.\"owner_type\" = 'Request'))"
        );
        assert_eq!(many.conds, [format!("{} IS NOT NULL", many.value)]);
        assert_eq!(paths_end(&main, &also), "invoices or requests");
    }
}
