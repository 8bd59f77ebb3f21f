//! External-client benchmark: the application is not shardready's workload
//! but a separate process, pgbench, calling the seed's `create_orders(1)` at
//! a fixed rate and logging every transaction's latency (from its scheduled
//! start: pgbench's time plus its schedule lag, so a stall is not hidden by
//! the transactions it delayed). On copies of Tailspin in one sandbox, side
//! by side under the same client, at each rate:
//!   (c) the single `UPDATE … FROM orders`, the floor of a backfill;
//!   (a) the seed's procedure as written;
//!   (b) `shardready apply` with its defaults and no `--workload`: the
//!       governor sees only the database's own signals.
//! As in the seed, the application's code changes once the column exists:
//! `create_orders` is replaced by the version that writes store_id.
//!
//!   cargo bench --bench external                      # full scale, 50/s and 333/s
//!   SCALE=0.1 RATES=50/s cargo bench --bench external
//!   SKIP_SEED=1 cargo bench --bench external          # (c) and (b) only
//!   CAPS=60000,30000 RATES=333/s cargo bench --bench external   # (b) again with
//!       each --max-rate cap: the trade-off between the client's p99 and
//!       the backfill's time
//!   WAL_CAPS=40,20 RATES=333/s cargo bench --bench external   # the same
//!       with each --max-wal-rate cap (MB/s of the server's WAL)
//!   BUSY=2 SKIP_SEED=1 cargo bench --bench external   # two CPU-busy
//!       processes beside the database the whole run (baselines included):
//!       a machine with even less headroom
//!   CLIENT=lookup cargo bench --bench external        # an application that
//!       looks orders and line items up by their own ids (prepared
//!       statements, seen by pg_stat_statements): its latency before,
//!       during and after apply, with the keys as apply made them before
//!       it knew the application's statements (--key-order …=tenant-first
//!       --no-lookup-index, the baseline), as it makes them now (the
//!       default), and tenant-first by choice with the lookup index kept
//!       (--key-order …=tenant-first)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::{fresh_db, quiesce};
use shardready::apply::{self, ApplyOptions};
use shardready::baseline;
use shardready::conn::Target;
use shardready::sandbox::{Profile, Sandbox, SandboxOptions};
use shardready::workload::{self, CREATE_ORDERS_SQL};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Seconds since the epoch, now.
fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One transaction from pgbench's log: when it ended (epoch seconds) and
/// its latency from its scheduled start (ms).
#[derive(Clone, Copy)]
struct Tx {
    end_s: f64,
    ms: f64,
}

/// pgbench run in 5-second chunks (each writes its complete log when it
/// ends) until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<Tx>, u64)>,
}

impl Client {
    /// pgbench calling `create_orders(1)` (the seed's application).
    fn start(pgbench: PathBuf, url: String, rate: f64, dir: PathBuf) -> Client {
        Self::with_script(pgbench, url, rate, dir, "SELECT create_orders(1);\n".into())
    }

