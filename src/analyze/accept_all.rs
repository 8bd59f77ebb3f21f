//! One command to accept every resolution a refusal offers: the flags of
//! each finding's suggested `shardready apply …` joined in one line
//! (a flag offered twice once; where two findings offer different paths
//! for one table, or different tenant columns, the first is taken and the
//! others named), with what each flag accepts.

use super::Finding;

/// A flag and its value, as a suggested command line gives it.
fn flags(command: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in command.split_whitespace().skip(2) {
        match out.last_mut() {
            Some(last) if !w.starts_with("--") && !last.contains(' ') => {
                last.push(' ');
                last.push_str(w);
            }
            _ => out.push(w.to_string()),
        }
    }
    out
}

/// Flags a `shardready distribute …` resolution may carry that `apply`
/// takes too (and records, so that `distribute` honours them later).
const APPLY_TAKES_TOO: [&str; 1] = ["--accept-failing-queries"];

/// The `shardready apply …` commands in `text` (between backticks), and
/// the `shardready distribute …` ones made of flags apply takes too (the
/// queries Citus will refuse, accepted at once).
fn commands(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|c| {
            c.starts_with("shardready apply ")
                || c.strip_prefix("shardready distribute ")
                    .is_some_and(|rest| {
                        rest.split_whitespace()
                            .all(|w| APPLY_TAKES_TOO.contains(&w))
                    })
        })
        .collect()
}

/// What a flag's value is chosen for, when two findings may choose
/// differently: the table of a `--path`, or the tenant column itself.
fn choice_of(flag: &str) -> Option<String> {
    let (name, value) = flag.split_once(' ')?;
    match name {
        "--path" => Some(format!(
            "--path {}",
            value.split_once('=').map_or(value, |(t, _)| t)
        )),
        "--tenant-column" => Some(name.to_string()),
        _ => None,
    }
}

/// The single line that accepts every resolution `findings` offer, and
/// one line per flag saying what it accepts; None when fewer than two
/// findings offer a command (the one offered is the line already).
pub fn accept_all(findings: &[&Finding]) -> Option<String> {
    let mut taken: Vec<(String, Vec<String>)> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    let mut offering = 0;
    for f in findings {
        let cmds = commands(&f.fix);
        if cmds.is_empty() {
            continue;
        }
        offering += 1;
        let who = format!(
            "[{}]{}",
            f.rule,
            f.table
                .as_ref()
                .map(|t| format!(" {t}"))
                .unwrap_or_default()
        );
        // A finding offering alternatives: its first command.
        for flag in flags(cmds[0]) {
            if let Some((_, by)) = taken.iter_mut().find(|(t, _)| *t == flag) {
                if !by.contains(&who) {
                    by.push(who.clone());
                }
                continue;
            }
            let choice = choice_of(&flag);
            if choice.is_some() && taken.iter().any(|(t, _)| choice_of(t) == choice) {
                others.push(format!("{flag} (for {who})"));
                continue;
            }
            taken.push((flag, vec![who.clone()]));
        }
    }
    if offering < 2 || taken.is_empty() {
        return None;
    }
    let mut out = format!(
        "To accept every resolution offered at once: `shardready apply {}`",
        taken
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (flag, by) in &taken {
        out.push_str(&format!("\n  {flag}: accepts {}", by.join(", ")));
    }
    if !others.is_empty() {
        out.push_str(&format!(
            "\n  not taken (another choice for the same thing is): {}",
            others.join(", ")
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::rules::id::RuleId;
    use crate::analyze::Severity;
    use crate::catalog::QName;

    fn finding(rule: RuleId, table: &str, fix: &str) -> Finding {
        Finding {
            rule,
            severity: Severity::Blocker,
            table: Some(QName::new("public", table)),
            object: None,
            message: "m".into(),
            citus_error: None,
            fix: fix.into(),
            automatic: false,
        }
    }

    #[test]
    fn accepting_failing_queries_is_taken_from_distribute_where_apply_takes_it_too() {
        let fs = [
            finding(
                RuleId::NonColocatedJoin,
                "rental",
                "join them on store_id too; or accept that it fails after distribution: \
                 `shardready distribute --accept-failing-queries`",
            ),
            finding(
                RuleId::UserTrigger,
                "rental",
                "`shardready apply --keep-triggers`",
            ),
            finding(
                RuleId::ShardCount,
                "rental",
                "`shardready distribute --shard-count 64`",
            ),
        ];
        let refs: Vec<&Finding> = fs.iter().collect();
        let all = accept_all(&refs).unwrap();
        assert!(
            all.starts_with(
                "To accept every resolution offered at once: `shardready apply \
                 --accept-failing-queries --keep-triggers`"
            ),
            "{all}"
        );
        assert!(!all.contains("shard-count"), "{all}");
    }

    #[test]
    fn every_offered_flag_is_joined_once_and_a_second_path_choice_is_named() {
        let fs = [
            finding(
                RuleId::FkWithoutTenant,
                "customer",
                "make it a reference table: `shardready apply --reference customer`, or drop \
                 the key: `shardready apply --drop-fk customer.customer_store_id_fkey`",
            ),
            finding(
                RuleId::FkWithoutTenant,
                "staff",
                "`shardready apply --reference staff --fix-fk-actions`",
            ),
            finding(
                RuleId::FkWithoutTenant,
                "payment",
                "`shardready apply --path payment=payment_rental_fkey --fix-fk-actions`",
            ),
            finding(
                RuleId::FkWithoutTenant,
                "payment",
                "`shardready apply --path payment=payment_staff_fkey`",
            ),
            finding(RuleId::FkWithoutTenant, "film", "by you"),
        ];
        let refs: Vec<&Finding> = fs.iter().collect();
        let line = accept_all(&refs).unwrap();
        assert!(
            line.starts_with(
                "To accept every resolution offered at once: `shardready apply --reference \
                 customer --reference staff --fix-fk-actions --path payment=payment_rental_fkey`"
            ),
            "{line}"
        );
        assert!(
            line.contains(
                "--fix-fk-actions: accepts [fk-without-tenant] staff, \
                 [fk-without-tenant] payment"
            ),
            "{line}"
        );
        assert!(
            line.contains("--path payment=payment_staff_fkey (for [fk-without-tenant] payment)"),
            "{line}"
        );
        // One finding offering a command: its own line is the one.
        assert_eq!(accept_all(&refs[..1]), None);
    }
}
