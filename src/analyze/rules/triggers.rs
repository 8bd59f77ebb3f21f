//! User triggers: Citus refuses to distribute a table that has them, and
//! to make one a reference table.
//!
//! ```text
//! ERROR:  cannot distribute relation "orders" because it has triggers
//! HINT:  Consider dropping all the triggers on "orders" and retry.
//! ```
//!
//! shardready's own sync trigger is removed by `apply` itself. A trigger
//! that only changes the row being written ([`row_local`]: Pagila's
//! `last_updated`) can stay with `--keep-triggers`: `distribute` turns on
//! `citus.enable_unsafe_triggers` for its session and Citus accepts it.
//! Others need the user: drop them or move their logic.

use crate::analyze::rules::id::RuleId;
use crate::analyze::{Finding, Severity};

use super::Ctx;

/// Prefix of the triggers shardready creates (and removes) itself.
pub const OWN_PREFIX: &str = "shardready_";

/// Built-in trigger functions that only compute columns of the row.
const ROW_LOCAL_BUILTINS: &[&str] = &[
    "tsvector_update_trigger",
    "tsvector_update_trigger_column",
    "suppress_redundant_updates_trigger",
];

/// Words of a PL/pgSQL body that reach beyond the row being written.
const REACHING_WORDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "perform",
    "execute",
    "copy",
    "notify",
    "pg_notify",
    "call",
    "lock",
    "truncate",
    "nextval",
    "setval",
    "dblink",
    "from",
];

/// Whether a trigger only changes the row being written: a BEFORE … FOR
/// EACH ROW trigger whose function is a built-in of that kind or a
/// PL/pgSQL body that reads and writes no table (no query, no dynamic
/// SQL). Such a trigger gives the same result on a shard as on one node.
pub fn row_local(tg: &crate::catalog::Trigger) -> bool {
    if !tg.before_row {
        return false;
    }
    match tg.language.as_str() {
        "internal" => ROW_LOCAL_BUILTINS.contains(&tg.function.as_str()),
        "plpgsql" => {
            let code = code_words(&tg.source);
            code.iter().any(|w| w == "new")
                && !code.iter().any(|w| REACHING_WORDS.contains(&w.as_str()))
        }
        _ => false,
    }
}

