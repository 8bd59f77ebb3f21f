//! Foreign keys. Citus accepts an FK from a distributed table to a
//! reference table, or to a colocated distributed table when both sides
//! include the distribution column at the same position; never to a plain
//! local table, never from a reference table to a distributed one. With
//! the distribution column in the key, ON DELETE SET NULL/SET DEFAULT and
//! ON UPDATE SET NULL/SET DEFAULT/CASCADE are refused.
//!
//! ```text
//! ERROR:  cannot create foreign key constraint
//! DETAIL: Foreign keys are supported in two cases, either in between two
//!         colocated tables including partition column in the same ordinal
//!         in the both tables or from distributed to reference tables
//! ```

use crate::analyze::rules::id::RuleId;
use crate::analyze::tenant::Class;
use crate::analyze::{Finding, Severity};
use crate::catalog::{FkAction, ForeignKey, Table};

use super::Ctx;

pub const SHAPE_ERROR: &str = "cannot create foreign key constraint: Foreign keys are supported in two cases, either in between two colocated tables including partition column in the same ordinal in the both tables or from distributed to reference tables";
pub const TO_LOCAL_ERROR: &str = "cannot create foreign key constraint since relations are not colocated or not referencing a reference table";
pub const FROM_REFERENCE_ERROR: &str = "cannot create foreign key constraint since foreign keys from reference tables and local tables to distributed tables are not supported";
pub const ON_DELETE_ERROR: &str = "cannot create foreign key constraint: SET NULL or SET DEFAULT is not supported in ON DELETE operation when distribution key is included in the foreign key constraint";
pub const ON_UPDATE_ERROR: &str = "cannot create foreign key constraint: SET NULL, SET DEFAULT or CASCADE is not supported in ON UPDATE operation when distribution key included in the foreign constraint";

#[allow(clippy::too_many_arguments)]
fn finding(
    t: &Table,
    fk: &ForeignKey,
    rule: RuleId,
    severity: Severity,
    message: String,
    citus: Option<&str>,
    fix: String,
    automatic: bool,
) -> Finding {
    Finding {
        rule,
        severity,
        table: Some(t.name.clone()),
        object: Some(fk.name.clone()),
        message,
        citus_error: citus.map(String::from),
        fix,
        automatic,
    }
}

/// ON DELETE actions Citus refuses once the tenant column is in the key.
pub fn refused_on_delete(fk: &ForeignKey) -> bool {
    matches!(fk.on_delete, FkAction::SetNull | FkAction::SetDefault)
}

/// ON UPDATE actions Citus refuses once the tenant column is in the key.
pub fn refused_on_update(fk: &ForeignKey) -> bool {
    matches!(
        fk.on_update,
        FkAction::SetNull | FkAction::SetDefault | FkAction::Cascade
    )
}

