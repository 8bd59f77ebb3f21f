//! The generator: Tailspin rows for a scale and seed, as the seed's CSV
//! files or as binary COPY streams, chunk by chunk in parallel.

use super::*;

/// PCG streams of the per-row facts fixed up front.
pub(super) const STREAM_PRODUCT_FACTS: u64 = 5;
pub(super) const STREAM_ORDER_FACTS: u64 = 6;

/// Everything decided up front; the rows' remaining details are drawn while
/// they are written.
pub(super) struct Data {
    pub(super) scale: f64,
    pub(super) seed: u64,
    pub(super) counts: Counts,
    /// Store of product `p` at `p - 1`.
    pub(super) product_store: Vec<u32>,
    /// Price in cents of product `p` at `p - 1`.
    pub(super) product_price: Vec<u32>,
    /// Products of store `s` are `store_products[store_off[s-1]..store_off[s]]`.
    pub(super) store_off: Vec<u32>,
    pub(super) store_products: Vec<u32>,
    /// Store of order `o` at `o - 1`.
    pub(super) order_store: Vec<u32>,
    /// Number of line items (1–3) of order `o` at `o - 1`.
    pub(super) order_lines: Vec<u8>,
    /// Line-item row index of the first line of each chunk of [`RNG_CHUNK`]
    /// orders; one extra entry holds the total.
    pub(super) chunk_line_start: Vec<u64>,
}

/// Deterministic generator of the Tailspin Toys dataset. Cheap to clone.
#[derive(Clone)]
pub struct Generator {
    pub(super) data: Arc<Data>,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("scale", &self.data.scale)
            .field("seed", &self.data.seed)
            .field("counts", &self.data.counts)
            .finish()
    }
}

impl Generator {
    /// A generator at `scale` (1 = the seed's counts). Each count is the
    /// seed's count times `scale`, rounded, with at least 5 stores (so the
    /// hot store 5 exists), at least one product per store, at least one
    /// order and 1–3 line items per order.
    pub fn new(scale: f64, seed: u64) -> Result<Generator, GenError> {
        if !scale.is_finite() || scale <= 0.0 {
            return Err(GenError::InvalidScale(scale));
        }
        if scale < MIN_SCALE {
            return Err(GenError::TooSmall(scale));
        }
        if scale > MAX_SCALE {
            return Err(GenError::TooLarge(scale));
        }
        let counts = Counts::at_scale(scale);
        let stores = counts.stores as u32;

        // Products: the first `stores` products go one to each store, so
        // every store sells something; the rest to uniformly random stores.
        let mut rng = rng_for(seed, STREAM_PRODUCT_FACTS, 0);
        let mut product_store = Vec::with_capacity(counts.products as usize);
        let mut product_price = Vec::with_capacity(counts.products as usize);
        for p in 1..=counts.products {
            let store = if p <= counts.stores {
                p as u32
            } else {
                1 + draw(&mut rng, counts.stores) as u32
            };
            let dollars = 2 + draw(&mut rng, 148) as u32;
            let cents = [99, 99, 49, 0, 50, 95][draw(&mut rng, 6) as usize];
            product_store.push(store);
            product_price.push(dollars * 100 + cents);
        }
        let mut store_off = vec![0u32; stores as usize + 1];
        for &s in &product_store {
            store_off[s as usize] += 1;
        }
        for s in 1..store_off.len() {
            store_off[s] += store_off[s - 1];
        }
        let mut fill = store_off.clone();
        let mut store_products = vec![0u32; product_store.len()];
        for (i, &s) in product_store.iter().enumerate() {
            let slot = &mut fill[s as usize - 1];
            store_products[*slot as usize] = i as u32 + 1;
            *slot += 1;
        }

        // Orders: 10% to the hot store, the rest uniform; 1–3 lines each,
        // then nudged one line at a time until the total is exact.
        let n = counts.orders as usize;
        let mut rng = rng_for(seed, STREAM_ORDER_FACTS, 0);
        let mut order_store = Vec::with_capacity(n);
        let mut order_lines = Vec::with_capacity(n);
        let mut total = 0u64;
        for _ in 0..n {
            let x = rng.next_u64();
            // One draw: low half = hot or not (1 in 10) and line count
            // (1 in 3 each), high half = the store otherwise.
            let v = below32(x as u32, 30);
            let store = if v.is_multiple_of(10) {
                HOT_STORE as u32
            } else {
                1 + below32((x >> 32) as u32, stores)
            };
            let lines = 1 + (v / 10) as u8;
            order_store.push(store);
            order_lines.push(lines);
            total += lines as u64;
        }
        let target = counts.line_items;
        let mut attempts = 0u64;
        while total != target && attempts < 16 * counts.orders + 1024 {
            attempts += 1;
            let l = &mut order_lines[draw(&mut rng, counts.orders) as usize];
            if total < target && *l < 3 {
                *l += 1;
                total += 1;
            } else if total > target && *l > 1 {
                *l -= 1;
                total -= 1;
            }
        }
        // Only reachable when the target is (nearly) 1 or 3 lines per order.
        for l in order_lines.iter_mut() {
            while total < target && *l < 3 {
                *l += 1;
                total += 1;
            }
            while total > target && *l > 1 {
                *l -= 1;
                total -= 1;
            }
        }
        debug_assert_eq!(total, target);
        let mut chunk_line_start = Vec::with_capacity(n / RNG_CHUNK as usize + 2);
        let mut running = 0u64;
        for (i, &l) in order_lines.iter().enumerate() {
            if (i as u64).is_multiple_of(RNG_CHUNK) {
                chunk_line_start.push(running);
            }
            running += l as u64;
        }
        chunk_line_start.push(running);

        Ok(Generator {
            data: Arc::new(Data {
                scale,
                seed,
                counts,
                product_store,
                product_price,
                store_off,
                store_products,
                order_store,
                order_lines,
                chunk_line_start,
            }),
        })
    }

