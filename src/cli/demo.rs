//! `demo`: the seed exercise end to end.
use std::process::ExitCode;

use anyhow::Result;

use super::args::*;
use super::runtime;
use shardready::sandbox;

pub(super) fn demo_cmd(g: &Global, a: DemoArgs) -> Result<ExitCode> {
    use shardready::demo::{self, DemoOptions};
    let sandbox_dir = g
        .dir
        .clone()
        .unwrap_or_else(|| sandbox::default_dir().with_file_name("demo-sandbox"));
    let opts = DemoOptions {
        scale: a.scale,
        rate: shardready::workload::parse_rate(&a.rate)?,
        connections: a.connections.max(1),
        out: a.out.clone(),
        sandbox_dir,
        keep: a.keep,
        compare_seed: a.compare_seed,
        create_orders: a.create_orders,
        settle: a.settle.into(),
        workers: a.workers,
        progress: true,
    };
    let report = runtime()?.block_on(demo::run(&opts))?;
    print!(
        "{}",
        shardready::report::text::demo_summary(&report, &a.out)
    );
    if let Some(url) = &report.sandbox_url {
        println!("the sandbox keeps running: psql '{url}'  (remove it with `shardready sandbox destroy --dir {}`)", opts.sandbox_dir.display());
    }
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
