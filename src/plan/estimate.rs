//! What a plan will cost before it runs: per step, the expected duration,
//! the WAL it writes (what standbys and the archive receive), the disk it
//! adds (new column values in new row versions, dead versions until the
//! VACUUM step, new indexes before the old ones go) and its lock exposure;
//! totals against the server's free space where it can be read, and
//! against `max_wal_size` (a backfill writing several times it forces
//! checkpoints). Sizes come from the catalog's statistics; durations from
//! rates measured here (see [`Rates`]), so they are an order of magnitude,
//! and apply's progress line shows the real rate.

use serde::Serialize;
use tokio_postgres::Client;

use super::{Impact, Plan, Step};
use crate::catalog::{Catalog, QName, TableKind};

/// Throughputs measured on the reference machine (2 cores, SSD; full-scale
/// Tailspin — 4.0M line items, 2.0M orders — with an external client at 50
/// orders/s, `cargo bench --bench external`): the backfill filled 4.0M
/// rows in 37.3 s (107k rows/s, its governor included); the unique index
/// on (store_id, line_item_id) took 5.0 s; the composite foreign key to
/// orders validated in 4.0 s; line_items' NOT NULL check took 0.6 s and
/// its VACUUM 2.1 s.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rates {
    pub backfill_rows_s: f64,
    pub index_rows_s: f64,
    pub fk_rows_s: f64,
    pub scan_mb_s: f64,
    pub vacuum_mb_s: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            backfill_rows_s: 110_000.0,
            index_rows_s: 800_000.0,
            fk_rows_s: 1_000_000.0,
            scan_mb_s: 550.0,
            vacuum_mb_s: 170.0,
        }
    }
}

/// WAL of the backfill per byte of heap, index and tuple headers it
/// rewrites: new row versions, their index entries and the full-page
/// images after each checkpoint (measured: 385 MB for the 1.2M line items
/// above).
const BACKFILL_WAL_FACTOR: f64 = 2.8;

/// Share of the heap a backfill adds, with its light VACUUMs between
/// batches (measured 27% on line_items; 112% without them).
const BACKFILL_HEAP_GROWTH: f64 = 0.3;

/// A unique btree entry: 8-byte header with the row pointer, 8 bytes per
/// key column (bigint, or int padded), a 4-byte line pointer, at 90% fill
/// (measured 31.6 bytes a row for (store_id, line_item_id)).
fn index_entry_bytes(columns: usize) -> f64 {
    (12.0 + 8.0 * columns as f64) / 0.9
}

#[derive(Debug, Clone, Serialize)]
pub struct StepEstimate {
    pub position: usize,
    pub id: String,
    pub seconds: f64,
    pub wal_bytes: i64,
    pub disk_bytes: i64,
    /// How it affects the application (the plan's lock column).
    pub lock: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub schema: &'static str,
    pub steps: Vec<StepEstimate>,
    pub seconds: f64,
    pub wal_bytes: i64,
    /// The most disk the preparation holds at once (before the old keys
    /// and the dead row versions are given back).
    pub disk_bytes: i64,
    /// Free space where the data directory is, when this machine can see
    /// it (a local server and a role that may read `data_directory`).
    pub free_bytes: Option<i64>,
    pub max_wal_size_bytes: Option<i64>,
    pub rates: Rates,
    pub warnings: Vec<String>,
}

/// Rows, heap and index bytes of a table, its partitions included.
fn sizes(cat: &Catalog, name: &QName) -> (f64, f64, f64) {
    let Some(t) = cat.table(name) else {
        return (0.0, 0.0, 0.0);
    };
    let parts: Vec<_> = if t.kind == TableKind::Partitioned {
        cat.tables
            .iter()
            .filter(|p| p.kind != TableKind::Partitioned && cat.top_parent(p) == &t.name)
            .collect()
    } else {
        vec![t]
    };
    parts.iter().fold((0.0, 0.0, 0.0), |(r, h, i), p| {
        (
            r + p.row_estimate.max(0) as f64,
            h + p.heap_bytes as f64,
            i + p.index_bytes as f64,
        )
    })
}

/// The estimate of `plan` over the tables `cat` describes; `trigger_window`
/// is how long the step removing the sync trigger watches the application.
pub fn estimate(
    plan: &Plan,
    cat: &Catalog,
    rates: &Rates,
    trigger_window: std::time::Duration,
) -> Estimate {
    let mut steps = Vec::new();
    let mut disk = 0.0_f64;
    for (i, step) in plan.steps.iter().enumerate() {
        let (rows, heap, idx) = step
            .kind()
            .table()
            .map_or((0.0, 0.0, 0.0), |t| sizes(cat, t));
        let mb = |b: f64| b / 1e6;
        let (seconds, wal, grow) = match step {
            Step::Backfill(_) => (
                rows / rates.backfill_rows_s,
                (heap + idx + rows * 24.0) * BACKFILL_WAL_FACTOR,
                // New row versions (less what the light VACUUMs reuse) and
                // an index entry per version until the VACUUM step.
                heap * BACKFILL_HEAP_GROWTH + idx,
            ),
            Step::UniqueIndex(u) => {
                let mut bytes = rows * index_entry_bytes(u.columns.len().max(1));
                let mut seconds = rows / rates.index_rows_s;
                // The index on the old key apply builds before the swap
                // for the statements that look the table up by it alone.
                let lookup = plan.access.keys.iter().find(|c| {
                    c.lookup_index.is_some() && c.table == u.table && c.columns == u.columns
                });
                if let Some(c) = lookup {
                    bytes += rows * index_entry_bytes(c.columns.len().saturating_sub(1).max(1));
                    seconds += rows / rates.index_rows_s;
                }
                (seconds, bytes, bytes)
            }
            Step::NotNull(_) => (mb(heap) / rates.scan_mb_s, 0.0, 0.0),
            Step::ForeignKey(_) => (rows / rates.fk_rows_s, 0.0, 0.0),
            Step::Vacuum(_) => (mb(heap) / rates.vacuum_mb_s, heap * 0.2, 0.0),
            Step::DropTrigger(_) => (trigger_window.as_secs_f64(), 0.0, 0.0),
            Step::Analyze(_) => (0.5, 0.0, 0.0),
            _ => (0.0, 0.0, 0.0),
        };
        // Everything added stays until the swaps and the VACUUM near the
        // end: the peak is the sum (the old keys' space comes back after).
        disk += grow;
        steps.push(StepEstimate {
            position: i + 1,
            id: step.id(),
            seconds,
            wal_bytes: wal as i64,
            disk_bytes: grow as i64,
            lock: match step.impact() {
                Impact::Brief => "brief lock (each try ≤ lock_timeout)",
                other => other.label(),
            },
        });
    }
    Estimate {
        schema: "shardready.estimate/v1",
        seconds: steps.iter().map(|s| s.seconds).sum(),
        wal_bytes: steps.iter().map(|s| s.wal_bytes).sum(),
        disk_bytes: disk as i64,
        steps,
        free_bytes: None,
        max_wal_size_bytes: None,
        rates: *rates,
        warnings: Vec::new(),
    }
}

