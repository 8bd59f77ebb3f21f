//! `analyze`, `plan`, `apply`, `status`, `verify`: preparing the database.
use std::process::ExitCode;

use anyhow::Result;

use super::args::*;
use super::runtime;
use anyhow::Context;

pub(super) fn analyze_cmd(g: &Global, a: AnalyzeArgs) -> Result<ExitCode> {
    let target = g.target()?;
    let analysis = runtime()?.block_on(async {
        let client = target.connect().await?;
        let r = shardready::analyze::analyze(&client, &a.options()).await?;
        anyhow::Ok(r)
    })?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::env::var_os("NO_COLOR").is_none();
        // Its command lines with the flags given here, to copy as they are.
        print!(
            "{}",
            a.options()
                .overrides
                .complete_commands(&shardready::report::text::analysis_text(&analysis, color))
        );
    }
    Ok(if analysis.has_blockers() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) fn plan_cmd(g: &Global, a: PlanArgs) -> Result<ExitCode> {
    let target = g.target()?;
    // The data checks too (bounded, as analyze's): what they find would
    // stop apply's pre-flight, so the plan says so.
    let mut opts = a.analysis.options();
    opts.catalog_only = false;
    let (plan, blockers, estimate) = runtime()?.block_on(async {
        let client = target.connect().await?;
        let (cat, analysis) = shardready::analyze::read_with_catalog(&client, &opts).await?;
        let blocking: Vec<&shardready::analyze::Finding> = analysis
            .findings
            .iter()
            .filter(|f| f.blocks_apply())
            .collect();
        let mut blockers: Vec<String> = blocking
            .iter()
            .map(|f| format!("  {}", opts.overrides.complete_commands(&f.line())))
            .collect();
        blockers.extend(
            shardready::analyze::accept_all::accept_all(&blocking)
                .map(|l| opts.overrides.complete_commands(&l)),
        );
        let plan = shardready::plan::build(&analysis, &cat);
        use shardready::plan::estimate;
        let window = shardready::apply::ApplyOptions::default().trigger_window;
        let estimate = estimate::estimate(&plan, &cat, &estimate::Rates::default(), window)
            .against_server(&client)
            .await;
        anyhow::Ok((plan, blockers, estimate))
    })?;
    let text = match a.format {
        PlanFormat::Json => {
            // The plan as apply stores it, and the estimate beside it.
            let mut v = serde_json::to_value(&plan)?;
            v["estimate"] = serde_json::to_value(&estimate)?;
            serde_json::to_string_pretty(&v)? + "\n"
        }
        PlanFormat::Sql => {
            plan.to_sql(std::time::Duration::from(a.lock_timeout).as_millis() as u64)
        }
        PlanFormat::Text => {
            shardready::report::text::plan_text(&plan)
                + &shardready::report::text::estimate_text(&estimate)
        }
    };
    for w in &estimate.warnings {
        if a.format != PlanFormat::Text {
            eprintln!("warning: {w}");
        }
    }
    match &a.output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} steps to {}", plan.steps.len(), path.display());
        }
        None => print!("{text}"),
    }
    if !blockers.is_empty() {
        eprintln!(
            "the plan cannot complete: apply's pre-flight would stop on\n{}\nResolve each as its fix says (`shardready analyze` shows them all).",
            blockers.join("\n")
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn apply_cmd(g: &Global, a: ApplyArgs) -> Result<ExitCode> {
    use shardready::apply::{self, backfill::Pace, ApplyOptions};
    use shardready::db::LockPolicy;
    use shardready::workload::Workload;
    let mut analysis = a.analysis.options();
    analysis.catalog_only = true;
    // Relative to the application's own p99 by default, where --workload
    // measures it.
    let app_limit = a.app_p99_limit.unwrap_or(match a.workload {
        Some(_) => AppLimit::Times(1.5),
        None => AppLimit::Ms(Pace::default().app_p99_limit_ms),
    });
    if let (AppLimit::Times(f), None) = (app_limit, &a.workload) {
        anyhow::bail!(
            "--app-p99-limit {f}x is a factor of the application's p99 before apply, which only \
             --workload RATE measures here: give milliseconds instead (e.g. --app-p99-limit 15)"
        );
    }
    let mut opts = ApplyOptions {
        analyze: analysis,
        policy: LockPolicy {
            lock_timeout: a.lock_timeout.into(),
            max_wait: a.max_wait.map(Into::into),
            max_attempts: None,
            statement_timeout: None,
        },
        pace: Pace {
            batch_target: a.batch_target.into(),
            max_rate: a.max_rate,
            app_p99_limit_ms: match app_limit {
                AppLimit::Ms(ms) => ms,
                AppLimit::Times(_) => Pace::default().app_p99_limit_ms,
            },
            max_replica_lag: a.max_replica_lag.0,
            max_wal_rate: a.max_wal_rate,
            ..Pace::default()
        },
        force: a.force,
        trigger_window: a.trigger_window.into(),
        await_app: a.await_app.into(),
        replan: a.replan,
        progress: true,
        max_steps: None,
        parallel_workers: a.parallel_workers,
        backfill_via: a.backfill_via,
        fire_triggers: a.fire_triggers,
        signals: !a.no_signals,
        lookup_index: !a.analysis.no_lookup_index,
        standbys: a
            .replica
            .iter()
            .map(|u| shardready::conn::Target::parse(u))
            .collect::<Result<_, _>>()?,
    };
    let target = g.target()?;
    let run = runtime()?.block_on(async {
        let w = match &a.workload {
            Some(rate) => Some(Workload::beside(&target, rate).await?),
            None => None,
        };
        // The application alone first: its baseline, to compare the
        // application after apply with.
        let baseline = match &w {
            Some(w) => Some(traffic_window(w).await),
            None => None,
        };
        // A budget relative to the application's own p99 before apply.
        if let (AppLimit::Times(f), Some(b)) = (app_limit, &baseline) {
            if b.transactions > 0 {
                opts.pace.app_p99_limit_ms = (b.p99_ms * f).max(b.p99_ms + 1.0);
            }
            eprintln!(
                "the application's latency budget: {:.1} ms ({f}x its p99 of {:.1} ms before apply)",
                opts.pace.app_p99_limit_ms, b.p99_ms
            );
        }
        // Ctrl-C: every step is safe to stop at (the server cancels the
        // statement within a second of the connection going); say where it
        // stands and what to run next.
        let r = tokio::select! {
            r = apply::apply(&target, &opts, w.as_ref()) => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!(
                    "\ninterrupted: apply stopped; every step done so far is kept and the one \
                     it was in is safe to redo.\n  shardready apply    resumes where it stopped\n  \
                     shardready abort    takes the preparation back\n  \
                     shardready status   shows where it stands"
                );
                if let Some(w) = w {
                    w.stop().await;
                }
                return anyhow::Ok(Err(ExitCode::from(130)));
            }
        };
        let r = match (r, &w, &baseline) {
            (Ok(mut report), Some(w), Some(base)) if report.finished => {
                let after = traffic_window(w).await;
                report.after = shardready::after::AfterCheck::compare("after apply", base, &after)
                    .into_iter()
                    .collect();
                Ok(report)
            }
            (r, _, _) => r,
        };
        let wl = match w {
            Some(w) => Some(w.stop().await),
            None => None,
        };
        anyhow::Ok(Ok((r, wl)))
    })?;
    let (report, wl) = match run {
        Ok(done) => done,
        Err(code) => return Ok(code),
    };
    let report = match report {
        Ok(r) => r,
        // What the data holds stops apply, like a blocker stops analyze:
        // exit 2, with what to do.
        Err(e) if e.is_blocker() => {
            // Its command lines with the flags given here, to copy as they are.
            eprintln!(
                "error: {}",
                opts.analyze.overrides.complete_commands(&e.to_string())
            );
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(dir) = &a.report {
        let files = shardready::report::write_apply(dir, &report, wl.as_ref())
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        eprintln!("wrote {}/{}", dir.display(), files.join(", "));
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", shardready::report::text::apply_summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// How long the application runs alone before apply (its baseline) and
/// after it, to be compared.
const TRAFFIC_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

/// The application's traffic alone for [`TRAFFIC_WINDOW`].
pub(super) async fn traffic_window(
    w: &shardready::workload::Workload,
) -> shardready::after::Window {
    let from = std::time::Instant::now();
    tokio::time::sleep(TRAFFIC_WINDOW).await;
    let to = std::time::Instant::now();
    let (l, transactions, _) = w.stats_between(from, to);
    shardready::after::Window {
        seconds: to.duration_since(from).as_secs_f64(),
        transactions,
        p50_ms: l.p50_ms,
        p99_ms: l.p99_ms,
    }
}

pub(super) fn abort_cmd(
    g: &Global,
    lock_timeout: std::time::Duration,
    format: Format,
) -> Result<ExitCode> {
    use shardready::apply::{self, ApplyOptions};
    let target = g.target()?;
    let mut opts = ApplyOptions::default();
    opts.policy.lock_timeout = lock_timeout;
    let report = runtime()?.block_on(apply::abort::abort(&target, &opts))?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", shardready::report::text::abort_summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn status_cmd(g: &Global, format: Format) -> Result<ExitCode> {
    let target = g.target()?;
    let (st, dist, scale) = runtime()?.block_on(async {
        let st = shardready::apply::status(&target).await?;
        let client = target.connect().await?;
        let dist = shardready::citus::state::status(&client).await?;
        let scale = shardready::citus::scale::status(&client).await?;
        anyhow::Ok((st, dist, scale))
    })?;
    if format == Format::Json {
        // apply's status, with `distribution` and `scale_out` beside it
        // (null when they never ran).
        let mut v = serde_json::to_value(&st)?;
        v["distribution"] = serde_json::to_value(&dist)?;
        v["scale_out"] = serde_json::to_value(&scale)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", shardready::report::text::apply_status(&st));
    if let Some(d) = &dist {
        print!("{}", shardready::report::text::distribution_status(d));
    }
    if let Some(s) = &scale {
        print!("{}", shardready::report::text::scale_status(s));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause` (`resume`: None) or `resume [--max-rate] [--app-p99-limit]`
/// (Some).
pub(super) fn control_cmd(
    g: &Global,
    resume: Option<(Option<f64>, Option<f64>)>,
) -> Result<ExitCode> {
    use shardready::apply::control;
    let target = g.target()?;
    let c = runtime()?.block_on(async {
        let client = target.connect().await?;
        anyhow::Ok(match resume {
            None => control::pause(&client).await?,
            Some((rate, budget)) => control::resume(&client, rate, budget).await?,
        })
    })?;
    if c.paused {
        println!(
            "paused: the backfill stops after its current batch and no next step starts; \
             `shardready resume` goes on"
        );
    } else {
        let mut said: Vec<String> = Vec::new();
        if let Some(r) = c.max_rate {
            said.push(format!("the backfill runs at most {r:.0} rows/s"));
        }
        if let Some(ms) = c.app_p99_limit_ms {
            said.push(format!("the application's latency budget is {ms:.1} ms"));
        }
        if said.is_empty() {
            println!("resumed");
        } else {
            println!("resumed: {}", said.join("; "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn verify_cmd(g: &Global, analysis: AnalyzeTarget, format: Format) -> Result<ExitCode> {
    let target = g.target()?;
    let v = runtime()?.block_on(async {
        let client = target.connect().await?;
        let analysis = with_recorded(&client, analysis).await?;
        anyhow::Ok(shardready::verify::verify(&client, &analysis.options()).await?)
    })?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", shardready::report::text::verification(&v));
    }
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `analysis` with the resolutions `apply` recorded in its stored plan
/// added (said on stderr): `verify` and `distribute` honour them without
/// being told again.
pub(super) async fn with_recorded(
    client: &tokio_postgres::Client,
    analysis: AnalyzeTarget,
) -> Result<AnalyzeTarget> {
    let Some((plan, _)) = shardready::apply::state::load_plan(client).await? else {
        return Ok(analysis);
    };
    if plan.resolutions.is_empty() {
        return Ok(analysis);
    }
    let (analysis, taken) = analysis.with_recorded(&plan.resolutions);
    eprintln!("with the resolutions apply recorded: {}", taken.join(", "));
    Ok(analysis)
}

pub(super) fn explain_cmd(rule: Option<&str>) -> Result<ExitCode> {
    use shardready::analyze::rules::id::{rule_markdown, RuleId};
    match rule {
        Some(r) => {
            let id: RuleId = r.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            print!("{}", rule_markdown(id));
        }
        None => {
            for r in RuleId::ALL {
                println!("{:<36} {}", r.as_str(), r.doc().why);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
