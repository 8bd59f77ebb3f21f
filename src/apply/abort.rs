//! `abort`: takes an unfinished preparation back, online and lock-safe.
//! Helpers go (sync triggers with their functions and counters, NOT VALID
//! keys, indexes not swapped in, NOT NULL checks), autovacuum is given
//! back as its owner left it, and the state is removed. The tenant column
//! stays (an application may write it already) and so does everything past
//! the point of no return — a key swapped in or a composite key that
//! replaced the original — listed, with the rest of the plan left to
//! `apply`. Every undo statement is idempotent, so abort can be rerun after
//! a kill.

use serde::Serialize;

use super::{execute, give_back, session, state, ApplyError, ApplyOptions};
use crate::catalog::Catalog;
use crate::conn::Target;
use crate::plan::{Step, Undo};

/// What `abort` did and left.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AbortReport {
    /// There was an unfinished plan to take back.
    pub had_plan: bool,
    /// Steps undone (their ids).
    pub undone: Vec<String>,
    /// What stays, and why (one line each).
    pub kept: Vec<String>,
    /// The state (the `shardready` schema) was removed: nothing of
    /// shardready is left.
    pub state_removed: bool,
}

/// Past the point of no return: the original key is gone.
fn irreversible(step: &Step, cat: &Catalog) -> bool {
    matches!(step, Step::SwapKey(_) | Step::ForeignKey(_)) && step.is_done(cat)
}

/// Takes the stored, unfinished plan back (see the module doc).
pub async fn abort(target: &Target, opts: &ApplyOptions) -> Result<AbortReport, ApplyError> {
    let session = session(target, opts).await?;
    let Some((plan, finished)) = state::load_plan(&session).await? else {
        session.unlock().await;
        return Ok(AbortReport::default());
    };
    if finished {
        session.unlock().await;
        return Err(ApplyError::Other {
            context: "nothing to abort".into(),
            detail: "the stored plan finished; its keys are in place (`shardready verify`)".into(),
        });
    }
    let read = || async {
        Catalog::read(&session)
            .await
            .map_err(|e| ApplyError::db("cannot read the catalog", e))
    };
    let mut report = AbortReport {
        had_plan: true,
        ..Default::default()
    };
    // Autovacuum first: only the plan's VACUUM step knows the owner's
    // setting.
    give_back(&session, &plan, &read().await?, &opts.policy).await?;
    let cat = read().await?;
    let past: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| irreversible(s, &cat))
        .collect();
    for s in &past {
        report
            .kept
            .push(format!("{} (done: the original key is gone)", s.describe()));
    }
    for step in plan.steps.iter().rev() {
        // Done above (give_back).
        if irreversible(step, &cat) || matches!(step, Step::HoldAutovacuum(_)) {
            continue;
        }
        // Tables whose keys stay: those changed past the point of no
        // return, and those a kept composite key references.
        let table_kept = step.table().is_some_and(|t| {
            past.iter().any(|p| {
                p.table() == Some(t) || matches!(p, Step::ForeignKey(fk) if &fk.ref_table == t)
            })
        });
        // Not added, not dropped: nothing happened to keep or undo.
        if matches!(step, Step::AddColumn(_) | Step::DropForeignKey(_)) && !step.is_done(&cat) {
            continue;
        }
        let keep = match step {
            // An application may write the column already: it stays.
            Step::AddColumn(a) => Some(format!(
                "column {}.{} (drop it with `ALTER TABLE {} DROP COLUMN {};` once the \
                 application no longer writes it)",
                a.table,
                a.column,
                a.table.sql(),
                crate::sql::ident(&a.column)
            )),
            Step::DropForeignKey(d) => Some(format!(
                "foreign key {} on {} stays dropped (restore it with `{}` once no row violates it)",
                d.name,
                d.table,
                d.restore_sql()
            )),
            // With keys swapped on the table, its NOT NULL, indexes and sync
            // trigger are what those keys and the application rely on.
            Step::NotNull(_) | Step::UniqueIndex(_) | Step::SyncTrigger(_) if table_kept => {
                Some(format!("{} (the keys kept rely on it)", step.describe()))
            }
            _ => None,
        };
        if let Some(k) = keep {
            report.kept.push(k);
            continue;
        }
        match step.undo() {
            Undo::Actions(actions) => {
                for a in &actions {
                    execute(&session, a, &opts.policy).await?;
                }
                report.undone.push(step.id());
            }
            Undo::Nothing => {}
            Undo::Todo(what) => report
                .kept
                .push(format!("{} (not undone: {what})", step.describe())),
        }
    }
    if past.is_empty() {
        state::drop_schema(&session).await?;
        report.state_removed = true;
    }
    session.unlock().await;
    Ok(report)
}
