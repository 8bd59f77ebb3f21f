//! Local PostgreSQL clusters from the system's binaries: the embedded
//! `shardready sandbox` and the throwaway clusters every integration test
//! gets ([`TestCluster`]).
//!
//! A sandbox lives in one directory: `data/` (PGDATA), `run/` (the Unix
//! socket), `postgres.log` and `sandbox.json` (port, binaries, what is
//! preloaded). When shardready runs as root the server runs as an unprivileged
//! OS user (`postgres` by default), because PostgreSQL refuses to run as root.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
#[cfg(feature = "testing")]
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The database and role every sandbox URL points at.
pub const SUPERUSER: &str = "postgres";
pub const DATABASE: &str = "postgres";

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found{searched}.\n\
         Install them (Debian/Ubuntu: `apt-get install postgresql-15`), or point \
         --pg-bin / SHARDREADY_PG_BIN at the directory that holds initdb."
    )]
    BinariesNotFound { searched: String },
    #[error("no sandbox in {dir}: create one with `shardready sandbox start`{hint}")]
    NotInitialized { dir: PathBuf, hint: String },
    #[error("the sandbox in {dir} is not running: start it with `shardready sandbox start`")]
    NotRunning { dir: PathBuf },
    #[error(
        "OS user `{user}` does not exist; PostgreSQL refuses to run as root, so the sandbox runs \
         as another user. Create it (`useradd --system {user}`, or install postgresql-15 which \
         creates `postgres`) or choose one with --os-user"
    )]
    NoSuchUser { user: String },
    #[error(
        "the server user `{user}` cannot write to {dir} (a parent directory is not searchable \
         by it); pick a directory it can reach with --dir, e.g. --dir /var/lib/shardready/sandbox"
    )]
    DirNotAccessible { user: String, dir: PathBuf },
    #[error("{what} failed ({status}):\n{detail}")]
    CommandFailed {
        what: String,
        status: String,
        detail: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "port {port} is taken by another program: nothing was started; choose another \
         (--port), or leave --port out to have a free one picked"
    )]
    PortTaken { port: u16 },
    #[error("sandbox state file {path} is unreadable: {detail}; `shardready sandbox destroy` and start again")]
    BadState { path: PathBuf, detail: String },
    #[error(
        "Citus is not installed for the PostgreSQL in {bin_dir} (no citus.so in its library \
         directory): install Citus for that server (https://docs.citusdata.com/en/stable/installation/), \
         or point --pg-bin at binaries that have it"
    )]
    CitusNotInstalled { bin_dir: PathBuf },
}

type Result<T> = std::result::Result<T, SandboxError>;

fn io<T>(context: impl Into<String>, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| SandboxError::Io {
        context: context.into(),
        source,
    })
}

/// How the server is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The user's sandbox: sized for bulk loads and index builds, durable.
    Bulk,
    /// A throwaway test cluster: small, no fsync, fast to create.
    Test,
}

/// What to start and where.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Directory holding everything of this sandbox.
    pub dir: PathBuf,
    /// Directory with initdb/pg_ctl/postgres; found automatically when None.
    pub pg_bin: Option<PathBuf>,
    /// OS user the server runs as when shardready runs as root.
    pub os_user: String,
    pub profile: Profile,
    /// Port to listen on; a free one when None.
    pub port: Option<u16>,
    /// Extra `name = value` server settings appended to the configuration.
    pub settings: Vec<(String, String)>,
    /// Whether the server loads Citus.
    pub citus: CitusChoice,
    /// Citus workers to start beside it (a local Citus cluster; needs Citus).
    pub workers: u16,
    /// Citus nodes to start beside it without adding them to the cluster:
    /// what `scale-out --add` takes in (a rehearsal of adding servers).
    pub nodes: u16,
    /// Whether this server is a member of another sandbox's cluster (a
    /// worker or spare node): it never registers itself as a coordinator.
    pub member: bool,
}

/// Whether a sandbox loads Citus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CitusChoice {
    /// When it is installed (the user's sandbox: a Citus node like the seed's).
    #[default]
    Auto,
    /// Never (test clusters, unless a test asks).
    Off,
    /// Always; an error when it is not installed.
    On,
}

