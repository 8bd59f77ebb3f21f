//! `--refuse-lost-lookups`: the statements of the application that would
//! lose their index when a key is rebuilt with the tenant column, as
//! blockers that name each statement and the tenant filter to add, so that
//! `plan` and `apply` stop before any change instead of choosing the key's
//! order for them (see [`crate::plan`]'s key choices).

use super::access::Statements;
use super::rules::id::RuleId;
use super::rules::Ctx;
use super::{Finding, Severity};
use crate::catalog::Table;

/// Statements named per key.
const SHOWN: usize = 5;

/// One blocker per rebuilt key whose first column known statements look
/// the table up by without the tenant column (and no other index leads
/// with it); none without `--refuse-lost-lookups`, or where `--key-order`
/// chose the table's order.
pub(crate) fn check(ctx: &Ctx, statements: &Statements) -> Vec<Finding> {
    if !ctx.overrides.refuse_lost_lookups {
        return Vec::new();
    }
    let mut out = Vec::new();
    for t in ctx.tenant_tables() {
        if t.parent.is_some() || ctx.overrides.key_order.iter().any(|k| k.table == t.name) {
            continue;
        }
        let tcol = ctx.tenant_column(t);
        for (key, first) in rebuilt_keys(t, tcol) {
            if t.index_leads.iter().any(|c| c == &first) {
                continue;
            }
            let mut losing: Vec<_> = statements
                .by_column_without(&t.name, &first, tcol)
                .collect();
            if losing.is_empty() {
                continue;
            }
            losing.sort_by_key(|k| std::cmp::Reverse(k.calls));
            let named: Vec<String> = losing
                .iter()
                .take(SHOWN)
                .map(|k| {
                    let add = super::fan_out::additions(ctx, &k.sql)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(table, _)| table == &t.name)
                        .map(|(_, filter)| filter)
                        .next()
                        .unwrap_or_else(|| format!("{}.{tcol} = <the tenant's id>", t.name.name));
                    format!("{} — add {add}", k.shown())
                })
                .collect();
            out.push(Finding {
                rule: RuleId::LookupLosesIndex,
                severity: Severity::Blocker,
                table: Some(t.name.clone()),
                object: Some(key),
                message: format!(
                    "{} known statement(s) look {} up by {first} without {tcol}; rebuilt with \
                     {tcol} first, the key would no longer serve them: {}",
                    losing.len(),
                    t.name,
                    named.join("; ")
                ),
                citus_error: None,
                fix: format!(
                    "add the tenant filter to each and run again, or choose: --key-order {t}=key-first \
                     (the key keeps {first} first) or --key-order {t}=tenant-first (apply builds an \
                     index on {first} before the swap)",
                    t = t.name
                ),
                automatic: false,
            });
        }
    }
    out
}

/// The keys the plan rebuilds with the tenant column
/// ([`Table::keys_without`]), with their first column (an expression's
/// lookups are not traced).
fn rebuilt_keys(t: &Table, tcol: &str) -> Vec<(String, String)> {
    let (constraints, indexes) = t.keys_without(tcol);
    let constraints =
        constraints.filter_map(|k| Some((k.name.clone(), k.columns.first()?.clone())));
    let indexes = indexes.filter_map(|ix| Some((ix.name.clone(), ix.columns.first()?.clone()?)));
    constraints.chain(indexes).collect()
}
