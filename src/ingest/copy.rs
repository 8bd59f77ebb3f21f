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

use crate::sql::{ident, literal, qualified};

/// Appended to every error raised after the transaction began.
const NOTHING_LOADED: &str = " — nothing was loaded (the load is one transaction)";

/// How much the reader thread reads from a file at a time.
const READ_SIZE: usize = 1 << 20;

/// How many chunks the reader thread may be ahead of the server.
const CHANNEL_CHUNKS: usize = 8;

/// The 11-byte signature every binary COPY stream starts with.
const PGCOPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

fn nothing_loaded(during_load: &bool) -> &'static str {
    if *during_load {
        NOTHING_LOADED
    } else {
        ""
    }
}

/// What went wrong, with enough context to fix it. Variants up to
/// [`CopyError::ColumnCountMismatch`] are found before anything is written
/// (see [`CopyError::before_write`]); the others abort the load's
/// transaction, which leaves every table as it was.
#[derive(Debug, Error)]
pub enum CopyError {
    #[error("{path}: no such file")]
    MissingFile { path: String },
    #[error("{path}: not a regular file")]
    NotAFile { path: String },
    #[error("`{pattern}` matches no file")]
    NoMatch { pattern: String },
    #[error("`{pattern}` is not a valid glob pattern: {detail}")]
    BadPattern { pattern: String, detail: String },
    #[error("{archive}: cannot read the zip archive: {detail}")]
    Zip { archive: String, detail: String },
    #[error("{archive}: no member matches `{pattern}`; the archive holds: {members}")]
    NoMemberMatch {
        archive: String,
        pattern: String,
        members: String,
    },
    #[error("invalid CSV options for {table}: {detail}")]
    Options { table: String, detail: String },
    #[error(
        "table {table} does not exist (search_path: {search_path}); create it first, or \
         write it as schema.table"
    )]
    UnknownTable { table: String, search_path: String },
    #[error("`{table}` is not a valid table name: {detail}")]
    BadTableName { table: String, detail: String },
    #[error("{table} is a {kind}, not a table: COPY can only load tables")]
    NotATable { table: String, kind: String },
    #[error(
        "{file}: its first line has {found} fields but table {table} has {expected} columns \
         ({columns}); check --delimiter, or the file belongs to another table"
    )]
    ColumnCountMismatch {
        file: String,
        table: String,
        expected: usize,
        found: usize,
        columns: String,
    },
    #[error("{file}: cannot read: {source}{}", nothing_loaded(.during_load))]
    Read {
        file: String,
        #[source]
        source: io::Error,
        during_load: bool,
    },
    #[error("{file}:{line}: expected {expected} columns, found {found}{NOTHING_LOADED}")]
    FieldCount {
        file: String,
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error(
        "{file}:{line}, column {column} ({column_name}): {what}; if the file is not UTF-8, give \
         its encoding (e.g. LATIN1){NOTHING_LOADED}"
    )]
    InvalidUtf8 {
        file: String,
        line: u64,
        column: usize,
        column_name: String,
        what: String,
    },
    #[error(
        "{file}:{line}: the quoted field opened in the record starting on this line is never \
         closed (truncated file?){}",
        nothing_loaded(.during_load)
    )]
    Unterminated {
        file: String,
        line: u64,
        during_load: bool,
    },
    #[error(
        "{file}:{line}: this line ends with {found} but earlier lines end with {expected}; \
         COPY needs one line-ending style per file (quote fields holding line breaks){NOTHING_LOADED}"
    )]
    MixedLineEndings {
        file: String,
        line: u64,
        found: &'static str,
        expected: &'static str,
    },
    #[error(
        "{file}:{line}: a line holding only \\. would end the COPY early; quote it as \"\\.\"\
         {NOTHING_LOADED}"
    )]
    EndOfDataMarker { file: String, line: u64 },
    #[error("{0}{NOTHING_LOADED}")]
    Rejected(Box<Rejected>),
    #[error(
        "foreign key {constraint} on {table} does not hold for the loaded data: {detail}\
         {NOTHING_LOADED}"
    )]
    ForeignKey {
        constraint: String,
        table: String,
        detail: String,
    },
    #[error(
        "could not lock {tables} ({attempts} attempts with lock_timeout {timeout_ms} ms): other \
         sessions keep using them; retry when they are idle{NOTHING_LOADED}"
    )]
    LockTimeout {
        tables: String,
        attempts: u32,
        timeout_ms: u128,
    },
    #[error("the binary COPY source for {table} failed: {detail}{NOTHING_LOADED}")]
    Source { table: String, detail: String },
    #[error("{context}: {detail}{}", nothing_loaded(.during_load))]
    Database {
        context: String,
        detail: String,
        during_load: bool,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl CopyError {
    /// True when the error was found before the load's transaction began:
    /// nothing was written or locked.
    pub fn before_write(&self) -> bool {
        match self {
            CopyError::MissingFile { .. }
            | CopyError::NotAFile { .. }
            | CopyError::NoMatch { .. }
            | CopyError::BadPattern { .. }
            | CopyError::Zip { .. }
            | CopyError::NoMemberMatch { .. }
            | CopyError::Options { .. }
            | CopyError::UnknownTable { .. }
            | CopyError::BadTableName { .. }
            | CopyError::NotATable { .. }
            | CopyError::ColumnCountMismatch { .. } => true,
            CopyError::Read { during_load, .. }
            | CopyError::Unterminated { during_load, .. }
            | CopyError::Database { during_load, .. } => !during_load,
            _ => false,
        }
    }

    /// Marks an error found by the shared file checks as happening inside
    /// the transaction (or not).
    fn during_load(mut self, during: bool) -> Self {
        match &mut self {
            CopyError::Read { during_load, .. }
            | CopyError::Unterminated { during_load, .. }
            | CopyError::Database { during_load, .. } => *during_load = during,
            // A file that vanished or broke after the checks: still a read
            // error, but one that aborted the transaction.
            CopyError::MissingFile { path } | CopyError::NotAFile { path } if during => {
                return CopyError::Read {
                    file: std::mem::take(path),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        "the file disappeared during the load",
                    ),
                    during_load: true,
                };
            }
            CopyError::Zip { archive, detail } if during => {
                return CopyError::Read {
                    file: std::mem::take(archive),
                    source: io::Error::other(std::mem::take(detail)),
                    during_load: true,
                };
            }
            _ => {}
        }
        self
    }
}

/// A row the server rejected, located in the input.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The input file's display name (or the table, for binary sources).
    pub file: String,
    /// Physical 1-based line in `file` where the rejected record starts
    /// (for binary sources: the row number).
    pub line: Option<u64>,
    /// The column the server was converting, when it says.
    pub column: Option<String>,
    /// The server's message and detail.
    pub message: String,
    pub sqlstate: String,
    binary: bool,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.binary, self.line) {
            (false, Some(line)) => write!(f, "{}:{}", self.file, line)?,
            (true, Some(row)) => write!(f, "{} (binary COPY row {})", self.file, row)?,
            (_, None) => write!(f, "{}", self.file)?,
        }
        if let Some(c) = &self.column {
            write!(f, ", column {c}")?;
        }
        write!(f, ": {}", self.message)
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

/// One input: a file on disk or a member of a zip archive (read in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFile {
    Path(PathBuf),
    ZipMember { archive: PathBuf, member: String },
}

impl fmt::Display for InputFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputFile::Path(p) => write!(f, "{}", p.display()),
            InputFile::ZipMember { archive, member } => {
                write!(f, "{}:{}", archive.display(), member)
            }
        }
    }
}

impl InputFile {
    /// The name used in messages: `orders_3.csv`, `data.zip:orders_3.csv`.
    pub fn display_name(&self) -> String {
        self.to_string()
    }