impl Estimate {
    /// Adds what the server tells: free space (a local server only) and
    /// `max_wal_size`, with a warning for each that is short.
    pub async fn against_server(mut self, client: &Client) -> Estimate {
        self.free_bytes = free_space(client).await;
        self.max_wal_size_bytes = client
            .query_one(
                "SELECT setting::int8 * 1024 * 1024 FROM pg_catalog.pg_settings WHERE name = 'max_wal_size'",
                &[],
            )
            .await
            .ok()
            .map(|r| r.get(0));
        self.warnings = self.warnings();
        self
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let Some(free) = self.free_bytes {
            // Room for the WAL a checkpoint has not recycled yet, too.
            let need = self.disk_bytes + self.max_wal_size_bytes.unwrap_or(0);
            if need as f64 > free as f64 * 0.8 {
                w.push(format!(
                    "disk: the preparation needs about {} at its peak (plus up to max_wal_size of WAL) \
                     and the data directory has {} free: free space first (or prepare the largest \
                     tables one at a time); a full disk stops the database",
                    human(self.disk_bytes),
                    human(free)
                ));
            }
        }
        if let Some(max) = self.max_wal_size_bytes {
            let biggest = self.steps.iter().map(|s| s.wal_bytes).max().unwrap_or(0);
            if biggest > 2 * max {
                w.push(format!(
                    "WAL: one step writes about {} of WAL, {:.0}x max_wal_size ({}): expect \
                     checkpoints requested by WAL volume while it runs (their full-page writes \
                     slow the application). Raise max_wal_size for the duration \
                     (ALTER SYSTEM SET max_wal_size = '{}'; SELECT pg_reload_conf();) or cap \
                     apply's WAL with --max-wal-rate",
                    human(biggest),
                    biggest as f64 / max as f64,
                    human(max),
                    round_up_gb(biggest)
                ));
            }
        }
        w
    }
}

/// A size in GB for a setting, rounded up.
fn round_up_gb(bytes: i64) -> String {
    format!("{}GB", (bytes as f64 / 1e9).ceil().max(1.0) as i64)
}

/// Bytes for people.
pub fn human(b: i64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// Free bytes where the server keeps its data, when it runs on this
/// machine and the role may read `data_directory` (a superuser, or
/// pg_read_all_settings): the directory must hold a `postmaster.pid` for
/// the server's own port, or it is another server's.
pub(crate) async fn free_space(client: &Client) -> Option<i64> {
    let r = client
        .query_one(
            "SELECT current_setting('data_directory'), current_setting('port')",
            &[],
        )
        .await
        .ok()?;
    let (dir, port): (String, String) = (r.get(0), r.get(1));
    let pid = std::fs::read_to_string(std::path::Path::new(&dir).join("postmaster.pid")).ok()?;
    if pid.lines().nth(3).map(str::trim) != Some(port.as_str()) {
        return None;
    }
    let st = nix::sys::statvfs::statvfs(dir.as_str()).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_are_sized_as_measured() {
        // (store_id, line_item_id): 31.6 bytes a row measured.
        assert!((index_entry_bytes(2) - 31.1).abs() < 1.0);
    }

    #[test]
    fn short_disk_and_small_max_wal_size_are_warned() {
        let e = Estimate {
            schema: "shardready.estimate/v1",
            steps: vec![StepEstimate {
                position: 1,
                id: "backfill:t".into(),
                seconds: 10.0,
                wal_bytes: 5_000_000_000,
                disk_bytes: 900_000_000,
                lock: "short batches",
            }],
            seconds: 10.0,
            wal_bytes: 5_000_000_000,
            disk_bytes: 900_000_000,
            free_bytes: Some(1_000_000_000),
            max_wal_size_bytes: Some(1_073_741_824),
            rates: Rates::default(),
            warnings: Vec::new(),
        };
        let w = e.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("disk:") && w[0].contains("1.0 GB free"),
            "{w:?}"
        );
        assert!(
            w[1].contains("5x max_wal_size") && w[1].contains("'5GB'"),
            "{w:?}"
        );
        let roomy = Estimate {
            free_bytes: Some(100_000_000_000),
            max_wal_size_bytes: Some(10_000_000_000),
            ..e
        };
        assert!(roomy.warnings().is_empty());
    }
}
