//! `distribute`: onto Citus.
use std::process::ExitCode;

use std::time::Duration;

use anyhow::Result;
use shardready::after::AfterCheck;
use shardready::analyze::fan_out;
use shardready::stat_statements::{self, Comparison, Snapshot};

use super::args::*;
use super::runtime;

pub(super) fn distribute_cmd(g: &Global, a: DistributeArgs) -> Result<ExitCode> {
    use shardready::citus::{self, DistributeOptions};
    use shardready::workload::Workload;
    let target = g.target()?;
    let mut opts = DistributeOptions {
        shard_count: a.shard_count,
        isolate_hot_tenants: a.isolate_hot_tenants,
        statement_timeout: Some(a.statement_timeout.into())
            .filter(|d: &std::time::Duration| !d.is_zero()),
        request: if a.concurrently {
            citus::ModeRequest::Concurrently
        } else if a.blocking {
            citus::ModeRequest::Blocking
        } else {
            citus::ModeRequest::Auto
        },
        ..Default::default()
    };
    runtime()?.block_on(async {
        let client = target
            .with_application_name(citus::APPLICATION_NAME)
            .connect()
            .await?;
        let mut aopts = super::prepare::with_recorded(&client, a.analysis.clone())
            .await?
            .options();
        aopts.catalog_only = false;
        // The application's statements are counted from here: the window
        // ends before distributing (at least FAN_OUT_WINDOW later).
        let first = stat_statements::snapshot(&client).await.ok();
        // Keys an interrupted distribute dropped are planned (and analyzed)
        // as they were: the rerun re-adds them.
        if !a.dry_run {
            citus::clean_up_leftovers(&client).await?;
        }
        let saved = citus::state::saved_fks(&client).await?;
        let mut cat = shardready::catalog::Catalog::read(&client)
            .await
            .map_err(shardready::db::DbError::ctx("cannot read the catalog"))?;
        for k in citus::state::restore_into(&mut cat, &saved) {
            eprintln!("  foreign key {k} was dropped by an interrupted distribute: re-adding it");
        }
        let analysis = shardready::analyze::analyze_read(&client, &cat, &aopts).await?;
        if a.dry_run {
            (opts.concurrently, opts.mode_reason, opts.copy_blocking) =
                citus::choose_mode(&client, &analysis, &cat, &opts, &saved, &|s| {
                    eprintln!("  {s}")
                })
                .await?;
            let plan = citus::plan(&analysis, &cat, &opts);
            if a.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.to_sql());
            }
            return anyhow::Ok(ExitCode::SUCCESS);
        }
        citus::check_coordinator(&client, &target.display()).await?;
        // What Citus would refuse stops it before anything (exit 2, like
        // apply's pre-flight).
        let blockers = citus::blockers(&analysis);
        if !blockers.is_empty() {
            eprintln!("error: {}", citus::CitusError::Blocked(blockers));
            return anyhow::Ok(ExitCode::from(2));
        }
        // Statements that will run on every shard, still sent at a
        // meaningful rate: the application is not ready (exit 2).
        let window = stat_statements::window(&client, first, FAN_OUT_WINDOW).await;
        if let Err(why) = &window {
            eprintln!("  the application's statements are not checked for fan-out: {why}");
        }
        let listing = fan_out::list(&client, &cat, &aopts.overrides, &window, false).await?;
        let blocking = listing.blocking(&a.allow_multi_shard);
        if !blocking.is_empty() {
            eprintln!("error: {}", fan_out_refusal(&blocking, listing.window_s));
            return anyhow::Ok(ExitCode::from(2));
        }
        for f in listing.blocking(&[]) {
            eprintln!(
                "  accepted (--allow-multi-shard): {} runs on every shard, {:.1} calls/s: {}",
                f.id,
                f.calls_per_s.unwrap_or(0.0),
                f.statement
            );
        }
        let session = citus::lock(client).await?;
        // The application's traffic starts first: the choice of mode
        // watches for it.
        let traffic = match &a.workload {
            Some(rate) => Some(Workload::beside(&target, rate).await?),
            None => None,
        };
        // The application before: its traffic alone (--workload) and its
        // statements, to compare with after.
        let (baseline, before) = match &traffic {
            Some(w) => {
                // Its connections ramp up first.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let s = stat_statements::snapshot(&session).await;
                let base = super::prepare::traffic_window(w).await;
                let e = stat_statements::snapshot(&session).await;
                (Some(base), s.and_then(|s| e.map(|e| (s, e))))
            }
            None => (None, window),
        };
        // The database's own signals, sampled beside it (2 s of baseline
        // first).
        let signals = shardready::apply::signals::Signals::start(
            &target,
            std::time::Instant::now(),
            Vec::new(),
        )
        .await
        .ok();
        let result = citus::distribute_in_chosen_mode(
            &session,
            &target,
            &analysis,
            &cat,
            &mut opts,
            &saved,
            &|step| eprintln!("  {step}"),
        )
        .await;
        let (after, statements) = if result.is_ok() {
            application_after(&target, &traffic, &baseline, &before, "after distribution").await
        } else {
            (Vec::new(), None)
        };
        let felt = match traffic {
            Some(w) => Some(w.stop().await.summary),
            None => None,
        };
        if let Some(s) = &felt {
            eprint!("{}", shardready::report::text::workload_summary(s));
        }
        let signals = match signals {
            Some(s) => Some(s.stop().await),
            None => None,
        };
        let mut report = match result {
            // Rows without a parent: a finding about the data, with the
            // query that lists them (exit 2, like analyze's blockers).
            Err(e @ citus::CitusError::Orphans { .. }) => {
                eprintln!("error: {e}");
                return anyhow::Ok(ExitCode::from(2));
            }
            r => r?,
        };
        report.workload = felt;
        report.signals = signals;
        report.application_after = after;
        report.statements_after = statements;
        if a.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", shardready::report::text::distribution(&report));
            if let Some(sig) = &report.signals {
                print!("{}", shardready::report::text::signals_line(sig));
            }
            print!(
                "{}",
                shardready::report::text::application_after(
                    "distribution",
                    &report.application_after,
                    report.statements_after.as_ref()
                )
            );
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// How long `distribute` counts the application's statements before it
/// starts (and after it finishes).
const FAN_OUT_WINDOW: Duration = Duration::from_secs(3);

/// Why `distribute` does not start: the statements, what to add to each,
/// and how to accept them.
fn fan_out_refusal(blocking: &[&fan_out::FanOut], window_s: f64) -> String {
    let mut out = format!(
        "the application still sends statements that will run on every shard once \
         distributed ({} call/s or more over the last {window_s:.0} s):",
        fan_out::MEANINGFUL_CALLS_PER_S
    );
    for f in blocking {
        out.push_str(&format!(
            "\n  {} ({:.1} calls/s): {}",
            f.id,
            f.calls_per_s.unwrap_or(0.0),
            f.statement
        ));
        for add in &f.add {
            out.push_str(&format!("\n    add: {add}"));
        }
    }
    let ids: Vec<&str> = blocking.iter().map(|f| f.id.as_str()).collect();
    out.push_str(&format!(
        "\nUpdate them in the application first (`shardready queries` tracks them), or accept \
         that they run on every shard: shardready distribute --allow-multi-shard={} (or all)",
        ids.join(",")
    ));
    out
}

/// The application after a step beside before it: its traffic's window
/// (with `--workload`: [`AfterCheck`]) and its statements' mean times in
/// pg_stat_statements, when any ran before.
async fn application_after(
    target: &shardready::conn::Target,
    traffic: &Option<shardready::workload::Workload>,
    baseline: &Option<shardready::after::Window>,
    before: &Result<(Snapshot, Snapshot), stat_statements::Unavailable>,
    phase: &str,
) -> (Vec<AfterCheck>, Option<Comparison>) {
    let before = before.as_ref().map(|(a, b)| a.until(b)).unwrap_or_default();
    let client = match before.is_empty() {
        true => None,
        false => target.connect().await.ok(),
    };
    // The traffic's window after (--workload), or a window of the
    // statements alone.
    let work = async {
        match (traffic, baseline) {
            (Some(w), Some(base)) => {
                let after = super::prepare::traffic_window(w).await;
                AfterCheck::compare(phase, base, &after)
                    .into_iter()
                    .collect()
            }
            _ => {
                if client.is_some() {
                    tokio::time::sleep(FAN_OUT_WINDOW).await;
                }
                Vec::new()
            }
        }
    };
    match &client {
        Some(c) => {
            let (checks, after) = stat_statements::during(c, work).await;
            let statements = after.ok().map(|a| Comparison::of(&before, &a, 5));
            (checks, statements)
        }
        None => (work.await, None),
    }
}

pub(super) fn scale_out_cmd(g: &Global, a: ScaleOutArgs) -> Result<ExitCode> {
    use shardready::citus::{self, scale};
    use shardready::report::PhaseRow;
    use shardready::workload::Workload;
    let target = g.target()?;
    let opts = scale::ScaleOptions {
        add: a.add.clone(),
        drain_coordinator: a.drain_coordinator,
        mode: match a.mode {
            ScaleMode::Auto => scale::TransferMode::Auto,
            ScaleMode::Logical => scale::TransferMode::Logical,
            ScaleMode::BlockWrites => scale::TransferMode::BlockWrites,
        },
        tune: a.tune,
        statement_timeout: Some(a.statement_timeout.into())
            .filter(|d: &std::time::Duration| !d.is_zero()),
        pause_above_ms: std::time::Duration::from(a.pause_above).as_secs_f64() * 1000.0,
        ..Default::default()
    };
    runtime()?.block_on(async {
        let client = target.connect().await?;
        // The pre-flight first, before the traffic or the signals touch
        // anything: what is missing stops it here (exit 2), nothing changed.
        let (resolved, _) = scale::resolve(&client, &opts).await?;
        let pre = scale::preflight(&client, &target, &resolved).await?;
        if a.check || !pre.problems.is_empty() {
            if a.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&pre)?);
            } else {
                print!("{}", shardready::report::text::scale_preflight(&pre));
            }
            return anyhow::Ok(if pre.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
        let session = citus::lock(client).await?;
        let t0 = std::time::Instant::now();
        // The application's traffic runs alone first: its "before", with
        // its statements in pg_stat_statements.
        let settle = std::time::Duration::from_secs(5);
        let s0 = stat_statements::snapshot(&session).await.ok();
        let traffic = match &a.workload {
            Some(rate) => {
                let w = Workload::beside(&target, rate).await?;
                tokio::time::sleep(settle).await;
                Some(w)
            }
            None => None,
        };
        let before = stat_statements::window(&session, s0, FAN_OUT_WINDOW).await;
        let signals = if a.no_signals {
            None
        } else {
            shardready::apply::signals::Signals::start(&target, t0, Vec::new())
                .await
                .ok()
        };
        let mut pressures: Vec<&dyn shardready::apply::Pressure> = Vec::new();
        if let Some(w) = &traffic {
            pressures.push(w);
        }
        if let Some(s) = &signals {
            pressures.push(s);
        }
        let from = std::time::Instant::now();
        let result = scale::scale_out(&session, &target, &opts, &pressures, t0, &|s| {
            eprintln!("  {s}")
        })
        .await;
        let to = std::time::Instant::now();
        let mut phases = Vec::new();
        let ran_before = before.as_ref().map(|(a, b)| a.until(b)).unwrap_or_default();
        let after = async {
            if result.is_ok() && (traffic.is_some() || !ran_before.is_empty()) {
                tokio::time::sleep(if traffic.is_some() {
                    settle
                } else {
                    FAN_OUT_WINDOW
                })
                .await;
            }
        };
        let ((), ran_after) = stat_statements::during(&session, after).await;
        let statements = match (result.is_ok() && !ran_before.is_empty(), ran_after) {
            (true, Ok(after)) => Some(Comparison::of(&ran_before, &after, 5)),
            _ => None,
        };
        if let Some(w) = &traffic {
            phases = vec![
                PhaseRow::measure(w, t0, "before", "", w.started(), from),
                PhaseRow::measure(w, t0, "scale-out", "citus_move_shard_placement", from, to),
                PhaseRow::measure(w, t0, "after", "", to, std::time::Instant::now()),
            ];
        }
        let wl = match traffic {
            Some(w) => Some(w.stop().await),
            None => None,
        };
        let signals = match signals {
            Some(s) => Some(s.stop().await),
            None => None,
        };
        if let Some(w) = &wl {
            eprint!("{}", shardready::report::text::workload_summary(&w.summary));
        }
        let mut report = match result {
            Ok(r) => r,
            Err(e @ citus::CitusError::Prerequisites(_)) => {
                eprintln!("error: {e}");
                return anyhow::Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e.into()),
        };
        report.workload = wl.as_ref().map(|w| w.summary.clone());
        if let [base, _, after] = phases.as_slice() {
            report.application_after =
                AfterCheck::compare("after scale-out", &base.window(), &after.window())
                    .into_iter()
                    .collect();
        }
        report.phases = phases;
        report.signals = signals;
        report.statements_after = statements;
        if let Some(dir) = &a.report {
            let files = shardready::report::write_scale_out(dir, &report, wl.as_ref())
                .map_err(|e| anyhow::anyhow!("cannot write the report: {e}"))?;
            eprintln!("report: {} in {}", files.join(", "), dir.display());
        }
        if a.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", shardready::report::text::scale_out(&report));
            if let Some(sig) = &report.signals {
                print!("{}", shardready::report::text::signals_line(sig));
            }
            print!(
                "{}",
                shardready::report::text::application_after(
                    "scale-out",
                    &report.application_after,
                    report.statements_after.as_ref()
                )
            );
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
