//! Serial and identity keys. `int`/`smallint` sequences cannot hand out
//! values on the workers (Citus gives each worker a range of a bigint
//! sequence), and `int` keys run out sooner across many tenants.
//!
//! ```text
//! ERROR:  nextval(sequence) calls in worker nodes are not supported for
//!         column defaults of type int or smallint
//! ```

use crate::analyze::rules::id::RuleId;
use crate::analyze::{Finding, Severity};

use super::Ctx;

pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in ctx.tenant_tables() {
        if t.parent.is_some() {
            continue;
        }
        for c in &t.columns {
            let serial = c
                .default
                .as_deref()
                .is_some_and(|d| d.starts_with("nextval("))
                || c.identity.is_some();
            if serial && matches!(c.type_name.as_str(), "integer" | "smallint") {
                out.push(Finding {
                    rule: RuleId::IntSerial,
                    severity: Severity::Warning,
                    table: Some(t.name.clone()),
                    object: Some(c.name.clone()),
                    message: format!(
                        "{} is {} {} {} column",
                        c.name,
                        crate::analyze::article(&c.type_name),
                        c.type_name,
                        if c.identity.is_some() { "identity" } else { "serial" }
                    ),
                    citus_error: Some(
                        "nextval(sequence) calls in worker nodes are not supported for column defaults of type int or smallint".into(),
                    ),
                    fix: "prefer bigint (ALTER COLUMN ... TYPE bigint rewrites the table; not automatic); inserts through the coordinator keep working".into(),
                    automatic: false,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::testkit::*;

    #[test]
    fn int_serials_and_identities() {
        let cat = catalog(vec![
            table("stores")
                .serial("store_id", "integer")
                .pk(&["store_id"]),
            table("orders")
                .serial("id", "bigint")
                .col("store_id", "integer")
                .col("n", "smallint")
                .with(|c| c.identity = Some("d".into()))
                .pk(&["id"])
                .fk("o_s", &["store_id"], "stores", &["store_id"]),
            table("countries").serial("id", "integer").pk(&["id"]),
        ]);
        let f = run_rule(&cat, &Default::default(), check);
        assert_eq!(
            summary(&f),
            [
                (RuleId::IntSerial, "stores".into(), s("store_id")),
                (RuleId::IntSerial, "orders".into(), s("n")),
            ],
            "bigint serials are fine; countries is not a tenant table"
        );
        assert!(f.iter().all(|f| f.severity == Severity::Warning));
        assert!(f[1].message.contains("smallint identity"));
    }
}
