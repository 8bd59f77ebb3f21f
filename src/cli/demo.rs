//! `demo`: the seed exercise end to end.
use std::process::ExitCode;

use anyhow::Result;

use super::args::*;
use super::runtime;
use shardready::sandbox;

/// The demo's sandbox when no --dir is given: beside the default sandbox.
pub(super) fn demo_dir() -> std::path::PathBuf {
    sandbox::default_dir().with_file_name("demo-sandbox")
}

pub(super) fn demo_cmd(g: &Global, a: DemoArgs) -> Result<ExitCode> {
    use shardready::demo::{self, DemoOptions};
    if g.db.is_some() {
        anyhow::bail!(
            "the demo runs on a sandbox of its own, so --db is not used; to prepare your \
             database, run `shardready analyze --db …` then `shardready apply --db …`"
        );
    }
    // Its own directory: never the one SHARDREADY_SANDBOX_DIR names for the
    // user's sandbox (only an explicit --dir).
    let sandbox_dir = match &g.dir {
        Some(d) if !g.dir_from_env() => d.clone(),
        _ => demo_dir(),
    };
    let opts = DemoOptions {
        scale: a.scale,
        rate: shardready::workload::parse_rate(&a.rate)?,
        connections: a.connections,
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
