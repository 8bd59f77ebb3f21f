//! `queries`: the application's statements that will fan out, and what
//! became of each since the last listing.
use std::process::ExitCode;

use anyhow::Result;

use super::args::*;
use super::runtime;

pub(super) fn queries_cmd(g: &Global, a: QueriesArgs) -> Result<ExitCode> {
    let target = g.target()?;
    let overrides = a.analysis.options().overrides;
    let listing = runtime()?.block_on(async {
        let client = target.connect().await?;
        let cat = shardready::catalog::Catalog::read(&client)
            .await
            .map_err(shardready::db::DbError::ctx("cannot read the catalog"))?;
        if a.format == Format::Text {
            eprintln!(
                "counting the application's statements in pg_stat_statements for {}",
                a.window
            );
        }
        let window = shardready::stat_statements::window(&client, None, a.window.into()).await;
        let l =
            shardready::analyze::fan_out::list(&client, &cat, &overrides, &window, !a.no_record)
                .await?;
        anyhow::Ok(l)
    })?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
    } else {
        print!("{}", listing.text());
    }
    Ok(ExitCode::SUCCESS)
}