    /// Size in bytes (uncompressed for zip members).
    pub fn size(&self) -> Result<u64, CopyError> {
        match self {
            InputFile::Path(p) => {
                let meta = std::fs::metadata(p).map_err(|e| open_error(p, e))?;
                if !meta.is_file() {
                    return Err(CopyError::NotAFile {
                        path: p.display().to_string(),
                    });
                }
                Ok(meta.len())
            }
            InputFile::ZipMember { archive, member } => {
                let mut z = open_zip(archive)?;
                let f = z.by_name(member).map_err(|e| zip_error(archive, e))?;
                Ok(f.size())
            }
        }
    }

    /// Runs `f` with a reader over the file's (uncompressed) bytes.
    fn with_reader<T, E: From<CopyError>>(
        &self,
        f: impl FnOnce(&mut dyn Read) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            InputFile::Path(p) => {
                let mut file = File::open(p).map_err(|e| open_error(p, e))?;
                f(&mut file)
            }
            InputFile::ZipMember { archive, member } => {
                let mut z = open_zip(archive)?;
                let mut zf = z.by_name(member).map_err(|e| zip_error(archive, e))?;
                f(&mut zf)
            }
        }
    }
}

fn open_error(path: &Path, e: io::Error) -> CopyError {
    if e.kind() == io::ErrorKind::NotFound {
        CopyError::MissingFile {
            path: path.display().to_string(),
        }
    } else {
        CopyError::Read {
            file: path.display().to_string(),
            source: e,
            during_load: false,
        }
    }
}

fn zip_error(archive: &Path, e: zip::result::ZipError) -> CopyError {
    CopyError::Zip {
        archive: archive.display().to_string(),
        detail: e.to_string(),
    }
}

fn open_zip(archive: &Path) -> Result<zip::ZipArchive<BufReader<File>>, CopyError> {
    let file = File::open(archive).map_err(|e| open_error(archive, e))?;
    zip::ZipArchive::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| zip_error(archive, e))
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn is_zip_name(s: &str) -> bool {
    s.len() >= 4 && s[s.len() - 4..].eq_ignore_ascii_case(".zip")
}

/// Splits `archive.zip:PATTERN` (case-insensitive `.zip`).
fn split_zip_arg(arg: &str) -> Option<(&str, &str)> {
    let lower = arg.to_ascii_lowercase();
    let at = lower.find(".zip:")?;
    Some((&arg[..at + 4], &arg[at + 5..]))
}

/// Compares names the way people count: `orders_2` before `orders_10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|b| b.is_ascii_digit()).count();
                let ny = y.iter().take_while(|b| b.is_ascii_digit()).count();
                let tx = trim_zeros(&x[..nx]);
                let ty = trim_zeros(&y[..ny]);
                let ord = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let n = digits.iter().take_while(|&&b| b == b'0').count();
    &digits[n..]
}

/// macOS resource forks and folder metadata that zip tools add.
fn is_zip_junk(name: &str) -> bool {
    name.starts_with("__MACOSX/") || name.rsplit('/').next().is_some_and(|b| b.starts_with("._"))
}

fn zip_members(archive: &Path, pattern: Option<&str>) -> Result<Vec<InputFile>, CopyError> {
    let z = open_zip(archive)?;
    let files: Vec<String> = z
        .file_names()
        .filter(|n| !n.ends_with('/') && !is_zip_junk(n))
        .map(str::to_string)
        .collect();
    let mut chosen: Vec<String> = match pattern {
        None => files.clone(),
        Some(p) => {
            let pat = glob::Pattern::new(p).map_err(|e| CopyError::BadPattern {
                pattern: p.to_string(),
                detail: e.to_string(),
            })?;
            let opts = glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: true,
            };
            // Without a '/', the pattern names files wherever they are.
            let by_base = !p.contains('/');
            files
                .iter()
                .filter(|n| {
                    let subject = if by_base {
                        n.rsplit('/').next().unwrap_or(n)
                    } else {
                        n.as_str()
                    };
                    pat.matches_with(subject, opts)
                })
                .cloned()
                .collect()
        }
    };
    if chosen.is_empty() {
        let mut shown: Vec<&str> = files.iter().map(String::as_str).take(10).collect();
        if files.len() > 10 {
            shown.push("…");
        }
        return Err(CopyError::NoMemberMatch {
            archive: archive.display().to_string(),
            pattern: pattern.unwrap_or("*").to_string(),
            members: if files.is_empty() {
                "no files".into()
            } else {
                shown.join(", ")
            },
        });
    }
    chosen.sort_by(|a, b| natural_cmp(a, b));
    Ok(chosen
        .into_iter()
        .map(|member| InputFile::ZipMember {
            archive: archive.to_path_buf(),
            member,
        })
        .collect())
}

fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, CopyError> {
    let paths = glob::glob(pattern).map_err(|e| CopyError::BadPattern {
        pattern: pattern.to_string(),
        detail: e.to_string(),
    })?;
    let mut found: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    if found.is_empty() {
        return Err(CopyError::NoMatch {
            pattern: pattern.to_string(),
        });
    }
    found.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(found)
}

/// Resolves command-line arguments into files before anything is written:
/// plain paths; glob patterns (expanded when the arg contains `*?[`; natural
/// sort so orders_2 < orders_10); `archive.zip` (all members, natural order,
/// directories skipped) or `archive.zip:PATTERN` (members matching a glob;
/// a pattern without `/` matches the members' file names in any folder).
/// A glob may also name archives (`dumps/*.zip`). Each file is listed once,
/// in argument order. Errors: missing file, glob matching nothing, zip
/// unreadable, zip pattern matching nothing.
pub fn resolve_inputs(args: &[String]) -> Result<Vec<InputFile>, CopyError> {
    let mut out: Vec<InputFile> = Vec::new();
    let push = |f: InputFile, out: &mut Vec<InputFile>| {
        if !out.contains(&f) {
            out.push(f);
        }
    };
    for arg in args {
        if let Some((archive, pattern)) = split_zip_arg(arg) {
            let archives = if has_glob_chars(archive) {
                expand_glob(archive)?
            } else {
                vec![PathBuf::from(archive)]
            };
            let pattern = (!pattern.is_empty()).then_some(pattern);
            for a in archives {
                for m in zip_members(&a, pattern)? {
                    push(m, &mut out);
                }
            }
            continue;
        }
        let paths = if has_glob_chars(arg) {
            expand_glob(arg)?
        } else {
            let p = PathBuf::from(arg);
            let meta = std::fs::metadata(&p).map_err(|e| open_error(&p, e))?;
            if !meta.is_file() {
                return Err(CopyError::NotAFile { path: arg.clone() });
            }
            vec![p]
        };
        for p in paths {
            if is_zip_name(&p.to_string_lossy()) {
                for m in zip_members(&p, None)? {
                    push(m, &mut out);
                }
            } else {
                push(InputFile::Path(p), &mut out);
            }
        }
    }
    Ok(out)
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
    /// Sequences moved to the max of their column: (sequence, value).
    pub sequences_set: Vec<(String, i64)>,
}

// ---------------------------------------------------------------------------
// Record scanning: PostgreSQL's CSV line splitting, byte for byte.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eol {
    Unknown,
    Lf,
    Cr,
    CrLf,
}

impl Eol {
    fn describe(self) -> &'static str {
        match self {
            Eol::Unknown => "nothing",
            Eol::Lf => "\\n (LF)",
            Eol::Cr => "\\r (CR)",
            Eol::CrLf => "\\r\\n (CRLF)",
        }
    }
}

/// Client encodings whose multibyte characters may contain ASCII bytes
/// (PostgreSQL's client-only encodings); their characters are skipped whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Multibyte {
    None,
    Sjis,
    TwoByte,
    Gb18030,
    Johab,
}

