//! The command line's arguments (clap): every command, flag, default
//! and `--help` text. Nothing here runs anything.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use shardready::conn::{ConnOptions, Target};
use shardready::sandbox;

pub(crate) const ABOUT: &str =
    "Prepare a single-node, multi-tenant PostgreSQL database for distribution \
with Citus while the application keeps running.";

pub(crate) const LONG_ABOUT: &str = "\
Prepare a single-node, multi-tenant PostgreSQL database for distribution with
Citus while the application keeps running.

Where to connect (every command that talks to a database):
  --db 'postgresql://user@host:5432/db?sslmode=require'  or  --db 'host=... dbname=...'
  else DATABASE_URL, else libpq's PG* variables (PGHOST, PGUSER, ..., ~/.pgpass),
  else the running sandbox (`shardready sandbox start`).
  TLS as libpq: sslmode prefer (default)/require accept any certificate unless a
  root file exists (sslrootcert, ~/.postgresql/root.crt); verify-ca/verify-full
  verify; sslcert/sslkey for client certificates.

Quick start (the seed exercise, Tailspin Toys, on a local sandbox):
  shardready sandbox start
  shardready tailspin schema
  shardready tailspin load            # 6M rows, prints the four counts
  shardready sandbox psql -- -c '\\dt'";

#[derive(Parser)]
#[command(name = "shardready", version, about = ABOUT, long_about = LONG_ABOUT)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct Global {
    /// Database to work on: a conninfo string or a postgresql:// URL.
    #[arg(long, global = true, value_name = "CONNINFO|URL")]
    pub(crate) db: Option<String>,
    /// Sandbox directory [default: ~/.local/share/shardready/sandbox,
    /// or /var/lib/shardready/sandbox as root; `demo` uses its own,
    /// demo-sandbox beside it, unless --dir is given].
    #[arg(
        long,
        global = true,
        env = "SHARDREADY_SANDBOX_DIR",
        value_name = "DIR"
    )]
    pub(crate) dir: Option<PathBuf>,
}

