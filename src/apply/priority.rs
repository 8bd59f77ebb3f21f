//! Heavy statements yield the CPU to the application: while apply builds
//! an index or validates a constraint (one statement each, which nothing
//! can pace from outside), its backend runs at a lower CPU priority
//! (`nice` [`NICE`]) where the server runs on this machine, so the
//! application's backends get the cores first when they need them and
//! the build takes what is left. Done only where it can be undone: the
//! backend is this machine's (a Unix socket or loopback connection, its
//! process a `postgres` one under `/proc`) and shardready runs as root
//! (giving the priority back needs it). Elsewhere nothing changes; apply
//! says so once.

use tokio_postgres::Client;

/// The niceness a heavy statement's backend runs at (0 is the default,
/// 19 the lowest priority): its CPU share against a busy application
/// backend is about one in ten.
pub(crate) const NICE: i32 = 10;

/// Why a backend's priority was not lowered, for the one line that says
/// so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotLowered {
    /// The server is reached over the network (or from another namespace).
    Remote,
    /// shardready does not run as root: the priority could not be given
    /// back.
    NotRoot,
    /// The process could not be changed (the kernel said no).
    Refused(String),
}

impl std::fmt::Display for NotLowered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotLowered::Remote => write!(f, "the server does not run on this machine"),
            NotLowered::NotRoot => write!(
                f,
                "shardready does not run as root (lowering a backend's priority and giving it \
                 back needs it)"
            ),
            NotLowered::Refused(e) => write!(f, "the kernel refused: {e}"),
        }
    }
}

/// A backend running at a lower priority until [`Lowered::restore`].
pub(crate) struct Lowered {
    pid: i32,
    was: i32,
}

/// Lowers the CPU priority of `client`'s backend, or says why not.
pub(crate) async fn lower(client: &Client) -> Result<Lowered, NotLowered> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_backend_pid(), \
                    coalesce(pg_catalog.inet_server_addr() <<= '127.0.0.0/8' \
                             OR pg_catalog.inet_server_addr() = '::1', true)",
            &[],
        )
        .await
        .map_err(|e| NotLowered::Refused(e.to_string()))?;
    let (pid, loopback): (i32, bool) = (row.get(0), row.get(1));
    let ours =
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"postgres"));
    if !loopback || !ours {
        return Err(NotLowered::Remote);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(NotLowered::NotRoot);
    }
    let was = get(pid)?;
    set(pid, NICE.max(was))?;
    Ok(Lowered { pid, was })
}

impl Lowered {
    /// Gives the backend its priority back (a failure is logged: the
    /// backend keeps running, only slower to get the CPU).
    pub(crate) fn restore(self) {
        if let Err(e) = set(self.pid, self.was) {
            tracing::warn!("could not give backend {} its priority back: {e}", self.pid);
        }
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
        e => Err(NotLowered::Refused(
            nix::errno::Errno::from_raw(e).to_string(),
        )),
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
        Err(NotLowered::Refused(nix::errno::Errno::last().to_string()))
    }
}

/// Runs `work` with `client`'s backend at a lower priority where it can
/// be (see the module), then gives it back; why it could not be, beside
/// what `work` returned.
pub(crate) async fn yielding<T>(
    client: &Client,
    work: impl std::future::Future<Output = T>,
) -> (T, Option<NotLowered>) {
    match lower(client).await {
        Ok(lowered) => {
            let out = work.await;
            lowered.restore();
            (out, None)
        }
        Err(why) => (work.await, Some(why)),
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
