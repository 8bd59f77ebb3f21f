//! Step: a composite foreign key with the tenant column in front — added
//! NOT VALID only when no row violates it, validated at once (taken away
//! again if that fails), then the old key dropped and the new one given its
//! name; no window without a constraint.

use serde::{Deserialize, Serialize};

use super::{add_fk_sql, brief, has_key, unless_constraint_exists, StepKind};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, Undo};
use crate::sql::ident;

/// A composite FK added NOT VALID, validated, then the old one dropped
/// and the new one given its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantForeignKey {
    pub table: QName,
    pub name: String,
    pub temp_name: String,
    pub columns: Vec<String>,
    pub ref_table: QName,
    pub ref_columns: Vec<String>,
    pub on_delete: String,
    pub on_update: String,
    pub replaces: Option<String>,
    /// The actions the original key had that Citus refuses, made NO ACTION
    /// at the user's request (`--fix-fk-actions`), e.g. `ON UPDATE
    /// CASCADE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_actions: Option<String>,
}

/// The ON DELETE / ON UPDATE actions a rewritten key gets.
pub struct KeyActions {
    pub on_delete: String,
    pub on_update: String,
    /// What was made NO ACTION, if anything.
    pub changed: Option<String>,
}

impl TenantForeignKey {
    /// `fk`'s actions for its tenant-column replacement: kept, or with
    /// `fix` those Citus refuses between distributed tables (ON DELETE SET
    /// NULL/DEFAULT; ON UPDATE CASCADE/SET NULL/DEFAULT) made NO ACTION.
    pub fn citus_actions(fk: &crate::catalog::ForeignKey, fix: bool) -> KeyActions {
        use crate::analyze::rules::foreign_keys::{refused_on_delete, refused_on_update};
        let mut changed = Vec::new();
        let mut on_delete = fk.on_delete.sql().to_string();
        let mut on_update = fk.on_update.sql().to_string();
        if fix && refused_on_delete(fk) {
            changed.push(format!("ON DELETE {on_delete}"));
            on_delete = "NO ACTION".into();
        }
        if fix && refused_on_update(fk) {
            changed.push(format!("ON UPDATE {on_update}"));
            on_update = "NO ACTION".into();
        }
        KeyActions {
            on_delete,
            on_update,
            changed: (!changed.is_empty()).then(|| changed.join(" and ")),
        }
    }

    /// Whether a catalog key is this step's result: its columns and
    /// actions.
    fn is_new(&self, fk: &crate::catalog::ForeignKey) -> bool {
        fk.columns == self.columns
            && fk.on_delete.sql() == self.on_delete
            && fk.on_update.sql() == self.on_update
    }

    /// Up to five rows the key would reject, as `(columns)=(values)` the
    /// way PostgreSQL names them: every column set (MATCH SIMPLE leaves a
    /// row with a NULL alone) and no row of the referenced table with those
    /// values. Reads only: it never blocks the application.
    pub fn violations_sql(&self) -> String {
        let values: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("c.{}::text", ident(c)))
            .collect();
        format!(
            "SELECT DISTINCT '(' || concat_ws(', ', {}) || ')' {} LIMIT 5",
            values.join(", "),
            crate::sql::rows_without_parent(
                &self.table.sql(),
                &self.columns,
                &self.ref_table.sql(),
                &self.ref_columns
            )
        )
    }
}

impl TenantForeignKey {
    /// What resolves rows the key would reject: fixing them, or, for a key
    /// that replaces the application's own, dropping that key.
    pub(crate) fn resolutions(&self) -> Vec<String> {
        let mut out = vec![format!(
            "fix or delete the rows, if they are mistakes (list them: {});",
            self.violations_sql().replace(" LIMIT 5", "")
        )];
        if let Some(old) = &self.replaces {
            out.push(format!(
                "if the application writes them by design, drop the key (its definition is kept \
                 and printed): `shardready apply --replan --drop-fk {}.{old}`",
                self.table
            ));
        }
        out
    }

    /// The new key under its temporary name, NOT VALID (guarded: a rerun
    /// finds it added).
    pub(crate) fn add_not_valid(&self) -> String {
        unless_constraint_exists(
            &self.table,
            &self.temp_name,
            &add_fk_sql(
                &self.table,
                &self.temp_name,
                &self.columns,
                &self.ref_table,
                &self.ref_columns,
                &self.on_delete,
                &self.on_update,
                " NOT VALID",
            ),
        )
    }

