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
    #[arg(
        long,
        global = true,
        env = "SHARDREADY_SANDBOX_DIR",
        value_name = "DIR"
    )]
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
    /// The seed's create_orders traffic, with latency measurement.
    #[command(after_help = "\
Examples:
  shardready workload --rate 20000/min --duration 60s --connections 4
  shardready workload --duration 5m --json-out run.json --timeline run.csv
  shardready workload --mode server --once 20000      # the seed's timed create_orders(20000)
  shardready workload --mode server --schedule        # pg_cron: create_orders(20000) every minute

Client mode issues each order like the seed's function does (every third order
to store 5, 1-3 line items from the store's own products), one transaction per
order, open-loop: latency counts from when the order was due, so a stalled
database shows up as latency, not as a lower rate. Errors are counted by
SQLSTATE and the run goes on (connections are re-opened).

--json-out writes the summary (schema \"shardready.workload/v1\": rates, orders,
line_items, errors_by_sqlstate, latency p50/p95/p99/p999/max/mean in ms);
--timeline writes one CSV row per second: t_s,transactions,errors,p50_ms,p99_ms,max_ms.")]
    Workload(WorkloadArgs),
    /// pg_cron jobs: list, schedule, unschedule.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// Readiness report: the tenant column, what each table becomes, and
    /// everything Citus would refuse. Exit code 2 when something blocks.
    #[command(after_help = "\
Examples:
  shardready analyze
  shardready analyze --tenant-column store_id --reference countries
  shardready analyze --format json > analysis.json   # schema shardready.analysis/v1
  shardready analyze --full                          # exact data checks (full scans)

Classes: root (its key is the tenant id), distributed (has the column),
needs <column> (derived through the FK path shown), reference (a lookup copied
to every node), local (stays on the coordinator). Every finding names the rule,
what Citus would say, and whether `plan` fixes it (automatic) or you must.")]
    Analyze(AnalyzeArgs),
    /// The ordered, reviewable steps that make the database ready.
    #[command(after_help = "\
Examples:
  shardready plan                         # readable list with the lock each step takes
  shardready plan --format sql -o prepare.sql   # a psql script a DBA can review and run
  shardready plan --format json           # schema shardready.plan/v1

Steps, in order: add the tenant column (nullable, instant), a sync trigger for
rows the old application writes, autovacuum held off the tables about to be
rewritten, a keyset backfill, NOT NULL through a validated CHECK, composite
unique indexes built concurrently, composite foreign keys added NOT VALID then
validated, key swaps USING INDEX, removal of the trigger, a VACUUM at
autovacuum's pace that gives autovacuum back as it was, ANALYZE.")]
    Plan(PlanArgs),
    /// Run the plan online: lock-safe, throttled, resumable.
    #[command(after_help = "\
Examples:
  shardready apply
  shardready apply --workload 3000/min --report ./report   # measure what the app feels
  shardready apply --lock-timeout 50ms --batch-target 50ms --max-rate 50000
  shardready apply --force        # remove the sync trigger even if old code still writes

Every statement whose lock would queue the application runs under lock_timeout
and is retried with backoff and jitter; the backfill runs in keyset batches
sized to --batch-target, backs off when the application's transactions slow
down, and vacuums lightly every tenth of the way so the table does not double. State
lives in the `shardready` schema: after a crash or Ctrl-C, run apply again and
it finishes the job. Only one apply runs at a time.")]
    Apply(ApplyArgs),
    /// Where the plan stands: steps done, backfill progress.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// On a Citus coordinator: reference tables, the tenant root, its
    /// colocated children; then verify counts and single-shard routing.
    #[command(after_help = "\
Examples:
  shardready distribute --dry-run                 # the exact SQL, no Citus needed
  shardready distribute --db 'postgresql://citus@coordinator/app'
  shardready distribute --concurrently            # create_distributed_table_concurrently, writes continue
  shardready distribute --shard-count 64 --isolate-hot-tenants

It refuses while analyze finds blockers. When a tenant table references both a
lookup table (becoming a reference table) and the tenant root, everything runs
in one transaction in sequential mode, so no relationship is ever unenforced.")]
    Distribute(DistributeArgs),
    /// The whole seed exercise on a fresh sandbox, with a disruption report.
    #[command(after_help = "\
