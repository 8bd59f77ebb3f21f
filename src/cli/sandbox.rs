//! `sandbox start|stop|status|url|psql|destroy`.
use std::process::ExitCode;

use anyhow::Result;

use super::args::*;
use anyhow::bail;
use shardready::sandbox::{self, Sandbox, SandboxOptions};

pub(super) fn sandbox_cmd(g: &Global, cmd: SandboxCmd) -> Result<ExitCode> {
    if g.db.is_some() {
        bail!(
            "--db means nothing to `sandbox` (it works on the sandbox in --dir, or \
             SHARDREADY_SANDBOX_DIR's); leave it out"
        );
    }
    let dir = g.sandbox_dir();
    match cmd {
        SandboxCmd::Start(a) => {
            let mut opts = SandboxOptions::new(&dir);
            opts.pg_bin = a.pg_bin;
            opts.os_user = a.os_user;
            opts.port = a.port;
            opts.workers = a.workers;
            opts.nodes = a.nodes;
            opts.citus = if a.no_citus {
                sandbox::CitusChoice::Off
            } else if a.workers > 0 || a.nodes > 0 {
                sandbox::CitusChoice::On
            } else {
                sandbox::CitusChoice::Auto
            };
            let sb = Sandbox::start(&opts)?;
            let st = sb.status();
            eprintln!(
                "sandbox running: {} (pid {}, {}){}{}",
                dir.display(),
                st.pid.unwrap_or_default(),
                st.version,
                if st.pg_cron { ", pg_cron" } else { "" },
                if st.citus { ", citus" } else { "" }
            );
            for w in &st.workers {
                eprintln!("citus worker on port {} registered", w.port);
            }
            if st.citus && st.workers.is_empty() {
                eprintln!("single-node Citus: the coordinator holds the shards itself");
            }
            if !st.nodes.is_empty() {
                eprintln!(
                    "spare citus nodes, not in the cluster yet: shardready scale-out --add {}",
                    sb.node_addresses().join(" ")
                );
            }
            if !st.pg_cron {
                eprintln!("note: pg_cron is not installed (apt-get install postgresql-15-cron); `jobs` and --backfill-via pg-cron need it");
            }
            println!("{}", sb.url());
        }
        SandboxCmd::Stop => {
            let sb = Sandbox::open(&dir)?;
            if sb.running_pid().is_none() {
                eprintln!("sandbox was not running: {}", dir.display());
            } else {
                sb.stop()?;
                eprintln!("sandbox stopped: {}", dir.display());
            }
        }
        SandboxCmd::Status { format } => match Sandbox::open(&dir) {
            Ok(sb) => {
                let st = sb.status();
                if format == Format::Json {
                    let mut v = serde_json::to_value(&st)?;
                    v["exists"] = true.into();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print!("{}", shardready::report::text::sandbox_status(&st));
                }
            }
            Err(sandbox::SandboxError::NotInitialized { .. }) => {
                if format == Format::Json {
                    println!(
                        "{}",
                        serde_json::json!({"exists": false, "dir": dir, "running": false})
                    );
                } else {
                    println!(
                        "no sandbox in {} (create one with `shardready sandbox start`)",
                        dir.display()
                    );
                }
            }
            Err(e) => return Err(e.into()),
        },
        SandboxCmd::Url => {
            let sb = Sandbox::open(&dir)?;
            println!("{}", sb.url());
        }
        SandboxCmd::Psql { args } => {
            use std::os::unix::process::CommandExt;
            let sb = Sandbox::open(&dir)?;
            if sb.running_pid().is_none() {
                return Err(sandbox::SandboxError::NotRunning { dir }.into());
            }
            let err = std::process::Command::new(sb.psql_path())
                .arg(sb.url())
                .args(args)
                .exec();
            bail!("cannot run psql: {err}");
        }
        SandboxCmd::Destroy => match Sandbox::open(&dir) {
            Ok(sb) => {
                sb.destroy()?;
                eprintln!("sandbox destroyed: {}", dir.display());
            }
            Err(sandbox::SandboxError::NotInitialized { .. }) => {
                eprintln!("no sandbox in {}: nothing to destroy", dir.display());
            }
            Err(e) => return Err(e.into()),
        },
    }
    Ok(ExitCode::SUCCESS)
}
