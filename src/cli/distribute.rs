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
        ..Default::default()
    };
    let request = if a.concurrently {
        citus::ModeRequest::Concurrently
    } else if a.blocking {
        citus::ModeRequest::Blocking
    } else {
        citus::ModeRequest::Auto
    };
    let mut aopts = a.analysis.options();
    aopts.catalog_only = false;
    runtime()?.block_on(async {
        let client = target.connect().await?;
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
            let (concurrently, reason) =
                choose(&client, &analysis, &cat, &opts, request, &saved).await?;
            (opts.concurrently, opts.mode_reason) = (concurrently, reason);
            let plan = citus::plan(&analysis, &cat, &opts);
            if a.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.to_sql());
            }
            return anyhow::Ok(());
        }
        citus::check_coordinator(&client, &target.display()).await?;
        let session = citus::lock(client).await?;
        // The application's traffic starts first: the choice of mode
        // watches for it.
        let traffic = match &a.workload {
            Some(rate) => Some(Workload::beside(&target, rate).await?),
            None => None,
        };
        let result = async {
            let (concurrently, reason) =
                choose(&session, &analysis, &cat, &opts, request, &saved).await?;
            (opts.concurrently, opts.mode_reason) = (concurrently, reason);
            eprintln!("  mode: {}", opts.mode_reason);
            citus::distribute(
                &session,
                &target.display(),
                &analysis,
                &cat,
                &opts,
                &|step| eprintln!("  {step}"),
            )
            .await
        }
        .await;
        let felt = match traffic {
            Some(w) => Some(w.stop().await.summary),
            None => None,
        };
        if let Some(s) = &felt {
            eprint!("{}", shardready::report::text::workload_summary(s));
        }
        let mut report = result?;
        report.workload = felt;
        if a.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", shardready::report::text::distribution(&report));
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Concurrently when the application writes to the tables still to place
/// (watched before anything changes), blocking otherwise; concurrently
/// when an interrupted concurrent run left keys dropped (`saved` and gone:
/// the blocking plan drops keys only inside its one transaction).
async fn choose(
    client: &tokio_postgres::Client,
    analysis: &shardready::analyze::Analysis,
    cat: &shardready::catalog::Catalog,
    opts: &shardready::citus::DistributeOptions,
    request: shardready::citus::ModeRequest,
    saved: &[shardready::citus::state::SavedFk],
) -> Result<(bool, String), shardready::citus::CitusError> {
    use shardready::citus;
    let tables = citus::plan(analysis, cat, opts).tables();
    let live = citus::state::Live::read(client, &tables).await?;
    let resuming = saved
        .iter()
        .any(|s| !live.fks.contains_key(&(s.table.clone(), s.fk.name.clone())));
    let unplaced: Vec<_> = tables
        .into_iter()
        .filter(|t| {
            !matches!(
                live.citus.get(t).map(String::as_str),
                Some("distributed" | "reference")
            )
        })
        .collect();
    if request == citus::ModeRequest::Auto && !resuming && !unplaced.is_empty() {
        eprintln!(
            "  watching {} table(s) for writes for 3 s to choose how to distribute",
            unplaced.len()
        );
    }
    citus::choose_mode(
        client,
        &unplaced,
        request,
        resuming,
        std::time::Duration::from_secs(3),
    )
    .await
}
