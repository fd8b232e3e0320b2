//! Wake-ups across replicas: on PostgreSQL, one `LISTEN` connection per
//! service turns every `NOTIFY <channel>` (sent by [`notify`] in the writing
//! transaction) into a tick on that channel's watch; on SQLite only the poll
//! and writes in this process wake anyone. Tables stay the durable log: a tick
//! only says "read again".

use std::{collections::HashMap, sync::Arc, time::Duration};

use sqlx::{Any, Transaction, postgres::PgListener};
use tokio::sync::watch;

/// How often a reader looks at its table anyway on SQLite (another process
/// may share the file): the only way to see writes made elsewhere.
pub const SQLITE_POLL: Duration = Duration::from_millis(500);
/// How often a reader looks at its table anyway on PostgreSQL, where
/// notifications wake it at once: a fallback should a notification be lost
/// (a listener stuck on a half-open connection).
pub const POSTGRES_POLL: Duration = Duration::from_secs(5);

/// The wake-up channel of the revocation feed.
pub const REVOCATIONS: &str = "revocations";
/// The wake-up channel of the entitlement feed.
pub const ENTITLEMENTS: &str = "entitlements";
/// The wake-up channel of Auth's signing keys (a rotation); also their table.
pub const SIGNING_KEYS: &str = "signing_keys";
/// The wake-up channel of Products' grant keys (a rotation); also their table.
pub const GRANT_SIGNING_KEYS: &str = "grant_signing_keys";

/// One tick per channel, fed by this process's writes and, on PostgreSQL, by
/// every replica's; and the poll interval readers fall back to.
#[derive(Debug, Clone)]
pub struct Wakeups {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    channels: HashMap<&'static str, watch::Sender<u64>>,
    poll: Duration,
    /// Dropped with the last [`Wakeups`]: the listener task then ends.
    _alive: watch::Sender<()>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Self::local(&[], SQLITE_POLL)
    }
}

impl Wakeups {
    /// Wake-ups from this process only, on `channels`, polling every `poll`.
    pub fn local(channels: &[&'static str], poll: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                channels: channels
                    .iter()
                    .map(|channel| (*channel, watch::Sender::new(0)))
                    .collect(),
                poll,
                _alive: watch::Sender::new(()),
            }),
        }
    }

    /// Wake-ups for a service whose database is `url`: on PostgreSQL, a
    /// listener on `channels` that reconnects by itself, polling every `poll`
    /// (default [`POSTGRES_POLL`]); on SQLite, [`Wakeups::local`] polling every
    /// `poll` (default [`SQLITE_POLL`]).
    pub fn for_database(url: &str, channels: &[&'static str], poll: Option<Duration>) -> Self {
        if !url.starts_with("postgres") {
            return Self::local(channels, poll.unwrap_or(SQLITE_POLL));
        }
        let wakeups = Self::local(channels, poll.unwrap_or(POSTGRES_POLL));
        let alive = wakeups.inner._alive.subscribe();
        tokio::spawn(listen(
            url.to_owned(),
            Arc::downgrade(&wakeups.inner),
            alive,
        ));
        wakeups
    }

    /// The ticks of `channel`; a channel not declared is closed at once
    /// (`changed()` fails): readers then rely on their poll.
    pub fn subscribe(&self, channel: &'static str) -> watch::Receiver<u64> {
        match self.inner.channels.get(channel) {
            Some(sender) => sender.subscribe(),
            None => watch::Sender::new(0).subscribe(),
        }
    }

    /// Ticks `channel` in this process (a write here, or a notification).
    pub fn wake(&self, channel: &str) {
        self.inner.wake(channel);
    }

    /// How often a reader looks at its table even without a tick.
    pub fn poll(&self) -> Duration {
        self.inner.poll
    }
}

impl Inner {
    fn wake(&self, channel: &str) {
        if let Some(sender) = self.channels.get(channel) {
            sender.send_modify(|tick| *tick = tick.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for channel in self.channels.keys() {
            self.wake(channel);
        }
    }
}

/// Sends `NOTIFY <channel>` inside `tx` on PostgreSQL (nothing on SQLite).
/// PostgreSQL delivers it when `tx` commits, and only then: listeners never
/// read before the row is visible, a rolled-back write wakes no one, and a
/// crash between commit and a separate NOTIFY cannot lose the wake-up.
pub async fn notify(tx: &mut Transaction<'_, Any>, channel: &'static str) -> sqlx::Result<()> {
    if tx.backend_name() == "PostgreSQL" {
        // `channel` is one of this module's constants: an identifier, not input.
        sqlx::query(&format!("NOTIFY {channel}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Listens on every channel of `inner` until it is gone. Each (re)connection
/// ticks every channel once it listens again: a notification sent while the
/// connection was down is lost, the row it announced is not.
async fn listen(url: String, inner: std::sync::Weak<Inner>, mut alive: watch::Receiver<()>) {
    const FIRST: Duration = Duration::from_millis(50);
    let mut backoff = FIRST;
    loop {
        let Some(channels) = inner
            .upgrade()
            .map(|inner| inner.channels.keys().copied().collect::<Vec<_>>())
        else {
            return;
        };
        let connected = tokio::select! {
            connected = connect(&url, &channels) => connected,
            _ = alive.changed() => return,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                // Once per outage, not once per attempt.
                if backoff == FIRST {
                    tracing::warn!(%error, "feed wake-ups: cannot listen on PostgreSQL; polling meanwhile");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = alive.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = FIRST;
        match inner.upgrade() {
            Some(inner) => inner.wake_all(),
            None => return,
        }
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                _ = alive.changed() => return,
            };
            let Some(inner) = inner.upgrade() else {
                return;
            };
            match received {
                Ok(Some(notification)) => inner.wake(notification.channel()),
                // Reconnected and listening again: whatever was sent meanwhile is lost.
                Ok(None) => inner.wake_all(),
                Err(error) => {
                    tracing::warn!(%error, "feed wake-ups: listener connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(url: &str, channels: &[&'static str]) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen_all(channels.iter().copied()).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_ticks_its_channel_only_and_an_undeclared_channel_is_closed() {
        let wakeups = Wakeups::for_database("sqlite::memory:", &[REVOCATIONS, SIGNING_KEYS], None);
        assert_eq!(wakeups.poll(), SQLITE_POLL);
        let mut revocations = wakeups.subscribe(REVOCATIONS);
        let keys = wakeups.subscribe(SIGNING_KEYS);
        wakeups.wake(REVOCATIONS);
        assert!(revocations.has_changed().expect("open"));
        assert!(!keys.has_changed().expect("open"));
        revocations.borrow_and_update();
        wakeups.clone().wake(SIGNING_KEYS);
        assert!(keys.has_changed().expect("open"));
        assert!(!revocations.has_changed().expect("open"));
        let mut undeclared = wakeups.subscribe(ENTITLEMENTS);
        assert!(undeclared.changed().await.is_err());
    }
}
