//! The command line: [`args`] defines it; one file per group of commands
//! parses what it needs, calls the library and prints through `report`.

pub(crate) mod args;
mod data;
mod demo;
mod distribute;
mod prepare;
mod queries;
mod sandbox;
mod traffic;

use std::process::ExitCode;

use anyhow::Result;

use args::{Cli, Command};

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Sandbox(cmd) => sandbox::sandbox_cmd(&g, cmd),
        Command::Tailspin(cmd) => data::tailspin_cmd(&g, cmd),
        Command::Copy(args) => data::copy_cmd(&g, args),
        Command::Workload(args) => traffic::workload_cmd(&g, args),
        Command::Jobs(cmd) => traffic::jobs_cmd(&g, cmd),
        Command::Analyze(args) => prepare::analyze_cmd(&g, args),
        Command::Plan(args) => prepare::plan_cmd(&g, args),
        Command::Apply(args) => prepare::apply_cmd(&g, args),
        Command::Demo(args) => demo::demo_cmd(&g, args),
        Command::Distribute(args) => distribute::distribute_cmd(&g, args),
        Command::ScaleOut(args) => distribute::scale_out_cmd(&g, args),
        Command::Status { format } => prepare::status_cmd(&g, format),
        Command::Abort {
            lock_timeout,
            format,
        } => prepare::abort_cmd(&g, lock_timeout.into(), format),
        Command::Queries(args) => queries::queries_cmd(&g, args),
        Command::Verify { analysis, format } => prepare::verify_cmd(&g, analysis, format),
        Command::Pause => prepare::control_cmd(&g, None),
        Command::Resume {
            max_rate,
            app_p99_limit,
        } => prepare::control_cmd(&g, Some((max_rate, app_p99_limit))),
        Command::Explain { rule } => prepare::explain_cmd(rule.as_deref()),
    }
}