/// The actions Citus refuses on a key between tenant tables, each with
/// what NO ACTION changes for the application, as findings: blockers, or
/// with `--fix-fk-actions` warnings that the plan rewrites them.
fn refused_actions(ctx: &Ctx, t: &Table, fk: &ForeignKey) -> Vec<Finding> {
    let mut refused = Vec::new();
    if refused_on_delete(fk) {
        refused.push((
            RuleId::FkActionOnDelete,
            ON_DELETE_ERROR,
            format!("ON DELETE {}", fk.on_delete.sql()),
            format!(
                "deleting a row of {} that rows of {} still reference fails instead of {} their {}",
                fk.ref_table,
                t.name,
                if fk.on_delete == FkAction::SetNull {
                    "clearing"
                } else {
                    "resetting"
                },
                fk.columns.join(", ")
            ),
        ));
    }
    if refused_on_update(fk) {
        refused.push((
            RuleId::FkActionOnUpdate,
            ON_UPDATE_ERROR,
            format!("ON UPDATE {}", fk.on_update.sql()),
            format!(
                "changing the key ({}) of a row of {} that rows of {} reference fails instead \
                 of reaching them",
                fk.ref_columns.join(", "),
                fk.ref_table,
                t.name
            ),
        ));
    }
    refused
        .into_iter()
        .map(|(rule, citus, what, effect)| {
            if ctx.overrides.fix_fk_actions {
                finding(
                    t,
                    fk,
                    rule,
                    Severity::Warning,
                    format!(
                        "foreign key {} uses {what}; --fix-fk-actions makes it NO ACTION",
                        fk.name
                    ),
                    None,
                    format!("behaviour changes: {effect}"),
                    true,
                )
            } else {
                finding(
                    t,
                    fk,
                    rule,
                    Severity::Blocker,
                    format!("foreign key {} uses {what}", fk.name),
                    Some(citus),
                    format!(
                        "let the plan make it NO ACTION (behaviour changes: {effect}): \
                         `shardready apply --fix-fk-actions`, or change it yourself"
                    ),
                    false,
                )
            }
        })
        .collect()
}

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = missing_root_fks(ctx);
    // Partitions too: the catalog keeps only the keys a partition declares
    // itself (its parent's copies are the parent's).
    for (t, class) in ctx.tables() {
        for fk in &t.foreign_keys {
            let Some(ref_class) = ctx
                .cat
                .table(&fk.ref_table)
                .and_then(|r| ctx.class_of(ctx.cat.top_parent(r)))
            else {
                continue;
            };
            let arrow = format!(
                "{} ({}) → {} ({})",
                t.name,
                fk.columns.join(", "),
                fk.ref_table,
                fk.ref_columns.join(", ")
            );
            match (class.is_tenant(), ref_class) {
                (true, rc) if rc.is_tenant() => {
                    let Some(r) = ctx.cat.table(&fk.ref_table) else { continue };
                    let mine = ctx.tenant_column(t);
                    let theirs = ctx.tenant_column(r);
                    if !crate::analyze::tenant::fk_aligned(fk, t, r, ctx.tenant) {
                        let to_root_key = ctx.tenant.root.as_ref() == Some(&r.name)
                            && fk.ref_columns.len() == 1
                            && fk.ref_columns[0] == theirs;
                        out.push(if to_root_key {
                            finding(
                                t,
                                fk,
                                RuleId::FkWithoutTenant,
                                Severity::Blocker,
                                format!("foreign key {} {arrow} references the tenant root through another column than {mine}", fk.name),
                                Some(SHAPE_ERROR),
                                format!("drop {} (a row may only reference its own tenant) or enforce it in the application", fk.name),
                                false,
                            )
                        } else {
                            let pair = format!(
                                "({mine}, {}) → ({theirs}, {})",
                                fk.columns.join(", "),
                                fk.ref_columns.join(", ")
                            );
                            let automatic = !crate::analyze::tenant::fk_rewrite_blocked(t, r);
                            let how = if t.kind == crate::catalog::TableKind::Partitioned {
                                format!("add {pair} NOT VALID on each partition, validate them, then declare it on {} in place of {}", t.name, fk.name)
                            } else if r.kind == crate::catalog::TableKind::Partitioned {
                                format!("replace {} by {pair} NOT VALID in the transaction that swaps the key of {}, then validate it", fk.name, r.name)
                            } else {
                                format!("add {pair} NOT VALID, validate it, then drop {}", fk.name)
                            };
                            finding(
                                t,
                                fk,
                                RuleId::FkWithoutTenant,
                                Severity::Blocker,
                                format!("foreign key {} {arrow} does not include the tenant column on both sides", fk.name),
                                Some(SHAPE_ERROR),
                                if automatic {
                                    how
                                } else {
                                    format!(
                                        "not automatic between partitioned tables (PostgreSQL would check such a key under a lock): \
                                         drop it, `shardready apply --drop-fk {}.{}`, and declare {pair} once both are prepared",
                                        t.name, fk.name
                                    )
                                },
                                automatic,
                            )
                        });
                    }
                    // With the tenant column in the key (always, once
                    // rewritten), Citus refuses these actions.
                    out.extend(refused_actions(ctx, t, fk));
                    if !fk.validated {
                        out.push(finding(
                            t,
                            fk,
                            RuleId::FkNotValidated,
                            Severity::Warning,
                            format!("foreign key {} is NOT VALID: existing rows were never checked", fk.name),
                            None,
                            "the plan validates its composite replacement (VALIDATE CONSTRAINT, writes continue)".into(),
                            true,
                        ));
                    }
                }
                (true, Class::Reference) => {}
                (true, Class::Local) => out.push(finding(
                    t,
                    fk,
                    RuleId::FkToLocal,
                    Severity::Blocker,
                    format!("foreign key {} {arrow} points at a table that stays local", fk.name),
                    Some(TO_LOCAL_ERROR),
                    format!("make {} a reference table (--reference {})", fk.ref_table, fk.ref_table),
                    false,
                )),
                (false, rc) if rc.is_tenant() => out.push(finding(
                    t,
                    fk,
                    RuleId::FkToDistributedFromNonTenant,
                    Severity::Blocker,
                    format!(
                        "foreign key {} {arrow}: a {} table may not reference a distributed table",
                        fk.name,
                        class.name()
                    ),
                    Some(FROM_REFERENCE_ERROR),
                    format!("let {} be distributed (remove the --reference/--local override) or drop the foreign key", t.name),
                    false,
                )),
                _ => {}
            }
        }
    }
    out
}

