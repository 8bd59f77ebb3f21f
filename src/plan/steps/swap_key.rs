//! Step: make the new index the key — `DROP CONSTRAINT …, ADD … USING
//! INDEX` in one brief lock, or, for a plain unique index, drop the old one
//! concurrently and rename the new one. On a partitioned table the new
//! indexes were built on each partition; the swap makes them the
//! partitions' keys and the parent's key (or index) attaches them, in one
//! brief lock and without building anything.

use serde::{Deserialize, Serialize};

use super::{brief, column_list, key_in_place, StepKind, TenantForeignKey};
use crate::catalog::{Catalog, QName};
use crate::plan::{Action, Impact, KeyTarget, Undo};
use crate::sql::{ident, qualified};

/// Swap a key to the new index (`DROP CONSTRAINT …, ADD … USING INDEX`),
/// or, for a plain unique index, drop the old one concurrently and
/// rename the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapKey {
    pub table: QName,
    pub index: String,
    pub target: KeyTarget,
    pub columns: Vec<String>,
    /// The index tail (`USING btree (...) WHERE ...`) of an expression or
    /// partial index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// On a partitioned table: the new index of each partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionIndex>,
    /// On a partitioned table: the keys of other tables that reference the
    /// key being replaced, and their replacements. A key to a partitioned
    /// table needs a unique key of the parent, which exists only once the
    /// swap is done, so the swap carries them over: the old ones are
    /// dropped and the new ones added NOT VALID in its transaction (every
    /// new write checked throughout), after the rows were checked; then
    /// validated (no block) and given the old names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<TenantForeignKey>,
    /// The views that rely on the key being replaced (a GROUP BY of it),
    /// carried through the swap's transaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<CarriedView>,
}

/// A view that relies on the key being replaced. In the swap's
/// transaction it first becomes a placeholder with the same columns (no
/// longer relying on the key, so the key can go), then, once the new key
/// is in place, its own query with the tenant column added to its GROUP
/// BY. The view keeps its identity: what depends on it, its grants and
/// comments stay; nobody sees the placeholder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedView {
    pub name: QName,
    pub placeholder: String,
    pub recreate: String,
    /// The view's query when the plan was made, and the keys it was
    /// regrouped for: a view changed since (a deploy during a long
    /// backfill) is regrouped again from its query of the moment.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub keys: Vec<RegroupedKey>,
}

/// A key a carried view was regrouped for (see
/// [`crate::analyze::regroup::SwappedKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegroupedKey {
    pub table: QName,
    pub columns: Vec<String>,
    pub tenant: String,
}

impl CarriedView {
    /// The view regrouped for `keys`, or None when its query does not
    /// group by each of them.
    pub fn regrouped(
        view: &crate::catalog::KeyView,
        keys: &[crate::analyze::regroup::SwappedKey],
    ) -> Option<Self> {
        use crate::analyze::regroup::{regroup, Grouping};
        let query = regroup(&view.definition, keys, Grouping::Tenant)?;
        let mut v = CarriedView::new(view, &query);
        v.keys = keys
            .iter()
            .map(|k| RegroupedKey {
                table: k.table.clone(),
                columns: k.columns.to_vec(),
                tenant: k.tenant.to_string(),
            })
            .collect();
        Some(v)
    }