impl Global {
    /// Whether `dir` came from SHARDREADY_SANDBOX_DIR rather than `--dir`.
    pub(crate) fn dir_from_env(&self) -> bool {
        let given = std::env::args_os().any(|a| {
            let a = a.to_string_lossy();
            a == "--dir" || a.starts_with("--dir=")
        });
        !given && self.dir.is_some()
    }
    pub(crate) fn sandbox_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(sandbox::default_dir)
    }
    pub(crate) fn target(&self) -> Result<Target> {
        Ok(Target::resolve(&ConnOptions {
            db: self.db.clone(),
            sandbox_dir: self.dir.clone(),
        })?)
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
  zcat orders.csv.gz | shardready copy orders -

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
  shardready plan --queries app.sql       # the application's statements, besides pg_stat_statements
  shardready plan --key-order orders=tenant-first   # choose a rebuilt key's column order

Each rebuilt key keeps the application's lookups: where a known statement
(pg_stat_statements, a function's body, --queries FILE) looks a table up by
its old key without the tenant column, the key becomes (id, tenant), so the
statement keeps its index; elsewhere (tenant, id). The plan ends with each
choice, why, and the statements behind it.

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
  shardready apply --replica postgresql://standby1/app --max-wal-rate 20MB --report ./report
  shardready apply --queries app.sql  # statements pg_stat_statements does not see

Right before each key swap apply reads the application's statements on that
table again; one the swap would leave without its index (it looks the table up
by the old key without the tenant column) gets its access path back first: a
plain index on the old key's columns, built concurrently, kept, with the
statement to drop it later (--no-lookup-index: none). After the swap it costs
them again (generic plans); one more than 1.5x costlier gets the same. With
--workload it compares the application after apply with its baseline and says
whether it got slower.

Every statement whose lock would queue the application runs under lock_timeout
and is retried with backoff and jitter; the backfill runs in keyset batches
sized to --batch-target, backs off when the application slows down — seen by
--workload, or by the database's own signals sampled from a second connection
(a canary commit, lock waits on shardready, pg_stat_statements, WAL, standby
lag; --report charts them in signals.svg) — and vacuums lightly every tenth
of the way so the table does not double. State
lives in the `shardready` schema: after a crash or Ctrl-C, run apply again and
it finishes the job. Only one apply runs at a time.")]
    Apply(ApplyArgs),
    /// Take an unfinished preparation back, online: helpers, NOT VALID keys
    /// and unswapped indexes go, autovacuum comes back; lists what stays.
    #[command(after_help = "\
Examples:
  shardready abort                       # after a stopped or killed apply
  shardready abort --format json

Removes what an unfinished `apply` made, each change under lock_timeout and
idempotent (rerun it after a kill): the sync triggers with their functions
and counters, composite keys not yet in place (NOT VALID or validated), the
(tenant, id) indexes not swapped in, the NOT NULL checks; autovacuum is given
back as its owner left it, then the `shardready` schema goes. The tenant
column stays (the application may write it already; the command to drop it
is printed). Keys already swapped in are past the point of no return: they
stay, valid, with what they rely on, and are listed; `shardready apply`
finishes the rest.")]
    Abort {
        /// lock_timeout of every statement that would queue the application.
        #[arg(allow_hyphen_values = true, value_parser = positive_duration, long, default_value = "100ms")]
        lock_timeout: humantime::Duration,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Pause a running apply from anywhere: its backfill stops after the
    /// current batch and no next step starts, until `shardready resume`.
    #[command(after_help = "\
Examples:
  shardready pause                      # from another terminal, during apply
  shardready status                     # says paused, and since when
  shardready resume --max-rate 20000    # go on, at most 20000 rows/s from now

The pause is a row in shardready.control, so it works from any machine that
reaches the database; while paused, apply holds no lock and no transaction.")]
    Pause,
    /// Resume a paused apply, optionally with a new backfill rate cap.
    #[command(after_help = "\
Examples:
  shardready resume
  shardready resume --max-rate 5000     # the backfill's new cap, without a restart
  shardready resume --app-p99-limit 40  # a looser latency budget for the backfill

When apply says the backfill has been held back for a while to keep the
application within its budget, a looser budget lets it go faster; `shardready
pause` stops it where it is instead.")]
    Resume {
        /// Backfill at most this many rows per second from now on (the
        /// running apply takes it within a second).
        #[arg(long, value_name = "ROWS/s", allow_hyphen_values = true, value_parser = positive_f64)]
        max_rate: Option<f64>,
        /// The application's latency budget (ms) the backfill's governor
        /// holds from now on, in place of apply's --app-p99-limit (the
        /// running apply takes it within a second).
        #[arg(long, value_name = "MS", allow_hyphen_values = true, value_parser = budget_ms)]
        app_p99_limit: Option<f64>,
    },
    /// Where things stand: apply's steps and backfill progress; on Citus,
    /// the tables it has and any key an interrupted distribute dropped.
    #[command(after_help = "\
Examples:
  shardready status                     # during or after apply, from another terminal
  shardready status --format json       # for scripts: steps, states, backfill cursors

An apply that was stopped (Ctrl-C, kill, lost connection) shows as
interrupted, with what stays meanwhile (autovacuum held off, the sync trigger)
and the command that resumes it.")]
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
                                                  # concurrently if the application writes, else blocking
  shardready distribute --concurrently            # create_distributed_table_concurrently, writes continue
  shardready distribute --blocking                # create_distributed_table: fastest, writes wait
  shardready distribute --shard-count 64 --isolate-hot-tenants
  shardready distribute --workload 6000/min       # with traffic, and what the application felt
  shardready distribute --allow-multi-shard all   # though statements without the tenant filter run

It refuses while analyze finds blockers, and while the application sends, at 1
call/s or more over 3 s of pg_stat_statements, a statement that will run on
every shard (`shardready queries` lists them with the filter to add). When a tenant table references both a
lookup table (becoming a reference table) and the tenant root, everything runs
in one transaction in sequential mode, so no relationship is ever unenforced.
Each transaction takes the locks its statements need before the first (listed
with --dry-run), never waiting for one while it holds another: no lock cycle
with the application for a deadlock detector to cancel the application for.

Run it again after any failure or kill: every foreign key it drops is saved in
shardready.distribute_fk first, and each statement checks whether it already
took effect, so a rerun does only the rest; a finished distribution reruns to
exit 0. Rehearse on a local Citus cluster: `shardready sandbox start --dir
/tmp/citus --workers 2`.")]
    Distribute(DistributeArgs),
    /// On a Citus coordinator: add worker nodes and spread the shards over
    /// them online (one shard group at a time, each under the commit guard,
    /// paused by the governor); optionally drain the coordinator; verify.
    #[command(
        name = "scale-out",
        after_help = "\
Examples:
  shardready scale-out --add worker-1:5432 --add worker-2:5432 --check
                                                  # the pre-flight only: nothing changes
  shardready scale-out --add worker-1 worker-2 --drain-coordinator --tune
  shardready scale-out --add 10.0.0.7:5432 --workload 3000/min --report scale-out-report
  shardready scale-out                            # finish an interrupted scale-out

Before anything changes it checks every new node (reachable with the same user
and database, Citus at the coordinator's version, wal_level=logical, Citus
allowed as an output plugin, enough worker processes, empty, disk room for
what it receives), every table's replica identity, and estimates the moves.
Each problem is a line with the command that fixes it.

shardready makes the moves the rebalancer plans itself, one shard group at a
time (citus_move_shard_placement), logical by default: the application keeps
writing, and waits only for each move's catch-up. Each logical move runs under
the commit guard, so a write committed asynchronously just before its switch
is not left on the old node, and the switch does not wait out Citus's
one-second catch-up sleep. Progress shows each move and the bytes copying.
While the application suffers (--pause-above, the canary, lock waits), the
move in flight is cancelled and the moves start again when calm.

After a kill -9 or a failure, run `shardready scale-out` again: it picks up
the nodes added and makes the moves left. `shardready status`
shows where it stands. Rehearse locally: `shardready sandbox start --dir
/tmp/citus --nodes 2` starts a single-node Citus cluster and two spare nodes."
    )]
    ScaleOut(ScaleOutArgs),
    /// The whole seed exercise on a fresh sandbox, with a disruption report.
    #[command(after_help = "\
Examples:
  shardready demo                                   # scale 1: the seed's 6M rows, 20000 orders/min
  shardready demo --scale 0.1 --rate 3000/min --out ./report
  shardready demo --compare-seed                    # also the seed's procedure, side by side
  shardready demo --keep                            # leave the sandbox running afterwards
  shardready demo --workers 0                       # distribute on the single node, no scale-out

Its sandbox: --dir when given on the command line, else
~/.local/share/shardready/demo-sandbox (or /var/lib/shardready/demo-sandbox as
root) — never the one SHARDREADY_SANDBOX_DIR names. Each run starts afresh,
removing the previous demo's sandbox; it refuses to touch a sandbox it did not
create (`sandbox start`'s). --db is refused: the demo makes its own database.

Phases (the seed's steps): fresh sandbox; tailspin schema and load (step 7's
counts); pg_cron check; create_orders(20000) timed; analyze; the application's
traffic starts; apply under traffic (add column, backfill, keys); verify;
jobs unscheduled; create_orders(20000) timed again (traffic paused); where
Citus is installed (citus.so) the sandbox is a single-node Citus cluster like
the seed's: distribute on it under the same traffic, then scale out onto
--workers new local nodes (`scale-out --drain-coordinator --tune`: the shards
move online to the workers) and show a tenant query routed to one shard. The
report (report.md, report.html, report.json, latency.svg, latency.png) shows
what each phase cost the application.")]
    Demo(DemoArgs),
    /// The application's statements that will run on every shard once
    /// distributed: the filter to add to each, how often each runs, and
    /// whether the application still sends it. Exit 0.
    #[command(after_help = "\
Examples:
  shardready queries                          # counts calls over 5 s of pg_stat_statements
  shardready queries --window 30s --queries app.sql
  shardready queries --format json            # schema shardready.queries/v1

Sources: pg_stat_statements (install it: shared_preload_libraries =
'pg_stat_statements', restart, CREATE EXTENSION pg_stat_statements), the
bodies of the database's functions, and --queries FILE (SQL, or a server log
with log_statement = 'all'). Each listing is recorded in
shardready.fan_out_statements (not with --no-record); the next one says of
each statement: still seen (called in the window), rewritten (not called in
the window, while the same statement with the tenant filter is), gone (not
called since the last listing) or idle (not called in the window, but since
the last listing or never listed). `shardready distribute` refuses while one
is still seen at 1 call/s or more, unless --allow-multi-shard ID (or all)
accepts it.")]
    Queries(QueriesArgs),
    /// Check the post-conditions: tenant column NOT NULL, composite keys and
    /// FKs validated, no invalid indexes, no triggers, no blocker. Exit 2 if not.
    #[command(after_help = "\
Examples:
  shardready verify                                  # after apply: exit 0 when ready for Citus
  shardready verify --tenant-column store_id --format json
  shardready verify --accept-failing-queries         # views Citus refuses are warnings, not blockers

verify and distribute take the resolutions apply recorded in its plan (--tenant-column, --reference,\n--drop-fk, --keep-triggers, ...); flags given here add to them.")]
    Verify {
        #[command(flatten)]
        analysis: AnalyzeTarget,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What a rule of `analyze` means: what Citus says, why, and the fix.
    /// Without RULE, lists every rule.
    #[command(
        after_help = "Examples:\n  shardready explain fk-without-tenant\n  shardready explain            # every rule, one line each\n\nAll pages: docs/rules.md"
    )]
    Explain {
        /// A rule id as `analyze` prints it, e.g. fk-without-tenant.
        rule: Option<String>,
    },
}

