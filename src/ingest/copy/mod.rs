//! Fast, atomic bulk loading with `COPY … FROM STDIN`: CSV files (plain
//! paths, glob patterns, zip archive members) and binary COPY streams go into
//! one or more tables as ONE transaction — all of it or none of it.
//!
//! Why it is fast:
//! - Per-row foreign-key checks dominate a bulk load into constrained tables
//!   (the seed's load: 74.7 s with `psql \copy`, ~8 s without constraints).
//!   Inside the load's transaction every FOREIGN KEY defined on a loaded
//!   table is dropped, the data is copied, and each key is re-added with its
//!   original name and definition: PostgreSQL then validates it with one
//!   set-based query instead of one lookup per row. Because it is the same
//!   transaction, nobody ever sees the tables without their keys, and any
//!   failure (bad row, violated key, Ctrl-C, lost connection) rolls back to
//!   the tables and constraints exactly as they were.
//! - CSV bytes are streamed to the server as they are (no re-encoding, so a
//!   quoted empty string stays distinct from NULL). A reader thread does the
//!   file reading, zip inflating and record checking while the server parses
//!   the previous chunk.
//!
//! Why errors are useful: records are checked on the client before the
//! server sees them (column count, UTF-8, truncated quotes, line endings) and
//! reported as `file:line`; errors the server finds (bad numbers, dates, …)
//! are mapped from its `COPY t, line N` context back to the input file and
//! its physical line.
//!
//! Large files are sent as several COPY statements of
//! [`LoadOptions::segment_bytes`] each, because the driver only surfaces a
//! server-side error when a COPY statement ends: segmenting bounds how much
//! is streamed after a bad row.

use std::cmp::Ordering;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::SinkExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_postgres::{Client, CopyInSink, Transaction};

use crate::sql::{ident, literal};

mod error;
mod inputs;
mod load;
mod scan;
mod stream;

use self::{scan::*, stream::*};
pub use error::{CopyError, Rejected};
pub use inputs::{natural_cmp, resolve_inputs, InputFile};
pub use load::load;

/// Appended to every error raised after the transaction began.
const NOTHING_LOADED: &str = " — nothing was loaded (the load is one transaction)";

/// How much the reader thread reads from a file at a time.
const READ_SIZE: usize = 1 << 20;

/// How many chunks the reader thread may be ahead of the server.
const CHANNEL_CHUNKS: usize = 8;

/// The 11-byte signature every binary COPY stream starts with.
const PGCOPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

pub(super) fn nothing_loaded(during_load: &bool) -> &'static str {
    if *during_load {
        NOTHING_LOADED
    } else {
        ""
    }
}

/// How CSV files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Each file starts with a header line (skipped; it applies to EACH file).
    pub header: bool,
    /// Field delimiter (one ASCII byte).
    pub delimiter: u8,
    /// The unquoted string that means NULL (default: an unquoted empty field).
    pub null: Option<String>,
    /// The files' encoding when not UTF-8 (any name PostgreSQL knows, e.g. LATIN1).
    pub encoding: Option<String>,
    /// Quote character (one ASCII byte); doubling it inside quotes escapes it.
    pub quote: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: false,
            delimiter: b',',
            null: None,
            encoding: None,
            quote: b'"',
        }
    }
}

impl CsvOptions {
    /// The same rules PostgreSQL applies to COPY's options, checked up front.
    fn validate(&self) -> Result<(), String> {
        let d = self.delimiter;
        let q = self.quote;
        if !d.is_ascii() || d == b'\r' || d == b'\n' || d == 0 {
            return Err(format!(
                "the delimiter must be one ASCII character other than a line break (got byte 0x{d:02x})"
            ));
        }
        if !q.is_ascii() || q == b'\r' || q == b'\n' || q == 0 {
            return Err(format!(
                "the quote must be one ASCII character other than a line break (got byte 0x{q:02x})"
            ));
        }
        if d == q {
            return Err("the delimiter and the quote must differ".into());
        }
        if let Some(n) = &self.null {
            if n.contains(['\r', '\n']) {
                return Err("the NULL string cannot contain a line break".into());
            }
            if n.as_bytes().contains(&d) {
                return Err(format!(
                    "the NULL string {n:?} contains the delimiter {:?}",
                    char::from(d)
                ));
            }
            if n.as_bytes().contains(&q) {
                return Err(format!(
                    "the NULL string {n:?} contains the quote {:?}",
                    char::from(q)
                ));
            }
        }
        Ok(())
    }
}