Examples:
  shardready demo                                   # scale 1: the seed's 6M rows, 20000 orders/min
  shardready demo --scale 0.1 --rate 3000/min --out ./report
  shardready demo --compare-seed                    # also the seed's procedure, side by side
  shardready demo --keep                            # leave the sandbox running afterwards

Phases (the seed's steps): fresh sandbox; tailspin schema and load (step 7's
counts); pg_cron check; create_orders(20000) timed; analyze; the application's
traffic starts; apply under traffic (add column, backfill, keys); verify; jobs
unscheduled; create_orders(20000) timed again. The report (report.md,
report.html, report.json, latency.svg, latency.png) shows what each phase cost
the application.")]
    Demo(DemoArgs),
    /// Check the post-conditions: tenant column NOT NULL, composite keys and
    /// FKs validated, no invalid indexes, no triggers, no blocker. Exit 2 if not.
    Verify {
        #[command(flatten)]
        analysis: AnalyzeTarget,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Args)]
struct DistributeArgs {
    #[command(flatten)]
    analysis: AnalyzeTarget,
    /// Shards per distributed table [default: the analyzer's suggestion].
    #[arg(long)]
    shard_count: Option<i64>,
    /// Use create_distributed_table_concurrently (one table at a time,
    /// outside transactions; FKs dropped and re-added NOT VALID + VALIDATE).
    #[arg(long)]
    concurrently: bool,
    /// Print the SQL instead of running it.
    #[arg(long)]
    dry_run: bool,
    /// Move each hot tenant found by analyze to its own shard.
    #[arg(long)]
    isolate_hot_tenants: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args)]
struct DemoArgs {
    /// Size relative to the seed's dataset (1 = 442 stores, ~6M rows).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The application's traffic during the preparation.
    #[arg(long, default_value = "20000/min")]
    rate: String,
    /// Connections of the application's traffic.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Where the report goes.
    #[arg(long, default_value = "shardready-report")]
    out: PathBuf,
    /// Leave the demo sandbox running afterwards (and print how to connect).
    #[arg(long)]
    keep: bool,
    /// Also run the seed's procedure as written on an identical database.
    #[arg(long)]
    compare_seed: bool,
    /// Orders of the timed create_orders call (the seed: 20000).
    #[arg(long, default_value_t = 20000)]
    create_orders: i32,
    /// Traffic-only time before and after the preparation.
    #[arg(long, default_value = "10s")]
    settle: humantime::Duration,
}

#[derive(Args)]
struct ApplyArgs {
    #[command(flatten)]
    analysis: AnalyzeTarget,
    /// lock_timeout of every statement that would queue the application.
    #[arg(long, default_value = "100ms")]
    lock_timeout: humantime::Duration,
    /// Give up (cleanly) after waiting this long for one lock [default: never].
    #[arg(long)]
    max_wait: Option<humantime::Duration>,
    /// Target duration of one backfill batch.
    #[arg(long, default_value = "100ms")]
    batch_target: humantime::Duration,
    /// Backfill at most this many rows per second.
    #[arg(long, value_name = "ROWS/s")]
    max_rate: Option<f64>,
    /// Keep the application's p99 below this (ms): with --workload, the
    /// backfill pauses when 0.5% more of the application's transactions take
    /// longer than before it started.
    #[arg(long, default_value_t = 15.0)]
    app_p99_limit: f64,
    /// Run the built-in create_orders workload at this rate during apply and
    /// report what it felt per step (e.g. 3000/min).
    #[arg(long, value_name = "RATE")]
    workload: Option<String>,
    /// Remove the sync trigger even while rows still arrive without the column.
    #[arg(long)]
    force: bool,
    /// Window without trigger fills that shows the application writes the column.
    #[arg(long, default_value = "5s")]
    trigger_window: humantime::Duration,
    /// How long to wait for the application to write the column before stopping.
    #[arg(long, default_value = "60s")]
    await_app: humantime::Duration,
    /// Discard an unfinished stored plan and build a new one.
    #[arg(long)]
    replan: bool,
    /// Who runs the backfill: shardready (adaptive, throttled on the app's
    /// latency) or a pg_cron job (the seed's way, keyset batches).
    #[arg(long, value_enum, default_value_t = shardready::apply::BackfillVia::Client)]
    backfill_via: shardready::apply::BackfillVia,
    /// Parallel workers for index builds and validations (0 leaves the
    /// other cores to the application).
    #[arg(long, default_value_t = 0)]
    parallel_workers: i32,
    /// Write report.json and report.md into this directory.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    analysis: AnalyzeTarget,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// lock_timeout written into the SQL script.
    #[arg(long, default_value = "100ms")]
    lock_timeout: humantime::Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Text,
    Sql,
    Json,
}