    /// pgbench running `script` (prepared statements, as drivers send
    /// them).
    fn with_script(
        pgbench: PathBuf,
        url: String,
        rate: f64,
        dir: PathBuf,
        script_text: String,
    ) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            let script = dir.join("app.sql");
            std::fs::write(&script, script_text).unwrap();
            let (mut txs, mut failed) = (Vec::new(), 0_u64);
            let mut chunk = 0;
            while !flag.load(Ordering::SeqCst) {
                chunk += 1;
                let prefix = dir.join(format!("chunk{chunk}"));
                let out = std::process::Command::new(&pgbench)
                    .args([
                        "-n", "-c", "4", "-j", "2", "-T", "5", "-l", "-M", "prepared",
                    ])
                    .arg("-R")
                    .arg(format!("{rate}"))
                    .arg("-f")
                    .arg(&script)
                    .arg(format!("--log-prefix={}", prefix.display()))
                    .arg(&url)
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                failed += stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("number of failed transactions: "))
                    .and_then(|l| l.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                failed += stderr.matches("aborted").count() as u64;
                txs.extend(read_logs(&dir, &prefix));
            }
            (txs, failed)
        });
        Client { stop, task }
    }

    async fn stop(self) -> (Vec<Tx>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// The transactions in a chunk's log files (`prefix.PID[.N]`).
fn read_logs(dir: &Path, prefix: &Path) -> Vec<Tx> {
    let name = prefix.file_name().unwrap().to_string_lossy().to_string();
    let mut txs = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let f = entry.file_name().to_string_lossy().to_string();
        if !f.starts_with(&format!("{name}.")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for line in text.lines() {
            // client tx time_us script epoch epoch_us [lag_us]
            let v: Vec<&str> = line.split_whitespace().collect();
            if v.len() < 6 || v[2] == "skipped" || v[2] == "failed" {
                continue;
            }
            let time_us: f64 = v[2].parse().unwrap_or(0.0);
            let lag_us: f64 = v.get(6).and_then(|x| x.parse().ok()).unwrap_or(0.0);
            let end_s = v[4].parse::<f64>().unwrap() + v[5].parse::<f64>().unwrap() / 1e6;
            txs.push(Tx {
                end_s,
                ms: (time_us + lag_us) / 1000.0,
            });
        }
        std::fs::remove_file(entry.path()).unwrap();
    }
    txs
}

/// Latency of the transactions that ended in [from, to).
struct Window {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn window(txs: &[Tx], from: f64, to: f64) -> Window {
    let mut ms: Vec<f64> = txs
        .iter()
        .filter(|t| t.end_s >= from && t.end_s < to)
        .map(|t| t.ms)
        .collect();
    ms.sort_by(f64::total_cmp);
    let q = |q: f64| {
        ms.get(((ms.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Window {
        n: ms.len(),
        p50: q(0.5),
        p99: q(0.99),
        max: ms.last().copied().unwrap_or(0.0),
    }
}

struct Phase {
    what: String,
    from: f64,
    to: f64,
}

fn print_phases(title: &str, txs: &[Tx], failed: u64, phases: &[Phase]) {
    println!("\n{title}  (failed transactions: {failed})");
    println!(
        "  {:<40} {:>8} {:>7} {:>9} {:>9} {:>9}",
        "phase", "seconds", "tx", "p50", "p99", "max"
    );
    for p in phases {
        let w = window(txs, p.from, p.to);
        println!(
            "  {:<40} {:>8.1} {:>7} {:>7.1}ms {:>7.1}ms {:>7.1}ms",
            p.what,
            p.to - p.from,
            w.n,
            w.p50,
            w.p99,
            w.max
        );
    }
}

/// A fresh copy of Tailspin with the seed's `create_orders`.
async fn tailspin_db(sb: &Sandbox, name: &str, scale: f64) -> Target {
    let t = fresh_db(sb, name, scale).await;
    let c = t.connect().await.unwrap();
    c.batch_execute(CREATE_ORDERS_SQL).await.unwrap();
    t
}

/// The application's deployment: once `line_items.store_id` exists,
/// `create_orders` writes it (as the seed's procedure has it).
fn deploy_when_column_exists(t: &Target) -> tokio::task::JoinHandle<()> {
    let t = t.clone();
    tokio::spawn(async move {
        let c = t.connect().await.unwrap();
        loop {
            let exists: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'line_items'::regclass \
                       AND attname = 'store_id' AND NOT attisdropped)",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if exists {
                c.batch_execute(&workload::create_orders_with_store_id_sql())
                    .await
                    .unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

fn main() {
    let scale: f64 = env("SCALE", "1").parse().unwrap();
    let rates: Vec<f64> = env("RATES", "50/s,333/s")
        .split(',')
        .map(|r| workload::parse_rate(r.trim()).unwrap())
        .collect();
    let settle = Duration::from_secs(env("SETTLE_SECONDS", "10").parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("shardready-bench-external")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut opts = SandboxOptions::new(dir.path().join("sb"));
    opts.profile = Profile::Bulk;
    let sb = Sandbox::start(&opts).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // BUSY=N: N processes that each keep a core busy, the whole run.
    let busy: Vec<std::process::Child> = (0..env("BUSY", "0").parse::<usize>().unwrap())
        .map(|_| {
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap()
        })
        .collect();
    if !busy.is_empty() {
        println!("{} CPU-busy processes run beside the database", busy.len());
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let lookup = env("CLIENT", "orders") == "lookup";
            for (i, rate) in rates.iter().enumerate() {
                if lookup {
                    run_lookup(&sb, scale, *rate, settle, &logs, i).await;
                } else {
                    run(&sb, scale, *rate, settle, &logs, i).await;
                }
            }
        })
    }));
    for mut b in busy {
        let _ = b.kill();
        let _ = b.wait();
    }
    sb.destroy().unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

async fn run(sb: &Sandbox, scale: f64, rate: f64, settle: Duration, logs: &Path, round: usize) {
    let pgbench = sb.bin_dir().join("pgbench");
    println!(
        "\n=== external client: pgbench, create_orders(1) at {rate:.0}/s, 4 connections; scale {scale} ==="
    );
    let skip_seed = std::env::var_os("SKIP_SEED").is_some();
    let names = [
        format!("floor{round}"),
        format!("seed{round}"),
        format!("ours{round}"),
    ];
    let mut dbs = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if i == 1 && skip_seed {
            dbs.push(None);
            continue;
        }
        eprintln!("loading {n}...");
        dbs.push(Some(tailspin_db(sb, n, scale).await));
    }
    let client = |n: &str| {
        let dir = logs.join(n);
        std::fs::create_dir_all(&dir).unwrap();
        Client::start(pgbench.clone(), sb.url_for(n), rate, dir)
    };
    let mut summary = Vec::new();

    // (c) the floor.
    let t = dbs[0].as_ref().unwrap();
    eprintln!("(c) single UPDATE ... FROM orders...");
    let app = client(&names[0]);
    let deploy = deploy_when_column_exists(t);
    tokio::time::sleep(settle).await;
    let c = t.connect().await.unwrap();
    let from = now_s();
    let single = baseline::single_update(&c).await.unwrap().as_secs_f64();
    let to = now_s();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (txs, failed) = app.stop().await;
    deploy.abort();
    drop(c);
    let phases = vec![
        Phase {
            what: "before (baseline)".into(),
            from: from - settle.as_secs_f64(),
            to: from,
        },
        Phase {
            what: "single UPDATE".into(),
            from,
            to,
        },
    ];
    print_phases(
        "(c) the floor: one UPDATE … FROM orders",
        &txs,
        failed,
        &phases,
    );
    quiesce(sb, Some(&names[0])).await;

    // (a) the seed's procedure.
    if let Some(t) = &dbs[1] {
        eprintln!("(a) the seed's procedure...");
        let app = client(&names[1]);
        let deploy = deploy_when_column_exists(t);
        tokio::time::sleep(settle).await;
        let c = t.connect().await.unwrap();
        let (t0, w0) = (Instant::now(), now_s());
        let at = |i: Instant| w0 + i.duration_since(t0).as_secs_f64();
        let steps = baseline::run_seed_procedure(&c, 1_000_000, || {})
            .await
            .unwrap();
        let end = now_s();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (txs, failed) = app.stop().await;
        deploy.abort();
        let mut phases = vec![Phase {
            what: "before (baseline)".into(),
            from: w0 - settle.as_secs_f64(),
            to: w0,
        }];
        for p in &steps {
            phases.push(Phase {
                what: p.name.chars().take(40).collect(),
                from: at(p.start.unwrap()),
                to: at(p.end.unwrap()),
            });
        }
        phases.push(Phase {
            what: "whole procedure".into(),
            from: w0,
            to: end,
        });
        let backfill = steps
            .iter()
            .find(|p| p.name == "backfill")
            .map_or(f64::NAN, |p| p.seconds);
        print_phases("(a) the seed's procedure as written", &txs, failed, &phases);
        let base = window(&txs, w0 - settle.as_secs_f64(), w0);
        let whole = window(&txs, w0, end);
        summary.push(("seed's procedure", base, whole, failed, backfill));
        quiesce(sb, Some(&names[1])).await;
    }

    // (b) shardready apply, defaults, no --workload.
    let t = dbs[2].as_ref().unwrap();
    let (base, whole, failed, backfill) = apply_run(t, client(&names[2]), settle, None).await;
    println!("\nsummary at {rate:.0}/s (single UPDATE: {single:.1} s)");
    for (what, base, whole, failed, backfill) in &summary {
        summary_line(what, base, whole, *failed, *backfill, single);
    }
    summary_line("shardready apply", &base, &whole, failed, backfill, single);
    quiesce(sb, Some(&names[2])).await;

    // The trade-offs: the same apply with a cap on the backfill's rows
    // (CAPS, rows/s) or on the server's WAL (WAL_CAPS, MB/s).
    let list = |name: &str| -> Vec<f64> {
        std::env::var(name)
            .ok()
            .map(|c| c.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_default()
    };
    let caps: Vec<Cap> = list("CAPS")
        .into_iter()
        .map(Cap::Rows)
        .chain(list("WAL_CAPS").into_iter().map(Cap::WalMb))
        .collect();
    if !caps.is_empty() {
        let mut curve = vec![(None, base, whole, failed, backfill)];
        for (i, cap) in caps.iter().enumerate() {
            let name = format!("cap{round}x{i}");
            eprintln!("loading {name}...");
            let t = tailspin_db(sb, &name, scale).await;
            let r = apply_run(&t, client(&name), settle, Some(*cap)).await;
            quiesce(sb, Some(&name)).await;
            curve.push((Some(*cap), r.0, r.1, r.2, r.3));
        }
        println!("\ntrade-off at {rate:.0}/s: a cap on the backfill -> the client's p99 / max, the backfill's time");
        for (cap, base, whole, failed, backfill) in &curve {
            let what = match cap {
                Some(c) => c.flag(),
                None => "no cap (default)".into(),
            };
            summary_line(&what, base, whole, *failed, *backfill, single);
        }
    }
}

/// A cap on the backfill for the trade-off curve.
#[derive(Clone, Copy, Debug)]
enum Cap {
    /// `--max-rate`, rows per second.
    Rows(f64),
    /// `--max-wal-rate`, MB of WAL per second.
    WalMb(f64),
}

impl Cap {
    fn flag(&self) -> String {
        match self {
            Cap::Rows(r) => format!("--max-rate {r:.0}"),
            Cap::WalMb(m) => format!("--max-wal-rate {m:.0}MB"),
        }
    }
}

/// shardready apply with its defaults and no `--workload` (a rate cap when
/// given) under the client: the client's baseline and whole-apply windows,
/// its failures and the backfill's seconds.
async fn apply_run(
    t: &Target,
    app: Client,
    settle: Duration,
    cap: Option<Cap>,
) -> (Window, Window, u64, f64) {
    eprintln!("(b) shardready apply (cap {cap:?})...");
    let deploy = deploy_when_column_exists(t);
    tokio::time::sleep(settle).await;
    let w0 = now_s();
    let mut opts = ApplyOptions {
        progress: false,
        ..ApplyOptions::default()
    };
    match cap {
        Some(Cap::Rows(r)) => opts.pace.max_rate = Some(r),
        Some(Cap::WalMb(m)) => opts.pace.max_wal_rate = Some(m * 1e6),
        None => {}
    }
    let report = apply::apply(t, &opts, None).await.unwrap();
    let end = now_s();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (txs, failed) = app.stop().await;
    deploy.abort();
    let mut phases = vec![Phase {
        what: "before (baseline)".into(),
        from: w0 - settle.as_secs_f64(),
        to: w0,
    }];
    for s in &report.steps {
        phases.push(Phase {
            what: s.id.chars().take(40).collect(),
            from: w0 + s.started_at_s,
            to: w0 + s.started_at_s + s.seconds,
        });
    }
    phases.push(Phase {
        what: "whole apply".into(),
        from: w0,
        to: end,
    });
    let title = match cap {
        Some(c) => format!("(b) shardready apply (no --workload, {})", c.flag()),
        None => "(b) shardready apply (defaults, no --workload)".into(),
    };
    print_phases(&title, &txs, failed, &phases);
    for b in &report.backfills {
        println!(
            "  backfill {}: {} rows in {} batches, {:.1} s, throttled {:.1} s {:?}",
            b.table, b.rows, b.batches, b.seconds, b.throttled_seconds, b.held_back
        );
    }
    if let Some(sig) = &report.signals {
        print!("  {}", shardready::report::text::signals_line(sig));
    }
    if let Some(cost) = shardready::apply::budget::cost_line(&report.steps, report.seconds) {
        println!("  {cost}");
    }
    let backfill: f64 = report.backfills.iter().map(|b| b.seconds).sum();
    (
        window(&txs, w0 - settle.as_secs_f64(), w0),
        window(&txs, w0, end),
        failed,
        backfill,
    )
}

fn summary_line(
    what: &str,
    base: &Window,
    whole: &Window,
    failed: u64,
    backfill: f64,
    single: f64,
) {
    println!(
        "  {what:<18} client p99 {:>6.1} ms vs baseline {:>5.1} ms ({:.2}x; target <= 1.5x), max {:>6.1} ms (target <= 150), failed {failed}, backfill {:>6.1} s ({:.2}x the single UPDATE; target <= 1.5x)",
        whole.p99,
        base.p99,
        whole.p99 / base.p99.max(1e-9),
        whole.max,
        backfill,
        backfill / single
    );
}

/// The id-lookup application, side by side on two copies: apply with the
/// keys in front of the tenant column where this client needs them (the
/// default: the plan reads its statements from pg_stat_statements) and,
/// as the baseline, with the tenant column first everywhere (what apply
/// did before it knew the application's statements).
async fn run_lookup(
    sb: &Sandbox,
    scale: f64,
    rate: f64,
    settle: Duration,
    logs: &Path,
    round: usize,
) {
    let pgbench = sb.bin_dir().join("pgbench");
    println!(
        "\n=== id-lookup client: pgbench, an order read and a line item updated by id at {rate:.0}/s, 4 connections; scale {scale} ==="
    );
    let mut rows = Vec::new();
    for (name, key_order, lookup_index, title) in [
        (
            format!("tenantfirst{round}"),
            true,
            false,
            "apply --key-order …=tenant-first --no-lookup-index (the baseline: the keys as apply made them before)",
        ),
        (
            format!("keyfirst{round}"),
            false,
            true,
            "apply (default: the plan keeps the lookups' index in the key)",
        ),
        (
            format!("lookup{round}"),
            true,
            true,
            "apply --key-order …=tenant-first (the lookups' index built back before each swap)",
        ),
    ] {
        eprintln!("loading {name}...");
        let t = tailspin_db(sb, &name, scale).await;
        let c = t.connect().await.unwrap();
        let max = |sql: &'static str| {
            let c = &c;
            async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
        };
        let orders = max("SELECT max(order_id) FROM orders").await;
        let items = max("SELECT max(line_item_id) FROM line_items").await;
        // The application's statements are counted in this database too.
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .unwrap();
        let dir = logs.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let app = Client::with_script(
            pgbench.clone(),
            sb.url_for(&name),
            rate,
            dir,
            format!(
                "\\set o random(1, {orders})\n\\set l random(1, {items})\n\
                 SELECT status FROM orders WHERE order_id = :o;\n\
                 UPDATE line_items SET quantity = quantity WHERE line_item_id = :l;\n"
            ),
        );
        tokio::time::sleep(settle).await;
        let mut opts = ApplyOptions {
            progress: false,
            ..ApplyOptions::default()
        };
        opts.lookup_index = lookup_index;
        if key_order {
            opts.analyze.overrides.key_order = ["orders", "line_items", "products"]
                .iter()
                .map(|t| {
                    shardready::analyze::tenant::KeyOrderChoice::parse(&format!("{t}=tenant-first"))
                        .unwrap()
                })
                .collect();
        }
        let w0 = now_s();
        let report = apply::apply(&t, &opts, None).await.unwrap();
        let end = now_s();
        tokio::time::sleep(settle).await;
        let after_end = now_s();
        let (txs, failed) = app.stop().await;
        let phases = vec![
            Phase {
                what: "before (baseline)".into(),
                from: w0 - settle.as_secs_f64(),
                to: w0,
            },
            Phase {
                what: "during apply".into(),
                from: w0,
                to: end,
            },
            Phase {
                what: "after apply".into(),
                from: end,
                to: after_end,
            },
        ];
        print_phases(title, &txs, failed, &phases);
        for k in &report.access.keys {
            println!("  key {}.{}: ({})", k.table, k.key, k.columns.join(", "));
        }
        for k in &report.kept_paths {
            println!(
                "  index built {}: {} ({})",
                k.built,
                k.index,
                k.columns.join(", ")
            );
        }
        let before = window(&txs, w0 - settle.as_secs_f64(), w0);
        let after = window(&txs, end, after_end);
        rows.push((title, before, after, failed));
        drop(c);
        quiesce(sb, Some(&name)).await;
    }
    println!(
        "\nsummary at {rate:.0}/s: the client after apply against before (target: p50 <= 1.2x)"
    );
    for (what, before, after, failed) in &rows {
        println!(
            "  {what}\n    p50 {:.1} -> {:.1} ms ({:.2}x), p99 {:.1} -> {:.1} ms, {} -> {} tx in {:.0} s, failed {failed}",
            before.p50,
            after.p50,
            after.p50 / before.p50.max(1e-9),
            before.p99,
            after.p99,
            before.n,
            after.n,
            settle.as_secs_f64()
        );
    }
}