/// Where a table's rows come from.
pub enum Source {
    Csv {
        files: Vec<InputFile>,
        options: CsvOptions,
    },
    /// A complete binary COPY stream (PGCOPY header ... trailer) produced
    /// lazily, e.g. by a generator on another thread. `rows` is what the
    /// stream is expected to hold (for progress).
    Binary {
        chunks: Box<dyn Iterator<Item = Bytes> + Send>,
        rows: u64,
    },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Csv { files, options } => f
                .debug_struct("Csv")
                .field("files", files)
                .field("options", options)
                .finish(),
            Source::Binary { rows, .. } => f.debug_struct("Binary").field("rows", rows).finish(),
        }
    }
}

/// One table and its data.
#[derive(Debug)]
pub struct TableLoad {
    /// `name` or `schema.name` as the user typed it: unquoted parts are
    /// folded to lower case, `"Quoted"` parts kept, the search_path applies.
    pub table: String,
    pub source: Source,
}

/// How to run a load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Progress bars on stderr when it is a terminal (rows, MB/s, ETA).
    pub progress: bool,
    /// lock_timeout for taking the load's table locks; retried with
    /// exponential backoff and jitter on timeout.
    pub lock_timeout: Duration,
    /// How many times to try taking the locks.
    pub lock_attempts: u32,
    /// Bytes of CSV per COPY statement; the server's verdict on a bad row
    /// arrives when its statement ends, so this bounds wasted streaming.
    pub segment_bytes: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            progress: false,
            lock_timeout: Duration::from_millis(100),
            lock_attempts: 30,
            segment_bytes: 64 << 20,
        }
    }
}

/// What was loaded into one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    /// Input bytes read (uncompressed; headers included).
    pub bytes: u64,
    pub seconds: f64,
}

/// What a whole load did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub tables: Vec<TableReport>,
    pub seconds: f64,
    /// Foreign keys dropped for the load and re-added (validated) at its
    /// end, as `table.constraint`; NOT VALID keys are re-added as they were
    /// and not listed.
    pub fk_revalidated: Vec<String>,
    /// Sequences moved to the max of their column.
    pub sequences_set: Vec<SequenceSet>,
}

/// A sequence the load moved forward to the max of its column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequenceSet {
    pub sequence: String,
    pub value: i64,
}