impl SandboxOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SandboxOptions {
            dir: dir.into(),
            pg_bin: std::env::var_os("SHARDREADY_PG_BIN").map(PathBuf::from),
            os_user: "postgres".into(),
            profile: Profile::Bulk,
            port: None,
            settings: Vec::new(),
            citus: CitusChoice::Auto,
            workers: 0,
            nodes: 0,
            member: false,
        }
    }
}

/// Persisted facts about a sandbox (`sandbox.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxState {
    pub port: u16,
    pub bin_dir: PathBuf,
    pub version: String,
    /// OS user the server runs as (None: the invoking user).
    pub os_user: Option<String>,
    pub profile: Profile,
    pub pg_cron: bool,
    pub citus: bool,
    /// The ports the Citus workers (`worker-1`, … beside `data/`) were
    /// registered with on this coordinator.
    #[serde(default)]
    pub worker_ports: Vec<u16>,
    /// The ports of the spare Citus nodes (`node-1`, … beside `data/`):
    /// started, not added by the sandbox (`scale-out --add` adds them).
    #[serde(default)]
    pub node_ports: Vec<u16>,
}

/// A sandbox on disk (running or not).
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub dir: PathBuf,
    pub state: SandboxState,
}

/// What `sandbox status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxStatus {
    pub dir: PathBuf,
    pub running: bool,
    pub pid: Option<i32>,
    pub port: u16,
    pub url: String,
    pub version: String,
    pub os_user: Option<String>,
    pub pg_cron: bool,
    pub citus: bool,
    pub data_bytes: u64,
    /// The Citus workers of a local Citus cluster.
    pub workers: Vec<WorkerStatus>,
    /// Spare Citus nodes, not added by the sandbox (`scale-out --add`).
    pub nodes: Vec<WorkerStatus>,
}

/// A Citus worker (or spare node) of the sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub port: u16,
    pub running: bool,
}

impl WorkerStatus {
    fn of(w: &Sandbox) -> WorkerStatus {
        WorkerStatus {
            port: w.state.port,
            running: w.running_pid().is_some(),
        }
    }
}

/// The default sandbox directory: `$XDG_DATA_HOME/shardready/sandbox`
/// (`~/.local/share/...`); as root, `/var/lib/shardready/sandbox`, because
/// the server's own user usually cannot enter root's home.
pub fn default_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/var/lib/shardready/sandbox")
    } else {
        dirs::data_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("shardready")
            .join("sandbox")
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Finds the directory holding the server binaries.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let mut searched = Vec::new();
    if let Some(d) = explicit {
        if has_server(d) {
            return Ok(d.to_path_buf());
        }
        return Err(SandboxError::BinariesNotFound {
            searched: format!(" in {}", d.display()),
        });
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&d) {
                return Ok(d);
            }
            searched.push(d.display().to_string());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    for (_, d) in versions.iter().rev() {
        if has_server(d) {
            return Ok(d.clone());
        }
        searched.push(d.display().to_string());
    }
    for d in ["/usr/local/pgsql/bin", "/usr/pgsql/bin"] {
        let d = Path::new(d);
        if has_server(d) {
            return Ok(d.to_path_buf());
        }
    }
    searched.push("/usr/lib/postgresql/*/bin".into());
    Err(SandboxError::BinariesNotFound {
        searched: format!(" (looked in: pg_config --bindir, {})", searched.join(", ")),
    })
}

/// uid/gid of the OS user the server must run as, or None when we are not root.
fn server_identity(user: &str) -> Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    // nix uses getpwnam_r: tests start clusters from several threads at once,
    // and getpwnam's static buffer would be shared between them.
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(Some((u.uid.as_raw(), u.gid.as_raw()))),
        _ => Err(SandboxError::NoSuchUser { user: user.into() }),
    }
}

/// The home directory of a user id (getpwuid_r, safe from any thread).
fn home_of(uid: u32) -> Option<PathBuf> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// Whether Citus is installed for the server binaries found with `pg_bin`
/// (or the default ones).
pub fn citus_installed(pg_bin: Option<&Path>) -> bool {
    find_bin_dir(pg_bin).is_ok_and(|d| has_library(&d, "citus"))
}