/// The analysis options `plan` and `apply` share with `analyze`.
#[derive(Args, Clone)]
struct AnalyzeTarget {
    /// The tenant (distribution) column [default: inferred from the FKs].
    #[arg(long, value_name = "COLUMN")]
    tenant_column: Option<String>,
    /// Treat this table as a reference table (repeatable).
    #[arg(long, value_name = "TABLE")]
    reference: Vec<String>,
    /// Keep this table local (repeatable).
    #[arg(long, value_name = "TABLE")]
    local: Vec<String>,
}

impl AnalyzeTarget {
    fn options(&self) -> shardready::analyze::AnalyzeOptions {
        use shardready::analyze::{tenant::parse_table, AnalyzeOptions, Overrides};
        AnalyzeOptions {
            overrides: Overrides {
                tenant_column: self.tenant_column.clone(),
                reference: self.reference.iter().map(|t| parse_table(t)).collect(),
                local: self.local.iter().map(|t| parse_table(t)).collect(),
            },
            full: false,
            catalog_only: true,
        }
    }
}

#[derive(Args)]
struct AnalyzeArgs {
    #[command(flatten)]
    target: AnalyzeTarget,
    /// Exact data checks (full scans) instead of bounded samples.
    #[arg(long)]
    full: bool,
    /// Catalog rules only: skip data checks and skew.
    #[arg(long, conflicts_with = "full")]
    catalog_only: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

impl AnalyzeArgs {
    fn options(&self) -> shardready::analyze::AnalyzeOptions {
        shardready::analyze::AnalyzeOptions {
            full: self.full,
            catalog_only: self.catalog_only,
            ..self.target.options()
        }
    }
}

#[derive(Args)]
struct WorkloadArgs {
    /// Target rate: ORDERS/min or ORDERS/s.
    #[arg(long, default_value = "20000/min")]
    rate: String,
    /// How long to run (e.g. 60s, 5m); 0 runs until Ctrl-C.
    #[arg(long, default_value = "60s")]
    duration: humantime::Duration,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, value_enum, default_value_t = shardready::workload::Mode::Client)]
    mode: shardready::workload::Mode,
    /// Whether line items carry store_id [auto: when the column exists].
    #[arg(long, value_enum, default_value_t = shardready::workload::StoreIdMode::Auto)]
    store_id: shardready::workload::StoreIdMode,
    /// Server mode: orders per create_orders call.
    #[arg(long, default_value_t = 3)]
    batch: u32,
    /// Server mode: run `SELECT create_orders(N)` once and print the time.
    #[arg(long, value_name = "N", conflicts_with = "schedule")]
    once: Option<i32>,
    /// Server mode: schedule create_orders with pg_cron every minute at
    /// --rate (like the seed) and return.
    #[arg(long)]
    schedule: bool,
    /// Random seed of the client driver.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Write the per-second timeline as CSV to this file.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Subcommand)]
enum JobsCmd {
    /// List pg_cron jobs.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Schedule (or replace) a job.
    #[command(
        after_help = "Example:\n  shardready jobs schedule create_orders '*/1 * * * *' 'SELECT create_orders(20000);'"
    )]
    Schedule {
        name: String,
        /// Cron expression, e.g. '*/1 * * * *'.
        cron: String,
        /// SQL to run.
        command: String,
    },
    /// Remove a job.
    #[command(after_help = "Example:\n  shardready jobs unschedule create_orders")]
    Unschedule { name: String },
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
    #[command(
        after_help = "Example:\n  shardready sandbox psql -- -c 'SELECT count(*) FROM orders'"
    )]
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
    // Usage errors exit 1 (2 is reserved for findings that block).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
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
        Command::Workload(args) => workload_cmd(&g, args),
        Command::Jobs(cmd) => jobs_cmd(&g, cmd),
        Command::Analyze(args) => analyze_cmd(&g, args),
        Command::Plan(args) => plan_cmd(&g, args),
        Command::Apply(args) => apply_cmd(&g, args),
        Command::Demo(args) => demo_cmd(&g, args),
        Command::Distribute(args) => distribute_cmd(&g, args),
        Command::Status { format } => status_cmd(&g, format),
        Command::Verify { analysis, format } => verify_cmd(&g, analysis, format),
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

