//! The reader thread: reads files and zip members, checks records and
//! sends COPY segments (CSV bytes as they are, or binary rows) over a
//! bounded channel while the server parses the previous chunk.

use super::*;

/// One CSV file as the reader thread (and error mapping) sees it.
#[derive(Debug, Clone)]
pub(super) struct CsvJob {
    pub(super) file: InputFile,
    pub(super) name: String,
    pub(super) delim: u8,
    pub(super) quote: u8,
    pub(super) enc: Enc,
    pub(super) header: bool,
    pub(super) columns: Vec<String>,
    pub(super) segment_bytes: u64,
}

impl CsvJob {
    /// Checks one record before it is sent.
    pub(super) fn validate(&self, content: &[u8], rec: &Record) -> Result<(), CopyError> {
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

pub(super) enum Job {
    Csv(CsvJob),
    Binary {
        table: String,
        chunks: Box<dyn Iterator<Item = Bytes> + Send>,
    },
}

/// Where a COPY statement's data starts in its file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub(super) offset: u64,
    pub(super) line: u64,
}

pub(super) enum Msg {
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
pub(super) enum Halt {
    Failed(CopyError),
    /// The loader went away (it failed, or was cancelled).
    Gone,
}

impl From<CopyError> for Halt {
    fn from(e: CopyError) -> Self {
        Halt::Failed(e)
    }
}

pub(super) fn send(tx: &mpsc::Sender<Msg>, msg: Msg) -> Result<(), Halt> {
    tx.blocking_send(msg).map_err(|_| Halt::Gone)
}

pub(super) fn produce(jobs: Vec<Job>, tx: mpsc::Sender<Msg>) {
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

pub(super) fn stream_csv(
    job: &CsvJob,
    r: &mut dyn Read,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), Halt> {
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

pub(super) fn stream_binary(
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
pub(super) fn first_record_fields(job: &CsvJob) -> Result<Option<usize>, CopyError> {
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
pub(super) fn physical_line(
    job: &CsvJob,
    seg: Segment,
    pg_line: u64,
) -> Result<Option<u64>, CopyError> {
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
