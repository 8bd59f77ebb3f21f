//! The `shardready` command line: parses arguments (clap), calls the
//! library, prints. No database logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use shardready::conn::{ConnOptions, Target};
use shardready::ingest::{self, copy, tailspin};
use shardready::sandbox::{self, Sandbox, SandboxOptions};

const ABOUT: &str = "Prepare a single-node, multi-tenant PostgreSQL database for distribution \
with Citus while the application keeps running.";

const LONG_ABOUT: &str = "\
Prepare a single-node, multi-tenant PostgreSQL database for distribution with
Citus while the application keeps running.

Where to connect (every command that talks to a database):
  --db 'postgresql://user@host:5432/db?sslmode=require'  or  --db 'host=... dbname=...'
  else DATABASE_URL, else libpq's PG* variables (PGHOST, PGUSER, ..., ~/.pgpass),
  else the running sandbox (`shardready sandbox start`).

Quick start (the seed exercise, Tailspin Toys, on a local sandbox):
  shardready sandbox start
  shardready tailspin schema
  shardready tailspin load            # 6M rows, prints the four counts
  shardready sandbox psql -- -c '\\dt'";

#[derive(Parser)]
#[command(name = "shardready", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// Database to work on: a conninfo string or a postgresql:// URL.
    #[arg(long, global = true, value_name = "CONNINFO|URL")]
    db: Option<String>,
    /// Sandbox directory [default: ~/.local/share/shardready/sandbox,
    /// or /var/lib/shardready/sandbox as root].
    #[arg(long, global = true, env = "SHARDREADY_SANDBOX_DIR", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl Global {
    fn sandbox_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(sandbox::default_dir)
    }
    fn target(&self) -> Result<Target> {
        Ok(Target::resolve(&ConnOptions {
            db: self.db.clone(),
            sandbox_dir: self.dir.clone(),
        })?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// A local single-node PostgreSQL from the system's binaries.
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// The seed exercise's dataset: schema, CSV files, fast load.
    #[command(subcommand)]
    Tailspin(TailspinCmd),
    /// Fast, all-or-nothing COPY of CSV files, globs or zip archives into a table.
    #[command(after_help = "\
Examples:
  shardready copy orders 'orders_*.csv'
  shardready copy stores stores.csv --header
  shardready copy line_items data.zip:'line_items_*.csv'
  shardready copy products products.tsv --delimiter '\\t' --null '\\N' --encoding LATIN1

The files load as one transaction: foreign keys on the table are dropped,
the rows copied, then the keys re-added (one set-based validation), and the
serial sequences set to the new maximum. Any error (a malformed row, a key
violation, Ctrl-C) leaves the table exactly as it was.")]
    Copy(CopyArgs),
}

#[derive(Subcommand)]
enum SandboxCmd {
    /// Create (first time) and start the sandbox; does nothing if it runs.
    #[command(after_help = "\
Examples:
  shardready sandbox start
  shardready sandbox start --dir /tmp/sb --port 55432
  SHARDREADY_PG_BIN=/usr/lib/postgresql/15/bin shardready sandbox start

pg_cron is preloaded and created when the postgresql-15-cron package is
installed (Citus likewise). As root, the server runs as the `postgres` OS user.")]
    Start(StartArgs),
    /// Stop the server (fast shutdown); data stays.
    Stop,
    /// Whether it runs, where, and what it has.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the connection URL (e.g. `psql "$(shardready sandbox url)"`).
    Url,
    /// Open psql on the sandbox; arguments after `--` go to psql.
    #[command(after_help = "Example:\n  shardready sandbox psql -- -c 'SELECT count(*) FROM orders'")]
    Psql {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Stop the server and delete the sandbox directory with all its data.
    Destroy,
}

#[derive(Args)]
struct StartArgs {
    /// Directory with initdb/pg_ctl/postgres [default: found via pg_config
    /// --bindir or /usr/lib/postgresql/*/bin].
    #[arg(long, env = "SHARDREADY_PG_BIN", value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// OS user the server runs as when shardready runs as root.
    #[arg(long, default_value = "postgres")]
    os_user: String,
    /// Port to listen on [default: a free one, remembered].
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Subcommand)]
enum TailspinCmd {
    /// Create the seed's four tables (stores, products, orders, line_items).
    #[command(after_help = "Example:\n  shardready tailspin schema --replace")]
    Schema {
        /// Drop the four tables first if they exist (their data is lost).
        #[arg(long)]
        replace: bool,
    },
    /// Write the seed's CSV files: stores.csv (with header), products.csv,
    /// orders_N.csv, line_items_N.csv.
    #[command(after_help = "\
Example:
  shardready tailspin generate --out ./data            # scale 1: the seed's exact counts
  shardready tailspin generate --out ./small --scale 0.01 --seed 7")]
    Generate {
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Load the four tables: generated on the fly, or from CSV files / data.zip.
    #[command(after_help = "\
Examples:
  shardready tailspin load                    # 442 / 10002 / 1999680 / 4002959 rows
  shardready tailspin load --scale 0.01
  shardready tailspin load --from ./data      # files written by `tailspin generate`
  shardready tailspin load --from data.zip    # the seed's archive, read without unzipping

All four tables load in one transaction, with foreign keys checked once, set-based,
at the end; the sequences are set like the seed's setval.")]
    Load {
        /// A directory or zip archive with the seed's CSV layout.
        #[arg(long, value_name = "DIR|ZIP")]
        from: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Args)]
struct DataArgs {
    /// Size relative to the seed's dataset (1 = 442 stores, ~6M rows).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Random seed; the same scale and seed give the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
struct CopyArgs {
    /// Target table (`name` or `schema.name`).
    table: String,
    /// CSV files, glob patterns, zip archives (`data.zip` or `data.zip:PATTERN`).
    #[arg(required = true, value_name = "FILE|GLOB|ZIP")]
    inputs: Vec<String>,
    /// Each file starts with a header line (skipped).
    #[arg(long)]
    header: bool,
    /// Field delimiter (one character; `\t` for tab).
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// The string that means NULL [default: an unquoted empty field].
    #[arg(long)]
    null: Option<String>,
    /// Encoding of the files (e.g. LATIN1) [default: UTF8].
    #[arg(long)]
    encoding: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDREADY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Sandbox(cmd) => sandbox_cmd(&g, cmd),
        Command::Tailspin(cmd) => tailspin_cmd(&g, cmd),
        Command::Copy(args) => copy_cmd(&g, args),
    }
}

fn sandbox_cmd(g: &Global, cmd: SandboxCmd) -> Result<ExitCode> {
    let dir = g.sandbox_dir();
    match cmd {
        SandboxCmd::Start(a) => {
            let mut opts = SandboxOptions::new(&dir);
            opts.pg_bin = a.pg_bin;
            opts.os_user = a.os_user;
            opts.port = a.port;
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
            if !st.pg_cron {
                eprintln!("note: pg_cron is not installed (apt-get install postgresql-15-cron); `jobs` and --backfill-via pg-cron need it");
            }
            println!("{}", sb.url());
        }
        SandboxCmd::Stop => {
            let sb = Sandbox::open(&dir)?;
            sb.stop()?;
            eprintln!("sandbox stopped: {}", dir.display());
        }
        SandboxCmd::Status { format } => match Sandbox::open(&dir) {
            Ok(sb) => {
                let st = sb.status();
                if format == Format::Json {
                    let mut v = serde_json::to_value(&st)?;
                    v["exists"] = true.into();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!(
                        "sandbox   {}\nstate     {}\nurl       {}\nversion   {}\nserver as {}\npg_cron   {}\ncitus     {}\ndata      {:.1} MB",
                        st.dir.display(),
                        match st.pid {
                            Some(p) => format!("running (pid {p})"),
                            None => "stopped (start it with `shardready sandbox start`)".into(),
                        },
                        st.url,
                        st.version,
                        st.os_user.as_deref().unwrap_or("the invoking user"),
                        if st.pg_cron { "preloaded" } else { "not installed" },
                        if st.citus { "preloaded" } else { "not installed" },
                        st.data_bytes as f64 / 1e6
                    );
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

fn tailspin_cmd(g: &Global, cmd: TailspinCmd) -> Result<ExitCode> {
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
                for (table, count) in &summary.counts {
                    println!("SELECT COUNT(*) FROM {table:<11} -- {count}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn copy_cmd(g: &Global, a: CopyArgs) -> Result<ExitCode> {
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
            &copy::LoadOptions { progress: true },
        )
        .await?;
        anyhow::Ok(r)
    })?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for t in &report.tables {
            println!(
                "{}: {} rows, {:.1} MB in {:.2} s",
                t.table,
                t.rows,
                t.bytes as f64 / 1e6,
                t.seconds
            );
        }
        for (seq, v) in &report.sequences_set {
            eprintln!("sequence {seq} set to {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
