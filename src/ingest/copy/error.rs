//! What can go wrong in a load, said with the file, line and column,
//! and always "nothing was loaded" when the transaction rolled back.

use super::*;

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
    pub(super) fn during_load(mut self, during: bool) -> Self {
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
    pub(super) binary: bool,
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
