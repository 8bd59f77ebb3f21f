//! `tailspin schema|generate|load` and `copy`: getting data in.
use std::process::ExitCode;

use anyhow::Result;

use super::args::*;
use super::runtime;
use anyhow::{bail, Context};
use shardready::ingest::{self, copy, tailspin};

pub(super) fn tailspin_cmd(g: &Global, cmd: TailspinCmd) -> Result<ExitCode> {
    match cmd {
        TailspinCmd::Schema { replace } => {
            let target = g.target()?;
            runtime()?.block_on(async {
                let client = target.connect().await?;
                ingest::create_tailspin_schema(&client, replace).await?;
                eprintln!(
                    "created stores, products, orders, line_items on {}",
                    target.display()
                );
                anyhow::Ok(())
            })?;
        }
        TailspinCmd::Generate { out, data } => {
            let gen = tailspin::Generator::new(data.scale, data.seed)?;
            let c = gen.counts();
            let bar = ingest::byte_bar(None, "writing CSV");
            let files = gen
                .write_csv(&out, &|bytes| bar.set_position(bytes))
                .with_context(|| format!("cannot write the CSV files into {}", out.display()))?;
            bar.finish_and_clear();
            eprintln!(
                "wrote {} files to {}: {} stores, {} products, {} orders, {} line items",
                files.len(),
                out.display(),
                c.stores,
                c.products,
                c.orders,
                c.line_items
            );
        }
        TailspinCmd::Load { from, data, format } => {
            let target = g.target()?;
            let summary = runtime()?.block_on(async {
                let mut client = target.connect().await?;
                let s = ingest::load_tailspin(
                    &mut client,
                    from.as_deref(),
                    data.scale,
                    data.seed,
                    true,
                )
                .await?;
                anyhow::Ok(s)
            })?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                eprintln!(
                    "loaded in {:.1} s ({} foreign keys validated once, set-based)",
                    summary.load.seconds,
                    summary.load.fk_revalidated.len()
                );
                for c in &summary.counts {
                    println!("SELECT COUNT(*) FROM {:<11} -- {}", c.table, c.rows);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn copy_cmd(g: &Global, a: CopyArgs) -> Result<ExitCode> {
    let delimiter = match a.delimiter.as_str() {
        "\\t" | "tab" => b'\t',
        d if d.len() == 1 => d.as_bytes()[0],
        d => bail!("--delimiter must be one character (or \\t), not `{d}`"),
    };
    let files = copy::resolve_inputs(&a.inputs)?;
    let options = copy::CsvOptions {
        header: a.header,
        delimiter,
        null: a.null,
        encoding: a.encoding,
        quote: b'"',
    };
    let target = g.target()?;
    let report = runtime()?.block_on(async {
        let mut client = target.connect().await?;
        let r = copy::load(
            &mut client,
            vec![copy::TableLoad {
                table: a.table.clone(),
                source: copy::Source::Csv { files, options },
            }],
            &copy::LoadOptions {
                progress: true,
                ..Default::default()
            },
        )
        .await?;
        anyhow::Ok(r)
    })?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", shardready::report::text::copy_report(&report));
        for s in &report.sequences_set {
            eprintln!("sequence {} set to {}", s.sequence, s.value);
        }
    }
    Ok(ExitCode::SUCCESS)
}
