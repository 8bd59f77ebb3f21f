//! User triggers: Citus refuses to distribute a table that has them.
//!
//! ```text
//! ERROR:  cannot distribute relation "orders" because it has triggers
//! HINT:  Consider dropping all the triggers on "orders" and retry.
//! ```
//!
//! shardready's own sync trigger is removed by `apply` itself; other
//! triggers need the user (or `citus.enable_unsafe_triggers`).

use crate::analyze::{Finding, Severity};

use super::Ctx;

/// Prefix of the triggers shardready creates (and removes) itself.
pub const OWN_PREFIX: &str = "shardready_";

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in ctx.tenant_tables() {
        for tg in &t.triggers {
            let own = tg.name.starts_with(OWN_PREFIX);
            out.push(Finding {
                rule: "user-trigger",
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
