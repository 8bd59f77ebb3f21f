//! Where to connect and how: `--db` (conninfo or URL), else `DATABASE_URL`,
//! else libpq's `PG*` variables (and `~/.pgpass`), else the running sandbox;
//! TLS by `sslmode` with libpq's semantics ([`tls`]); connection retry with backoff. A password never leaves this
//! module in any printable form: [`Target::display`] is the only way to show
//! a target.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

pub mod tls;
pub use tls::TlsFiles;
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::{Client, Config, NoTls};

#[derive(Debug, Error)]
pub enum ConnError {
    #[error("invalid connection string: {0}")]
    Parse(String),
    #[error(
        "no database to connect to: pass --db 'postgresql://user@host:5432/db' (or a conninfo \
         like 'host=... dbname=...'), set DATABASE_URL or PGHOST/PGDATABASE, or start the \
         embedded one with `shardready sandbox start`"
    )]
    NoTarget,
    #[error("cannot connect to {target}: {detail}{hint}")]
    Connect {
        target: String,
        detail: String,
        hint: String,
        /// The server is unreachable, starting up or shutting down (worth
        /// retrying), as opposed to refusing us (authentication, no such
        /// database).
        transient: bool,
    },
    #[error("TLS setup for {target}: {detail}")]
    Tls { target: String, detail: String },
}

impl ConnError {
    /// Whether connecting again later may work (see `Connect::transient`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ConnError::Connect {
                transient: true,
                ..
            }
        )
    }
}

/// libpq's sslmode values (allow is treated as prefer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = ConnError;
    fn from_str(s: &str) -> Result<Self, ConnError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConnError::Parse(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            )))
            }
        })
    }
}

/// Where a target came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    DatabaseUrl,
    PgEnv,
    Sandbox(PathBuf),
}

/// A resolved connection target.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    pub sslmode: SslMode,
    pub tls: TlsFiles,
    pub source: Source,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// How the caller asked to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnOptions {
    /// `--db`
    pub db: Option<String>,
    /// Sandbox directory to fall back on (the default one when None).
    pub sandbox_dir: Option<PathBuf>,
}

