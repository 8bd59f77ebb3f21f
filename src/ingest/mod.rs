//! Bulk ingest: the Tailspin Toys dataset ([`tailspin`]) and fast, atomic
//! COPY loading of CSV files, globs, zip archives and generated rows
//! ([`copy`]). This file holds the glue behind `tailspin schema|load`.

pub mod copy;
pub mod tailspin;

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use thiserror::Error;
use tokio_postgres::Client;

use crate::sql::ident;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error(
        "the Tailspin tables already exist ({0}); pass --replace to drop and recreate them \
         (their data is lost), or use another database (--db)"
    )]
    TablesExist(String),
    #[error("{0} is neither a directory nor a .zip archive")]
    BadFrom(String),
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    #[error(transparent)]
    Generate(#[from] tailspin::GenError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> IngestError + '_ {
    move |e| IngestError::Db(crate::db::DbError::new(context, e))
}

/// Creates the seed's four tables in one transaction (`replace`: drop them
/// first).
pub async fn create_tailspin_schema(client: &Client, replace: bool) -> Result<(), IngestError> {
    let existing = crate::catalog::existing_tables(client, &tailspin::TABLES)
        .await
        .map_err(db("cannot check for existing tables"))?;
    let mut sql = String::from("BEGIN;\n");
    if !existing.is_empty() {
        if !replace {
            return Err(IngestError::TablesExist(existing.join(", ")));
        }
        let list: Vec<String> = tailspin::TABLES.iter().rev().map(|t| ident(t)).collect();
        sql.push_str(&format!(
            "DROP TABLE IF EXISTS {} CASCADE;\n",
            list.join(", ")
        ));
    }
    sql.push_str(tailspin::SCHEMA_SQL);
    sql.push_str("\nCOMMIT;");
    crate::db::exec_script(client, &sql)
        .await
        .map_err(db("cannot create the Tailspin tables"))
}

/// What `tailspin load` did: the load itself and the seed's step-7 counts.
#[derive(Debug, Serialize)]
pub struct TailspinLoad {
    pub load: copy::LoadReport,
    pub counts: Vec<TableRows>,
}

/// A table's row count.
#[derive(Debug, Clone, Serialize)]
pub struct TableRows {
    pub table: String,
    pub rows: i64,
}

/// Loads the four tables in one transaction: generated rows streamed as
/// binary COPY when `from` is None, else the seed's CSV layout from a
/// directory or zip archive (stores.csv with a header, the rest without).
pub async fn load_tailspin(
    client: &mut Client,
    from: Option<&Path>,
    scale: f64,
    seed: u64,
    progress: bool,
) -> Result<TailspinLoad, IngestError> {
    let loads = match from {
        None => {
            let gen = tailspin::Generator::new(scale, seed)?;
            tailspin::TailspinTable::ALL
                .iter()
                .map(|&t| copy::TableLoad {
                    table: t.name().to_string(),
                    source: copy::Source::Binary {
                        chunks: gen.binary_copy(t, 1 << 20),
                        rows: gen.rows(t),
                    },
                })
                .collect()
        }
        Some(path) => {
            let base = path.display().to_string();
            let sep = if path.is_dir() {
                "/"
            } else if base.ends_with(".zip") && path.is_file() {
                ":"
            } else {
                return Err(IngestError::BadFrom(base));
            };
            let mut loads = Vec::new();
            for (table, pattern, header) in [
                ("stores", "stores.csv", true),
                ("products", "products.csv", false),
                ("orders", "orders_*.csv", false),
                ("line_items", "line_items_*.csv", false),
            ] {
                let files = copy::resolve_inputs(&[format!("{base}{sep}{pattern}")])?;
                loads.push(copy::TableLoad {
                    table: table.into(),
                    source: copy::Source::Csv {
                        files,
                        options: copy::CsvOptions {
                            header,
                            ..copy::CsvOptions::default()
                        },
                    },
                });
            }
            loads
        }
    };
    let load = copy::load(
        client,
        loads,
        &copy::LoadOptions {
            progress,
            ..Default::default()
        },
    )
    .await?;
    let mut counts = Vec::new();
    for t in tailspin::TABLES {
        let row = client
            .query_one(
                &format!("SELECT /* shardready */ count(*) FROM {}", ident(t)),
                &[],
            )
            .await
            .map_err(db("cannot count the loaded rows"))?;
        counts.push(TableRows {
            table: t.to_string(),
            rows: row.get(0),
        });
    }
    Ok(TailspinLoad { load, counts })
}

/// A byte-progress bar on stderr when it is a terminal (hidden otherwise).
pub fn byte_bar(total: Option<u64>, message: &'static str) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::no_length(),
    };
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