fn workload_cmd(g: &Global, a: WorkloadArgs) -> Result<ExitCode> {
    use shardready::workload::{self, Mode, Workload, WorkloadConfig};
    let rate = workload::parse_rate(&a.rate)?;
    let target = g.target()?;
    let rt = runtime()?;
    if a.mode == Mode::Client && (a.once.is_some() || a.schedule) {
        bail!("--once and --schedule run the seed's plpgsql function: add --mode server");
    }
    if let Some(n) = a.once {
        let took = rt.block_on(workload::time_create_orders(&target, n, a.store_id))?;
        if a.format == Format::Json {
            println!(
                "{}",
                serde_json::json!({"batch_size": n, "seconds": took.as_secs_f64()})
            );
        } else {
            println!("SELECT create_orders({n}); -- {:.1} s", took.as_secs_f64());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.schedule {
        let per_min = (rate * 60.0).round() as i64;
        let id = rt.block_on(async {
            let client = target.connect().await?;
            let with = matches!(a.store_id, workload::StoreIdMode::Always)
                || (a.store_id == workload::StoreIdMode::Auto
                    && shardready::catalog::has_column(&client, "line_items", "store_id").await?);
            workload::install_create_orders(&client, with).await?;
            let id = shardready::cron::schedule(
                &client,
                "create_orders",
                "*/1 * * * *",
                &format!("SELECT create_orders({per_min});"),
            )
            .await?;
            anyhow::Ok(id)
        })?;
        println!(
            "scheduled job {id} `create_orders`: SELECT create_orders({per_min}); every minute \
             (stop it with `shardready jobs unschedule create_orders`)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let duration = std::time::Duration::from(a.duration);
    let cfg = WorkloadConfig {
        rate,
        duration: (!duration.is_zero()).then_some(duration),
        connections: a.connections.max(1),
        mode: a.mode,
        store_id: a.store_id,
        batch: a.batch.max(1),
        seed: a.seed,
        live: true,
    };
    let report = rt.block_on(async {
        let w = Workload::start(&target, cfg).await?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        while !w.is_finished() {
            tokio::select! {
                _ = &mut ctrl_c => return anyhow::Ok(w.stop().await),
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
        anyhow::Ok(w.wait().await)
    });
    let report = report?;
    if let Some(path) = &a.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report.summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &a.timeline {
        std::fs::write(path, report.timeline_csv())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let s = &report.summary;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        println!(
            "{} orders ({} line items) in {:.1} s: {:.0}/min (target {:.0}/min), {} connections",
            s.orders,
            s.line_items,
            s.duration_s,
            s.achieved_rate_per_min,
            s.target_rate_per_min,
            s.connections
        );
        println!(
            "latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            s.latency.p50_ms,
            s.latency.p95_ms,
            s.latency.p99_ms,
            s.latency.p999_ms,
            s.latency.max_ms
        );
        if s.errors == 0 {
            println!("errors: none");
        } else {
            let by: Vec<String> = s
                .errors_by_sqlstate
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            println!("errors: {} ({})", s.errors, by.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn jobs_cmd(g: &Global, cmd: JobsCmd) -> Result<ExitCode> {
    use shardready::cron;
    let target = g.target()?;
    runtime()?.block_on(async {
        let client = target.connect().await?;
        match cmd {
            JobsCmd::List { format } => {
                let jobs = cron::list(&client).await?;
                if format == Format::Json {
                    println!("{}", serde_json::to_string_pretty(&jobs)?);
                } else if jobs.is_empty() {
                    println!("no pg_cron jobs");
                } else {
                    let mut t = comfy_table::Table::new();
                    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
                    t.set_header([
                        "jobid", "jobname", "schedule", "command", "database", "active",
                    ]);
                    for j in jobs {
                        t.add_row([
                            j.jobid.to_string(),
                            j.jobname.unwrap_or_default(),
                            j.schedule,
                            j.command,
                            j.database,
                            j.active.to_string(),
                        ]);
                    }
                    println!("{t}");
                }
            }
            JobsCmd::Schedule {
                name,
                cron: expr,
                command,
            } => {
                let id = cron::schedule(&client, &name, &expr, &command).await?;
                println!("scheduled job {id} `{name}`: {expr}  {command}");
            }
            JobsCmd::Unschedule { name } => {
                cron::unschedule(&client, &name).await?;
                println!("unscheduled `{name}`");
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn analyze_cmd(g: &Global, a: AnalyzeArgs) -> Result<ExitCode> {
    let target = g.target()?;
    let analysis = runtime()?.block_on(async {
        let client = target.connect().await?;
        let r = shardready::analyze::analyze(&client, &a.options()).await?;
        anyhow::Ok(r)
    })?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::env::var_os("NO_COLOR").is_none();
        print!("{}", shardready::report::analysis_text(&analysis, color));
    }
    Ok(if analysis.has_blockers() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn plan_cmd(g: &Global, a: PlanArgs) -> Result<ExitCode> {
    let target = g.target()?;
    let plan = runtime()?.block_on(async {
        let client = target.connect().await?;
        let cat = shardready::catalog::Catalog::read(&client).await?;
        let analysis =
            shardready::analyze::analyze_read(&client, &cat, &a.analysis.options()).await?;
        anyhow::Ok(shardready::plan::build(&analysis, &cat))
    })?;
    let text = match a.format {
        PlanFormat::Json => serde_json::to_string_pretty(&plan)? + "\n",
        PlanFormat::Sql => {
            plan.to_sql(std::time::Duration::from(a.lock_timeout).as_millis() as u64)
        }
        PlanFormat::Text => {
            let mut s = format!(
                "plan: tenant column {}{}, {} steps\n",
                plan.tenant_column,
                plan.root
                    .as_ref()
                    .map(|r| format!(" (root {r})"))
                    .unwrap_or_default(),
                plan.steps.len()
            );
            for (i, step) in plan.steps.iter().enumerate() {
                s.push_str(&format!(
                    "{:>3}. {}\n     lock: {}\n",
                    i + 1,
                    step.describe(),
                    step.impact().describe()
                ));
            }
            s
        }
    };
    match &a.output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} steps to {}", plan.steps.len(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn apply_cmd(g: &Global, a: ApplyArgs) -> Result<ExitCode> {
    use shardready::apply::{self, backfill::Pace, ApplyOptions};
    use shardready::db::LockPolicy;
    use shardready::workload::{self, Workload, WorkloadConfig};
    let mut analysis = a.analysis.options();
    analysis.catalog_only = true;
    let opts = ApplyOptions {
        analyze: analysis,
        policy: LockPolicy {
            lock_timeout: a.lock_timeout.into(),
            max_wait: a.max_wait.map(Into::into),
            max_attempts: None,
        },
        pace: Pace {
            batch_target: a.batch_target.into(),
            max_rate: a.max_rate,
            app_p99_limit_ms: a.app_p99_limit,
            ..Pace::default()
        },
        force: a.force,
        trigger_window: a.trigger_window.into(),
        await_app: a.await_app.into(),
        replan: a.replan,
        progress: true,
        max_steps: None,
        parallel_workers: a.parallel_workers,
        backfill_via: a.backfill_via,
    };
    let target = g.target()?;
    let (report, wl) = runtime()?.block_on(async {
        let w = match &a.workload {
            Some(rate) => Some(
                Workload::start(
                    &target,
                    WorkloadConfig {
                        rate: workload::parse_rate(rate)?,
                        duration: None,
                        ..WorkloadConfig::default()
                    },
                )
                .await?,
            ),
            None => None,
        };
        let r = apply::apply(&target, &opts, w.as_ref()).await;
        let wl = match w {
            Some(w) => Some(w.stop().await),
            None => None,
        };
        anyhow::Ok((r?, wl))
    })?;
    if let Some(dir) = &a.report {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut v = serde_json::to_value(&report)?;
        if let Some(w) = &wl {
            v["workload"] = serde_json::to_value(&w.summary)?;
            v["timeline"] = serde_json::to_value(&w.timeline)?;
        }
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&v)?)?;
        std::fs::write(
            dir.join("report.md"),
            shardready::report::apply_markdown(&report, wl.as_ref().map(|w| &w.summary)),
        )?;
        eprintln!("wrote {}/report.json and report.md", dir.display());
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "apply finished in {:.1} s: {} steps ({} already done)",
            report.seconds,
            report.steps.len(),
            report
                .steps
                .iter()
                .filter(|s| s.status == apply::StepOutcome::AlreadyDone)
                .count()
        );
        if let Some(app) = &report.app {
            println!(
                "application during apply: {} transactions, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, errors {}",
                app.transactions, app.p50_ms, app.p99_ms, app.max_ms, app.errors
            );
        }
        println!("next: `shardready verify`");
    }
    Ok(ExitCode::SUCCESS)
}

fn status_cmd(g: &Global, format: Format) -> Result<ExitCode> {
    let target = g.target()?;
    let st = runtime()?.block_on(shardready::apply::status(&target))?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !st.plan_exists {
        println!("no plan applied yet (run `shardready plan`, then `shardready apply`)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "plan {}{}",
        if st.finished {
            "finished"
        } else {
            "in progress"
        },
        if st.apply_running {
            " (an apply is running now)"
        } else {
            ""
        }
    );
    for s in &st.steps {
        println!(
            "  {:>2}. {:<8} {}{}",
            s.position + 1,
            s.status,
            s.id,
            s.seconds.map(|x| format!("  {x:.1} s")).unwrap_or_default()
        );
    }
    for b in &st.backfills {
        println!(
            "  backfill {}: {:.1}% ({} rows in {} batches, key {} of {})",
            b.step_id.trim_start_matches("backfill:"),
            b.progress * 100.0,
            b.rows_updated,
            b.batches,
            b.cursor,
            b.max_key
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(g: &Global, analysis: AnalyzeTarget, format: Format) -> Result<ExitCode> {
    let target = g.target()?;
    let v = runtime()?.block_on(async {
        let client = target.connect().await?;
        anyhow::Ok(shardready::verify::verify(&client, &analysis.options()).await?)
    })?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for c in &v.checks {
            println!("{} {}", if c.ok { "ok  " } else { "FAIL" }, c.name);
            for p in &c.problems {
                println!("       {p}");
            }
        }
        println!(
            "{}",
            if v.ok {
                "verified: ready for Citus"
            } else {
                "not ready"
            }
        );
    }
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn demo_cmd(g: &Global, a: DemoArgs) -> Result<ExitCode> {
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
        progress: true,
    };
    let report = runtime()?.block_on(demo::run(&opts))?;
    println!("\nphase table ({}):", report.runs[0].label);
    for run in &report.runs {
        if report.runs.len() > 1 {
            println!("\n{}:", run.label);
        }
        println!(
            "  {:<34} {:>8} {:>9} {:>9} {:>9} {:>7}",
            "phase", "seconds", "p50 ms", "p99 ms", "max ms", "failed"
        );
        for p in &run.phases {
            println!(
                "  {:<34} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>7}",
                p.phase, p.seconds, p.p50_ms, p.p99_ms, p.max_ms, p.errors
            );
        }
        println!(
            "  create_orders({}): {:.1} s before, {:.1} s after: {:.1}x",
            report.create_orders,
            run.create_orders_before_s,
            run.create_orders_after_s,
            run.speedup
        );
    }
    println!(
        "\ntotal {:.0} s; verified: {}; report: {}/report.html (also report.md, report.json, latency.svg, latency.png)",
        report.total_seconds,
        if report.verified { "yes" } else { "NO" },
        a.out.display()
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

fn distribute_cmd(g: &Global, a: DistributeArgs) -> Result<ExitCode> {
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
        let cat = shardready::catalog::Catalog::read(&client).await?;
        let analysis = shardready::analyze::analyze_read(&client, &cat, &aopts).await?;
        if a.dry_run {
            let plan = citus::plan(&analysis, &cat, &opts);
            if a.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.to_sql());
            }
            return anyhow::Ok(());
        }
        let session = shardready::db::Session::lock(client)
            .await
            .map_err(|e| match e {
                shardready::db::LockError::Held { holder } => citus::CitusError::Busy { holder },
                shardready::db::LockError::Db(e) => citus::CitusError::Db(e),
            })?;
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
            println!(
                "distributed on {} worker(s): {} reference, {} distributed tables ({} shards)",
                report.workers,
                report.plan.reference.len(),
                report.plan.distributed.len(),
                report.plan.shard_count
            );
            for (t, before, after) in &report.counts {
                println!("  {t}: {before} rows before, {after} after");
            }
            println!("  a tenant-scoped query routes to one shard");
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