/// A command that runs as the server's OS user.
fn server_command(program: &Path, identity: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = identity {
        // std drops root's supplementary groups itself when it sets the uid.
        cmd.uid(uid).gid(gid);
        // Not root's HOME: libpq inside the server (Citus's connections to
        // its nodes) reads ~/.postgresql/ and fails where it may not look.
        if let Some(home) = home_of(uid) {
            cmd.env("HOME", home);
        }
    }
    for var in ["PGDATA", "PGPORT", "PGHOST", "PGOPTIONS"] {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C.UTF-8");
    cmd
}

fn run(what: &str, cmd: &mut Command) -> Result<Output> {
    let out = io(format!("cannot run {what}"), cmd.output())?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(SandboxError::CommandFailed {
            what: what.into(),
            status: out.status.to_string(),
            detail,
        });
    }
    Ok(out)
}

/// Makes `path` (and the directory itself) owned by the server user.
fn chown_to(path: &Path, identity: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = identity {
        io(
            format!("cannot give {} to the server user", path.display()),
            std::os::unix::fs::chown(path, Some(uid), Some(gid)),
        )?;
    }
    Ok(())
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let l = io("cannot find a free port", TcpListener::bind("127.0.0.1:0"))?;
    Ok(io("cannot find a free port", l.local_addr())?.port())
}