#[derive(Args)]
pub(crate) struct QueriesArgs {
    #[command(flatten)]
    pub(crate) analysis: AnalyzeTarget,
    /// How long to count the statements' calls in pg_stat_statements.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub(crate) window: humantime::Duration,
    /// Do not record this listing (in shardready.fan_out_statements) for
    /// the next one to compare with.
    #[arg(long)]
    pub(crate) no_record: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

#[derive(Args)]
pub(crate) struct DistributeArgs {
    #[command(flatten)]
    pub(crate) analysis: AnalyzeTarget,
    /// Shards per distributed table [default: the analyzer's suggestion].
    #[arg(long)]
    pub(crate) shard_count: Option<i64>,
    /// Use create_distributed_table_concurrently: writes continue (one
    /// table at a time, outside transactions; FKs dropped and re-added NOT
    /// VALID + VALIDATE). A small table nothing writes (64 MB or less) is
    /// still copied with create_distributed_table: no write waits and no
    /// read fails at a concurrent switch (citusdata/citus#6360). Each
    /// switch runs under a commit guard (a second connection, named
    /// shardready-switch-guard) so that no write committed with
    /// synchronous_commit = off just before it is left in the old shard,
    /// and that then wakes Citus's catch-up check rather than let the
    /// application's writes wait out its one-second sleep.
    /// Default: chosen by watching the tables for 3 s — concurrently when
    /// the application writes to them.
    #[arg(long, conflicts_with = "blocking")]
    pub(crate) concurrently: bool,
    /// Use create_distributed_table even if the application writes: the
    /// fastest, but each table's writes wait while it is copied.
    #[arg(long)]
    pub(crate) blocking: bool,
    /// Print the SQL instead of running it.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Move each hot tenant found by analyze to its own shard.
    #[arg(long)]
    pub(crate) isolate_hot_tenants: bool,
    /// Cancel a Citus call that runs longer than this (e.g. one waiting for
    /// a background worker that never comes); a rerun resumes. 0: no limit.
    #[arg(allow_hyphen_values = true, value_parser = duration, long, default_value = "30m")]
    pub(crate) statement_timeout: humantime::Duration,
    /// Run the built-in Tailspin order workload at this rate during
    /// distribute and report what it felt (latency, failed transactions).
    #[arg(long, value_name = "RATE")]
    pub(crate) workload: Option<String>,
    /// Distribute although this statement (an ID `shardready queries`
    /// lists), or `all`, runs at 1 call/s or more without a filter on the
    /// tenant column: it will run on every shard (repeatable, or
    /// comma-separated).
    #[arg(
        long,
        value_name = "ID|all",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub(crate) allow_multi_shard: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

#[derive(Args)]
pub(crate) struct ScaleOutArgs {
    /// Nodes to add, HOST[:PORT] (5432 when left out); the same user,
    /// password and database as --db.
    #[arg(long, value_name = "HOST[:PORT]", num_args = 1..)]
    pub(crate) add: Vec<shardready::citus::scale::NodeAddr>,
    /// Move every shard off the coordinator too (it keeps the metadata and
    /// the reference tables).
    #[arg(long)]
    pub(crate) drain_coordinator: bool,
    /// How shards move: auto (logical when every table has a replica
    /// identity), logical, or block-writes (faster; writes to each moving
    /// shard group wait for its copy).
    #[arg(long, value_enum, default_value_t = ScaleMode::Auto)]
    pub(crate) mode: ScaleMode,
    /// Set wal_retrieve_retry_interval to 500ms on every node for the
    /// duration (restored after): logical moves start sooner.
    #[arg(long)]
    pub(crate) tune: bool,
    /// Run the pre-flight and print it; change nothing.
    #[arg(long)]
    pub(crate) check: bool,
    /// Stop the moves (cancelling the one in flight) while more than 5% of
    /// the application's transactions (over 5 s) take longer than this.
    #[arg(allow_hyphen_values = true, value_parser = duration, long, default_value = "200ms")]
    pub(crate) pause_above: humantime::Duration,
    /// Cancel one Citus call (one shard group's move) that runs longer than
    /// this. 0: no limit.
    #[arg(allow_hyphen_values = true, value_parser = duration, long, default_value = "5m")]
    pub(crate) statement_timeout: humantime::Duration,
    /// Do not sample the database's signals (canary, lock waits, WAL).
    #[arg(long)]
    pub(crate) no_signals: bool,
    /// Run the built-in Tailspin order workload at this rate (before,
    /// during and after) and report what it felt.
    #[arg(long, value_name = "RATE")]
    pub(crate) workload: Option<String>,
    /// Write report.json, report.md and the charts (latency.svg with
    /// --workload, signals.svg) into DIR.
    #[arg(long, value_name = "DIR")]
    pub(crate) report: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

/// `--mode` of scale-out.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ScaleMode {
    Auto,
    Logical,
    BlockWrites,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Size relative to the seed's dataset (1 = 442 stores, ~6M rows).
    #[arg(allow_hyphen_values = true, value_parser = positive_f64, long, default_value_t = 1.0)]
    pub(crate) scale: f64,
    /// The application's traffic during the preparation.
    #[arg(long, default_value = "20000/min")]
    pub(crate) rate: String,
    /// Connections of the application's traffic.
    #[arg(allow_hyphen_values = true, value_parser = at_least_one::<usize>, long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// Where the report goes.
    #[arg(long, default_value = "shardready-report")]
    pub(crate) out: PathBuf,
    /// Leave the demo sandbox running afterwards (and print how to connect).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Also run the seed's procedure on an identical database: its steps as
    /// written, but its backfill job's runs back to back instead of one a
    /// minute (the same rows, without the minutes of waiting).
    #[arg(long)]
    pub(crate) compare_seed: bool,
    /// Orders of the timed create_orders call (the seed: 20000).
    #[arg(allow_hyphen_values = true, value_parser = at_least_one::<i32>, long, default_value_t = 20000)]
    pub(crate) create_orders: i32,
    /// Traffic-only time before and after the preparation.
    #[arg(allow_hyphen_values = true, value_parser = duration, long, default_value = "10s")]
    pub(crate) settle: humantime::Duration,
    /// Citus workers the demo scales out to at the end, where Citus is
    /// installed (0: distribute on the single node and stop there).
    #[arg(long, default_value_t = 2)]
    pub(crate) workers: u16,
}

#[derive(Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    pub(crate) analysis: AnalyzeTarget,
    /// lock_timeout of every statement that would queue the application.
    #[arg(allow_hyphen_values = true, value_parser = positive_duration, long, default_value = "100ms")]
    pub(crate) lock_timeout: humantime::Duration,
    /// Give up (cleanly) after waiting this long for one lock [default: never].
    #[arg(allow_hyphen_values = true, value_parser = duration, long)]
    pub(crate) max_wait: Option<humantime::Duration>,
    /// Target duration of one backfill batch.
    #[arg(allow_hyphen_values = true, value_parser = positive_duration, long, default_value = "100ms")]
    pub(crate) batch_target: humantime::Duration,
    /// Backfill at most this many rows per second.
    #[arg(allow_hyphen_values = true, value_parser = positive_f64, long, value_name = "ROWS/s")]
    pub(crate) max_rate: Option<f64>,
    /// The application's latency budget the backfill's governor holds:
    /// when more than 0.5% of the application's transactions (with
    /// --workload) or of the database's signal samples are slower than
    /// this, beyond the share that already was before the backfill, it
    /// waits after each batch, twice as long at each further look over
    /// budget, down to nearly a pause (a small batch every 2 s; the
    /// database's signals, without --workload, to half speed at most), and
    /// says so after 30 s; when the application is as slow while the backfill
    /// waits (or slow in a quarter of its samples then), the backfill
    /// keeps half its speed (it is not the cause).
    /// `1.5x`: that factor of the application's p99 measured before apply
    /// (needs --workload). [default: 1.5x with --workload, else 15 ms]
    /// `shardready resume --app-p99-limit MS` changes it while apply runs.
    #[arg(allow_hyphen_values = true, value_parser = app_limit, long, value_name = "MS|FACTORx")]
    pub(crate) app_p99_limit: Option<AppLimit>,
    /// How far the standbys may fall behind while the backfill writes:
    /// replay time (10s) or WAL bytes not yet replayed (64MB); after each
    /// batch the backfill waits while one is further behind. `off` does
    /// not watch them. Needs pg_monitor (or superuser) to see them.
    #[arg(long, value_name = "TIME|SIZE|off", default_value = "10s", value_parser = replica_budget)]
    pub(crate) max_replica_lag: LagBudget,
    /// A standby to watch by its own replay position, besides those the
    /// primary shows in pg_stat_replication (repeat for several): for a
    /// role without pg_monitor, a cascaded standby, or one restoring from
    /// the archive. Checked before anything changes.
    #[arg(long, value_name = "URL")]
    pub(crate) replica: Vec<String>,
    /// Keep the server's WAL below this many bytes per second while the
    /// backfill runs (e.g. 20MB): the backfill pauses when the server's
    /// WAL since the last few seconds is over it. For standbys, archives
    /// and checkpoints that cannot take more (plan's estimate says how
    /// much WAL each step writes).
    #[arg(long, value_name = "SIZE", value_parser = wal_rate)]
    pub(crate) max_wal_rate: Option<f64>,
    /// Run the built-in create_orders workload at this rate during apply and
    /// report what it felt per step (e.g. 3000/min).
    #[arg(long, value_name = "RATE")]
    pub(crate) workload: Option<String>,
    /// Do not sample the database's own signals. By default a second
    /// connection measures, ten times a second against a 2 s baseline taken
    /// before any change: a canary commit to shardready.canary, the
    /// application's lock waits on shardready's sessions, its statements'
    /// mean time (pg_stat_statements), WAL rate, checkpoints and standby lag;
    /// the backfill slows down on them and the report charts them.
    #[arg(long)]
    pub(crate) no_signals: bool,
    /// Remove the sync trigger even while rows still arrive without the column.
    #[arg(long)]
    pub(crate) force: bool,
    /// Window without trigger fills that shows the application writes the column.
    #[arg(allow_hyphen_values = true, value_parser = duration, long, default_value = "5s")]
    pub(crate) trigger_window: humantime::Duration,
    /// How long to wait for the application to write the column before stopping.
    #[arg(allow_hyphen_values = true, value_parser = duration, long, default_value = "60s")]
    pub(crate) await_app: humantime::Duration,
    /// Discard an unfinished stored plan and build a new one.
    #[arg(long)]
    pub(crate) replan: bool,
    /// Who runs the backfill: shardready (adaptive, throttled on the app's
    /// latency) or a pg_cron job (the seed's way, keyset batches).
    #[arg(long, value_enum, default_value_t = shardready::apply::BackfillVia::Client)]
    pub(crate) backfill_via: shardready::apply::BackfillVia,
    /// Let the backfill's UPDATEs fire the tables' own UPDATE triggers
    /// (they may change other columns, e.g. a `last_update` timestamp).
    /// Needed only when the role is not a superuser: a superuser's
    /// backfill runs with session_replication_role = replica, which fires
    /// none of them.
    #[arg(long)]
    pub(crate) fire_triggers: bool,
    /// Parallel workers for index builds and validations (0 leaves the
    /// other cores to the application).
    #[arg(long, default_value_t = 0)]
    pub(crate) parallel_workers: i32,
    /// Write report.json and report.md into this directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) report: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

#[derive(Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) analysis: AnalyzeTarget,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub(crate) format: PlanFormat,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// lock_timeout written into the SQL script.
    #[arg(allow_hyphen_values = true, value_parser = positive_duration, long, default_value = "100ms")]
    pub(crate) lock_timeout: humantime::Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PlanFormat {
    Text,
    Sql,
    Json,
}

/// The analysis options `plan` and `apply` share with `analyze`.
#[derive(Args, Clone)]
pub(crate) struct AnalyzeTarget {
    /// The tenant (distribution) column [default: inferred from the FKs].
    #[arg(long, value_name = "COLUMN")]
    pub(crate) tenant_column: Option<String>,
    /// Treat this table as a reference table (repeatable).
    #[arg(long, value_name = "TABLE")]
    pub(crate) reference: Vec<String>,
    /// Keep this table local (repeatable).
    #[arg(long, value_name = "TABLE")]
    pub(crate) local: Vec<String>,
    /// Drop this foreign key, which cannot hold across tenants (the
    /// application writes rows that reference another tenant's row by
    /// design): `apply` drops it first and prints its definition to restore
    /// it (repeatable).
    #[arg(long, value_name = "TABLE.CONSTRAINT", value_parser = parse_fk_ref)]
    pub(crate) drop_fk: Vec<shardready::analyze::tenant::FkRef>,
    /// Derive TABLE's tenant through this foreign key (then the referenced
    /// table's own path), instead of the default choice: a path whose
    /// columns are all NOT NULL, then the fewest hops. Several keys
    /// (`TABLE=FK1,FK2`) are tried in order for each row: for a table
    /// whose rows each set one of several nullable keys. A polymorphic
    /// pair without a foreign key (`TABLE=owner_id:Post=posts,Photo=photos`,
    /// the type in `owner_type`): each row's tenant from the table its type
    /// names (repeatable).
    #[arg(long = "path", value_name = "TABLE=CONSTRAINT[,…]", value_parser = parse_path)]
    pub(crate) path: Vec<PathArg>,
    /// Make foreign-key actions Citus refuses (ON DELETE SET NULL/SET
    /// DEFAULT, ON UPDATE CASCADE/SET NULL/SET DEFAULT) NO ACTION in the
    /// rewritten keys. Behaviour changes: deleting or re-keying a
    /// referenced row then fails while rows reference it; `analyze` says
    /// what changes for each key.
    #[arg(long)]
    pub(crate) fix_fk_actions: bool,
    /// Keep triggers that only change the row being written (a BEFORE
    /// row trigger setting `NEW.last_update`, a tsvector column):
    /// `distribute` turns on citus.enable_unsafe_triggers for its own
    /// session so Citus accepts them. Other triggers stay blockers.
    #[arg(long)]
    pub(crate) keep_triggers: bool,
    /// Accept that the queries analyze names under non-colocated-join
    /// (functions, views, statements joining distributed tables on other
    /// columns than the tenant column) fail once the tables are
    /// distributed: warnings instead of blockers for verify and
    /// distribute.
    #[arg(long)]
    pub(crate) accept_failing_queries: bool,
    /// The application's statements, besides pg_stat_statements and the
    /// database's functions: a file of SQL statements (`;`-separated, `$1`
    /// parameters welcome) or a server log with `statement:` / `execute`
    /// lines (log_min_duration_statement = 0). The plan keeps the index
    /// every one of them looks rows up by (repeatable).
    #[arg(long, value_name = "FILE", value_parser = readable_file)]
    pub(crate) queries: Vec<PathBuf>,
    /// The column order of TABLE's rebuilt keys: `tenant-first` (tenant,
    /// id) or `key-first` (id, tenant). By default the plan puts the old
    /// key first where a known statement looks TABLE up by it without the
    /// tenant column (so it keeps its index), the tenant first elsewhere
    /// (repeatable).
    #[arg(long, value_name = "TABLE=ORDER", value_parser = parse_key_order)]
    pub(crate) key_order: Vec<shardready::analyze::tenant::KeyOrderChoice>,
    /// Refuse, before any change, when a known statement would lose its
    /// index with a rebuilt key (it looks the table up by the old key
    /// without the tenant column): each is named with the tenant filter to
    /// add. Without it the plan keeps the old key first for such
    /// statements. `--key-order TABLE=…` for a table is a choice made, and
    /// lifts the refusal there.
    #[arg(long)]
    pub(crate) refuse_lost_lookups: bool,
    /// Build no index back for the application's lookups by an old key
    /// (they filter by the tenant column already). By default, a known
    /// statement that a key swap would leave without its index gets a
    /// plain index on the old key's columns, built before the swap (and
    /// counted in the plan's estimate).
    #[arg(long)]
    pub(crate) no_lookup_index: bool,
}

/// A file that can be read (`--queries`).
fn readable_file(s: &str) -> Result<PathBuf, String> {
    std::fs::File::open(s)
        .map(|_| PathBuf::from(s))
        .map_err(|e| format!("cannot read `{s}`: {e}"))
}

fn parse_key_order(s: &str) -> Result<shardready::analyze::tenant::KeyOrderChoice, String> {
    shardready::analyze::tenant::KeyOrderChoice::parse(s)
        .ok_or_else(|| format!("`{s}`: give the order as table=tenant-first or table=key-first"))
}

/// One `--path`: a table and the keys its tenant is taken through, or
/// the polymorphic pair it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathArg {
    Keys(Vec<shardready::analyze::tenant::FkRef>),
    Polymorphic(shardready::analyze::polymorphic::Polymorphic),
}

fn parse_path(s: &str) -> Result<PathArg, String> {
    use shardready::analyze::{polymorphic::Polymorphic, tenant::FkRef};
    let parsed = if s.contains(':') {
        Polymorphic::parse(s).map(PathArg::Polymorphic)
    } else {
        FkRef::parse_paths(s).map(PathArg::Keys)
    };
    parsed.ok_or_else(|| {
        format!(
            "`{s}`: give the path as table=constraint or schema.table=constraint (several keys \
             tried in order: table=constraint1,constraint2; a polymorphic pair: \
             table=owner_id:Post=posts,Photo=photos, its type column being owner_type)"
        )
    })
}

fn parse_fk_ref(s: &str) -> Result<shardready::analyze::tenant::FkRef, String> {
    shardready::analyze::tenant::FkRef::parse(s).ok_or_else(|| {
        format!("`{s}`: give the key as table.constraint or schema.table.constraint")
    })
}

/// The flags apply recorded, parsed back (one resolution at a time).
#[derive(clap::Parser)]
#[command(no_binary_name = true)]
struct Recorded {
    #[command(flatten)]
    analysis: AnalyzeTarget,
}

impl AnalyzeTarget {
    /// These flags with the resolutions `apply` recorded in its stored
    /// plan added (`verify` and `distribute` honour what apply was told;
    /// the tenant column given here wins), and each recorded flag taken,
    /// or why it could not be (a `--queries` file gone).
    pub(crate) fn with_recorded(mut self, recorded: &[String]) -> (AnalyzeTarget, Vec<String>) {
        use clap::Parser;
        let mut said = Vec::new();
        for flag in recorded {
            // A path only says how a missing column is derived: once apply
            // added it, there is nothing left to derive through it.
            if flag.starts_with("--path ") {
                said.push(format!("{flag} (not needed: apply derived the column)"));
                continue;
            }
            let tokens: Vec<&str> = match flag.split_once(' ') {
                Some((name, value)) => vec![name, value],
                None => vec![flag.as_str()],
            };
            match Recorded::try_parse_from(tokens) {
                Ok(r) => {
                    self.merge(r.analysis);
                    said.push(flag.clone());
                }
                Err(e) => said.push(format!("{flag} (not taken: {})", e.kind())),
            }
        }
        (self, said)
    }

