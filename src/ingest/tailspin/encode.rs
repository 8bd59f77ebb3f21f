//! Encoders: the same row code writes CSV, binary COPY, or nothing
//! (skipping to a row inside a chunk).

use super::*;

// ---------------------------------------------------------------------------
// Encoders: the same row code writes CSV, binary COPY, or nothing (skipping).

pub(super) trait Enc {
    fn row(&mut self, fields: i16);
    fn int(&mut self, v: u64);
    fn text(&mut self, s: &[u8]);
    fn null(&mut self);
    /// A numeric with two decimals, given in cents.
    fn cents(&mut self, c: u64);
    /// A timestamp without time zone, in seconds since 2000-01-01.
    fn ts(&mut self, secs: i64);
    fn end(&mut self);
}

/// Discards everything: moves a cursor to a row inside a chunk.
pub(super) struct Skip;

impl Enc for Skip {
    fn row(&mut self, _: i16) {}
    fn int(&mut self, _: u64) {}
    fn text(&mut self, _: &[u8]) {}
    fn null(&mut self) {}
    fn cents(&mut self, _: u64) {}
    fn ts(&mut self, _: i64) {}
    fn end(&mut self) {}
}

/// PostgreSQL CSV: comma-separated, `"`-quoted when needed, NULL = an empty
/// unquoted field.
pub(super) struct CsvEnc {
    pub(super) buf: Vec<u8>,
    pub(super) first: bool,
}

impl CsvEnc {
    #[inline]
    pub(super) fn sep(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.buf.push(b',');
        }
    }
}

impl Enc for CsvEnc {
    #[inline]
    fn row(&mut self, _: i16) {
        self.first = true;
    }
    #[inline]
    fn int(&mut self, v: u64) {
        self.sep();
        push_u64(&mut self.buf, v);
    }
    #[inline]
    fn text(&mut self, s: &[u8]) {
        self.sep();
        let quote = s.is_empty() || s.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
        if !quote {
            self.buf.extend_from_slice(s);
            return;
        }
        self.buf.push(b'"');
        for part in s.split_inclusive(|&b| b == b'"') {
            self.buf.extend_from_slice(part);
            if part.last() == Some(&b'"') {
                self.buf.push(b'"');
            }
        }
        self.buf.push(b'"');
    }
    #[inline]
    fn null(&mut self) {
        self.sep();
    }
    #[inline]
    fn cents(&mut self, c: u64) {
        self.sep();
        push_u64(&mut self.buf, c / 100);
        self.buf.push(b'.');
        push_2(&mut self.buf, (c % 100) as u32);
    }
    #[inline]
    fn ts(&mut self, secs: i64) {
        self.sep();
        push_timestamp(&mut self.buf, secs);
    }
    #[inline]
    fn end(&mut self) {
        self.buf.push(b'\n');
    }
}

/// PostgreSQL binary COPY rows.
pub(super) struct BinEnc {
    pub(super) buf: Vec<u8>,
}

impl Enc for BinEnc {
    #[inline]
    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }
    #[inline]
    fn int(&mut self, v: u64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&(v as i64).to_be_bytes());
    }
    #[inline]
    fn text(&mut self, s: &[u8]) {
        self.buf.extend_from_slice(&(s.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(s);
    }
    #[inline]
    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }
    #[inline]
    fn cents(&mut self, c: u64) {
        push_numeric_cents(&mut self.buf, c);
    }
    #[inline]
    fn ts(&mut self, secs: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf
            .extend_from_slice(&(secs * 1_000_000).to_be_bytes());
    }
    #[inline]
    fn end(&mut self) {}
}

#[inline]
pub(super) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Two digits, zero-padded (`v < 100`).
#[inline]
pub(super) fn push_2(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
}

/// (year, month, day) of a day counted from 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD HH:MM:SS` of seconds since 2000-01-01 (years 1000–9999).
pub(super) fn push_timestamp(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
    let y = y as u32;
    push_2(out, y / 100);
    push_2(out, y % 100);
    out.push(b'-');
    push_2(out, m);
    out.push(b'-');
    push_2(out, d);
    out.push(b' ');
    push_2(out, sod / 3600);
    out.push(b':');
    push_2(out, sod / 60 % 60);
    out.push(b':');
    push_2(out, sod % 60);
}

/// A field (length word included) holding `cents / 100` as PostgreSQL's
/// binary NUMERIC (`numeric_send`): ndigits, weight, sign, dscale = 2, then
/// base-10000 digits, most significant first, with leading and trailing zero
/// digits stripped (zero has no digits and weight 0).
pub(super) fn push_numeric_cents(out: &mut Vec<u8>, cents: u64) {
    let int_part = cents / 100;
    // Integer digits, least significant first (u64 / 100 < 10000^5).
    let mut int_digits = [0u16; 5];
    let mut n_int = 0;
    let mut v = int_part;
    while v > 0 {
        int_digits[n_int] = (v % 10_000) as u16;
        v /= 10_000;
        n_int += 1;
    }
    let mut digits = [0u16; 6];
    let mut n = 0;
    for i in (0..n_int).rev() {
        digits[n] = int_digits[i];
        n += 1;
    }
    // Two decimals are the top two decimal places of the first fractional
    // base-10000 digit.
    digits[n] = (cents % 100) as u16 * 100;
    n += 1;
    let mut weight = n_int as i16 - 1;
    let mut start = 0;
    while start < n && digits[start] == 0 {
        start += 1;
        weight -= 1;
    }
    while n > start && digits[n - 1] == 0 {
        n -= 1;
    }
    let ndigits = n - start;
    if ndigits == 0 {
        weight = 0;
    }
    out.extend_from_slice(&(8 + 2 * ndigits as i32).to_be_bytes());
    out.extend_from_slice(&(ndigits as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // NUMERIC_POS
    out.extend_from_slice(&2u16.to_be_bytes()); // dscale
    for d in &digits[start..n] {
        out.extend_from_slice(&d.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------
// Rows