    pub fn counts(&self) -> Counts {
        self.data.counts
    }

    pub fn rows(&self, table: TailspinTable) -> u64 {
        self.data.counts.get(table)
    }

    pub fn scale(&self) -> f64 {
        self.data.scale
    }

    pub fn seed(&self) -> u64 {
        self.data.seed
    }

    /// Writes the seed's CSV layout into `dir` (created if missing):
    /// `stores.csv` with a header line, `products.csv`, `orders_1.csv`… and
    /// `line_items_1.csv`… without one, split every [`ROWS_PER_FILE`] rows.
    /// Files are written in parallel (one per thread at a time); `progress`
    /// gets the total bytes written so far, increasing, from any thread.
    /// Returns the paths in load order.
    pub fn write_csv(
        &self,
        dir: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> io::Result<Vec<PathBuf>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.write_csv_with(dir, progress, threads, ROWS_PER_FILE)
    }

    pub(super) fn csv_files(&self, dir: &Path, rows_per_file: u64) -> Vec<CsvFile> {
        let mut files = Vec::new();
        for table in TailspinTable::ALL {
            let rows = self.rows(table);
            match table {
                TailspinTable::Stores | TailspinTable::Products => files.push(CsvFile {
                    table,
                    rows: 0..rows,
                    path: dir.join(format!("{}.csv", table.name())),
                    header: table == TailspinTable::Stores,
                }),
                TailspinTable::Orders | TailspinTable::LineItems => {
                    let parts = rows.div_ceil(rows_per_file).max(1);
                    for k in 0..parts {
                        files.push(CsvFile {
                            table,
                            rows: k * rows_per_file..((k + 1) * rows_per_file).min(rows),
                            path: dir.join(format!("{}_{}.csv", table.name(), k + 1)),
                            header: false,
                        });
                    }
                }
            }
        }
        files
    }