/// The encoding side of a CSV source.
#[derive(Debug, Clone)]
struct Enc {
    /// Canonical name for COPY's ENCODING option (None: client encoding UTF-8).
    clause: Option<String>,
    /// Validate records as UTF-8 before sending them.
    utf8: bool,
    mb: Multibyte,
}

impl Enc {
    fn from_canonical(name: Option<&str>) -> Enc {
        let mb = match name.unwrap_or("UTF8") {
            "SJIS" | "SHIFT_JIS_2004" => Multibyte::Sjis,
            "BIG5" | "GBK" | "UHC" => Multibyte::TwoByte,
            "GB18030" => Multibyte::Gb18030,
            "JOHAB" => Multibyte::Johab,
            _ => Multibyte::None,
        };
        Enc {
            utf8: matches!(name, None | Some("UTF8")),
            clause: name.map(str::to_string),
            mb,
        }
    }
}

/// One record found by the [`Scanner`]; offsets are into the scanned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    start: usize,
    /// End of the data, before the line terminator.
    content_end: usize,
    /// End including the terminator.
    end: usize,
    /// Physical 1-based line the record starts on.
    start_line: u64,
    /// Number of fields (delimiters outside quotes + 1).
    fields: usize,
    /// The line number PostgreSQL's COPY reports for this record (its
    /// `cur_lineno`) within the current COPY statement.
    pg_line: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanError {
    Unterminated {
        line: u64,
    },
    MixedEol {
        line: u64,
        found: Eol,
        expected: Eol,
    },
}

const C_PLAIN: u8 = 0;
const C_DELIM: u8 = 1;
const C_QUOTE: u8 = 2;
const C_LF: u8 = 3;
const C_CR: u8 = 4;
const C_HIGH: u8 = 5;

/// Finds CSV record boundaries the way PostgreSQL's COPY does (quote
/// toggles anywhere, a doubled quote is an escaped quote, a line break
/// outside quotes ends the record) while counting fields and physical
/// lines, and simulating the line number COPY puts in its error context.
struct Scanner {
    class: [u8; 256],
    mb: Multibyte,
    /// Scan position and start of the current record, in buffer offsets.
    pos: usize,
    rec_start: usize,
    /// Physical line of the byte at `pos`.
    line: u64,
    /// The file's line ending, once seen.
    eol: Eol,
    in_quote: bool,
    fields: usize,
    rec_line: u64,
    /// PostgreSQL's cur_lineno after the previous record of this segment,
    /// plus what the current record has added so far.
    pg_line: u64,
    pg_extra: u64,
    /// PostgreSQL's eol_type for the current COPY statement.
    pg_eol: Eol,
}

impl Scanner {
    fn new(delim: u8, quote: u8, mb: Multibyte, first_line: u64) -> Scanner {
        let mut class = [C_PLAIN; 256];
        if mb != Multibyte::None {
            for c in class.iter_mut().skip(0x80) {
                *c = C_HIGH;
            }
        }
        class[delim as usize] = C_DELIM;
        class[quote as usize] = C_QUOTE;
        class[b'\n' as usize] = C_LF;
        class[b'\r' as usize] = C_CR;
        Scanner {
            class,
            mb,
            pos: 0,
            rec_start: 0,
            line: first_line,
            eol: Eol::Unknown,
            in_quote: false,
            fields: 1,
            rec_line: first_line,
            pg_line: 0,
            pg_extra: 0,
            pg_eol: Eol::Unknown,
        }
    }

    /// A new COPY statement starts with the next record.
    fn start_segment(&mut self) {
        self.pg_line = 0;
        self.pg_extra = 0;
        self.pg_eol = Eol::Unknown;
    }

    /// The caller dropped `n` bytes from the front of the buffer.
    fn shift(&mut self, n: usize) {
        self.pos -= n;
        self.rec_start -= n;
    }

    /// Length of the multibyte character starting at `buf[i]` (a byte with
    /// the high bit set), or None when more input is needed to know.
    fn mb_len(&self, buf: &[u8], i: usize, eof: bool) -> Option<usize> {
        let b = buf[i];
        let n = match self.mb {
            Multibyte::None => 1,
            Multibyte::Sjis => {
                if (0xa1..=0xdf).contains(&b) {
                    1
                } else {
                    2
                }
            }
            Multibyte::TwoByte => 2,
            Multibyte::Johab => match b {
                0x8e => 2,
                0x8f => 3,
                _ => 2,
            },
            Multibyte::Gb18030 => match buf.get(i + 1) {
                None if !eof => return None,
                Some(c) if (0x30..=0x39).contains(c) => 4,
                _ => 2,
            },
        };
        if i + n > buf.len() && !eof {
            return None;
        }
        Some(n)
    }

    fn check_eol(&mut self, found: Eol) -> Result<(), ScanError> {
        if self.eol == Eol::Unknown {
            self.eol = found;
        } else if self.eol != found {
            return Err(ScanError::MixedEol {
                line: self.line,
                found,
                expected: self.eol,
            });
        }
        Ok(())
    }

    fn finish(&mut self, content_end: usize, end: usize) -> Record {
        let rec = Record {
            start: self.rec_start,
            content_end,
            end,
            start_line: self.rec_line,
            fields: self.fields,
            pg_line: self.pg_line + 1 + self.pg_extra,
        };
        self.pg_line = rec.pg_line;
        self.pg_extra = 0;
        if self.pg_eol == Eol::Unknown {
            self.pg_eol = self.eol;
        }
        self.rec_start = end;
        self.pos = end;
        self.fields = 1;
        self.rec_line = self.line;
        rec
    }

    /// The next complete record in `buf`, or None when more input is needed
    /// (or, at `eof`, when everything has been returned).
    fn next(&mut self, buf: &[u8], eof: bool) -> Result<Option<Record>, ScanError> {
        let len = buf.len();
        let mut i = self.pos;
        loop {
            while i < len && self.class[buf[i] as usize] == C_PLAIN {
                i += 1;
            }
            if i >= len {
                self.pos = len;
                if !eof || self.rec_start == len {
                    return Ok(None);
                }
                if self.in_quote {
                    return Err(ScanError::Unterminated {
                        line: self.rec_line,
                    });
                }
                // The last record, without a line terminator.
                return Ok(Some(self.finish(len, len)));
            }
            match self.class[buf[i] as usize] {
                C_DELIM => {
                    if !self.in_quote {
                        self.fields += 1;
                    }
                    i += 1;
                }
                C_QUOTE => {
                    self.in_quote = !self.in_quote;
                    i += 1;
                }
                C_LF => {
                    if self.in_quote {
                        self.line += 1;
                        if self.pg_eol == Eol::Lf {
                            self.pg_extra += 1;
                        }
                        i += 1;
                    } else {
                        self.pos = i;
                        self.check_eol(Eol::Lf)?;
                        self.line += 1;
                        return Ok(Some(self.finish(i, i + 1)));
                    }
                }
                C_CR => {
                    if i + 1 >= len && !eof {
                        // Whether a \n follows decides what this \r is.
                        self.pos = i;
                        return Ok(None);
                    }
                    let lf_next = buf.get(i + 1) == Some(&b'\n');
                    if self.in_quote {
                        if !lf_next {
                            self.line += 1;
                        }
                        if self.pg_eol != Eol::Lf {
                            self.pg_extra += 1;
                        }
                        i += 1;
                    } else {
                        self.pos = i;
                        let (eol, end) = if lf_next {
                            (Eol::CrLf, i + 2)
                        } else {
                            (Eol::Cr, i + 1)
                        };
                        self.check_eol(eol)?;
                        self.line += 1;
                        return Ok(Some(self.finish(i, end)));
                    }
                }
                _ => match self.mb_len(buf, i, eof) {
                    Some(n) => i = (i + n).min(len),
                    None => {
                        self.pos = i;
                        return Ok(None);
                    }
                },
            }
        }
    }
}

