//! Heavy statements yield the CPU to the application: while apply builds
//! an index or validates a constraint (one statement each, which nothing
//! can pace from outside), its backend runs at a lower CPU priority
//! (`nice` [`NICE`]) where the server runs on this machine, so the
//! application's backends get the cores first when they need them and
//! the build takes what is left. Done only where it can be undone: the
//! backend is a process of this machine (its working directory under
//! `/proc` is the server's data directory) and shardready runs as root
//! (giving the priority back needs it). Elsewhere nothing changes; apply
//! says so once. The parallel workers of a build (`--parallel-workers`,
//! 0 by default) are lowered too as they start (they exit with the
//! statement, so nothing is given back).

use tokio_postgres::Client;

/// The niceness a heavy statement's backend runs at (0 is the default,
/// 19 the lowest priority): its CPU share against a busy application
/// backend is about one in ten.
pub(crate) const NICE: i32 = 10;

/// Why a backend's priority is not lowered, for the one line that says
/// so.
#[derive(Debug)]
pub(crate) enum NotLowered {
    /// The server is reached over the network, from another namespace, or
    /// through a pooler: the backend's process is not one seen here.
    Remote,
    /// shardready does not run as root: the priority could not be given
    /// back.
    NotRoot,
    /// The backend's pid or the data directory could not be read.
    Db(crate::db::DbError),
    /// The process could not be changed (the kernel said no).
    Refused(nix::errno::Errno),
}

impl std::fmt::Display for NotLowered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotLowered::Remote => write!(
                f,
                "the server's backend is not a process of this machine (the server runs \
                 elsewhere, in a container, or behind a pooler)"
            ),
            NotLowered::NotRoot => write!(
                f,
                "shardready does not run as root (lowering a backend's priority and giving it \
                 back needs it)"
            ),
            NotLowered::Db(e) => write!(f, "{e}"),
            NotLowered::Refused(e) => write!(f, "the kernel refused: {e}"),
        }
    }
}

/// A backend running at a lower priority until dropped (also when the
/// work is cancelled or panics).
pub(crate) struct Lowered {
    pid: i32,
    was: i32,
}

/// The pid of `client`'s backend when it is a process of this machine
/// (its working directory is the server's data directory: not a process of
/// another namespace, and not behind a pooler that hands statements to
/// other backends) and shardready may change and restore its priority.
async fn local_backend(client: &Client) -> Result<i32, NotLowered> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NotLowered::NotRoot);
    }
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_backend_pid(), pg_catalog.current_setting('data_directory', true)",
            &[],
        )
        .await
        .map_err(|e| NotLowered::Db(crate::db::DbError::new("cannot read the backend's pid", e)))?;
    let (pid, data): (i32, Option<String>) = (row.get(0), row.get(1));
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let here = data.is_some_and(|d| {
        cwd.as_deref()
            .is_some_and(|c| std::fs::canonicalize(&d).is_ok_and(|d| d == c))
    });
    if !here {
        return Err(NotLowered::Remote);
    }
    get(pid)?;
    Ok(pid)
}

/// Lowers the CPU priority of `client`'s backend, or says why not.
pub(crate) async fn lower(client: &Client) -> Result<Lowered, NotLowered> {
    let pid = local_backend(client).await?;
    let was = get(pid)?;
    set(pid, NICE.max(was))?;
    Ok(Lowered { pid, was })
}

impl Drop for Lowered {
    /// Gives the backend its priority back (a failure is logged: the
    /// backend keeps running, only slower to get the CPU).
    fn drop(&mut self) {
        if let Err(e) = set(self.pid, self.was) {
            tracing::warn!("could not give backend {} its priority back: {e}", self.pid);
        }
    }
}

/// What apply says once at its start: whether heavy statements will yield
/// the CPU, and why not. Changes nothing.
pub(crate) async fn banner(client: &Client) -> String {
    match local_backend(client).await {
        Ok(_) => format!(
            "index builds and validations run at CPU priority nice {NICE} (the application's \
             backends get the cores first)"
        ),
        Err(why) => format!("index builds and validations run at normal CPU priority: {why}"),
    }
}

/// A process's niceness.
fn get(pid: i32) -> Result<i32, NotLowered> {
    // getpriority returns -1 for a niceness of -1 too: errno tells.
    nix::errno::Errno::clear();
    // SAFETY: getpriority reads a process's scheduling priority; no memory
    // is passed.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, pid as libc::id_t) };
    match nix::errno::Errno::last_raw() {
        0 => Ok(n),
        e => Err(NotLowered::Refused(nix::errno::Errno::from_raw(e))),
    }
}

/// Sets a process's niceness.
fn set(pid: i32, nice: i32) -> Result<(), NotLowered> {
    // SAFETY: setpriority changes a process's scheduling priority; no
    // memory is passed.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, nice) };
    if r == 0 {
        Ok(())
    } else {
        Err(NotLowered::Refused(nix::errno::Errno::last()))
    }
}

/// Runs `work` with `client`'s backend at a lower priority where it can
/// be (see the module), then gives it back. Its parallel workers are
/// lowered as they appear (looked for every [`WORKER_LOOK`]).
pub(crate) async fn yielding<T>(client: &Client, work: impl std::future::Future<Output = T>) -> T {
    let lowered = lower(client).await;
    let out = match &lowered {
        Ok(l) => {
            let mut work = std::pin::pin!(work);
            let mut look = tokio::time::interval(WORKER_LOOK);
            loop {
                tokio::select! {
                    out = &mut work => break out,
                    _ = look.tick() => lower_workers(l.pid),
                }
            }
        }
        Err(why) => {
            tracing::debug!("not lowering the backend's priority: {why}");
            work.await
        }
    };
    drop(lowered);
    out
}

/// How often a lowered backend's new parallel workers are looked for.
const WORKER_LOOK: std::time::Duration = std::time::Duration::from_millis(100);

/// Lowers the parallel workers of backend `leader`: the server's processes
/// whose title says `parallel worker for PID <leader>` (each one exits
/// with its statement). A process that is gone meanwhile is skipped.
fn lower_workers(leader: i32) {
    let title = format!("parallel worker for PID {leader}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmd).contains(&title) {
            continue;
        }
        if let Ok(n) = get(pid) {
            if n < NICE {
                let _ = set(pid, NICE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_priority_is_read_and_set_back() {
        let me = std::process::id() as i32;
        let was = get(me).unwrap();
        // Raising one's own niceness is always allowed.
        set(me, (was + 1).min(19)).unwrap();
        assert_eq!(get(me).unwrap(), (was + 1).min(19));
        if nix::unistd::geteuid().is_root() {
            set(me, was).unwrap();
            assert_eq!(get(me).unwrap(), was);
        }
    }
}
