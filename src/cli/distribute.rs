//! `distribute`: onto Citus.
use std::process::ExitCode;

use anyhow::Result;

use super::args::*;
use super::runtime;

pub(super) fn distribute_cmd(g: &Global, a: DistributeArgs) -> Result<ExitCode> {
    use shardready::citus::{self, DistributeOptions};
    let target = g.target()?;
    let opts = DistributeOptions {
        shard_count: a.shard_count,
        concurrently: a.concurrently,
        isolate_hot_tenants: a.isolate_hot_tenants,
    };
    let mut aopts = a.analysis.options();
    aopts.catalog_only = false;
    runtime()?.block_on(async {
        let client = target.connect().await?;
        let (cat, analysis) = shardready::analyze::read_with_catalog(&client, &aopts).await?;
        if a.dry_run {
            let plan = citus::plan(&analysis, &cat, &opts);
            if a.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.to_sql());
            }
            return anyhow::Ok(());
        }
        let session = citus::lock(client).await?;
        let report = citus::distribute(
            &session,
            &target.display(),
            &analysis,
            &cat,
            &opts,
            &|step| eprintln!("  {step}"),
        )
        .await?;
        if a.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", shardready::report::text::distribution(&report));
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