/// The lower-case words of PL/pgSQL source outside comments and string
/// literals.
fn code_words(src: &str) -> Vec<String> {
    let mut code = String::new();
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
                code.push(' ');
            }
            _ => code.push(c),
        }
    }
    code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    let converted = ctx
        .tables()
        .filter(|(_, c)| c.is_tenant() || matches!(c, crate::analyze::Class::Reference))
        .map(|(t, _)| t);
    for t in converted {
        // Row triggers of a partitioned table are cloned onto its
        // partitions under the same name: reported once, on the parent.
        let parent = t.parent.as_ref().and_then(|p| ctx.cat.table(p));
        for tg in &t.triggers {
            if parent.is_some_and(|p| p.triggers.iter().any(|x| x.name == tg.name)) {
                continue;
            }
            let own = tg.name.starts_with(OWN_PREFIX);
            let local = !own && row_local(tg);
            if local && ctx.overrides.keep_triggers {
                out.push(Finding {
                    rule: RuleId::UserTrigger,
                    severity: Severity::Warning,
                    table: Some(t.name.clone()),
                    object: Some(tg.name.clone()),
                    message: format!(
                        "trigger {} runs {}(), which only changes the row being written: kept \
                         (--keep-triggers)",
                        tg.name, tg.function
                    ),
                    citus_error: None,
                    fix: "`distribute` turns on citus.enable_unsafe_triggers for its session; \
                          Citus then creates it on every shard, where it runs as before. \
                          Later DDL on such triggers needs the same setting"
                        .into(),
                    automatic: true,
                });
                continue;
            }
            out.push(Finding {
                rule: RuleId::UserTrigger,
                severity: Severity::Blocker,
                table: Some(t.name.clone()),
                object: Some(tg.name.clone()),
                message: if own {
                    format!("shardready's sync trigger {} is still there", tg.name)
                } else {
                    format!("trigger {} runs {}()", tg.name, tg.function)
                },
                citus_error: Some(format!(
                    "cannot distribute relation \"{}\" because it has triggers",
                    t.name.name
                )),
                fix: if own {
                    "`apply` removes it once the application writes the column itself".into()
                } else if local {
                    format!(
                        "it only changes the row being written, so Citus can keep it: \
                         `shardready apply --keep-triggers` (distribute then sets \
                         citus.enable_unsafe_triggers); or drop it (DROP TRIGGER {} ON {})",
                        crate::sql::ident(&tg.name),
                        t.name.sql()
                    )
                } else {
                    format!(
                        "drop it (DROP TRIGGER {} ON {}) or move its logic to the application; \
                         Citus can keep it with citus.enable_unsafe_triggers",
                        crate::sql::ident(&tg.name),
                        t.name.sql()
                    )
                },
                automatic: own,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    /// Pagila's `last_updated` (only `NEW.last_update = …`) is kept with
    /// --keep-triggers, as a warning; a trigger writing another table is a
    /// blocker either way, and without the flag both are.
    #[test]
    fn row_local_triggers_are_kept_only_with_consent() {
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("orders")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("o_s", &["store_id"], "stores", &["store_id"])
                .row_trigger("last_updated", "last_updated")
                .trigger("audit", "audit_insert"),
        ]);
        let orders = cat.tables.iter().find(|t| t.name.name == "orders").unwrap();
        assert!(row_local(&orders.triggers[0]));
        assert!(!row_local(&orders.triggers[1]));
        let severity = |keep: bool, name: &str| {
            let o = crate::analyze::Overrides {
                keep_triggers: keep,
                ..Default::default()
            };
            run_rule(&cat, &o, check)
                .into_iter()
                .find(|f| f.object.as_deref() == Some(name))
                .map(|f| f.severity)
        };
        assert_eq!(severity(true, "last_updated"), Some(Severity::Warning));
        assert_eq!(severity(false, "last_updated"), Some(Severity::Blocker));
        assert_eq!(severity(true, "audit"), Some(Severity::Blocker));
    }

    #[test]
    fn user_and_own_triggers_once_per_hierarchy() {
        let cat = catalog(vec![
            table("stores").col("store_id", "bigint").pk(&["store_id"]),
            table("orders")
                .col("id", "bigint")
                .col("store_id", "bigint")
                .pk(&["id"])
                .fk("o_s", &["store_id"], "stores", &["store_id"])
                .fk("o_c", &["currency"], "currencies", &["code"])
                .trigger("orders_touch", "touch")
                .trigger("shardready_sync_store_id", "shardready_sync"),
            table("events")
                .col("store_id", "bigint")
                .partitioned("RANGE (at)")
                .fk("e_s", &["store_id"], "stores", &["store_id"])
                .trigger("events_audit", "audit"),
            table("events_1")
                .col("store_id", "bigint")
                .partition_of("events")
                .trigger("events_audit", "audit"),
            table("countries")
                .col("code", "text")
                .pk(&["code"])
                .trigger("c_t", "touch"),
            table("currencies")
                .col("code", "text")
                .pk(&["code"])
                .trigger("cur_t", "touch"),
        ]);
        let f = run_rule(&cat, &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (RuleId::UserTrigger, "orders".into(), s("orders_touch")),
                (
                    RuleId::UserTrigger,
                    "orders".into(),
                    s("shardready_sync_store_id")
                ),
                (RuleId::UserTrigger, "events".into(), s("events_audit")),
                (RuleId::UserTrigger, "currencies".into(), s("cur_t")),
            ],
            "a reference table's too; the partition's clone and the unrelated local table are \
             not reported"
        );
        assert!(!f[0].automatic);
        assert!(f[0]
            .fix
            .contains("DROP TRIGGER \"orders_touch\" ON \"public\".\"orders\""));
        assert!(f[1].automatic, "apply removes its own trigger");
    }
}
