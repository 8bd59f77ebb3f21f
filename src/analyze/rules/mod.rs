//! The rules Citus enforces, one file per rule family. Each family is a
//! pure function of the catalog and the classification that returns
//! [`Finding`]s; each documents, on top, what Citus refuses and why.

pub(crate) mod column;
pub(crate) mod dependents;
pub(crate) mod foreign_keys;
pub mod id;
pub(crate) mod keys;
pub(crate) mod no_key;
pub(crate) mod partitioning;
pub(crate) mod sequences;
pub(crate) mod triggers;

use crate::analyze::tenant::{has_tenant, tenant_column_of, Class, Classified, Tenant};
use crate::analyze::Finding;
use crate::catalog::{Catalog, QName, Table};

/// What every rule sees.
pub struct Ctx<'a> {
    pub cat: &'a Catalog,
    pub tenant: &'a Tenant,
    pub classes: &'a [Classified],
    /// The user's resolutions: `--fix-fk-actions` (refused FK actions are
    /// rewritten, no longer blockers), `--keep-triggers` (row-local
    /// triggers stay), `--accept-failing-queries` (joins Citus refuses are
    /// warnings).
    pub overrides: &'a crate::analyze::Overrides,
    /// The user functions that read tenant tables (the query audit's,
    /// computed once).
    pub reading_functions: std::sync::OnceLock<std::collections::BTreeSet<String>>,
}

impl<'a> Ctx<'a> {
    pub fn class_of(&self, t: &QName) -> Option<&'a Class> {
        self.classes
            .iter()
            .find(|c| &c.table == t)
            .map(|c| &c.class)
    }
    /// Tables (partitions included, through their parent) and their class.
    pub fn tables(&self) -> impl Iterator<Item = (&'a Table, &'a Class)> + '_ {
        self.cat
            .tables
            .iter()
            .filter_map(move |t| self.class_of(self.cat.top_parent(t)).map(|c| (t, c)))
    }
    /// Tables that will be distributed by the tenant column.
    pub fn tenant_tables(&self) -> impl Iterator<Item = &'a Table> + '_ {
        self.tables().filter(|(_, c)| c.is_tenant()).map(|(t, _)| t)
    }
    /// The tenant column's name in `t` (also for tables that get it added).
    pub fn tenant_column(&self, t: &Table) -> &'a str {
        tenant_column_of(t, self.tenant)
    }
    pub fn has_tenant(&self, t: &Table) -> bool {
        has_tenant(t, self.tenant)
    }
}

/// Runs every rule family.
pub fn check_all(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(keys::check(ctx));
    out.extend(dependents::check(ctx));
    out.extend(foreign_keys::check(ctx));
    out.extend(column::check(ctx));
    out.extend(triggers::check(ctx));
    out.extend(partitioning::check(ctx));
    out.extend(sequences::check(ctx));
    out.extend(no_key::check(ctx));
    // A partition is shown with its parent, the table the user prepares
    // and Citus distributes; the message names the partition.
    for f in &mut out {
        let Some(t) = f.table.as_ref().and_then(|q| ctx.cat.table(q)) else {
            continue;
        };
        if t.parent.is_some() {
            f.message = format!("partition {}: {}", t.name, f.message);
            f.table = Some(ctx.cat.top_parent(t).clone());
        }
    }
    out
}