/// A tenant table whose tenant column does not reference the root: the
/// plan adds that FK (the seed's `line_items_store_id_fkey`), so a row can
/// never name a tenant that does not exist.
fn missing_root_fks(ctx: &Ctx) -> Vec<Finding> {
    let (Some(root), Some(root_key)) = (&ctx.tenant.root, &ctx.tenant.root_key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (t, class) in ctx.tables() {
        if t.parent.is_some() || &t.name == root || !class.is_tenant() {
            continue;
        }
        let col = ctx.tenant_column(t);
        let has = t.foreign_keys.iter().any(|fk| {
            &fk.ref_table == root && fk.columns == [col] && fk.ref_columns == [root_key.as_str()]
        });
        if !has {
            out.push(Finding {
                rule: RuleId::TenantFkToRoot,
                severity: Severity::Info,
                table: Some(t.name.clone()),
                object: Some(col.to_string()),
                message: format!("{col} does not reference {root}"),
                citus_error: None,
                fix: format!(
                    "add FOREIGN KEY ({col}) REFERENCES {root} ({root_key}) NOT VALID, then validate it"
                ),
                automatic: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;
    use crate::analyze::Overrides;

    #[test]
    fn tailspin_three_fks_to_rewrite() {
        let f = run_rule(&tailspin(), &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (RuleId::TenantFkToRoot, "line_items".into(), s("store_id")),
                (
                    RuleId::FkWithoutTenant,
                    "line_items".into(),
                    s("line_items_product_id_fkey")
                ),
                (
                    RuleId::FkWithoutTenant,
                    "line_items".into(),
                    s("line_items_order_id_fkey")
                ),
            ]
        );
        assert!(f.iter().all(|f| f.automatic));
        assert_eq!(f[0].severity, Severity::Info);
        assert!(f[2]
            .fix
            .contains("add (store_id, order_id) → (store_id, order_id) NOT VALID"));
        assert_eq!(f[1].citus_error.as_deref(), Some(SHAPE_ERROR));
    }

    #[test]
    fn composite_fks_already_correct() {
        assert!(run_rule(&shop(|_| {}), &Default::default(), check).is_empty());
    }

    #[test]
    fn actions_citus_refuses_and_not_valid() {
        let f = run_rule(
            &shop(|fk| {
                fk.on_delete = FkAction::SetNull;
                fk.on_update = FkAction::Cascade;
                fk.validated = false;
            }),
            &Default::default(),
            check,
        );
        assert_eq!(
            summary(&f),
            [
                (RuleId::FkActionOnDelete, "items".into(), s("i_o")),
                (RuleId::FkActionOnUpdate, "items".into(), s("i_o")),
                (RuleId::FkNotValidated, "items".into(), s("i_o")),
            ]
        );
        assert_eq!(f[0].severity, Severity::Blocker);
        assert_eq!(f[2].severity, Severity::Warning);
        assert!(
            f[1].fix.contains("`shardready apply --fix-fk-actions`")
                && f[1].fix.contains(
                    "changing the key (store_id, id) of a row of orders that rows of items"
                ),
            "{}",
            f[1].fix
        );
        // With consent: warnings the plan resolves, saying what changes.
        let fixed = run_rule(
            &shop(|fk| {
                fk.on_delete = FkAction::SetNull;
                fk.on_update = FkAction::Cascade;
            }),
            &crate::analyze::Overrides {
                fix_fk_actions: true,
                ..Default::default()
            },
            check,
        );
        assert_eq!(fixed.len(), 2);
        for f in &fixed {
            assert_eq!(f.severity, Severity::Warning);
            assert!(f.automatic && f.message.contains("--fix-fk-actions makes it NO ACTION"));
            assert!(f.fix.starts_with("behaviour changes: "), "{}", f.fix);
        }
        assert!(fixed[0]
            .fix
            .contains("fails instead of clearing their store_id, order_id"));
        // CASCADE on delete is fine.
        let f = run_rule(
            &shop(|fk| fk.on_delete = FkAction::Cascade),
            &Default::default(),
            check,
        );
        assert!(f.is_empty());
    }

    #[test]
    fn to_root_through_another_column() {
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("a")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("a_s", &["store_id"], "stores", &["store_id"]),
            table("transfers")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .col("to_store", "bigint")
                .pk(&["id"])
                .fk("t_s", &["store_id"], "stores", &["store_id"])
                .fk("t_to", &["to_store"], "stores", &["store_id"]),
        ]);
        let f = run_rule(&cat, &Default::default(), check);
        assert_eq!(
            summary(&f),
            [(RuleId::FkWithoutTenant, "transfers".into(), s("t_to"))]
        );
        assert!(!f[0].automatic);
        assert!(f[0].fix.starts_with("drop t_to"));
    }

    #[test]
    fn local_and_reference_overrides() {
        // orders kept local: tenant tables may not reference it.
        let o = Overrides {
            local: vec![q("orders")],
            ..Default::default()
        };
        let f = run_rule(&tailspin(), &o, check);
        assert!(summary(&f).contains(&(
            RuleId::FkToLocal,
            "line_items".into(),
            s("line_items_order_id_fkey")
        )));
        assert!(summary(&f).contains(&(
            RuleId::FkToDistributedFromNonTenant,
            "orders".into(),
            s("orders_store_id_fkey")
        )));
        // A lookup referenced from tenant tables is fine.
        let o = Overrides {
            reference: vec![q("products")],
            ..Default::default()
        };
        let f = run_rule(&tailspin(), &o, check);
        assert!(summary(&f).contains(&(
            RuleId::FkToDistributedFromNonTenant,
            "products".into(),
            s("products_store_id_fkey")
        )));
        assert!(!summary(&f)
            .iter()
            .any(|(_, _, o)| o.as_deref() == Some("line_items_product_id_fkey")));
    }

    #[test]
    fn self_reference_is_rewritten_with_the_tenant() {
        let cat = catalog(vec![
            table("accounts").col("id", "bigint").pk(&["id"]),
            table("categories")
                .col("account_id", "bigint")
                .col("id", "bigint")
                .col("parent_id", "bigint")
                .pk(&["account_id", "id"])
                .fk("c_a", &["account_id"], "accounts", &["id"])
                .fk_with("c_parent", &["parent_id"], "categories", &["id"], |fk| {
                    fk.on_delete = FkAction::SetNull
                }),
        ]);
        let f = run_rule(&cat, &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (RuleId::FkWithoutTenant, "categories".into(), s("c_parent")),
                (RuleId::FkActionOnDelete, "categories".into(), s("c_parent")),
            ]
        );
    }
}

#[cfg(test)]
mod partitioned_tests {
    use super::*;
    use crate::analyze::testkit::*;
    use crate::analyze::Overrides;

    /// A key declared on a partitioned table, and one from a plain table
    /// to it, are rewritten by the plan; one between two partitioned
    /// tables is left to the user, with its fix.
    #[test]
    fn keys_on_and_to_partitioned_tables() {
        let cat = catalog(vec![
            table("accounts")
                .col("account_id", "bigint")
                .pk(&["account_id"]),
            table("devices")
                .col("device_id", "bigint")
                .col("account_id", "bigint")
                .pk(&["device_id"])
                .fk("d_a", &["account_id"], "accounts", &["account_id"]),
            table("events")
                .col("event_id", "bigint")
                .col("device_id", "bigint")
                .pk(&["event_id"])
                .partitioned("HASH (event_id)")
                .fk("e_d", &["device_id"], "devices", &["device_id"]),
            table("events_0")
                .col("event_id", "bigint")
                .col("device_id", "bigint")
                .pk(&["event_id"])
                .partition_of("events"),
            table("notes")
                .col("note_id", "bigint")
                .col("event_id", "bigint")
                .pk(&["note_id"])
                .fk("n_e", &["event_id"], "events", &["event_id"]),
            table("replies")
                .col("event_id", "bigint")
                .col("reply_id", "bigint")
                .pk(&["event_id", "reply_id"])
                .partitioned("HASH (event_id)")
                .fk("r_e", &["event_id"], "events", &["event_id"]),
        ]);
        let o = Overrides {
            tenant_column: Some("account_id".into()),
            ..Default::default()
        };
        let f = run_rule(&cat, &o, check);
        let of = |name: &str| {
            f.iter()
                .find(|f| f.rule == RuleId::FkWithoutTenant && f.object.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{name}: {f:?}"))
        };
        assert!(of("e_d").automatic, "{}", of("e_d").fix);
        assert!(of("e_d").fix.contains("on each partition"));
        assert!(of("n_e").automatic, "{}", of("n_e").fix);
        assert!(of("n_e").fix.contains("swaps the key of events"));
        assert!(!of("r_e").automatic);
        assert!(
            of("r_e")
                .fix
                .contains("`shardready apply --drop-fk replies.r_e`"),
            "{}",
            of("r_e").fix
        );
    }
}