/// Where, inside one record, byte `offset` is: (lines after the record's
/// first line, 1-based column).
fn locate_in_record(content: &[u8], offset: usize, delim: u8, quote: u8) -> (u64, usize) {
    let mut in_quote = false;
    let mut column = 1;
    let mut lines = 0;
    for (i, &b) in content[..offset.min(content.len())].iter().enumerate() {
        if b == quote {
            in_quote = !in_quote;
        } else if b == delim && !in_quote {
            column += 1;
        } else if b == b'\n' || (b == b'\r' && content.get(i + 1) != Some(&b'\n')) {
            lines += 1;
        }
    }
    (lines, column)
}

/// The first byte PostgreSQL would refuse in UTF-8 text: an invalid
/// sequence or a NUL. Returns its offset and what it is.
fn find_bad_utf8(content: &[u8]) -> Option<(usize, String)> {
    let invalid = std::str::from_utf8(content).err().map(|e| e.valid_up_to());
    let searched = &content[..invalid.unwrap_or(content.len())];
    if let Some(nul) = memchr::memchr(0, searched) {
        return Some((
            nul,
            "a NUL byte (0x00), which PostgreSQL text cannot hold".into(),
        ));
    }
    invalid.map(|at| {
        let bytes: Vec<String> = content[at..]
            .iter()
            .take(4)
            .map(|b| format!("0x{b:02x}"))
            .collect();
        (at, format!("invalid UTF-8 (bytes {})", bytes.join(" ")))
    })
}

/// A CSV file being read: a buffer of raw bytes, the scanner over it, and
/// where the buffer starts in the file.
struct RecordStream {
    buf: BytesMut,
    sc: Scanner,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    strip_bom: bool,
    first_fill: bool,
    /// Input bytes dropped without being sent (BOM, header).
    skipped: u64,
    name: String,
}

impl RecordStream {
    fn new(job: &CsvJob, first_line: u64, base: u64) -> RecordStream {
        RecordStream {
            buf: BytesMut::with_capacity(READ_SIZE + (READ_SIZE >> 2)),
            sc: Scanner::new(job.delim, job.quote, job.enc.mb, first_line),
            base,
            eof: false,
            strip_bom: job.enc.utf8 && base == 0,
            first_fill: true,
            skipped: 0,
            name: job.name.clone(),
        }
    }

    fn scan_error(&self, e: ScanError, during_load: bool) -> CopyError {
        match e {
            ScanError::Unterminated { line } => CopyError::Unterminated {
                file: self.name.clone(),
                line,
                during_load,
            },
            ScanError::MixedEol {
                line,
                found,
                expected,
            } => CopyError::MixedLineEndings {
                file: self.name.clone(),
                line,
                found: found.describe(),
                expected: expected.describe(),
            },
        }
    }

    /// The next complete record in the buffer (None: call `fill`, or done).
    fn next(&mut self, during_load: bool) -> Result<Option<Record>, CopyError> {
        self.sc
            .next(&self.buf, self.eof)
            .map_err(|e| self.scan_error(e, during_load))
    }

    fn done(&self) -> bool {
        self.eof && self.sc.rec_start == self.buf.len()
    }

    /// Reads up to READ_SIZE more bytes (several reads if they come short).
    fn fill(&mut self, r: &mut dyn Read, during_load: bool) -> Result<(), CopyError> {
        let start = self.buf.len();
        self.buf.resize(start + READ_SIZE, 0);
        let mut got = 0;
        let result = loop {
            match r.read(&mut self.buf[start + got..]) {
                Ok(0) => {
                    self.eof = true;
                    break Ok(());
                }
                Ok(n) => {
                    got += n;
                    if got == READ_SIZE {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.truncate(start + got);
        result.map_err(|source| CopyError::Read {
            file: self.name.clone(),
            source,
            during_load,
        })?;
        if self.first_fill {
            self.first_fill = false;
            if self.strip_bom && self.buf.starts_with(UTF8_BOM) {
                self.skip(UTF8_BOM.len());
            }
        }
        Ok(())
    }

    fn content(&self, rec: &Record) -> &[u8] {
        &self.buf[rec.start..rec.content_end]
    }

    /// Drops the first `n` buffered bytes without sending them.
    fn skip(&mut self, n: usize) {
        self.buf.advance(n);
        self.sc.shift(n);
        self.base += n as u64;
        self.skipped += n as u64;
    }

    /// Takes the first `n` buffered bytes for sending.
    fn take(&mut self, n: usize) -> Bytes {
        let data = self.buf.split_to(n).freeze();
        self.sc.shift(n);
        self.base += n as u64;
        data
    }
}

// ---------------------------------------------------------------------------
// The reader thread.
// ---------------------------------------------------------------------------

/// One CSV file as the reader thread (and error mapping) sees it.
#[derive(Debug, Clone)]
struct CsvJob {
    file: InputFile,
    name: String,
    delim: u8,
    quote: u8,
    enc: Enc,
    header: bool,
    columns: Vec<String>,
    segment_bytes: u64,
}

impl CsvJob {
    /// Checks one record before it is sent.
    fn validate(&self, content: &[u8], rec: &Record) -> Result<(), CopyError> {
        let expected = self.columns.len();
        let found = if expected == 0 && content.is_empty() {
            0
        } else {
            rec.fields
        };
        if found != expected {
            return Err(CopyError::FieldCount {
                file: self.name.clone(),
                line: rec.start_line,
                expected,
                found,
            });
        }
        if content == b"\\." {
            return Err(CopyError::EndOfDataMarker {
                file: self.name.clone(),
                line: rec.start_line,
            });
        }
        if self.enc.utf8 {
            if let Some((at, what)) = find_bad_utf8(content) {
                let (lines, column) = locate_in_record(content, at, self.delim, self.quote);
                return Err(CopyError::InvalidUtf8 {
                    file: self.name.clone(),
                    line: rec.start_line + lines,
                    column,
                    column_name: self.columns.get(column - 1).cloned().unwrap_or_default(),
                    what,
                });
            }
        }
        Ok(())
    }
}

enum Job {
    Csv(CsvJob),
    Binary {
        table: String,
        chunks: Box<dyn Iterator<Item = Bytes> + Send>,
    },
}

/// Where a COPY statement's data starts in its file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    line: u64,
}

enum Msg {
    /// Start a COPY statement.
    SegmentStart(Segment),
    Data {
        bytes: Bytes,
        records: u64,
        input_bytes: u64,
    },
    /// End the COPY statement.
    SegmentEnd,
    /// The current job (file or binary source) is complete.
    JobEnd {
        input_bytes: u64,
    },
    Failed(CopyError),
}

/// Why the reader thread stops early.
enum Halt {
    Failed(CopyError),
    /// The loader went away (it failed, or was cancelled).
    Gone,
}

impl From<CopyError> for Halt {
    fn from(e: CopyError) -> Self {
        Halt::Failed(e)
    }
}

fn send(tx: &mpsc::Sender<Msg>, msg: Msg) -> Result<(), Halt> {
    tx.blocking_send(msg).map_err(|_| Halt::Gone)
}

fn produce(jobs: Vec<Job>, tx: mpsc::Sender<Msg>) {
    for job in jobs {
        let table_for_panic = match &job {
            Job::Csv(j) => j.name.clone(),
            Job::Binary { table, .. } => table.clone(),
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
            Job::Csv(j) => j.file.with_reader(|r| stream_csv(&j, r, &tx)),
            Job::Binary { table, chunks } => stream_binary(&table, chunks, &tx),
        }));
        let outcome = match result {
            Ok(r) => r,
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                Err(Halt::Failed(CopyError::Source {
                    table: table_for_panic,
                    detail: format!("the reader panicked: {detail}"),
                }))
            }
        };
        match outcome {
            Ok(()) => {}
            Err(Halt::Gone) => return,
            Err(Halt::Failed(e)) => {
                let _ = tx.blocking_send(Msg::Failed(e.during_load(true)));
                return;
            }
        }
    }
}