// ---------------------------------------------------------------------------
// Record scanning: PostgreSQL's CSV line splitting, byte for byte.
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::inputs::*;
    use super::load::*;
    use super::*;

    /// (start line, fields, COPY's line number, content) per record.
    type Found = Vec<(u64, usize, u64, Vec<u8>)>;

    fn records(data: &[u8], delim: u8) -> Result<Found, ScanError> {
        let mut sc = Scanner::new(delim, b'"', Multibyte::None, 1);
        let mut out = Vec::new();
        while let Some(r) = sc.next(data, true)? {
            out.push((
                r.start_line,
                r.fields,
                r.pg_line,
                data[r.start..r.content_end].to_vec(),
            ));
        }
        Ok(out)
    }

    #[test]
    fn splits_records_like_copy() {
        let data = b"1,\"a,b\",x\n2,\"multi\nline\",y\n3,\"\"\"q\"\"\",\n4,last";
        let r = records(data, b',').unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].0, r[0].1), (1, 3));
        assert_eq!((r[1].0, r[1].1), (2, 3));
        // The embedded newline is counted by COPY once the EOL is known.
        assert_eq!(r[1].2, 3);
        assert_eq!((r[2].0, r[2].1, r[2].2), (4, 3, 4));
        assert_eq!((r[3].0, r[3].3.as_slice()), (5, &b"4,last"[..]));
    }

    #[test]
    fn crlf_and_chunk_boundaries() {
        let data = b"a;b\r\n\"x\r\ny\";z\r\nc;d";
        // Feed one byte at a time: results must match the whole-buffer scan.
        let mut sc = Scanner::new(b';', b'"', Multibyte::None, 1);
        let mut got = Vec::new();
        for end in 1..=data.len() {
            while let Some(r) = sc.next(&data[..end], end == data.len()).unwrap() {
                got.push((
                    r.start_line,
                    r.fields,
                    data[r.start..r.content_end].to_vec(),
                ));
            }
        }
        assert_eq!(
            got,
            vec![
                (1, 2, b"a;b".to_vec()),
                (2, 2, b"\"x\r\ny\";z".to_vec()),
                (4, 2, b"c;d".to_vec())
            ]
        );
    }

    #[test]
    fn unterminated_and_mixed_endings() {
        assert_eq!(
            records(b"1,a\n2,\"open\nstill open", b','),
            Err(ScanError::Unterminated { line: 2 })
        );
        assert!(matches!(
            records(b"1,a\r\n2,b\n", b','),
            Err(ScanError::MixedEol { line: 2, .. })
        ));
    }

    #[test]
    fn finds_bad_utf8_column() {
        let content = b"1,\"caf\xe9\",x";
        let (at, what) = find_bad_utf8(content).unwrap();
        assert!(what.contains("0xe9"));
        assert_eq!(locate_in_record(content, at, b',', b'"'), (0, 2));
        assert!(find_bad_utf8("1,café".as_bytes()).is_none());
        assert!(find_bad_utf8(b"1,a\0b").unwrap().1.contains("NUL"));
    }

    #[test]
    fn sjis_second_bytes_are_not_delimiters() {
        // 0x95 0x5c is one SJIS character whose second byte is '\'; 0x83 0x2c
        // would be ',' as a second byte.
        let data = b"1,\x83\x2c\n";
        let mut sc = Scanner::new(b',', b'"', Multibyte::Sjis, 1);
        let r = sc.next(data, true).unwrap().unwrap();
        assert_eq!(r.fields, 2);
    }

    #[test]
    fn natural_order() {
        let mut v = vec![
            "orders_10.csv",
            "orders_2.csv",
            "orders_1.csv",
            "orders_02.csv",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "orders_1.csv",
                "orders_02.csv",
                "orders_2.csv",
                "orders_10.csv"
            ]
        );
    }

    #[test]
    fn parses_copy_context() {
        let rel = Relation {
            oid: 1,
            name: crate::catalog::QName::new("public", "orders"),
            relkind: "r".into(),
            columns: vec!["order_id".into(), "ordered_at".into(), "ordered".into()],
        };
        assert_eq!(
            parse_copy_context(
                "COPY orders, line 1234, column ordered_at: \"2023-13-45\"",
                &rel
            ),
            Some((1234, Some("ordered_at".into())))
        );
        assert_eq!(
            parse_copy_context("COPY orders, line 7", &rel),
            Some((7, None))
        );
        assert_eq!(parse_copy_context("SQL function", &rel), None);
    }

    #[test]
    fn zip_arguments() {
        assert_eq!(
            split_zip_arg("data.zip:orders_*.csv"),
            Some(("data.zip", "orders_*.csv"))
        );
        assert_eq!(split_zip_arg("D.ZIP:x"), Some(("D.ZIP", "x")));
        assert_eq!(split_zip_arg("data.zip"), None);
        assert!(is_zip_name("a/b.Zip"));
    }
}
