//! Shortens the moment `create_distributed_table_concurrently` holds the
//! application's writes.
//!
//! At its switch, Citus blocks writes to the table, then checks whether
//! its logical replication has caught up; when it has not quite (a few
//! hundred bytes behind is the usual case under traffic), it sleeps a full
//! second before it looks again (`WaitForAllSubscriptionsToCatchUp`, a
//! 1000 ms latch wait). Every write to the table waits out that second.
//! A backend that LISTENs has its latch set by a NOTIFY, which ends such a
//! wait at once, and nothing else: the notification itself is only read
//! when the session is idle again. So the distributing session LISTENs on
//! a channel of its own, and a second connection notifies it every few
//! milliseconds while it waits in Citus (`wait_event_type = 'Extension'`):
//! the check is repeated within milliseconds of the replication catching
//! up, rather than a second later.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::conn::Target;
use crate::sql::ident;

/// How often the waiting session is woken.
pub const EVERY: Duration = Duration::from_millis(20);

/// The second connection's loop; stopped (and the channel left) by
/// [`Waker::stop`].
pub struct Waker {
    channel: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

/// Listens on `session` and starts waking it from a second connection.
/// An error says why it could not (the distribution still works, with
/// Citus's one-second checks).
pub async fn start(target: &Target, session: &Client) -> Result<Waker, String> {
    let pid: i32 = session
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| crate::conn::error_text(&e))?
        .get(0);
    let channel = format!("shardready_wake_{pid}");
    let other = target
        .with_application_name("shardready-wake")
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    session
        .batch_execute(&format!("LISTEN {}", ident(&channel)))
        .await
        .map_err(|e| crate::conn::error_text(&e))?;
    let (stop, mut stopped) = watch::channel(false);
    let ch = channel.clone();
    let task = tokio::spawn(async move {
        let mut woken = 0u64;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => break,
            }
            match other
                .query(
                    "SELECT pg_catalog.pg_notify($1, '') FROM pg_catalog.pg_stat_activity \
                     WHERE pid = $2 AND wait_event_type = 'Extension'",
                    &[&ch, &pid],
                )
                .await
            {
                Ok(rows) => woken += rows.len() as u64,
                Err(_) => break,
            }
        }
        woken
    });
    Ok(Waker {
        channel,
        stop,
        task,
    })
}

impl Waker {
    /// Stops waking and leaves the channel; returns how many times the
    /// session was woken.
    pub async fn stop(self, session: &Client) -> u64 {
        let _ = self.stop.send(true);
        let woken = self.task.await.unwrap_or(0);
        let _ = session
            .batch_execute(&format!("UNLISTEN {}", ident(&self.channel)))
            .await;
        woken
    }
}