fn server_version(bin_dir: &Path) -> String {
    Command::new(bin_dir.join("postgres"))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Whether an extension's shared library is installed for these binaries.
fn has_library(bin_dir: &Path, name: &str) -> bool {
    let pkglibdir = Command::new(bin_dir.join("pg_config"))
        .arg("--pkglibdir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| bin_dir.join("../lib"));
    pkglibdir.join(format!("{name}.so")).is_file()
}

impl Sandbox {
    fn state_path(dir: &Path) -> PathBuf {
        dir.join("sandbox.json")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Opens an existing sandbox (running or not).
    pub fn open(dir: &Path) -> Result<Sandbox> {
        let path = Self::state_path(dir);
        if !path.exists() {
            return Err(SandboxError::NotInitialized {
                dir: dir.to_path_buf(),
                hint: String::new(),
            });
        }
        let text = io(
            format!("cannot read {}", path.display()),
            fs::read_to_string(&path),
        )?;
        let state = serde_json::from_str(&text).map_err(|e| SandboxError::BadState {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(Sandbox {
            dir: dir.to_path_buf(),
            state,
        })
    }

    /// Creates the sandbox if needed and starts it if it is not running.
    /// Idempotent: on a running sandbox it only returns it.
    pub fn start(opts: &SandboxOptions) -> Result<Sandbox> {
        let identity = server_identity(&opts.os_user)?;
        let mut sb = if Self::state_path(&opts.dir).exists() {
            Self::open(&opts.dir)?
        } else {
            Self::init(opts, identity)?
        };
        if sb.running_pid().is_some() {
            return Ok(sb);
        }
        let identity = match &sb.state.os_user {
            Some(u) => server_identity(u)?,
            None => None,
        };
        // The remembered port may have been taken meanwhile, and parallel
        // tests race for free ports: retry on another one.
        let mut last_err = None;
        for attempt in 0..6 {
            // A port the user chose is theirs: taken, it is an error, not
            // silently another one.
            if let Some(p) = opts.port {
                if attempt > 0 || !port_is_free(p) {
                    return Err(SandboxError::PortTaken { port: p });
                }
                sb.state.port = p;
            } else if attempt > 0 || !port_is_free(sb.state.port) {
                sb.state.port = free_port()?;
            }
            sb.write_conf(opts)?;
            sb.save_state()?;
            match sb.pg_ctl_start(identity) {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                Err(e) => {
                    let log = fs::read_to_string(sb.log_path()).unwrap_or_default();
                    let port_clash = log.contains("could not bind")
                        || log.contains("Address already in use")
                        || log.contains("could not create any TCP/IP sockets");
                    last_err = Some(e);
                    if !port_clash {
                        break;
                    }
                }
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        // Workers first: on a restart, Citus on the coordinator reaches
        // them as soon as its extension is touched.
        let workers = (opts.workers as usize).max(sb.state.worker_ports.len());
        let ports = sb.start_members(opts, workers, Self::worker_dir)?;
        let nodes = (opts.nodes as usize).max(sb.state.node_ports.len());
        if nodes > 0 {
            sb.state.node_ports = sb.start_members(opts, nodes, Self::node_dir)?;
            sb.save_state()?;
        }
        sb.create_extensions()?;
        if workers > 0 {
            sb.register_workers(ports)?;
        } else if sb.state.citus && !opts.member {
            sb.single_node()?;
        }
        Ok(sb)
    }

    /// Whether the server binaries know a setting (some minor releases add
    /// settings, e.g. `output_plugin_libraries`).
    fn server_has_setting(&self, name: &str) -> bool {
        let identity = self
            .state
            .os_user
            .as_deref()
            .and_then(|u| server_identity(u).ok().flatten());
        server_command(&self.state.bin_dir.join("postgres"), identity)
            .arg("--describe-config")
            .output()
            .ok()
            .is_some_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.split('\t').next() == Some(name))
            })
    }

    fn worker_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("worker-{}", i + 1))
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{}", i + 1))
    }

    /// The sandboxes of the Citus workers.
    pub fn workers(&self) -> Vec<Sandbox> {
        (0..self.state.worker_ports.len())
            .filter_map(|i| Sandbox::open(&self.worker_dir(i)).ok())
            .collect()
    }

    /// The sandboxes of the spare Citus nodes (`scale-out --add` takes
    /// them in; once added they are workers of the cluster).
    pub fn nodes(&self) -> Vec<Sandbox> {
        (0..self.state.node_ports.len())
            .filter_map(|i| Sandbox::open(&self.node_dir(i)).ok())
            .collect()
    }

    /// Every server of the sandbox besides this one: workers and nodes.
    fn members(&self) -> Vec<Sandbox> {
        let mut all = self.workers();
        all.extend(self.nodes());
        all
    }

    /// `host:port` of each spare node, as `scale-out --add` takes it.
    pub fn node_addresses(&self) -> Vec<String> {
        self.state
            .node_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// A single-node Citus cluster like the seed's: the coordinator is in
    /// the metadata and holds the shards itself (until `scale-out` adds
    /// workers).
    fn single_node(&self) -> Result<()> {
        let known = self.psql_query("SELECT count(*) FROM pg_dist_node WHERE groupid = 0")?;
        if known.trim() != "0" {
            return Ok(());
        }
        self.psql_command(&format!(
            "SELECT citus_set_coordinator_host('127.0.0.1', {})",
            self.state.port
        ))?;
        self.psql_command(&format!(
            "SELECT citus_set_node_property('127.0.0.1', {}, 'shouldhaveshards', true)",
            self.state.port
        ))
    }

    /// Starts `n` Citus servers beside the coordinator in the directories
    /// `dir` names (workers or spare nodes); their ports.
    fn start_members(
        &self,
        opts: &SandboxOptions,
        n: usize,
        dir: fn(&Sandbox, usize) -> PathBuf,
    ) -> Result<Vec<u16>> {
        if n > 0 && !self.state.citus {
            return Err(SandboxError::CitusNotInstalled {
                bin_dir: self.state.bin_dir.clone(),
            });
        }
        let mut ports = Vec::new();
        for i in 0..n {
            let mut w = SandboxOptions::new(dir(self, i));
            w.member = true;
            w.pg_bin = Some(self.state.bin_dir.clone());
            w.os_user = opts.os_user.clone();
            w.profile = self.state.profile;
            w.settings = opts.settings.clone();
            w.citus = CitusChoice::On;
            ports.push(Sandbox::start(&w)?.state.port);
        }
        Ok(ports)
    }

    /// Registers the workers (and the coordinator) in the coordinator's
    /// metadata; a worker whose remembered port was taken is moved.
    fn register_workers(&mut self, ports: Vec<u16>) -> Result<()> {
        self.psql_command(&format!(
            "SELECT citus_set_coordinator_host('127.0.0.1', {})",
            self.state.port
        ))?;
        for (i, port) in ports.iter().enumerate() {
            match self.state.worker_ports.get(i) {
                Some(old) if old != port => self.psql_command(&format!(
                    "SELECT citus_update_node(nodeid, '127.0.0.1', {port}) \
                     FROM pg_dist_node WHERE nodename = '127.0.0.1' AND nodeport = {old}"
                ))?,
                _ => self.psql_command(&format!("SELECT citus_add_node('127.0.0.1', {port})"))?,
            }
        }
        self.state.worker_ports = ports;
        self.save_state()
    }

    fn init(opts: &SandboxOptions, identity: Option<(u32, u32)>) -> Result<Sandbox> {
        let bin_dir = find_bin_dir(opts.pg_bin.as_deref())?;
        let dir = &opts.dir;
        io(
            format!("cannot create {}", dir.display()),
            fs::create_dir_all(dir),
        )?;
        chown_to(dir, identity)?;
        let mut probe = server_command(Path::new("/bin/sh"), identity);
        probe
            .arg("-c")
            .arg("test -w \"$0\" && test -x \"$0\"")
            .arg(dir);
        if identity.is_some() && !probe.status().map(|s| s.success()).unwrap_or(false) {
            return Err(SandboxError::DirNotAccessible {
                user: opts.os_user.clone(),
                dir: dir.clone(),
            });
        }
        let sb = Sandbox {
            dir: dir.clone(),
            state: SandboxState {
                port: opts.port.unwrap_or(0),
                version: server_version(&bin_dir),
                pg_cron: has_library(&bin_dir, "pg_cron"),
                citus: match opts.citus {
                    CitusChoice::Off => false,
                    CitusChoice::Auto => has_library(&bin_dir, "citus"),
                    CitusChoice::On if has_library(&bin_dir, "citus") => true,
                    CitusChoice::On => return Err(SandboxError::CitusNotInstalled { bin_dir }),
                },
                worker_ports: Vec::new(),
                node_ports: Vec::new(),
                bin_dir,
                os_user: identity.map(|_| opts.os_user.clone()),
                profile: opts.profile,
            },
        };
        let run_dir = sb.socket_dir();
        io(
            "cannot create the socket directory",
            fs::create_dir_all(&run_dir),
        )?;
        chown_to(&run_dir, identity)?;
        let data = sb.data_dir();
        if data.exists() {
            // A half-made earlier attempt: start over.
            io(
                "cannot clear a half-made data directory",
                fs::remove_dir_all(&data),
            )?;
        }
        let mut initdb = server_command(&sb.state.bin_dir.join("initdb"), identity);
        initdb.arg("-D").arg(&data).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        if opts.profile == Profile::Test {
            initdb.arg("-N");
        }
        run("initdb", &mut initdb)?;
        let conf = data.join("postgresql.conf");
        let mut text = io("cannot read postgresql.conf", fs::read_to_string(&conf))?;
        text.push_str("\ninclude_if_exists = 'shardready.conf'\n");
        io("cannot write postgresql.conf", fs::write(&conf, text))?;
        Ok(sb)
    }

    /// Writes `data/shardready.conf`: port, preloads and sizing.
    fn write_conf(&self, opts: &SandboxOptions) -> Result<()> {
        let mut lines = vec![
            "# written by shardready; changes are overwritten at the next start".to_string(),
            "listen_addresses = '127.0.0.1'".into(),
            format!("port = {}", self.state.port),
            format!(
                "unix_socket_directories = '{}'",
                self.socket_dir().display()
            ),
            "max_connections = 200".into(),
            "max_worker_processes = 32".into(),
        ];
        let mut preload = Vec::new();
        if self.state.citus {
            preload.push("citus");
        }
        // The application's statements, for the plan's access-path check
        // and the governor (created in the sandbox; a test creates it).
        if has_library(&self.state.bin_dir, "pg_stat_statements") {
            preload.push("pg_stat_statements");
        }
        if self.state.pg_cron {
            preload.push("pg_cron");
            lines.push(format!("cron.database_name = '{DATABASE}'"));
            lines.push("cron.use_background_workers = on".into());
        }
        if !preload.is_empty() {
            lines.push(format!(
                "shared_preload_libraries = '{}'",
                preload.join(",")
            ));
        }
        if self.state.citus {
            // What Citus needs to move shards online and isolate tenants:
            // logical decoding, and (where the server has the setting)
            // permission to use its decoder as an output plugin.
            lines.push("wal_level = 'logical'".into());
            lines.push("max_replication_slots = 20".into());
            lines.push("max_wal_senders = 20".into());
            if self.server_has_setting("output_plugin_libraries") {
                lines.push("output_plugin_libraries = 'pgoutput, test_decoding, citus'".into());
            }
        }
        let sizing: &[(&str, &str)] = match self.state.profile {
            Profile::Bulk => &[
                ("shared_buffers", "2GB"),
                ("effective_cache_size", "12GB"),
                ("maintenance_work_mem", "1GB"),
                ("work_mem", "64MB"),
                ("wal_buffers", "64MB"),
                ("max_wal_size", "16GB"),
                ("min_wal_size", "1GB"),
                ("checkpoint_timeout", "30min"),
                ("checkpoint_completion_target", "0.9"),
                ("random_page_cost", "1.1"),
                ("max_parallel_maintenance_workers", "2"),
            ],
            Profile::Test => &[
                ("shared_buffers", "32MB"),
                ("maintenance_work_mem", "64MB"),
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
                ("max_wal_size", "1GB"),
            ],
        };
        for (k, v) in sizing {
            lines.push(format!("{k} = '{v}'"));
        }
        for (k, v) in &opts.settings {
            lines.push(format!("{k} = '{}'", v.replace('\'', "''")));
        }
        lines.push(String::new());
        let path = self.data_dir().join("shardready.conf");
        io(
            format!("cannot write {}", path.display()),
            fs::write(&path, lines.join("\n")),
        )?;
        let identity = match &self.state.os_user {
            Some(u) => server_identity(u)?,
            None => None,
        };
        chown_to(&path, identity)
    }

    fn save_state(&self) -> Result<()> {
        let path = Self::state_path(&self.dir);
        let text = serde_json::to_string_pretty(&self.state).expect("state serializes");
        io(
            format!("cannot write {}", path.display()),
            fs::write(&path, text),
        )?;
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o644));
        Ok(())
    }

    fn pg_ctl_start(&self, identity: Option<(u32, u32)>) -> Result<()> {
        // The log must be writable by the server user.
        let log = self.log_path();
        if !log.exists() {
            io("cannot create the server log", fs::write(&log, ""))?;
        }
        chown_to(&log, identity)?;
        let mut cmd = server_command(&self.state.bin_dir.join("pg_ctl"), identity);
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "start"])
            .stdin(Stdio::null());
        run("pg_ctl start", &mut cmd)
            .map(|_| ())
            .map_err(|e| match e {
                SandboxError::CommandFailed { what, status, .. } => SandboxError::CommandFailed {
                    what,
                    status,
                    detail: format!(
                        "last lines of {}:\n{}",
                        log.display(),
                        tail(&fs::read_to_string(&log).unwrap_or_default(), 12)
                    ),
                },
                other => other,
            })
    }

    /// Creates the preloaded extensions that are not there yet (only
    /// then: on a Citus worker, even `CREATE EXTENSION IF NOT EXISTS` is
    /// DDL the worker refuses once it holds metadata). pg_stat_statements
    /// is left to the tests that want it (its entries change what
    /// `analyze` reports).
    fn create_extensions(&self) -> Result<()> {
        let statements = self.state.profile != Profile::Test
            && has_library(&self.state.bin_dir, "pg_stat_statements");
        let wanted: Vec<&str> = [
            ("citus", self.state.citus),
            ("pg_cron", self.state.pg_cron),
            ("pg_stat_statements", statements),
        ]
        .into_iter()
        .filter_map(|(e, on)| on.then_some(e))
        .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let have = self.psql_query("SELECT string_agg(extname, ',') FROM pg_extension")?;
        let have: Vec<&str> = have.trim().split(',').collect();
        for e in wanted.iter().filter(|e| !have.contains(e)) {
            self.psql_command(&format!("CREATE EXTENSION {e}"))?;
        }
        Ok(())
    }

    /// Runs one query through the sandbox's psql; its unaligned output.
    fn psql_query(&self, sql: &str) -> Result<String> {
        let out = self.psql(&["-A", "-t"], sql)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs one SQL string through the sandbox's psql (stops on error).
    pub fn psql_command(&self, sql: &str) -> Result<()> {
        self.psql(&["-q"], sql).map(|_| ())
    }

    /// psql on the sandbox with `flags`, stopping on the first error,
    /// notices below warnings silenced.
    fn psql(&self, flags: &[&str], sql: &str) -> Result<Output> {
        let mut cmd = Command::new(self.state.bin_dir.join("psql"));
        cmd.arg("-X")
            .args(flags)
            .args(["-v", "ON_ERROR_STOP=1", "-d"])
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .arg(self.url())
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null());
        run("psql", &mut cmd)
    }

    /// The server's process id when it is running.
    pub fn running_pid(&self) -> Option<i32> {
        let pidfile = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = pidfile.lines().next()?.trim().parse().ok()?;
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) == 0 }
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        alive.then_some(pid)
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// URL of another database on the same server.
    /// Where the server's binaries are (psql, pgbench, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.state.bin_dir
    }

    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@127.0.0.1:{}/{}",
            self.state.port,
            url::form_urlencoded::byte_serialize(database.as_bytes()).collect::<String>()
        )
    }

    /// Stops the server and its Citus workers (fast shutdown); a no-op
    /// for what is not running.
    pub fn stop(&self) -> Result<()> {
        for w in self.members() {
            w.stop()?;
        }
        if self.running_pid().is_none() {
            return Ok(());
        }
        let identity = match &self.state.os_user {
            Some(u) => server_identity(u)?,
            None => None,
        };
        let mut cmd = server_command(&self.state.bin_dir.join("pg_ctl"), identity);
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "120", "-m", "fast", "stop"])
            .stdin(Stdio::null());
        run("pg_ctl stop", &mut cmd).map(|_| ())
    }

    /// Restarts the server: `fast` (sessions terminated cleanly) or
    /// `immediate` (like a crash: recovery runs at the next start).
    pub fn restart(&self, mode: &str) -> Result<()> {
        let identity = match &self.state.os_user {
            Some(u) => server_identity(u)?,
            None => None,
        };
        let mut cmd = server_command(&self.state.bin_dir.join("pg_ctl"), identity);
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "120", "-m", mode, "stop"])
            .stdin(Stdio::null());
        run("pg_ctl stop", &mut cmd)?;
        self.pg_ctl_start(identity)
    }

    /// Stops the server and removes the whole directory.
    pub fn destroy(self) -> Result<()> {
        if self.stop().is_err() {
            self.kill();
        }
        io(
            format!("cannot remove {}", self.dir.display()),
            fs::remove_dir_all(&self.dir),
        )
    }

    /// Immediate shutdown by process id (SIGQUIT), waiting until it is gone;
    /// the Citus workers too.
    pub fn kill(&self) {
        for w in self.members() {
            w.kill();
        }
        if let Some(pid) = self.running_pid() {
            // SAFETY: plain signal to a process id we read from its pid file.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            wait_gone(pid, Duration::from_secs(30));
        }
    }

    pub fn status(&self) -> SandboxStatus {
        let pid = self.running_pid();
        SandboxStatus {
            dir: self.dir.clone(),
            running: pid.is_some(),
            pid,
            port: self.state.port,
            url: self.url(),
            version: self.state.version.clone(),
            os_user: self.state.os_user.clone(),
            pg_cron: self.state.pg_cron,
            citus: self.state.citus,
            data_bytes: dir_size(&self.data_dir()),
            workers: self.workers().iter().map(WorkerStatus::of).collect(),
            nodes: self.nodes().iter().map(WorkerStatus::of).collect(),
        }
    }

    /// Path of psql matching the server.
    pub fn psql_path(&self) -> PathBuf {
        self.state.bin_dir.join("psql")
    }
}