    pub(crate) fn validate_sql(&self) -> String {
        format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {};",
            self.table.sql(),
            ident(&self.temp_name)
        )
    }

    /// Takes the new key (under its temporary name) away.
    pub(crate) fn drop_new_sql(&self) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {};",
            self.table.sql(),
            ident(&self.temp_name)
        )
    }

    /// Drops the original key.
    pub(crate) fn drop_old_sql(&self) -> Option<String> {
        self.replaces.as_ref().map(|old| {
            format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {};",
                self.table.sql(),
                ident(old)
            )
        })
    }

    /// Gives the new key its final name.
    pub(crate) fn rename_sql(&self) -> Option<String> {
        (self.temp_name != self.name).then(|| {
            format!(
                "ALTER TABLE {} RENAME CONSTRAINT {} TO {};",
                self.table.sql(),
                ident(&self.temp_name),
                ident(&self.name)
            )
        })
    }

    /// What the rows a new key would reject are.
    pub(crate) const PROBLEM: &'static str = "rows with these keys have no matching row in the \
        table it references for the same tenant (cross-tenant or orphaned rows)";
}

impl StepKind for TenantForeignKey {
    fn id(&self) -> String {
        format!("foreign-key:{}.{}", self.table, self.name)
    }
    table_step!(Impact::ScanNoBlock);
    fn describe(&self) -> String {
        format!(
            "foreign key {}: {} ({}) → {} ({}){}",
            self.name,
            self.table,
            self.columns.join(", "),
            self.ref_table,
            self.ref_columns.join(", "),
            match (&self.replaces, &self.fixed_actions) {
                (Some(_), Some(was)) =>
                    format!(" (replaces the one with {was}: now NO ACTION, --fix-fk-actions)"),
                (Some(old), None) if old == &self.name =>
                    " (replaces the single-column one)".to_string(),
                (Some(old), None) => format!(" (replaces {old})"),
                (None, _) => String::new(),
            }
        )
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table).is_some_and(|t| {
            let new = t
                .foreign_keys
                .iter()
                .find(|fk| fk.name == self.name && self.is_new(fk));
            let temp_left = self.temp_name != self.name
                && t.foreign_keys.iter().any(|fk| fk.name == self.temp_name);
            let old_left = self.replaces.as_ref().is_some_and(|old| {
                t.foreign_keys
                    .iter()
                    .any(|fk| &fk.name == old && !self.is_new(fk))
            });
            // On a partition, its key may be the parent's by now
            // ([`super::LiftForeignKey`]): then it is no longer its own.
            let lifted = t.parent.is_some()
                && cat
                    .table(cat.top_parent(t))
                    .is_some_and(|p| has_key(p, &self.columns, &self.ref_table, &self.ref_columns));
            lifted || (new.is_some_and(|fk| fk.validated) && !temp_left && !old_left)
        })
    }
    /// The new key added only when no row violates it (see
    /// [`Action::Constrain`]): ADD NOT VALID (brief), VALIDATE (no block);
    /// then the old one dropped and the new one renamed (brief).
    fn actions(&self) -> Vec<Action> {
        let mut out = vec![Action::Constrain {
            table: self.table.clone(),
            constraint: self.temp_name.clone(),
            violations: self.violations_sql(),
            add: vec![self.add_not_valid()],
            validate: vec![self.validate_sql()],
            drop: vec![self.drop_new_sql()],
            problem: Self::PROBLEM.into(),
            kept: if self.replaces.is_some() {
                "the original key still holds.".into()
            } else {
                String::new()
            },
            resolve: self.resolutions(),
        }];
        let last: Vec<String> = self
            .drop_old_sql()
            .into_iter()
            .chain(self.rename_sql())
            .collect();
        if !last.is_empty() {
            out.push(brief(last));
        }
        out
    }
    /// Before it is done: the new key (NOT VALID, or validated but not yet
    /// in the old one's place) is dropped; the original key was never
    /// touched. A done step is kept by `abort` (the old key is gone).
    fn undo(&self) -> Undo {
        Undo::Actions(vec![brief(vec![self.drop_new_sql()])])
    }
}
