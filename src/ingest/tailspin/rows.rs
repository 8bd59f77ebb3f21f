//! The row cursor: walks one table's rows within a chunk, drawing each
//! field from the chunk's random stream.

use super::*;

/// Position in one table's rows; emits one row at a time.
pub(super) struct RowCursor {
    pub(super) data: Arc<Data>,
    pub(super) table: TailspinTable,
    /// 0-based index of the next row.
    pub(super) row: u64,
    pub(super) end: u64,
    pub(super) rng: Pcg64,
    /// Line items: the current order (0-based) and line within it.
    pub(super) order: usize,
    pub(super) line: u8,
    pub(super) a: Vec<u8>,
    pub(super) b: Vec<u8>,
}

impl RowCursor {
    /// A cursor over the rows with 0-based indexes in `rows` (clamped to the
    /// table). Rows are the same as when generated from the first row.
    pub(super) fn new(data: Arc<Data>, table: TailspinTable, rows: Range<u64>) -> RowCursor {
        let total = data.counts.get(table);
        let end = rows.end.min(total);
        let start = rows.start.min(end);
        // Go back to the start of the chunk holding `start`, then skip.
        let (row, order) = match table {
            TailspinTable::LineItems => {
                let c = data.chunk_line_start.partition_point(|&s| s <= start) - 1;
                (data.chunk_line_start[c], c * RNG_CHUNK as usize)
            }
            _ => (start - start % RNG_CHUNK, 0),
        };
        let mut cursor = RowCursor {
            rng: rng_for(data.seed, table.stream(), 0),
            data,
            table,
            row,
            end,
            order,
            line: 0,
            a: Vec::with_capacity(128),
            b: Vec::with_capacity(128),
        };
        while cursor.row < start {
            cursor.emit(&mut Skip);
        }
        cursor
    }

    pub(super) fn done(&self) -> bool {
        self.row >= self.end
    }

    /// Emits the next row (the caller checks [`RowCursor::done`] first).
    #[inline]
    pub(super) fn emit<E: Enc>(&mut self, e: &mut E) {
        match self.table {
            TailspinTable::Stores => self.store(e),
            TailspinTable::Products => self.product(e),
            TailspinTable::Orders => self.order(e),
            TailspinTable::LineItems => self.line_item(e),
        }
    }

    pub(super) fn reseed_per_row(&mut self) {
        if self.row.is_multiple_of(RNG_CHUNK) {
            self.rng = rng_for(self.data.seed, self.table.stream(), self.row / RNG_CHUNK);
        }
    }

    pub(super) fn store<E: Enc>(&mut self, e: &mut E) {
        self.reseed_per_row();
        let rng = &mut self.rng;
        let name = &mut self.a;
        name.clear();
        name.extend_from_slice(pick(rng, STORE_ADJ).as_bytes());
        name.push(b' ');
        name.extend_from_slice(pick(rng, STORE_NOUN).as_bytes());
        name.extend_from_slice(pick(rng, STORE_SUFFIX).as_bytes());
        let category = pick(rng, CATEGORIES);
        e.row(3);
        e.int(self.row + 1);
        e.text(&self.a);
        e.text(category.as_bytes());
        e.end();
        self.row += 1;
    }

    pub(super) fn product<E: Enc>(&mut self, e: &mut E) {
        self.reseed_per_row();
        let i = self.row as usize;
        let rng = &mut self.rng;
        let thing = pick(rng, PRODUCT_THING);
        let name = &mut self.a;
        name.clear();
        name.extend_from_slice(pick(rng, PRODUCT_ADJ).as_bytes());
        name.push(b' ');
        name.extend_from_slice(thing.as_bytes());
        let desc = &mut self.b;
        desc.clear();
        desc.extend_from_slice(pick(rng, DESC_OPEN).as_bytes());
        desc.push(b' ');
        desc.extend_from_slice(thing.as_bytes());
        desc.extend_from_slice(b", ages ");
        push_u64(desc, 1 + draw(rng, 12));
        desc.extend_from_slice(b"+. ");
        desc.extend_from_slice(pick(rng, DESC_CLOSE).as_bytes());
        e.row(5);
        e.int(self.row + 1);
        e.int(self.data.product_store[i] as u64);
        e.text(&self.a);
        e.text(&self.b);
        e.cents(self.data.product_price[i] as u64);
        e.end();
        self.row += 1;
    }

    pub(super) fn order<E: Enc>(&mut self, e: &mut E) {
        self.reseed_per_row();
        let n = self.data.counts.orders;
        let o = self.row;
        let rng = &mut self.rng;
        // Spread over two years in order_id order, with jitter.
        let step = (TS_SPAN as u64 / n).max(1);
        let base = (o as u128 * TS_SPAN as u128 / n as u128) as i64;
        let ordered_at = TS_START + base + draw(rng, step) as i64;
        // The newest orders are still open; older ones mostly delivered.
        let r = draw(rng, 100);
        let status = if o * 50 >= n * 49 {
            if r < 55 {
                "Pending"
            } else {
                "Shipped"
            }
        } else {
            match r {
                0..=84 => "Delivered",
                85..=92 => "Cancelled",
                93..=96 => "Returned",
                _ => "Shipped",
            }
        };
        self.a.clear();
        push_address(rng, &mut self.a);
        // Shipping: NULL (= billing) 30%, the billing address 45%, another 25%.
        let ship = draw(rng, 100);
        if ship >= 75 {
            self.b.clear();
            push_address(rng, &mut self.b);
        }
        e.row(6);
        e.int(o + 1);
        e.int(self.data.order_store[o as usize] as u64);
        e.text(status.as_bytes());
        e.text(&self.a);
        match ship {
            0..=29 => e.null(),
            30..=74 => e.text(&self.a),
            _ => e.text(&self.b),
        }
        e.ts(ordered_at);
        e.end();
        self.row += 1;
    }

    pub(super) fn line_item<E: Enc>(&mut self, e: &mut E) {
        let o = self.order;
        if self.line == 0 && (o as u64).is_multiple_of(RNG_CHUNK) {
            self.rng = rng_for(
                self.data.seed,
                TailspinTable::LineItems.stream(),
                o as u64 / RNG_CHUNK,
            );
        }
        let d = &*self.data;
        let store = d.order_store[o] as usize;
        let products =
            &d.store_products[d.store_off[store - 1] as usize..d.store_off[store] as usize];
        let x = self.rng.next_u64();
        // One draw: low half = the product, top two bits = quantity 1-4.
        let product = products[below32(x as u32, products.len() as u32) as usize];
        let quantity = 1 + (x >> 62);
        let price = d.product_price[product as usize - 1] as u64;
        e.row(5);
        e.int(self.row + 1);
        e.int(product as u64);
        e.int(o as u64 + 1);
        e.int(quantity);
        e.cents(price * quantity);
        e.end();
        self.row += 1;
        self.line += 1;
        if self.line == d.order_lines[o] {
            self.line = 0;
            self.order += 1;
        }
    }
}