fn stream_csv(job: &CsvJob, r: &mut dyn Read, tx: &mpsc::Sender<Msg>) -> Result<(), Halt> {
    let mut rs = RecordStream::new(job, 1, 0);
    let mut header_pending = job.header;
    let mut ready_end = 0usize;
    let mut ready_records = 0u64;
    let mut seg_open = false;
    let mut seg_bytes = 0u64;
    let flush = |rs: &mut RecordStream, ready_end: &mut usize, ready_records: &mut u64| {
        let input_bytes = *ready_end as u64 + rs.skipped;
        rs.skipped = 0;
        let bytes = rs.take(*ready_end);
        let records = *ready_records;
        *ready_end = 0;
        *ready_records = 0;
        send(
            tx,
            Msg::Data {
                bytes,
                records,
                input_bytes,
            },
        )
    };
    loop {
        while let Some(rec) = rs.next(true)? {
            if header_pending {
                header_pending = false;
                rs.skip(rec.end);
                rs.sc.start_segment();
                continue;
            }
            job.validate(rs.content(&rec), &rec)?;
            if !seg_open {
                seg_open = true;
                send(
                    tx,
                    Msg::SegmentStart(Segment {
                        offset: rs.base + rec.start as u64,
                        line: rec.start_line,
                    }),
                )?;
            }
            ready_end = rec.end;
            ready_records += 1;
            seg_bytes += (rec.end - rec.start) as u64;
            if seg_bytes >= job.segment_bytes {
                flush(&mut rs, &mut ready_end, &mut ready_records)?;
                send(tx, Msg::SegmentEnd)?;
                seg_open = false;
                seg_bytes = 0;
                rs.sc.start_segment();
            }
        }
        if ready_end > 0 {
            flush(&mut rs, &mut ready_end, &mut ready_records)?;
        }
        if rs.done() {
            break;
        }
        rs.fill(r, true)?;
    }
    if seg_open {
        send(tx, Msg::SegmentEnd)?;
    }
    let input_bytes = rs.skipped;
    send(tx, Msg::JobEnd { input_bytes })
}

fn stream_binary(
    table: &str,
    chunks: Box<dyn Iterator<Item = Bytes> + Send>,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), Halt> {
    let mut prefix: Vec<u8> = Vec::with_capacity(PGCOPY_SIGNATURE.len());
    let mut open = false;
    for chunk in chunks {
        if chunk.is_empty() {
            continue;
        }
        if prefix.len() < PGCOPY_SIGNATURE.len() {
            let want = PGCOPY_SIGNATURE.len() - prefix.len();
            prefix.extend_from_slice(&chunk[..want.min(chunk.len())]);
            if !PGCOPY_SIGNATURE.starts_with(&prefix) {
                return Err(Halt::Failed(CopyError::Source {
                    table: table.to_string(),
                    detail: "the stream does not start with the PGCOPY signature (not a binary \
                             COPY stream)"
                        .into(),
                }));
            }
        }
        if !open {
            open = true;
            send(tx, Msg::SegmentStart(Segment { offset: 0, line: 0 }))?;
        }
        let n = chunk.len() as u64;
        send(
            tx,
            Msg::Data {
                bytes: chunk,
                records: 0,
                input_bytes: n,
            },
        )?;
    }
    if open {
        send(tx, Msg::SegmentEnd)?;
    }
    send(tx, Msg::JobEnd { input_bytes: 0 })
}

/// Reads a file's first record and returns its field count (None: empty).
fn first_record_fields(job: &CsvJob) -> Result<Option<usize>, CopyError> {
    job.file.with_reader(|r| {
        let mut rs = RecordStream::new(job, 1, 0);
        loop {
            if let Some(rec) = rs.next(false)? {
                return Ok(Some(rec.fields));
            }
            if rs.done() {
                return Ok(None);
            }
            rs.fill(r, false)?;
        }
    })
}

/// Maps the line number in a COPY error context back to the physical line
/// where that record starts, by re-reading the segment.
fn physical_line(job: &CsvJob, seg: Segment, pg_line: u64) -> Result<Option<u64>, CopyError> {
    job.file.with_reader(|r| {
        io::copy(&mut r.take(seg.offset), &mut io::sink()).map_err(|source| CopyError::Read {
            file: job.name.clone(),
            source,
            during_load: true,
        })?;
        let mut rs = RecordStream::new(job, seg.line, seg.offset);
        loop {
            while let Some(rec) = rs.next(true)? {
                if rec.pg_line >= pg_line {
                    return Ok(Some(rec.start_line));
                }
                rs.skip(rec.end);
            }
            if rs.done() {
                return Ok(None);
            }
            rs.fill(r, true)?;
        }
    })
}

// ---------------------------------------------------------------------------
// The load.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Relation {
    oid: u32,
    schema: String,
    name: String,
    columns: Vec<String>,
    /// LOCK TABLE refuses foreign tables.
    lockable: bool,
}

impl Relation {
    fn sql(&self) -> String {
        qualified(&self.schema, &self.name)
    }
    fn display(&self) -> String {
        if self.schema == "public" {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }
}

enum PlanKind {
    Csv { jobs: Vec<CsvJob>, total_bytes: u64 },
    Binary { rows: u64 },
}

struct Plan {
    /// As the user typed it.
    table: String,
    rel: Relation,
    copy_sql: String,
    kind: PlanKind,
}

/// A foreign key defined on a loaded table.
#[derive(Debug, Clone)]
struct ForeignKey {
    name: String,
    child: u32,
    parent: u32,
    definition: String,
    validated: bool,
    comment: Option<String>,
    child_sql: String,
    child_display: String,
    parent_sql: String,
}

fn db_error(
    context: impl Into<String>,
    during_load: bool,
) -> impl FnOnce(tokio_postgres::Error) -> CopyError {
    let context = context.into();
    move |source| CopyError::Database {
        context,
        detail: crate::conn::error_text(&source),
        during_load,
        source,
    }
}

async fn resolve_table(
    client: &Client,
    table: &str,
    search_path: &str,
) -> Result<Relation, CopyError> {
    let row = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.oid = to_regclass($1)",
            &[&table],
        )
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => CopyError::BadTableName {
                table: table.to_string(),
                detail: db.message().to_string(),
            },
            None => db_error(format!("looking up table {table}"), false)(e),
        })?;
    let Some(row) = row else {
        return Err(CopyError::UnknownTable {
            table: table.to_string(),
            search_path: search_path.to_string(),
        });
    };
    let oid: u32 = row.get(0);
    let kind: String = row.get(3);
    if !matches!(kind.as_str(), "r" | "p" | "f") {
        let kind = match kind.as_str() {
            "v" => "view",
            "m" => "materialized view",
            "S" => "sequence",
            "i" | "I" => "index",
            "c" => "composite type",
            "t" => "TOAST table",
            _ => "relation",
        };
        return Err(CopyError::NotATable {
            table: table.to_string(),
            kind: kind.into(),
        });
    }
    let columns = client
        .query(
            "SELECT attname::text FROM pg_attribute \
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' \
              ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(db_error(format!("reading the columns of {table}"), false))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok(Relation {
        oid,
        schema: row.get(1),
        name: row.get(2),
        columns,
        lockable: kind != "f",
    })
}

async fn resolve_encoding(
    client: &Client,
    table: &str,
    name: Option<&str>,
) -> Result<Enc, CopyError> {
    let Some(name) = name else {
        return Ok(Enc::from_canonical(None));
    };
    let row = client
        .query_one(
            "SELECT pg_char_to_encoding($1), pg_encoding_to_char(pg_char_to_encoding($1))::text",
            &[&name],
        )
        .await
        .map_err(db_error("checking the encoding name", false))?;
    let id: i32 = row.get(0);
    if id < 0 {
        return Err(CopyError::Options {
            table: table.to_string(),
            detail: format!(
                "{name:?} is not an encoding PostgreSQL knows (e.g. UTF8, LATIN1, WIN1252, SJIS)"
            ),
        });
    }
    let canonical: String = row.get(1);
    Ok(Enc::from_canonical(Some(&canonical)))
}

