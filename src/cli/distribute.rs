//! `distribute`: onto Citus.
use std::process::ExitCode;

use anyhow::Result;

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
    let mut aopts = a.analysis.options();
    aopts.catalog_only = false;
    runtime()?.block_on(async {
        let client = target
            .with_application_name(citus::APPLICATION_NAME)
            .connect()
            .await?;
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
        let session = citus::lock(client).await?;
        // The application's traffic starts first: the choice of mode
        // watches for it.
        let traffic = match &a.workload {
            Some(rate) => Some(Workload::beside(&target, rate).await?),
            None => None,
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
        if a.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", shardready::report::text::distribution(&report));
            if let Some(sig) = &report.signals {
                print!("{}", shardready::report::text::signals_line(sig));
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
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
        // The application's traffic runs alone first: its "before".
        let settle = std::time::Duration::from_secs(5);
        let traffic = match &a.workload {
            Some(rate) => {
                let w = Workload::beside(&target, rate).await?;
                tokio::time::sleep(settle).await;
                Some(w)
            }
            None => None,
        };
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
        if let Some(w) = &traffic {
            if result.is_ok() {
                tokio::time::sleep(settle).await;
            }
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
        report.phases = phases;
        report.signals = signals;
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
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