fn port_is_free(port: u16) -> bool {
    port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn wait_gone(pid: i32, limit: Duration) {
    let start = Instant::now();
    // SAFETY: signal 0 only checks existence.
    while unsafe { libc::kill(pid, 0) } == 0 && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A throwaway cluster for one test: its own directory and port, fast to
/// create (`initdb -N`, no fsync), stopped by process id and deleted on drop.
/// Behind the `testing` feature (the tests turn it on through the package's
/// dev-dependency on itself).
#[cfg(feature = "testing")]
pub struct TestCluster {
    sandbox: Option<Sandbox>,
}

#[cfg(feature = "testing")]
static TEST_SEQ: AtomicU32 = AtomicU32::new(0);

#[cfg(feature = "testing")]
impl TestCluster {
    /// Starts a fresh cluster (pg_cron preloaded when installed).
    pub fn start() -> Result<TestCluster> {
        Self::start_with(Vec::new())
    }

    /// Starts a fresh cluster with extra server settings.
    pub fn start_with(settings: Vec<(String, String)>) -> Result<TestCluster> {
        Self::start_opts(settings, CitusChoice::Off, 0)
    }

    /// Starts a local Citus cluster: a coordinator and `workers` workers
    /// (fails with [`SandboxError::CitusNotInstalled`] without Citus).
    pub fn start_citus(workers: u16) -> Result<TestCluster> {
        Self::start_opts(Vec::new(), CitusChoice::On, workers)
    }

    /// A single-node Citus cluster (the coordinator holds the shards, like
    /// the seed's) with `nodes` spare Citus nodes beside it for
    /// `scale-out`, every server with `settings`.
    pub fn start_citus_single(nodes: u16, settings: Vec<(String, String)>) -> Result<TestCluster> {
        let dir = Self::fresh_dir();
        let mut opts = SandboxOptions::new(&dir);
        opts.profile = Profile::Test;
        opts.settings = settings;
        opts.citus = CitusChoice::On;
        opts.nodes = nodes;
        Self::started(&dir, Sandbox::start(&opts))
    }

    fn start_opts(
        settings: Vec<(String, String)>,
        citus: CitusChoice,
        workers: u16,
    ) -> Result<TestCluster> {
        let dir = Self::fresh_dir();
        let mut opts = SandboxOptions::new(&dir);
        opts.profile = Profile::Test;
        opts.settings = settings;
        opts.citus = citus;
        opts.workers = workers;
        Self::started(&dir, Sandbox::start(&opts))
    }

    /// A directory of its own for a test cluster.
    fn fresh_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "shardready-test-{}-{}",
            std::process::id(),
            TEST_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        if dir.exists() {
            let _ = fs::remove_dir_all(&dir);
        }
        dir
    }

    /// The cluster, or, when starting failed, nothing left behind.
    fn started(dir: &Path, made: Result<Sandbox>) -> Result<TestCluster> {
        match made {
            Ok(sb) => Ok(TestCluster { sandbox: Some(sb) }),
            Err(e) => {
                if let Ok(sb) = Sandbox::open(dir) {
                    sb.kill();
                }
                let _ = fs::remove_dir_all(dir);
                Err(e)
            }
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("cluster is alive")
    }

    /// A streaming replica of this cluster: `pg_basebackup -R` into its own
    /// directory, started on its own port with `settings` (e.g.
    /// `recovery_min_apply_delay` to make it fall behind); stopped and
    /// deleted on drop like any test cluster.
    pub fn start_replica(&self, settings: Vec<(String, String)>) -> Result<TestCluster> {
        let primary = self.sandbox();
        let dir = Self::fresh_dir();
        let identity = match &primary.state.os_user {
            Some(u) => server_identity(u)?,
            None => None,
        };
        io(
            format!("cannot create {}", dir.display()),
            fs::create_dir_all(&dir),
        )?;
        chown_to(&dir, identity)?;
        let sb = Sandbox {
            dir: dir.clone(),
            state: SandboxState {
                port: 0,
                pg_cron: false,
                citus: false,
                worker_ports: Vec::new(),
                node_ports: Vec::new(),
                ..primary.state.clone()
            },
        };
        let made = (|| {
            io(
                "cannot create the socket directory",
                fs::create_dir_all(sb.socket_dir()),
            )?;
            chown_to(&sb.socket_dir(), identity)?;
            let mut bb = server_command(&sb.state.bin_dir.join("pg_basebackup"), identity);
            bb.args(["-h", "127.0.0.1", "-p", &primary.state.port.to_string()])
                .args(["-U", SUPERUSER, "-D"])
                .arg(sb.data_dir())
                .args(["-R", "-X", "stream", "-c", "fast"]);
            run("pg_basebackup", &mut bb)?;
            sb.save_state()?;
            let mut opts = SandboxOptions::new(&dir);
            opts.profile = Profile::Test;
            opts.settings = settings;
            opts.citus = CitusChoice::Off;
            Sandbox::start(&opts)
        })();
        Self::started(&dir, made)
    }

    pub fn url(&self) -> String {
        self.sandbox().url()
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.sandbox()
            .psql_command(&format!("CREATE DATABASE {}", crate::sql::ident(name)))?;
        Ok(self.sandbox().url_for(name))
    }
}

#[cfg(feature = "testing")]
impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(sb) = self.sandbox.take() {
            sb.kill();
            let _ = fs::remove_dir_all(&sb.dir);
        }
    }
}