fn copy_sql(rel: &Relation, csv: Option<(&CsvOptions, &Enc)>) -> String {
    let cols = if rel.columns.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = rel.columns.iter().map(|c| ident(c)).collect();
        format!(" ({})", list.join(", "))
    };
    let options = match csv {
        None => "FORMAT binary".to_string(),
        Some((o, enc)) => {
            let mut parts = vec![
                "FORMAT csv".to_string(),
                format!(
                    "DELIMITER {}",
                    literal(&char::from(o.delimiter).to_string())
                ),
                format!("QUOTE {}", literal(&char::from(o.quote).to_string())),
            ];
            if let Some(n) = &o.null {
                parts.push(format!("NULL {}", literal(n)));
            }
            if let Some(e) = &enc.clause {
                parts.push(format!("ENCODING {}", literal(e)));
            }
            parts.join(", ")
        }
    };
    format!("COPY {}{} FROM STDIN ({})", rel.sql(), cols, options)
}

/// Loads all the given tables as ONE logical load: one transaction; all or
/// nothing.
///
/// Before anything is written, every table is resolved and every input file
/// opened and its first line checked against the table's columns. Then, in
/// one transaction: the tables are locked (short lock_timeout, retried), the
/// foreign keys defined on them dropped, the data copied (referenced tables
/// first), the keys re-added (validated in one pass each), serial/identity
/// sequences moved up to the loaded maximum, and the transaction committed.
/// The tables the load touches are locked ACCESS EXCLUSIVE while it runs.
///
/// If the returned future is dropped midway, the open COPY is aborted and
/// the transaction rolled back.
pub async fn load(
    client: &mut Client,
    loads: Vec<TableLoad>,
    opts: &LoadOptions,
) -> Result<LoadReport, CopyError> {
    let started = Instant::now();
    let search_path: String = client
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .map_err(db_error("reading search_path", false))?
        .get(0);

    // 1. Resolve everything before writing anything.
    let mut plans = Vec::with_capacity(loads.len());
    let mut binaries: Vec<Option<Box<dyn Iterator<Item = Bytes> + Send>>> = Vec::new();
    for l in loads {
        let rel = resolve_table(client, &l.table, &search_path).await?;
        match l.source {
            Source::Csv { files, options } => {
                options.validate().map_err(|detail| CopyError::Options {
                    table: l.table.clone(),
                    detail,
                })?;
                let enc = resolve_encoding(client, &l.table, options.encoding.as_deref()).await?;
                let jobs = files
                    .into_iter()
                    .map(|file| CsvJob {
                        name: file.display_name(),
                        file,
                        delim: options.delimiter,
                        quote: options.quote,
                        enc: enc.clone(),
                        header: options.header,
                        columns: rel.columns.clone(),
                        segment_bytes: opts.segment_bytes.max(1),
                    })
                    .collect();
                plans.push(Plan {
                    copy_sql: copy_sql(&rel, Some((&options, &enc))),
                    table: l.table,
                    rel,
                    kind: PlanKind::Csv {
                        jobs,
                        total_bytes: 0,
                    },
                });
                binaries.push(None);
            }
            Source::Binary { chunks, rows } => {
                plans.push(Plan {
                    copy_sql: copy_sql(&rel, None),
                    table: l.table,
                    rel,
                    kind: PlanKind::Binary { rows },
                });
                binaries.push(Some(chunks));
            }
        }
    }

    // 2. Open every input and check its first line against its table.
    let checks: Vec<(usize, String, Vec<CsvJob>)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.kind {
            PlanKind::Csv { jobs, .. } => Some((i, p.table.clone(), jobs.clone())),
            PlanKind::Binary { .. } => None,
        })
        .collect();
    let totals = tokio::task::spawn_blocking(move || -> Result<Vec<(usize, u64)>, CopyError> {
        let mut totals = Vec::new();
        for (i, table, jobs) in checks {
            let mut total = 0;
            for job in &jobs {
                total += job.file.size()?;
                if let Some(found) = first_record_fields(job)? {
                    let expected = job.columns.len();
                    if found != expected && !(expected == 0 && found == 1) {
                        return Err(CopyError::ColumnCountMismatch {
                            file: job.name.clone(),
                            table: table.clone(),
                            expected,
                            found,
                            columns: job.columns.join(", "),
                        });
                    }
                }
            }
            totals.push((i, total));
        }
        Ok(totals)
    })
    .await
    .expect("file checks do not panic")?;
    for (i, total) in totals {
        if let PlanKind::Csv { total_bytes, .. } = &mut plans[i].kind {
            *total_bytes = total;
        }
    }

    // 3. One transaction for all of it.
    let tx = client
        .transaction()
        .await
        .map_err(db_error("starting the load's transaction", false))?;
    match run_load(&tx, plans, binaries, opts).await {
        Ok(mut report) => {
            tx.commit()
                .await
                .map_err(db_error("committing the load", true))?;
            report.seconds = started.elapsed().as_secs_f64();
            Ok(report)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn capture_fks(tx: &Transaction<'_>, oids: &[u32]) -> Result<Vec<ForeignKey>, CopyError> {
    let rows = tx
        .query(
            "SELECT con.conname::text, con.conrelid, con.confrelid, \
                    pg_get_constraintdef(con.oid), con.convalidated, \
                    obj_description(con.oid, 'pg_constraint'), \
                    cn.nspname::text, c.relname::text, pn.nspname::text, p.relname::text \
               FROM pg_constraint con \
               JOIN pg_class c ON c.oid = con.conrelid \
               JOIN pg_namespace cn ON cn.oid = c.relnamespace \
               JOIN pg_class p ON p.oid = con.confrelid \
               JOIN pg_namespace pn ON pn.oid = p.relnamespace \
              WHERE con.contype = 'f' AND con.conparentid = 0 AND con.conrelid = ANY($1) \
              ORDER BY cn.nspname, c.relname, con.conname",
            &[&oids],
        )
        .await
        .map_err(db_error(
            "reading the foreign keys of the loaded tables",
            true,
        ))?;
    Ok(rows
        .iter()
        .map(|r| {
            let (cs, cr, ps, pr): (String, String, String, String) =
                (r.get(6), r.get(7), r.get(8), r.get(9));
            ForeignKey {
                name: r.get(0),
                child: r.get(1),
                parent: r.get(2),
                definition: r.get(3),
                validated: r.get(4),
                comment: r.get(5),
                child_sql: qualified(&cs, &cr),
                child_display: if cs == "public" {
                    cr
                } else {
                    format!("{cs}.{cr}")
                },
                parent_sql: qualified(&ps, &pr),
            }
        })
        .collect())
}

/// Takes the load's locks up front with a short lock_timeout, retrying with
/// exponential backoff and jitter, so the load neither waits forever behind
/// a long transaction nor makes everyone queue behind its lock request.
async fn lock_tables(
    tx: &Transaction<'_>,
    plans: &[Plan],
    fks: &[ForeignKey],
    opts: &LoadOptions,
) -> Result<(), CopyError> {
    let mut exclusive: Vec<String> = Vec::new();
    let mut share: Vec<String> = Vec::new();
    let mut row: Vec<String> = Vec::new();
    fn add(list: &mut Vec<String>, t: &String) {
        if !list.contains(t) {
            list.push(t.clone());
        }
    }
    for fk in fks {
        add(&mut exclusive, &fk.child_sql);
    }
    for fk in fks {
        if !exclusive.contains(&fk.parent_sql) {
            add(&mut share, &fk.parent_sql);
        }
    }
    for p in plans.iter().filter(|p| p.rel.lockable) {
        let t = p.rel.sql();
        if !exclusive.contains(&t) && !share.contains(&t) {
            add(&mut row, &t);
        }
    }
    let mut statements = Vec::new();
    for (list, mode) in [
        (&exclusive, "ACCESS EXCLUSIVE"),
        (&share, "SHARE ROW EXCLUSIVE"),
        (&row, "ROW EXCLUSIVE"),
    ] {
        if !list.is_empty() {
            statements.push(format!("LOCK TABLE {} IN {mode} MODE", list.join(", ")));
        }
    }
    if statements.is_empty() {
        return Ok(());
    }
    let previous: String = tx
        .query_one("SELECT current_setting('lock_timeout')", &[])
        .await
        .map_err(db_error("reading lock_timeout", true))?
        .get(0);
    let timeout = format!("{}ms", opts.lock_timeout.as_millis().max(1));
    tx.query_one("SELECT set_config('lock_timeout', $1, true)", &[&timeout])
        .await
        .map_err(db_error("setting lock_timeout", true))?;
    let attempts = opts.lock_attempts.max(1);
    let policy = crate::db::LockPolicy {
        lock_timeout: opts.lock_timeout,
        max_wait: None,
        max_attempts: Some(attempts),
    };
    // One LOCK statement per query, all under one savepoint per attempt.
    let attempt = || async {
        tx.batch_execute("SAVEPOINT shardready_copy_lock").await?;
        for stmt in &statements {
            if let Err(e) = tx.batch_execute(stmt).await {
                tx.batch_execute("ROLLBACK TO SAVEPOINT shardready_copy_lock")
                    .await?;
                return Err(e);
            }
        }
        tx.batch_execute("RELEASE SAVEPOINT shardready_copy_lock")
            .await
    };
    match crate::db::retry_on_lock_timeout(&policy, attempt).await {
        Ok(_) => {}
        Err(crate::db::RetryError::GaveUp { .. }) => {
            let mut all = exclusive.clone();
            all.extend(share.iter().cloned());
            all.extend(row.iter().cloned());
            return Err(CopyError::LockTimeout {
                tables: all.join(", "),
                attempts,
                timeout_ms: opts.lock_timeout.as_millis(),
            });
        }
        Err(crate::db::RetryError::Failed(e)) => {
            return Err(db_error("locking the tables", true)(e))
        }
    }
    // The locks are held now; what follows must not fail on a short timeout.
    tx.query_one("SELECT set_config('lock_timeout', $1, true)", &[&previous])
        .await
        .map_err(db_error("restoring lock_timeout", true))?;
    Ok(())
}

/// Referenced tables first (stable; cycles keep the given order).
fn load_order(plans: &[Plan], fks: &[ForeignKey]) -> Vec<usize> {
    let n = plans.len();
    let deps: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| {
                    plans[i].rel.oid != plans[j].rel.oid
                        && fks
                            .iter()
                            .any(|fk| fk.child == plans[i].rel.oid && fk.parent == plans[j].rel.oid)
                })
                .collect()
        })
        .collect();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n)
            .find(|&i| !placed[i] && deps[i].iter().all(|&j| placed[j]))
            .or_else(|| (0..n).find(|&i| !placed[i]))
            .expect("an unplaced plan remains");
        placed[next] = true;
        order.push(next);
    }
    order
}