    /// `query`: the view's query, regrouped.
    fn new(view: &crate::catalog::KeyView, query: &str) -> Self {
        let with = if view.options.is_empty() {
            String::new()
        } else {
            format!(" WITH ({})", view.options.join(", "))
        };
        let name = view.name.sql();
        let columns = view
            .columns
            .iter()
            .map(|c| {
                format!(
                    "CAST(NULL AS {}){} AS {}",
                    c.type_sql,
                    c.collation
                        .as_ref()
                        .map(|k| format!(" COLLATE {}", k.sql()))
                        .unwrap_or_default(),
                    ident(&c.name)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        CarriedView {
            source: view.definition.clone(),
            keys: Vec::new(),
            name: view.name.clone(),
            // No options on the placeholder: it is no updatable view (a
            // check option would be refused), and the re-creation sets
            // them back.
            placeholder: format!("CREATE OR REPLACE VIEW {name} AS SELECT {columns};"),
            recreate: format!(
                "CREATE OR REPLACE VIEW {name}{with} AS {};",
                query.trim().trim_end_matches(';')
            ),
        }
    }
}

/// A partition's new unique index and the partition's copy of the key it
/// replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionIndex {
    pub table: QName,
    pub index: String,
    pub target: KeyTarget,
    /// The index tail of an expression or partial index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

impl SwapKey {
    /// The swap with its views as they are now (`cat`, read just before
    /// it runs): a view whose query changed since the plan was made is
    /// regrouped from its current query; one that is gone, or no longer
    /// relies on the key, is left alone. Err names a view that changed so
    /// that it can no longer be regrouped.
    pub fn with_current_views(&self, cat: &Catalog) -> Result<SwapKey, String> {
        let mut out = self.clone();
        out.views.clear();
        let constraint = match &self.target {
            KeyTarget::Primary { constraint } | KeyTarget::Unique { constraint } => constraint,
            KeyTarget::Index { .. } => return Ok(out),
        };
        for planned in &self.views {
            let Some(now) = cat.key_views.iter().find(|v| {
                v.name == planned.name
                    && v.keys
                        .iter()
                        .any(|(t, c)| t == &self.table && c == constraint)
            }) else {
                continue;
            };
            if planned.source.is_empty() || now.definition == planned.source {
                out.views.push(planned.clone());
                continue;
            }
            let keys: Vec<crate::analyze::regroup::SwappedKey> = planned
                .keys
                .iter()
                .map(|k| crate::analyze::regroup::SwappedKey {
                    table: &k.table,
                    columns: &k.columns,
                    tenant: &k.tenant,
                })
                .collect();
            match CarriedView::regrouped(now, &keys) {
                Some(v) => out.views.push(v),
                None => {
                    return Err(format!(
                        "view {} changed since the plan was made and no longer groups by the key it relies on; \
                         list every column of {} it selects in its GROUP BY, then run apply again",
                        planned.name, self.table
                    ))
                }
            }
        }
        Ok(out)
    }

    /// `swap`, between the views' placeholders and their re-creation.
    fn around_views(&self, swap: Vec<String>) -> Vec<String> {
        self.views
            .iter()
            .map(|v| v.placeholder.clone())
            .chain(swap)
            .chain(self.views.iter().map(|v| v.recreate.clone()))
            .collect()
    }

    /// The swap on a partitioned table, one transaction: the parent's key
    /// goes (its partitions' copies with it), each partition's new index
    /// becomes its key, then the parent's new key attaches them (an
    /// existing matching key on every partition: nothing is built).
    fn partitioned(&self) -> Vec<String> {
        let t = self.table.sql();
        let cols = column_list(&self.columns);
        let each = |kind: &'static str| {
            self.partitions.iter().filter_map(move |p| match &p.target {
                KeyTarget::Primary { constraint } | KeyTarget::Unique { constraint } => {
                    Some(format!(
                        "ALTER TABLE {} ADD CONSTRAINT {} {kind} USING INDEX {};",
                        p.table.sql(),
                        ident(constraint),
                        ident(&p.index)
                    ))
                }
                KeyTarget::Index { .. } => None,
            })
        };
        match &self.target {
            KeyTarget::Primary { constraint } | KeyTarget::Unique { constraint } => {
                let kind = if matches!(self.target, KeyTarget::Primary { .. }) {
                    "PRIMARY KEY"
                } else {
                    "UNIQUE"
                };
                let c = ident(constraint);
                std::iter::once(format!("ALTER TABLE {t} DROP CONSTRAINT {c};"))
                    .chain(each(kind))
                    .chain(std::iter::once(format!(
                        "ALTER TABLE {t} ADD CONSTRAINT {c} {kind} ({cols});"
                    )))
                    .collect()
            }
            KeyTarget::Index { name } => {
                let new = qualified(&self.table.schema, &self.index);
                let tail = self.definition.clone().unwrap_or(format!("({cols})"));
                std::iter::once(format!(
                    "CREATE UNIQUE INDEX {} ON ONLY {t} {tail};",
                    ident(&self.index)
                ))
                .chain(self.partitions.iter().map(|p| {
                    format!(
                        "ALTER INDEX {new} ATTACH PARTITION {};",
                        qualified(&p.table.schema, &p.index)
                    )
                }))
                .chain([
                    format!("DROP INDEX {};", qualified(&self.table.schema, name)),
                    format!("ALTER INDEX {new} RENAME TO {};", ident(name)),
                ])
                // Each partition's new index takes the old one's name too.
                .chain(self.partitions.iter().filter_map(|p| match &p.target {
                    KeyTarget::Index { name } => Some(format!(
                        "ALTER INDEX {} RENAME TO {};",
                        qualified(&p.table.schema, &p.index),
                        ident(name)
                    )),
                    _ => None,
                }))
                .collect()
            }
        }
    }
}

impl SwapKey {
    /// The swap with the keys referencing it carried over: the rows are
    /// checked against the new keys first (nothing changes when one would
    /// reject a row); one transaction drops the old keys, swaps and adds
    /// the new keys NOT VALID; each is validated, then renamed. When a
    /// validation fails (rows written since the check), the new key is
    /// taken away and apply stops naming the rows; a rerun adds it again
    /// through its own step once they are fixed.
    fn carrying_referrers(&self) -> Vec<Action> {
        let violations = match self.referrers.as_slice() {
            [one] => one.violations_sql(),
            many => many
                .iter()
                .map(|r| {
                    format!(
                        "(SELECT {} || ': ' || v FROM ({}) AS x(v))",
                        crate::sql::literal(&r.table.to_string()),
                        r.violations_sql()
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL "),
        };
        let add = self.around_views(
            self.referrers
                .iter()
                .filter_map(TenantForeignKey::drop_old_sql)
                .chain(self.partitioned())
                .chain(self.referrers.iter().map(TenantForeignKey::add_not_valid))
                .collect(),
        );
        let renames: Vec<String> = self
            .referrers
            .iter()
            .filter_map(TenantForeignKey::rename_sql)
            .collect();
        let mut out = vec![Action::Constrain {
            table: self.table.clone(),
            constraint: self
                .referrers
                .iter()
                .map(|r| format!("{}.{}", r.table, r.name))
                .collect::<Vec<_>>()
                .join(", "),
            violations,
            add,
            validate: self
                .referrers
                .iter()
                .map(TenantForeignKey::validate_sql)
                .collect(),
            drop: self
                .referrers
                .iter()
                .map(TenantForeignKey::drop_new_sql)
                .collect(),
            problem: TenantForeignKey::PROBLEM.into(),
            kept: "the keys referencing it are unchanged.".into(),
            resolve: self
                .referrers
                .iter()
                .flat_map(|r| r.resolutions())
                .collect(),
        }];
        if !renames.is_empty() {
            out.push(brief(renames));
        }
        out
    }
}

impl StepKind for SwapKey {
    fn id(&self) -> String {
        format!("swap-key:{}.{}", self.table, self.index)
    }
    table_step!(Impact::Brief);
    fn describe(&self) -> String {
        format!(
            "{} of {} becomes ({})",
            match &self.target {
                KeyTarget::Primary { constraint } => format!("primary key {constraint}"),
                KeyTarget::Unique { constraint } => format!("unique constraint {constraint}"),
                KeyTarget::Index { name } => format!("unique index {name}"),
            },
            self.table,
            self.columns.join(", ")
        ) + &self
            .referrers
            .iter()
            .map(|r| format!(", carrying {} of {} over", r.name, r.table))
            .collect::<String>()
            + &self
                .views
                .iter()
                .map(|v| format!(", re-creating view {} grouped by the new key", v.name))
                .collect::<String>()
    }
    fn is_done(&self, cat: &Catalog) -> bool {
        cat.table(&self.table)
            .is_some_and(|t| key_in_place(t, &self.target, &self.columns))
    }
    fn actions(&self) -> Vec<Action> {
        if !self.referrers.is_empty() {
            return self.carrying_referrers();
        }
        if !self.partitions.is_empty() {
            return vec![brief(self.around_views(self.partitioned()))];
        }
        let (t, i) = (self.table.sql(), ident(&self.index));
        match &self.target {
            KeyTarget::Primary { constraint } => vec![brief(self.around_views(vec![format!(
                "ALTER TABLE {t} DROP CONSTRAINT {c},\n  ADD CONSTRAINT {c} PRIMARY KEY USING INDEX {i};",
                c = ident(constraint),
            )]))],
            KeyTarget::Unique { constraint } => vec![brief(self.around_views(vec![format!(
                "ALTER TABLE {t} DROP CONSTRAINT {c},\n  ADD CONSTRAINT {c} UNIQUE USING INDEX {i};",
                c = ident(constraint),
            )]))],
            KeyTarget::Index { name } => vec![
                Action::Bare {
                    sql: format!(
                        "DROP INDEX CONCURRENTLY IF EXISTS {};",
                        qualified(&self.table.schema, name)
                    ),
                },
                brief(vec![format!(
                    "ALTER INDEX {} RENAME TO {};",
                    qualified(&self.table.schema, &self.index),
                    ident(name)
                )]),
            ],
        }
    }
    /// The swap is one transaction: before it is done, nothing of it
    /// happened. Once done, the original key is gone: `abort` keeps the new
    /// one (valid; past the point of no return) and lists it.
    fn undo(&self) -> Undo {
        Undo::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::regroup::SwappedKey;
    use crate::analyze::testkit::catalog;
    use crate::catalog::{KeyView, ViewColumn};

    fn view(def: &str) -> KeyView {
        let orders = QName::new("public", "orders");
        KeyView {
            name: QName::new("public", "totals"),
            materialized: false,
            definition: def.into(),
            columns: vec![ViewColumn {
                name: "id".into(),
                type_sql: "bigint".into(),
                collation: None,
            }],
            options: vec!["security_barrier=true".into()],
            owned: true,
            keys: vec![(orders.clone(), "orders_pkey".into())],
            uses: vec![(orders, "id".into())],
        }
    }

    #[test]
    fn a_view_changed_since_the_plan_is_regrouped_from_its_current_query() {
        let orders = QName::new("public", "orders");
        let id = vec!["id".to_string()];
        let keys = [SwappedKey {
            table: &orders,
            columns: &id,
            tenant: "store_id",
        }];
        let planned = view("SELECT o.id, o.note FROM public.orders o GROUP BY o.id");
        let swap = SwapKey {
            table: orders.clone(),
            index: "orders_pkey_shardready".into(),
            target: KeyTarget::Primary {
                constraint: "orders_pkey".into(),
            },
            columns: vec!["store_id".into(), "id".into()],
            definition: None,
            partitions: Vec::new(),
            referrers: Vec::new(),
            views: vec![CarriedView::regrouped(&planned, &keys).unwrap()],
        };
        let v = &swap.views[0];
        assert!(
            v.placeholder.eq(
                "CREATE OR REPLACE VIEW \"public\".\"totals\" AS SELECT CAST(NULL AS bigint) AS \"id\";"
            ),
            "{}",
            v.placeholder
        );
        assert!(
            v.recreate.contains("WITH (security_barrier=true)"),
            "{}",
            v.recreate
        );
        let mut cat = catalog(Vec::new());
        // Unchanged: as planned.
        cat.key_views = vec![planned.clone()];
        assert_eq!(swap.with_current_views(&cat).unwrap(), swap);
        // Changed by a deploy: its current query, regrouped.
        cat.key_views = vec![view(
            "SELECT o.id, upper(o.note) AS note FROM public.orders o GROUP BY o.id",
        )];
        let now = swap.with_current_views(&cat).unwrap();
        let sql = &now.views[0].recreate;
        assert!(
            sql.contains("upper") && sql.contains("GROUP BY o.id, o.store_id"),
            "{sql}"
        );
        // Changed so that it cannot be regrouped: said, before the swap.
        cat.key_views = vec![view("SELECT o.id, o.note FROM public.orders o")];
        assert!(swap
            .with_current_views(&cat)
            .unwrap_err()
            .contains("changed since"));
        // Gone: nothing to carry.
        cat.key_views.clear();
        assert!(swap.with_current_views(&cat).unwrap().views.is_empty());
    }
}