    /// Adds `other`'s flags to these (lists joined without repeats; a
    /// switch on in either is on).
    fn merge(&mut self, other: AnalyzeTarget) {
        fn join<T: PartialEq>(to: &mut Vec<T>, from: Vec<T>) {
            for x in from {
                if !to.contains(&x) {
                    to.push(x);
                }
            }
        }
        if self.tenant_column.is_none() {
            self.tenant_column = other.tenant_column;
        }
        join(&mut self.reference, other.reference);
        join(&mut self.local, other.local);
        join(&mut self.drop_fk, other.drop_fk);
        join(&mut self.path, other.path);
        join(&mut self.queries, other.queries);
        join(&mut self.key_order, other.key_order);
        self.fix_fk_actions |= other.fix_fk_actions;
        self.keep_triggers |= other.keep_triggers;
        self.accept_failing_queries |= other.accept_failing_queries;
        self.refuse_lost_lookups |= other.refuse_lost_lookups;
        self.no_lookup_index |= other.no_lookup_index;
    }

    pub(crate) fn options(&self) -> shardready::analyze::AnalyzeOptions {
        use shardready::analyze::{tenant::parse_table, AnalyzeOptions, Overrides};
        AnalyzeOptions {
            overrides: Overrides {
                tenant_column: self.tenant_column.clone(),
                reference: self.reference.iter().map(|t| parse_table(t)).collect(),
                local: self.local.iter().map(|t| parse_table(t)).collect(),
                drop_fk: self.drop_fk.clone(),
                path: self
                    .path
                    .iter()
                    .flat_map(|p| match p {
                        PathArg::Keys(k) => k.clone(),
                        PathArg::Polymorphic(_) => Vec::new(),
                    })
                    .collect(),
                polymorphic: self
                    .path
                    .iter()
                    .filter_map(|p| match p {
                        PathArg::Polymorphic(x) => Some(x.clone()),
                        PathArg::Keys(_) => None,
                    })
                    .collect(),
                fix_fk_actions: self.fix_fk_actions,
                keep_triggers: self.keep_triggers,
                accept_failing_queries: self.accept_failing_queries,
                queries: self.queries.clone(),
                key_order: self.key_order.clone(),
                refuse_lost_lookups: self.refuse_lost_lookups,
                no_lookup_index: self.no_lookup_index,
            },
            full: false,
            catalog_only: true,
        }
    }
}

#[derive(Args)]
pub(crate) struct AnalyzeArgs {
    #[command(flatten)]
    pub(crate) target: AnalyzeTarget,
    /// Exact data checks (full scans) instead of bounded samples.
    #[arg(long)]
    pub(crate) full: bool,
    /// Catalog rules only: skip data checks and skew.
    #[arg(long, conflicts_with = "full")]
    pub(crate) catalog_only: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

impl AnalyzeArgs {
    pub(crate) fn options(&self) -> shardready::analyze::AnalyzeOptions {
        shardready::analyze::AnalyzeOptions {
            full: self.full,
            catalog_only: self.catalog_only,
            ..self.target.options()
        }
    }
}

#[derive(Args)]
pub(crate) struct WorkloadArgs {
    /// Target rate: ORDERS/min or ORDERS/s.
    #[arg(long, default_value = "20000/min")]
    pub(crate) rate: String,
    /// How long to run (e.g. 60s, 5m); 0 runs until Ctrl-C.
    #[arg(allow_hyphen_values = true, value_parser = duration, long, default_value = "60s")]
    pub(crate) duration: humantime::Duration,
    /// Concurrent connections.
    #[arg(allow_hyphen_values = true, value_parser = at_least_one::<usize>, long, default_value_t = 4)]
    pub(crate) connections: usize,
    #[arg(long, value_enum, default_value_t = shardready::workload::Mode::Client)]
    pub(crate) mode: shardready::workload::Mode,
    /// Whether line items carry store_id [auto: when the column exists].
    #[arg(long, value_enum, default_value_t = shardready::workload::StoreIdMode::Auto)]
    pub(crate) store_id: shardready::workload::StoreIdMode,
    /// Server mode: orders per create_orders call.
    #[arg(allow_hyphen_values = true, value_parser = at_least_one::<u32>, long, default_value_t = 3)]
    pub(crate) batch: u32,
    /// Server mode: run `SELECT create_orders(N)` once and print the time.
    #[arg(allow_hyphen_values = true, value_parser = at_least_one::<i32>, long, value_name = "N", conflicts_with = "schedule")]
    pub(crate) once: Option<i32>,
    /// Server mode: schedule create_orders with pg_cron every minute at
    /// --rate (like the seed) and return.
    #[arg(long)]
    pub(crate) schedule: bool,
    /// Random seed of the client driver.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) json_out: Option<PathBuf>,
    /// Write the per-second timeline as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) timeline: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

#[derive(Subcommand)]
pub(crate) enum JobsCmd {
    /// List pg_cron jobs.
    #[command(
        after_help = "Examples:\n  shardready jobs list\n  shardready jobs list --format json"
    )]
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Schedule (or replace) a job.
    #[command(
        after_help = "Example:\n  shardready jobs schedule create_orders '*/1 * * * *' 'SELECT create_orders(20000);'"
    )]
    Schedule {
        /// The job's name (a job of that name is replaced).
        name: String,
        /// Cron expression, e.g. '*/1 * * * *'.
        cron: String,
        /// SQL to run.
        command: String,
    },
    /// Remove a job.
    #[command(after_help = "Example:\n  shardready jobs unschedule create_orders")]
    Unschedule {
        /// The job's name, as `jobs list` shows it.
        name: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum SandboxCmd {
    /// Create (first time) and start the sandbox; does nothing if it runs.
    #[command(after_help = "\
Examples:
  shardready sandbox start
  shardready sandbox start --dir /tmp/sb --port 55432
  shardready sandbox start --dir /tmp/citus --workers 2   # a local Citus cluster
  shardready sandbox start --dir /tmp/citus --nodes 2     # single node + 2 spare nodes for scale-out
  SHARDREADY_PG_BIN=/usr/lib/postgresql/15/bin shardready sandbox start

pg_cron is preloaded and created when the postgresql-15-cron package is
installed (Citus likewise). As root, the server runs as the `postgres` OS user.")]
    Start(StartArgs),
    /// Stop the server (fast shutdown); data stays.
    #[command(
        after_help = "Examples:\n  shardready sandbox stop\n  shardready sandbox stop --dir /tmp/citus     # its workers too"
    )]
    Stop,
    /// Whether it runs, where, and what it has.
    #[command(
        after_help = "Examples:\n  shardready sandbox status\n  shardready sandbox status --format json     # {\"exists\": …, \"running\": …, \"port\": …}"
    )]
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the connection URL (e.g. `psql "$(shardready sandbox url)"`).
    #[command(
        after_help = "Examples:\n  psql \"$(shardready sandbox url)\"\n  export DATABASE_URL=\"$(shardready sandbox url)\""
    )]
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
    #[command(
        after_help = "Examples:\n  shardready sandbox destroy\n  shardready sandbox destroy --dir /tmp/citus"
    )]
    Destroy,
}

