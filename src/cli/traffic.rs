//! `workload` and `jobs`: the application's traffic and pg_cron jobs.
use std::process::ExitCode;

use anyhow::Result;

use super::args::*;
use super::runtime;
use anyhow::{bail, Context};

pub(super) fn workload_cmd(g: &Global, a: WorkloadArgs) -> Result<ExitCode> {
    use shardready::workload::{self, Mode, Workload, WorkloadConfig};
    let rate = workload::parse_rate(&a.rate)?;
    let target = g.target()?;
    let rt = runtime()?;
    if a.mode == Mode::Client && (a.once.is_some() || a.schedule) {
        bail!("--once and --schedule run the seed's plpgsql function: add --mode server");
    }
    if let Some(n) = a.once {
        let took = rt.block_on(workload::time_create_orders(&target, n, a.store_id))?;
        if a.format == Format::Json {
            println!(
                "{}",
                serde_json::json!({"batch_size": n, "seconds": took.as_secs_f64()})
            );
        } else {
            println!("SELECT create_orders({n}); -- {:.1} s", took.as_secs_f64());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.schedule {
        let per_min = (rate * 60.0).round() as i64;
        let id = rt.block_on(async {
            let client = target.connect().await?;
            anyhow::Ok(workload::schedule_server(&client, per_min, a.store_id).await?)
        })?;
        println!(
            "scheduled job {id} `create_orders`: SELECT create_orders({per_min}); every minute \
             (stop it with `shardready jobs unschedule create_orders`)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let duration = std::time::Duration::from(a.duration);
    let cfg = WorkloadConfig {
        rate,
        duration: (!duration.is_zero()).then_some(duration),
        connections: a.connections.max(1),
        mode: a.mode,
        store_id: a.store_id,
        batch: a.batch.max(1),
        seed: a.seed,
        live: true,
    };
    let report = rt.block_on(async {
        let w = Workload::start(&target, cfg).await?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        while !w.is_finished() {
            tokio::select! {
                _ = &mut ctrl_c => return anyhow::Ok(w.stop().await),
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
        anyhow::Ok(w.wait().await)
    });
    let report = report?;
    if let Some(path) = &a.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report.summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &a.timeline {
        std::fs::write(path, report.timeline_csv())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let s = &report.summary;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        print!("{}", shardready::report::text::workload_summary(s));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn jobs_cmd(g: &Global, cmd: JobsCmd) -> Result<ExitCode> {
    use shardready::cron;
    let target = g.target()?;
    runtime()?.block_on(async {
        let client = target.connect().await?;
        match cmd {
            JobsCmd::List { format } => {
                let jobs = cron::list(&client).await?;
                if format == Format::Json {
                    println!("{}", serde_json::to_string_pretty(&jobs)?);
                } else {
                    print!("{}", shardready::report::text::cron_jobs(&jobs));
                }
            }
            JobsCmd::Schedule {
                name,
                cron: expr,
                command,
            } => {
                let id = cron::schedule(&client, &name, &expr, &command).await?;
                println!("scheduled job {id} `{name}`: {expr}  {command}");
            }
            JobsCmd::Unschedule { name } => {
                cron::unschedule(&client, &name).await?;
                println!("unscheduled `{name}`");
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