/// The environment as libpq reads it; a seam for tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;
impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Target {
    /// Resolves `--db`, `DATABASE_URL`, `PG*`, then the running sandbox.
    pub fn resolve(opts: &ConnOptions) -> Result<Target, ConnError> {
        Self::resolve_in(opts, &ProcessEnv)
    }

    pub fn resolve_in(opts: &ConnOptions, env: &dyn Env) -> Result<Target, ConnError> {
        if let Some(db) = &opts.db {
            return Self::parse_in(db, Source::Flag, env);
        }
        if let Some(url) = env.var("DATABASE_URL") {
            // Say where the bad string came from: the user did not type it
            // on this command line.
            return Self::parse_in(&url, Source::DatabaseUrl, env).map_err(|e| match e {
                ConnError::Parse(detail) => ConnError::Parse(format!(
                    "{detail} (from DATABASE_URL; fix it, unset it, or pass --db)"
                )),
                other => other,
            });
        }
        if ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER"]
            .iter()
            .any(|v| env.var(v).is_some())
        {
            return Self::parse_in("", Source::PgEnv, env);
        }
        let dir = opts
            .sandbox_dir
            .clone()
            .unwrap_or_else(crate::sandbox::default_dir);
        match crate::sandbox::Sandbox::open(&dir) {
            Ok(sb) if sb.running_pid().is_some() => {
                Self::parse_in(&sb.url(), Source::Sandbox(dir), env)
            }
            _ => Err(ConnError::NoTarget),
        }
    }

    /// Parses a conninfo string or URL, filling what it leaves out from the
    /// `PG*` variables and `.pgpass` like libpq.
    pub fn parse(s: &str) -> Result<Target, ConnError> {
        Self::parse_in(s, Source::Flag, &ProcessEnv)
    }

    pub fn parse_in(s: &str, source: Source, env: &dyn Env) -> Result<Target, ConnError> {
        let params = parse_params(s)?;
        let get = |key: &str, var: &str| params.get(key).cloned().or_else(|| env.var(var));
        let mut config = Config::new();
        let host = get("host", "PGHOST").or_else(|| get("hostaddr", "PGHOSTADDR"));
        let host = host.unwrap_or_else(|| {
            if Path::new("/var/run/postgresql").is_dir() {
                "/var/run/postgresql".into()
            } else {
                "localhost".into()
            }
        });
        for h in host.split(',') {
            config.host(h);
        }
        let port = get("port", "PGPORT").unwrap_or_else(|| "5432".into());
        for p in port.split(',') {
            let p: u16 = p
                .trim()
                .parse()
                .map_err(|_| ConnError::Parse(format!("port `{p}` is not a number")))?;
            config.port(p);
        }
        let user = get("user", "PGUSER")
            .or_else(|| env.var("USER"))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
        let dbname = get("dbname", "PGDATABASE").unwrap_or_else(|| user.clone());
        config.dbname(&dbname);
        let application_name =
            get("application_name", "PGAPPNAME").unwrap_or_else(|| "shardready".into());
        config.application_name(&application_name);
        let timeout = get("connect_timeout", "PGCONNECT_TIMEOUT").unwrap_or_else(|| "10".into());
        let secs: u64 = timeout.trim().parse().map_err(|_| {
            ConnError::Parse(format!(
                "connect_timeout `{timeout}` is not a number of seconds"
            ))
        })?;
        if secs > 0 {
            config.connect_timeout(Duration::from_secs(secs));
        }
        if let Some(opts) = get("options", "PGOPTIONS") {
            config.options(&opts);
        }
        let password = get("password", "PGPASSWORD").or_else(|| {
            let first_host = host.split(',').next().unwrap_or("localhost");
            let first_port = port.split(',').next().unwrap_or("5432");
            let file = env
                .var("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(".pgpass")))?;
            pgpass_lookup(&file, first_host, first_port, &dbname, &user)
        });
        if let Some(pw) = password {
            config.password(pw);
        }
        let sslmode: SslMode = get("sslmode", "PGSSLMODE")
            .unwrap_or_else(|| "prefer".into())
            .parse()?;
        let tls = TlsFiles {
            root: get("sslrootcert", "PGSSLROOTCERT").map(PathBuf::from),
            cert: get("sslcert", "PGSSLCERT").map(PathBuf::from),
            key: get("sslkey", "PGSSLKEY").map(PathBuf::from),
        };
        config.ssl_mode(match sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        Ok(Target {
            config,
            sslmode,
            tls,
            source,
        })
    }

    /// The same target under another `application_name` (so sessions can be
    /// told apart in pg_stat_activity).
    pub fn with_application_name(&self, name: &str) -> Target {
        let mut t = self.clone();
        t.config.application_name(name);
        t
    }

    /// The same user, database, password, TLS and timeouts on another
    /// server (a Citus node named by host and port); a password from
    /// `.pgpass` is looked up again for that server when there is one.
    pub fn at(&self, host: &str, port: u16) -> Target {
        let mut config = Config::new();
        config.host(host);
        config.port(port);
        let user = self.config.get_user().unwrap_or("postgres").to_string();
        let dbname = self.config.get_dbname().unwrap_or("postgres").to_string();
        config.user(&user);
        config.dbname(&dbname);
        if let Some(a) = self.config.get_application_name() {
            config.application_name(a);
        }
        if let Some(t) = self.config.get_connect_timeout() {
            config.connect_timeout(*t);
        }
        if let Some(o) = self.config.get_options() {
            config.options(o);
        }
        let pgpass = std::env::var_os("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".pgpass")))
            .and_then(|f| pgpass_lookup(&f, host, &port.to_string(), &dbname, &user));
        match pgpass {
            Some(pw) => {
                config.password(pw);
            }
            None => {
                if let Some(pw) = self.config.get_password() {
                    config.password(pw);
                }
            }
        }
        config.ssl_mode(self.config.get_ssl_mode());
        Target {
            config,
            sslmode: self.sslmode,
            tls: self.tls.clone(),
            source: Source::Flag,
        }
    }

    /// `user@host:port/dbname` — never the password.
    pub fn display(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(s) => s.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            self.config.get_user().unwrap_or("?"),
            hosts.join(","),
            port,
            self.config.get_dbname().unwrap_or("?")
        )
    }

    /// A URL for this target without the password (for psql and child
    /// processes, which read the password from PGPASSWORD instead).
    pub fn url_without_password(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(s)) => s.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut url = format!(
            "postgresql://{}@{}:{}/{}",
            enc(self.config.get_user().unwrap_or("postgres")),
            if host.starts_with('/') {
                String::new()
            } else {
                host.clone()
            },
            self.config.get_ports().first().copied().unwrap_or(5432),
            enc(self.config.get_dbname().unwrap_or("postgres"))
        );
        let mut query = Vec::new();
        if host.starts_with('/') {
            query.push(format!("host={}", enc(&host)));
        }
        let mode = match self.sslmode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        };
        query.push(format!("sslmode={mode}"));
        for (key, file) in [
            ("sslrootcert", &self.tls.root),
            ("sslcert", &self.tls.cert),
            ("sslkey", &self.tls.key),
        ] {
            if let Some(f) = file {
                query.push(format!("{key}={}", enc(&f.display().to_string())));
            }
        }
        url.push('?');
        url.push_str(&query.join("&"));
        url
    }

    /// The password, for handing to a child process through PGPASSWORD.
    pub fn password(&self) -> Option<String> {
        self.config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// Connects once, bounded by connect_timeout as a whole (a server that
    /// accepts but never answers cannot hang us); the connection's driver
    /// runs on the tokio runtime.
    pub async fn connect(&self) -> Result<Client, ConnError> {
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        match tokio::time::timeout(limit, self.connect_unbounded()).await {
            Ok(r) => r,
            Err(_) => {
                let detail = format!(
                    "timed out after {:.0} s waiting for the server to answer",
                    limit.as_secs_f64()
                );
                Err(ConnError::Connect {
                    target: self.display(),
                    hint: hint_for(&detail),
                    detail,
                    transient: true,
                })
            }
        }
    }

    async fn connect_unbounded(&self) -> Result<Client, ConnError> {
        let fail = |e: tokio_postgres::Error| {
            let detail = error_text(&e);
            ConnError::Connect {
                target: self.display(),
                hint: hint_for(&detail),
                detail,
                transient: crate::db::is_disconnect(&e),
            }
        };
        if self.sslmode != SslMode::Disable {
            let tls = tls::connector(self)?;
            match self.config.connect(tls).await {
                Ok((client, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    return Ok(client);
                }
                // libpq: under prefer, a failed TLS handshake is retried
                // without TLS.
                Err(e) if self.sslmode == SslMode::Prefer && tls::is_tls_failure(&e) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        let mut plain = self.config.clone();
        plain.ssl_mode(PgSslMode::Disable);
        let (client, conn) = plain.connect(NoTls).await.map_err(fail)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Connects, retrying with exponential backoff while the server is
    /// unreachable or starting up (not on authentication errors).
    pub async fn connect_with_retry(&self, attempts: u32) -> Result<Client, ConnError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match self.connect().await {
                Ok(c) => return Ok(c),
                Err(e) if attempt < attempts && e.is_transient() => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The full text of a driver error: its message plus the server's detail
/// and hint when there are any.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str("\nDETAIL: ");
            s.push_str(d);
        }
        if let Some(h) = db.hint() {
            s.push_str("\nHINT: ");
            s.push_str(h);
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn hint_for(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    let hint = if d.contains("password authentication failed") || d.contains("no password") {
        "check the user and password (--db URL, PGPASSWORD or ~/.pgpass)"
    } else if d.contains("connection refused") {
        "is PostgreSQL running there and listening on that port?"
    } else if d.contains("timed out") {
        "the host did not answer: check the host name, port and firewall (connect_timeout)"
    } else if d.contains("does not exist") && d.contains("database") {
        "create the database or pick another with dbname=/the URL path"
    } else if d.contains("certificate") || d.contains("tls") {
        "check sslmode and sslrootcert"
    } else {
        ""
    };
    if hint.is_empty() {
        String::new()
    } else {
        format!("\nhint: {hint}")
    }
}

/// Parses a URL (`postgres://` / `postgresql://`) or a `key=value` conninfo
/// into libpq parameter names.
pub fn parse_params(s: &str) -> Result<BTreeMap<String, String>, ConnError> {
    let s = s.trim();
    let mut out = BTreeMap::new();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let url = url::Url::parse(s).map_err(|e| ConnError::Parse(format!("bad URL: {e}")))?;
        let decode = |v: &str| {
            url::form_urlencoded::parse(format!("x={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        if !url.username().is_empty() {
            out.insert("user".into(), decode(url.username()));
        }
        if let Some(pw) = url.password() {
            out.insert("password".into(), decode(pw));
        }
        if let Some(h) = url.host_str() {
            if !h.is_empty() {
                out.insert("host".into(), h.trim_matches(['[', ']']).to_string());
            }
        }
        if let Some(p) = url.port() {
            out.insert("port".into(), p.to_string());
        }
        let path = url.path().trim_start_matches('/');
        if !path.is_empty() {
            out.insert("dbname".into(), decode(path));
        }
        for (k, v) in url.query_pairs() {
            out.insert(k.into_owned(), v.into_owned());
        }
        return Ok(out);
    }
    if s.contains("://") {
        return Err(ConnError::Parse(
            "a URL must start with postgresql:// or postgres://".into(),
        ));
    }
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(ConnError::Parse(format!(
                "expected `key=value` pairs, found `{key}` without `=` (or use a postgresql:// URL)"
            )));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    _ => value.push(c),
                }
            }
            if !closed {
                return Err(ConnError::Parse(format!(
                    "unterminated quoted value for `{key}`"
                )));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        const KNOWN: &[&str] = &[
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "sslmode",
            "sslrootcert",
            "connect_timeout",
            "application_name",
            "options",
            "target_session_attrs",
            "keepalives",
            "keepalives_idle",
            "sslcert",
            "sslkey",
            "passfile",
            "channel_binding",
            "gssencmode",
        ];
        if !KNOWN.contains(&key.as_str()) {
            return Err(ConnError::Parse(format!(
                "unknown connection parameter `{key}`"
            )));
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// Finds a password in a `.pgpass` file (`host:port:db:user:password`, `*`
/// wildcards, `\:` escapes). Ignores the file when others can read it, as
/// libpq does.
pub fn pgpass_lookup(file: &Path, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        if m(&fields[0], host) && m(&fields[1], port) && m(&fields[2], db) && m(&fields[3], user) {
            return Some(fields[4].clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }

    #[test]
    fn parses_urls_and_conninfo() {
        let p = parse_params("postgresql://al%40ice:s3cr%2Ft@db.example:6543/my%20db?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(p["user"], "al@ice");
        assert_eq!(p["password"], "s3cr/t");
        assert_eq!(p["host"], "db.example");
        assert_eq!(p["port"], "6543");
        assert_eq!(p["dbname"], "my db");
        assert_eq!(p["sslmode"], "verify-full");
        let p = parse_params("host=localhost port=5433 dbname='my db' password='it\\'s'").unwrap();
        assert_eq!(p["dbname"], "my db");
        assert_eq!(p["password"], "it's");
        assert!(parse_params("host=x bogus=1").is_err());
        assert!(parse_params("hostlocalhost").is_err());
        assert!(parse_params("dbname='open").is_err());
        assert!(parse_params("mysql://x").is_err());
    }

    #[test]
    fn env_fills_gaps_and_flag_wins() {
        let env = MapEnv(HashMap::from([
            ("PGHOST", "envhost"),
            ("PGUSER", "envuser"),
            ("PGPORT", "7000"),
            ("PGPASSWORD", "hunter2"),
        ]));
        let t = Target::parse_in("dbname=app user=me", Source::Flag, &env).unwrap();
        assert_eq!(t.display(), "me@envhost:7000/app");
        assert!(!t.display().contains("hunter2"));
        assert_eq!(t.password().as_deref(), Some("hunter2"));
        assert!(!format!("{t:?}").contains("hunter2"));
        let t = Target::resolve_in(&ConnOptions::default(), &env).unwrap();
        assert_eq!(t.source, Source::PgEnv);
        assert_eq!(t.display(), "envuser@envhost:7000/envuser");
    }

    #[test]
    fn sslmodes() {
        let env = MapEnv(HashMap::new());
        for (mode, want) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let t =
                Target::parse_in(&format!("host=h sslmode={mode}"), Source::Flag, &env).unwrap();
            assert_eq!(t.sslmode, want);
            assert!(t
                .url_without_password()
                .contains(&format!("sslmode={mode}")));
        }
        assert!(Target::parse_in("host=h sslmode=bogus", Source::Flag, &env).is_err());
    }

    #[test]
    fn pgpass_matching() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\nother:5432:*:*:nope\nlocalhost:5432:app:bob:pa\\:ss\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            pgpass_lookup(&f, "localhost", "5432", "app", "bob").as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            pgpass_lookup(&f, "x", "1", "y", "z").as_deref(),
            Some("fallback")
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(pgpass_lookup(&f, "localhost", "5432", "app", "bob"), None);
    }
}