#[derive(Args)]
pub(crate) struct StartArgs {
    /// Directory with initdb/pg_ctl/postgres [default: found via pg_config
    /// --bindir or /usr/lib/postgresql/*/bin].
    #[arg(long, env = "SHARDREADY_PG_BIN", value_name = "DIR")]
    pub(crate) pg_bin: Option<PathBuf>,
    /// OS user the server runs as when shardready runs as root.
    #[arg(long, default_value = "postgres")]
    pub(crate) os_user: String,
    /// Port to listen on [default: a free one, remembered].
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Also start N Citus workers on loopback and register them: a local
    /// Citus cluster to rehearse `distribute` (needs Citus installed for
    /// these binaries).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) workers: u16,
    /// Also start N Citus nodes on loopback without adding them: what
    /// `shardready scale-out --add` takes in (without --workers, the
    /// coordinator holds the shards itself, like the seed's single node).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) nodes: u16,
    /// Do not load Citus even when it is installed (a plain PostgreSQL).
    #[arg(long, conflicts_with_all = ["workers", "nodes"])]
    pub(crate) no_citus: bool,
}

#[derive(Subcommand)]
pub(crate) enum TailspinCmd {
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
pub(crate) struct DataArgs {
    /// Size relative to the seed's dataset (1 = 442 stores, ~6M rows).
    #[arg(allow_hyphen_values = true, value_parser = positive_f64, long, default_value_t = 1.0)]
    pub(crate) scale: f64,
    /// Random seed; the same scale and seed give the same data.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
}

#[derive(Args)]
pub(crate) struct CopyArgs {
    /// Target table (`name` or `schema.name`).
    pub(crate) table: String,
    /// CSV files, glob patterns, zip archives (`data.zip` or
    /// `data.zip:PATTERN`), `-` for standard input, or a pipe (`<(zcat
    /// f.csv.gz)`); a stream is kept in a temporary file while it loads.
    #[arg(required = true, value_name = "FILE|GLOB|ZIP|-")]
    pub(crate) inputs: Vec<String>,
    /// Each file starts with a header line (skipped).
    #[arg(long)]
    pub(crate) header: bool,
    /// Field delimiter (one character; `\t` for tab).
    #[arg(long, default_value = ",")]
    pub(crate) delimiter: String,
    /// The string that means NULL [default: an unquoted empty field].
    #[arg(long)]
    pub(crate) null: Option<String>,
    /// Encoding of the files (e.g. LATIN1) [default: UTF8].
    #[arg(long)]
    pub(crate) encoding: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Value parsers that give the real reason for a bad number or duration
/// (a negative one reaches them instead of being taken for an option).
/// `--app-p99-limit`: milliseconds, or a factor of the baseline p99.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AppLimit {
    Ms(f64),
    Times(f64),
}

/// `resume --app-p99-limit`: milliseconds only (the running apply's
/// baseline is not known here).
fn budget_ms(s: &str) -> Result<f64, String> {
    match app_limit(s)? {
        AppLimit::Ms(ms) => Ok(ms),
        AppLimit::Times(f) => Err(format!(
            "{f}x: a factor needs the baseline apply measured; give milliseconds (e.g. 40)"
        )),
    }
}

fn app_limit(s: &str) -> Result<AppLimit, String> {
    let s = s.trim();
    match s.strip_suffix('x') {
        Some(f) => positive_f64(f).map(AppLimit::Times),
        None => positive_f64(s.strip_suffix("ms").unwrap_or(s)).map(AppLimit::Ms),
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be greater than 0".into()),
        Err(_) => Err("not a number".into()),
    }
}

fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(s: &str) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(v) if v >= T::from(1) => Ok(v),
        Ok(_) => Err("must be at least 1".into()),
        Err(_) if s.trim().starts_with('-') => Err("must be at least 1".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

fn duration(s: &str) -> Result<humantime::Duration, String> {
    if s.trim().starts_with('-') {
        return Err("a duration cannot be negative (e.g. 100ms, 2s, 5m)".into());
    }
    s.trim()
        .parse::<humantime::Duration>()
        .map_err(|e| format!("{e} (e.g. 100ms, 2s, 5m)"))
}

fn positive_duration(s: &str) -> Result<humantime::Duration, String> {
    let d = duration(s)?;
    if std::time::Duration::from(d).is_zero() {
        return Err("must be longer than 0 (e.g. 100ms)".into());
    }
    Ok(d)
}

/// `--max-replica-lag`: a budget, or `off` (None).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LagBudget(pub(crate) Option<shardready::apply::control::ReplicaBudget>);

/// `--max-wal-rate`: bytes per second, as `20MB` (or `20MB/s`).
fn wal_rate(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches("/s").parse() {
        Ok(shardready::apply::control::ReplicaBudget::Bytes(b)) => Ok(b as f64),
        _ => Err("a size per second, e.g. 20MB".into()),
    }
}

fn replica_budget(s: &str) -> Result<LagBudget, String> {
    if s.trim() == "off" {
        return Ok(LagBudget(None));
    }
    s.parse().map(|b| LagBudget(Some(b)))
}
