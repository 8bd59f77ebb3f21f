//! The client-side CSV scanner: splits records exactly like COPY does
//! (quotes, line endings, multibyte encodings) and checks each before the
//! server sees it, so errors name `file:line`.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Eol {
    Unknown,
    Lf,
    Cr,
    CrLf,
}

impl Eol {
    pub(super) fn describe(self) -> &'static str {
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
pub(super) enum Multibyte {
    None,
    Sjis,
    TwoByte,
    Gb18030,
    Johab,
}

/// The encoding side of a CSV source.
#[derive(Debug, Clone)]
pub(super) struct Enc {
    /// Canonical name for COPY's ENCODING option (None: client encoding UTF-8).
    pub(super) clause: Option<String>,
    /// Validate records as UTF-8 before sending them.
    pub(super) utf8: bool,
    pub(super) mb: Multibyte,
}

impl Enc {
    pub(super) fn from_canonical(name: Option<&str>) -> Enc {
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
pub(super) struct Record {
    pub(super) start: usize,
    /// End of the data, before the line terminator.
    pub(super) content_end: usize,
    /// End including the terminator.
    pub(super) end: usize,
    /// Physical 1-based line the record starts on.
    pub(super) start_line: u64,
    /// Number of fields (delimiters outside quotes + 1).
    pub(super) fields: usize,
    /// The line number PostgreSQL's COPY reports for this record (its
    /// `cur_lineno`) within the current COPY statement.
    pub(super) pg_line: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScanError {
    Unterminated {
        line: u64,
    },
    MixedEol {
        line: u64,
        found: Eol,
        expected: Eol,
    },
}

pub(super) const C_PLAIN: u8 = 0;
pub(super) const C_DELIM: u8 = 1;
pub(super) const C_QUOTE: u8 = 2;
pub(super) const C_LF: u8 = 3;
pub(super) const C_CR: u8 = 4;
pub(super) const C_HIGH: u8 = 5;

/// Finds CSV record boundaries the way PostgreSQL's COPY does (quote
/// toggles anywhere, a doubled quote is an escaped quote, a line break
/// outside quotes ends the record) while counting fields and physical
/// lines, and simulating the line number COPY puts in its error context.
pub(super) struct Scanner {
    pub(super) class: [u8; 256],
    pub(super) mb: Multibyte,
    /// Scan position and start of the current record, in buffer offsets.
    pub(super) pos: usize,
    pub(super) rec_start: usize,
    /// Physical line of the byte at `pos`.
    pub(super) line: u64,
    /// The file's line ending, once seen.
    pub(super) eol: Eol,
    pub(super) in_quote: bool,
    pub(super) fields: usize,
    pub(super) rec_line: u64,
    /// PostgreSQL's cur_lineno after the previous record of this segment,
    /// plus what the current record has added so far.
    pub(super) pg_line: u64,
    pub(super) pg_extra: u64,
    /// PostgreSQL's eol_type for the current COPY statement.
    pub(super) pg_eol: Eol,
}

impl Scanner {
    pub(super) fn new(delim: u8, quote: u8, mb: Multibyte, first_line: u64) -> Scanner {
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
    pub(super) fn start_segment(&mut self) {
        self.pg_line = 0;
        self.pg_extra = 0;
        self.pg_eol = Eol::Unknown;
    }

    /// The caller dropped `n` bytes from the front of the buffer.
    pub(super) fn shift(&mut self, n: usize) {
        self.pos -= n;
        self.rec_start -= n;
    }

    /// Length of the multibyte character starting at `buf[i]` (a byte with
    /// the high bit set), or None when more input is needed to know.
    pub(super) fn mb_len(&self, buf: &[u8], i: usize, eof: bool) -> Option<usize> {
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

    pub(super) fn check_eol(&mut self, found: Eol) -> Result<(), ScanError> {
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

    pub(super) fn finish(&mut self, content_end: usize, end: usize) -> Record {
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
    pub(super) fn next(&mut self, buf: &[u8], eof: bool) -> Result<Option<Record>, ScanError> {
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
pub(super) fn locate_in_record(
    content: &[u8],
    offset: usize,
    delim: u8,
    quote: u8,
) -> (u64, usize) {
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
pub(super) fn find_bad_utf8(content: &[u8]) -> Option<(usize, String)> {
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
pub(super) struct RecordStream {
    pub(super) buf: BytesMut,
    pub(super) sc: Scanner,
    /// File offset of `buf[0]`.
    pub(super) base: u64,
    pub(super) eof: bool,
    pub(super) strip_bom: bool,
    pub(super) first_fill: bool,
    /// Input bytes dropped without being sent (BOM, header).
    pub(super) skipped: u64,
    pub(super) name: String,
}

impl RecordStream {
    pub(super) fn new(job: &CsvJob, first_line: u64, base: u64) -> RecordStream {
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

    pub(super) fn scan_error(&self, e: ScanError, during_load: bool) -> CopyError {
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
    pub(super) fn next(&mut self, during_load: bool) -> Result<Option<Record>, CopyError> {
        self.sc
            .next(&self.buf, self.eof)
            .map_err(|e| self.scan_error(e, during_load))
    }

    pub(super) fn done(&self) -> bool {
        self.eof && self.sc.rec_start == self.buf.len()
    }

    /// Reads up to READ_SIZE more bytes (several reads if they come short).
    pub(super) fn fill(&mut self, r: &mut dyn Read, during_load: bool) -> Result<(), CopyError> {
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

    pub(super) fn content(&self, rec: &Record) -> &[u8] {
        &self.buf[rec.start..rec.content_end]
    }

    /// Drops the first `n` buffered bytes without sending them.
    pub(super) fn skip(&mut self, n: usize) {
        self.buf.advance(n);
        self.sc.shift(n);
        self.base += n as u64;
        self.skipped += n as u64;
    }

    /// Takes the first `n` buffered bytes for sending.
    pub(super) fn take(&mut self, n: usize) -> Bytes {
        let data = self.buf.split_to(n).freeze();
        self.sc.shift(n);
        self.base += n as u64;
        data
    }
}

// ---------------------------------------------------------------------------
// The reader thread.
// ---------------------------------------------------------------------------
