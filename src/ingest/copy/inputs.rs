//! Which files a load reads: plain paths, glob patterns and zip archive
//! members (`data.zip:PATTERN`), in natural order.

use super::*;

/// One input: a file on disk, a member of a zip archive (read in place),
/// or standard input or a pipe, kept in a temporary file while the load
/// reads it (the load reads its inputs more than once: checked, then
/// streamed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFile {
    Path(PathBuf),
    ZipMember { archive: PathBuf, member: String },
    Spooled(Spooled),
}

/// A stream read once into a temporary file, removed when the last copy of
/// this goes.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// What the user named (`-` shows as "standard input").
    pub name: String,
    file: std::sync::Arc<tempfile::TempPath>,
}

impl PartialEq for Spooled {
    fn eq(&self, o: &Spooled) -> bool {
        self.name == o.name
    }
}
impl Eq for Spooled {}

impl Spooled {
    fn path(&self) -> &Path {
        &self.file
    }
    /// Reads `arg` (`-` for standard input, else a pipe or device) to its
    /// end into a temporary file.
    fn read(arg: &str) -> Result<Spooled, CopyError> {
        let name = if arg == "-" {
            "standard input".to_string()
        } else {
            arg.to_string()
        };
        let failed = |e: io::Error| CopyError::Read {
            file: name.clone(),
            source: e,
            during_load: false,
        };
        let mut tmp = tempfile::NamedTempFile::new().map_err(&failed)?;
        if arg == "-" {
            io::copy(&mut io::stdin().lock(), &mut tmp).map_err(&failed)?;
        } else {
            let mut src = File::open(arg).map_err(|e| open_error(Path::new(arg), e))?;
            io::copy(&mut src, &mut tmp).map_err(&failed)?;
        }
        Ok(Spooled {
            name,
            file: std::sync::Arc::new(tmp.into_temp_path()),
        })
    }
}

impl fmt::Display for InputFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputFile::Path(p) => write!(f, "{}", p.display()),
            InputFile::ZipMember { archive, member } => {
                write!(f, "{}:{}", archive.display(), member)
            }
            InputFile::Spooled(s) => write!(f, "{}", s.name),
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
            InputFile::Spooled(s) => Ok(std::fs::metadata(s.path())
                .map_err(|e| open_error(s.path(), e))?
                .len()),
        }
    }

    /// Runs `f` with a reader over the file's (uncompressed) bytes.
    pub(super) fn with_reader<T, E: From<CopyError>>(
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
            InputFile::Spooled(s) => {
                let mut file = File::open(s.path()).map_err(|e| open_error(s.path(), e))?;
                f(&mut file)
            }
        }
    }
}

pub(super) fn open_error(path: &Path, e: io::Error) -> CopyError {
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

pub(super) fn zip_error(archive: &Path, e: zip::result::ZipError) -> CopyError {
    CopyError::Zip {
        archive: archive.display().to_string(),
        detail: e.to_string(),
    }
}

pub(super) fn open_zip(archive: &Path) -> Result<zip::ZipArchive<BufReader<File>>, CopyError> {
    let file = File::open(archive).map_err(|e| open_error(archive, e))?;
    zip::ZipArchive::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| zip_error(archive, e))
}

pub(super) fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

pub(super) fn is_zip_name(s: &str) -> bool {
    s.len() >= 4 && s[s.len() - 4..].eq_ignore_ascii_case(".zip")
}

/// Splits `archive.zip:PATTERN` (case-insensitive `.zip`).
pub(super) fn split_zip_arg(arg: &str) -> Option<(&str, &str)> {
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

pub(super) fn trim_zeros(digits: &[u8]) -> &[u8] {
    let n = digits.iter().take_while(|&&b| b == b'0').count();
    &digits[n..]
}

/// macOS resource forks and folder metadata that zip tools add.
pub(super) fn is_zip_junk(name: &str) -> bool {
    name.starts_with("__MACOSX/") || name.rsplit('/').next().is_some_and(|b| b.starts_with("._"))
}

pub(super) fn zip_members(
    archive: &Path,
    pattern: Option<&str>,
) -> Result<Vec<InputFile>, CopyError> {
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

pub(super) fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, CopyError> {
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
        let paths = if arg == "-" {
            push(InputFile::Spooled(Spooled::read(arg)?), &mut out);
            continue;
        } else if has_glob_chars(arg) {
            expand_glob(arg)?
        } else {
            let p = PathBuf::from(arg);
            let meta = std::fs::metadata(&p).map_err(|e| open_error(&p, e))?;
            if !meta.is_file() {
                // A pipe or device (`<(zcat …)`, /dev/fd/N): read once.
                use std::os::unix::fs::FileTypeExt;
                let ft = meta.file_type();
                if ft.is_fifo() || ft.is_char_device() {
                    push(InputFile::Spooled(Spooled::read(arg)?), &mut out);
                    continue;
                }
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