fn progress_bar(opts: &LoadOptions, plan: &Plan) -> ProgressBar {
    if !opts.progress || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match &plan.kind {
        PlanKind::Csv { total_bytes, .. } => (
            ProgressBar::new(*total_bytes),
            "{prefix:>14.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        ),
        PlanKind::Binary { .. } => (
            ProgressBar::new_spinner(),
            "{prefix:>14.bold} {spinner} {bytes} {binary_bytes_per_sec} {msg}",
        ),
    };
    pb.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(plan.rel.display());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn status_spinner(opts: &LoadOptions) -> ProgressBar {
    if !opts.progress || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{prefix:>14.bold} {spinner} {msg} ({elapsed})")
    {
        pb.set_style(style);
    }
    pb.set_prefix("constraints");
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

async fn run_load(
    tx: &Transaction<'_>,
    plans: Vec<Plan>,
    mut binaries: Vec<Option<Box<dyn Iterator<Item = Bytes> + Send>>>,
    opts: &LoadOptions,
) -> Result<LoadReport, CopyError> {
    let mut oids: Vec<u32> = Vec::new();
    for p in &plans {
        if !oids.contains(&p.rel.oid) {
            oids.push(p.rel.oid);
        }
    }

    // Lock, then read the keys again: with the locks held they cannot change.
    let fks = capture_fks(tx, &oids).await?;
    lock_tables(tx, &plans, &fks, opts).await?;
    let fks = capture_fks(tx, &oids).await?;

    // The reader thread works through the files in load order.
    let order = load_order(&plans, &fks);
    let mut jobs = Vec::new();
    for &i in &order {
        match &plans[i].kind {
            PlanKind::Csv { jobs: files, .. } => jobs.extend(files.iter().cloned().map(Job::Csv)),
            PlanKind::Binary { .. } => jobs.push(Job::Binary {
                table: plans[i].rel.display(),
                chunks: binaries[i].take().expect("each binary source is used once"),
            }),
        }
    }
    let (sender, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
    std::thread::Builder::new()
        .name("copy-reader".into())
        .spawn(move || produce(jobs, sender))
        .map_err(|source| CopyError::Read {
            file: "(reader thread)".into(),
            source,
            during_load: true,
        })?;

    // Drop the keys defined on the loaded tables (the transaction restores
    // them on any failure).
    let mut by_child: Vec<(&str, Vec<&ForeignKey>)> = Vec::new();
    for fk in &fks {
        match by_child.iter_mut().find(|(c, _)| *c == fk.child_sql) {
            Some((_, list)) => list.push(fk),
            None => by_child.push((&fk.child_sql, vec![fk])),
        }
    }
    for (child, list) in &by_child {
        let drops: Vec<String> = list
            .iter()
            .map(|fk| format!("DROP CONSTRAINT {}", ident(&fk.name)))
            .collect();
        tx.batch_execute(&format!("ALTER TABLE {child} {}", drops.join(", ")))
            .await
            .map_err(db_error(
                format!("dropping the foreign keys of {child} for the load"),
                true,
            ))?;
    }

    let mut tables = Vec::with_capacity(plans.len());
    for &i in &order {
        tables.push(copy_table(tx, &plans[i], &mut rx, opts).await?);
    }

    // Re-add each key: one set-based validation per key.
    let spinner = status_spinner(opts);
    let mut fk_revalidated = Vec::new();
    for fk in &fks {
        spinner.set_message(format!("validating {} on {}", fk.name, fk.child_display));
        let sql = format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            fk.child_sql,
            ident(&fk.name),
            fk.definition
        );
        if let Err(e) = tx.batch_execute(&sql).await {
            spinner.finish_and_clear();
            if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
                let detail = e
                    .as_db_error()
                    .map(|db| db.detail().unwrap_or(db.message()).to_string())
                    .unwrap_or_default();
                return Err(CopyError::ForeignKey {
                    constraint: fk.name.clone(),
                    table: fk.child_display.clone(),
                    detail,
                });
            }
            return Err(db_error(
                format!("re-adding foreign key {} on {}", fk.name, fk.child_display),
                true,
            )(e));
        }
        if let Some(c) = &fk.comment {
            tx.batch_execute(&format!(
                "COMMENT ON CONSTRAINT {} ON {} IS {}",
                ident(&fk.name),
                fk.child_sql,
                literal(c)
            ))
            .await
            .map_err(db_error(
                format!("restoring the comment of {}", fk.name),
                true,
            ))?;
        }
        if fk.validated {
            fk_revalidated.push(format!("{}.{}", fk.child_display, fk.name));
        }
    }

    spinner.set_message("setting sequences");
    let mut sequences_set = Vec::new();
    for oid in &oids {
        let plan = plans.iter().find(|p| p.rel.oid == *oid).expect("planned");
        sequences_set.extend(set_sequences(tx, &plan.rel).await?);
    }
    spinner.finish_and_clear();

    Ok(LoadReport {
        tables,
        seconds: 0.0,
        fk_revalidated,
        sequences_set,
    })
}

/// Like the seed's `setval(seq, max(col))`, for every serial/identity column,
/// when the table is not empty — but never moves a sequence backwards.
async fn set_sequences(
    tx: &Transaction<'_>,
    rel: &Relation,
) -> Result<Vec<(String, i64)>, CopyError> {
    let rows = tx
        .query(
            "SELECT a.attname::text, s.oid, sn.nspname::text, s.relname::text \
               FROM pg_depend d \
               JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
               JOIN pg_namespace sn ON sn.oid = s.relnamespace \
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
              WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
                AND d.refobjid = $1 AND d.deptype IN ('a', 'i') \
                AND a.attnum > 0 AND NOT a.attisdropped \
              ORDER BY a.attnum",
            &[&rel.oid],
        )
        .await
        .map_err(db_error(
            format!("finding the sequences of {}", rel.display()),
            true,
        ))?;
    let mut set = Vec::new();
    for r in rows {
        let (column, seq_oid, seq_schema, seq_name): (String, u32, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let ctx = format!("setting sequence {seq_schema}.{seq_name}");
        let max: Option<i64> = tx
            .query_one(
                &format!("SELECT max({})::bigint FROM {}", ident(&column), rel.sql()),
                &[],
            )
            .await
            .map_err(db_error(ctx.clone(), true))?
            .get(0);
        let Some(max) = max else { continue };
        let state = tx
            .query_one(
                &format!(
                    "SELECT last_value, is_called FROM {}",
                    qualified(&seq_schema, &seq_name)
                ),
                &[],
            )
            .await
            .map_err(db_error(ctx.clone(), true))?;
        let (last, called): (i64, bool) = (state.get(0), state.get(1));
        if (called && last >= max) || (!called && last > max) {
            continue;
        }
        tx.query_one("SELECT setval($1::oid::regclass, $2)", &[&seq_oid, &max])
            .await
            .map_err(db_error(ctx, true))?;
        let display = if seq_schema == "public" {
            seq_name
        } else {
            format!("{seq_schema}.{seq_name}")
        };
        set.push((display, max));
    }
    Ok(set)
}

type Sink = Pin<Box<CopyInSink<Bytes>>>;

async fn copy_table(
    tx: &Transaction<'_>,
    plan: &Plan,
    rx: &mut mpsc::Receiver<Msg>,
    opts: &LoadOptions,
) -> Result<TableReport, CopyError> {
    let started = Instant::now();
    let pb = progress_bar(opts, plan);
    let job_count = match &plan.kind {
        PlanKind::Csv { jobs, .. } => jobs.len(),
        PlanKind::Binary { .. } => 1,
    };
    let mut rows = 0u64;
    let mut records = 0u64;
    let mut bytes = 0u64;
    for job_index in 0..job_count {
        let csv = match &plan.kind {
            PlanKind::Csv { jobs, .. } => Some(&jobs[job_index]),
            PlanKind::Binary { .. } => None,
        };
        let mut sink: Option<Sink> = None;
        let mut segment = Segment { offset: 0, line: 1 };
        loop {
            let msg = rx.recv().await.ok_or_else(|| CopyError::Source {
                table: plan.rel.display(),
                detail: "the reader thread stopped unexpectedly".into(),
            })?;
            match msg {
                Msg::SegmentStart(seg) => {
                    segment = seg;
                    let s = tx.copy_in(&plan.copy_sql).await.map_err(db_error(
                        format!("starting COPY into {}", plan.rel.display()),
                        true,
                    ))?;
                    sink = Some(Box::pin(s));
                }
                Msg::Data {
                    bytes: data,
                    records: n,
                    input_bytes,
                } => {
                    let s = sink.as_mut().expect("data comes inside a segment");
                    if let Err(e) = s.send(data).await {
                        return Err(rejected(e, plan, csv, segment).await);
                    }
                    records += n;
                    bytes += input_bytes;
                    pb.inc(input_bytes);
                    if csv.is_some() {
                        pb.set_message(format!("{records} rows"));
                    }
                }
                Msg::SegmentEnd => {
                    let mut s = sink.take().expect("a segment ends after it starts");
                    match s.as_mut().finish().await {
                        Ok(n) => rows += n,
                        Err(e) => return Err(rejected(e, plan, csv, segment).await),
                    }
                    if csv.is_none() {
                        pb.set_message(format!("{rows} rows"));
                    }
                }
                Msg::JobEnd { input_bytes } => {
                    bytes += input_bytes;
                    pb.inc(input_bytes);
                    break;
                }
                Msg::Failed(e) => return Err(e),
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    pb.finish_with_message(format!("{rows} rows in {seconds:.1}s"));
    if let PlanKind::Binary { rows: expected } = plan.kind {
        if expected != rows {
            tracing::warn!(
                table = %plan.rel.display(),
                expected,
                rows,
                "the binary source held a different number of rows than announced"
            );
        }
    }
    Ok(TableReport {
        table: plan.table.clone(),
        rows,
        bytes,
        seconds,
    })
}

/// `COPY orders, line 1234, column ordered_at: "…"` → (1234, Some("ordered_at")).
fn parse_copy_context(context: &str, rel: &Relation) -> Option<(u64, Option<String>)> {
    let prefix = format!("COPY {}, line ", rel.name);
    let line = context.lines().rev().find(|l| l.starts_with(&prefix))?;
    let rest = &line[prefix.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = rest[..digits].parse().ok()?;
    let column = rest[digits..].strip_prefix(", column ").and_then(|r| {
        rel.columns
            .iter()
            .filter(|c| {
                r.strip_prefix(c.as_str())
                    .is_some_and(|after| after.is_empty() || after.starts_with(':'))
            })
            .max_by_key(|c| c.len())
            .cloned()
    });
    Some((number, column))
}

/// Turns a server error during COPY into one that names the input file and
/// line.
async fn rejected(
    e: tokio_postgres::Error,
    plan: &Plan,
    csv: Option<&CsvJob>,
    segment: Segment,
) -> CopyError {
    let Some(db) = e.as_db_error() else {
        return db_error(format!("COPY into {}", plan.rel.display()), true)(e);
    };
    let mut message = db.message().to_string();
    if let Some(d) = db.detail() {
        message.push_str(&format!(" ({d})"));
    }
    if let Some(h) = db.hint() {
        message.push_str(&format!("; hint: {h}"));
    }
    let sqlstate = db.code().code().to_string();
    let context = db.where_().map(|w| parse_copy_context(w, &plan.rel));
    let (pg_line, column) = match context.flatten() {
        Some((n, c)) => (Some(n), c),
        None => (None, None),
    };
    let (file, line, binary) = match csv {
        None => (plan.rel.display(), pg_line, true),
        Some(job) => {
            let line = match pg_line {
                None => None,
                Some(n) => {
                    let job = job.clone();
                    tokio::task::spawn_blocking(move || physical_line(&job, segment, n))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten()
                }
            };
            (job.name.clone(), line, false)
        }
    };
    CopyError::Rejected(Box::new(Rejected {
        file,
        line,
        column,
        message,
        sqlstate,
        binary,
    }))
}

#[cfg(test)]
mod tests {
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
            schema: "public".into(),
            name: "orders".into(),
            columns: vec!["order_id".into(), "ordered_at".into(), "ordered".into()],
            lockable: true,
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