    pub(super) fn write_csv_with(
        &self,
        dir: &Path,
        progress: &(dyn Fn(u64) + Sync),
        threads: usize,
        rows_per_file: u64,
    ) -> io::Result<Vec<PathBuf>> {
        fs::create_dir_all(dir).map_err(|e| with_path(e, "cannot create", dir))?;
        let files = self.csv_files(dir, rows_per_file);
        // Biggest first, so no thread is left with a big file at the end.
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by_key(|&i| Reverse(files[i].estimated_bytes()));
        let next = AtomicUsize::new(0);
        let written = Mutex::new(0u64);
        let failure: Mutex<Option<io::Error>> = Mutex::new(None);
        let report = |n: u64| {
            let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
            *w += n;
            progress(*w);
        };
        std::thread::scope(|s| {
            for _ in 0..threads.clamp(1, files.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= order.len() || failure.lock().map_or(true, |f| f.is_some()) {
                        break;
                    }
                    if let Err(e) = self.write_one(&files[order[i]], &report) {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(files.into_iter().map(|f| f.path).collect())
    }

    pub(super) fn write_one(&self, file: &CsvFile, report: &dyn Fn(u64)) -> io::Result<()> {
        const FLUSH_AT: usize = 1 << 20;
        let mut out =
            File::create(&file.path).map_err(|e| with_path(e, "cannot create", &file.path))?;
        let mut enc = CsvEnc {
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            first: true,
        };
        if file.header {
            enc.buf
                .extend_from_slice(file.table.columns().join(",").as_bytes());
            enc.buf.push(b'\n');
        }
        let mut cursor = RowCursor::new(self.data.clone(), file.table, file.rows.clone());
        loop {
            let more = !cursor.done();
            if more {
                cursor.emit(&mut enc);
            }
            if enc.buf.len() >= FLUSH_AT || (!more && !enc.buf.is_empty()) {
                out.write_all(&enc.buf)
                    .map_err(|e| with_path(e, "cannot write", &file.path))?;
                report(enc.buf.len() as u64);
                enc.buf.clear();
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// A complete binary COPY stream (header, every row, trailer) for
    /// `table`, in chunks of about `chunk_bytes`. Columns are in
    /// [`TailspinTable::columns`] order.
    pub fn binary_copy(
        &self,
        table: TailspinTable,
        chunk_bytes: usize,
    ) -> Box<dyn Iterator<Item = Bytes> + Send + 'static> {
        self.binary_copy_range(table, 0..self.rows(table), chunk_bytes)
    }

    /// Like [`Generator::binary_copy`], for the rows with 0-based indexes in
    /// `rows` only (a complete stream of its own, for loading one table over
    /// several connections). The rows equal those of the whole stream.
    pub fn binary_copy_range(
        &self,
        table: TailspinTable,
        rows: Range<u64>,
        chunk_bytes: usize,
    ) -> Box<dyn Iterator<Item = Bytes> + Send + 'static> {
        Box::new(BinaryCopy {
            cursor: RowCursor::new(self.data.clone(), table, rows),
            chunk_bytes: chunk_bytes.max(1),
            started: false,
            finished: false,
        })
    }
}

pub(super) fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

pub(super) struct CsvFile {
    pub(super) table: TailspinTable,
    pub(super) rows: Range<u64>,
    pub(super) path: PathBuf,
    pub(super) header: bool,
}

impl CsvFile {
    pub(super) fn estimated_bytes(&self) -> u64 {
        let per_row = match self.table {
            TailspinTable::Stores => 40,
            TailspinTable::Products => 120,
            TailspinTable::Orders => 110,
            TailspinTable::LineItems => 35,
        };
        (self.rows.end - self.rows.start) * per_row
    }
}

pub(super) struct BinaryCopy {
    pub(super) cursor: RowCursor,
    pub(super) chunk_bytes: usize,
    pub(super) started: bool,
    pub(super) finished: bool,
}

impl Iterator for BinaryCopy {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let mut enc = BinEnc {
            buf: Vec::with_capacity(self.chunk_bytes.min(1 << 24) + 512),
        };
        if !self.started {
            self.started = true;
            enc.buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            enc.buf.extend_from_slice(&0i32.to_be_bytes());
            enc.buf.extend_from_slice(&0i32.to_be_bytes());
        }
        while enc.buf.len() < self.chunk_bytes && !self.cursor.done() {
            self.cursor.emit(&mut enc);
        }
        if self.cursor.done() {
            enc.buf.extend_from_slice(&(-1i16).to_be_bytes());
            self.finished = true;
        }
        Some(Bytes::from(enc.buf))
    }
}

// ---------------------------------------------------------------------------
// Randomness
