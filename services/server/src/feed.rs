//! Resumable streams over an append-only table (revocations, entitlement
//! changes). Server side, [`Feed`]: replay from the client's cursor, mark the
//! end of the replay, then follow live — woken at once by writes in this
//! process and, on PostgreSQL, by other replicas' (see [`Wakeups`]), with a poll
//! as the fallback — with a heartbeat
//! whenever nothing else was sent for [`HEARTBEAT`], until the subscriber's
//! token expires. Client side, [`follow`]: resubscribe after every drop.

use std::{sync::Arc, time::Duration};

use tokenmesh_interceptor::{FeedFreshness, SharedClock};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::wakeups::Wakeups;
/// Rows read per query.
const BATCH: usize = 500;
/// A stream that has sent nothing for this long sends a heartbeat, so that its
/// follower can tell "nothing happened" from "nothing arrives".
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A follower that hears nothing, not even a heartbeat, for this long drops
/// the stream and resubscribes.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(15);

/// The wake-up and shutdown signals of one feed, and the clock its
/// subscribers' tokens expire on.
#[derive(Debug)]
pub struct Feed {
    wakeups: Wakeups,
    channel: &'static str,
    closing: watch::Sender<bool>,
    clock: SharedClock,
}

/// What a stream sends besides rows: built from the cursor reached.
#[derive(Debug, Clone, Copy)]
pub struct Markers<T> {
    /// Sent once, when the replay has caught up with the table: from then on
    /// the subscriber holds everything up to the cursor.
    pub caught_up: fn(i64) -> T,
    /// Sent when nothing else was for [`HEARTBEAT`].
    pub heartbeat: fn(i64) -> T,
}

impl Feed {
    /// A feed with no subscriber yet, whose subscribers' tokens expire on
    /// `clock`, woken by `channel` of `wakeups`.
    pub fn new(clock: SharedClock, wakeups: Wakeups, channel: &'static str) -> Self {
        Self {
            wakeups,
            channel,
            closing: watch::Sender::new(false),
            clock,
        }
    }

    /// Wakes every stream: rows were appended.
    pub fn notify(&self) {
        self.wakeups.wake(self.channel);
    }

    /// Ends every stream (server shutdown: open streams would hold the drain).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// A stream of the rows after `since`, then `markers.caught_up`, then new
    /// rows as they come, with heartbeats in between. `fetch(cursor, limit)`
    /// returns rows after `cursor` in order, each with its own cursor; an error
    /// ends the stream with that status. `last()` is the table's last position
    /// (0 when empty), which never goes back but with the store itself (a
    /// restore, a failover): when nothing follows a cursor past it, the stream
    /// ends with OUT_OF_RANGE, since new rows will reuse positions the
    /// subscriber holds. The stream ends cleanly at `expires_at` (Unix
    /// seconds on the feed's clock: the subscriber's token expiry), so a
    /// revoked or retired credential cannot keep it open; the subscriber
    /// resubscribes with a fresh token.
    pub fn stream<T, F, Fut, L, LastFut>(
        &self,
        since: i64,
        mut fetch: F,
        last: L,
        markers: Markers<T>,
        expires_at: i64,
    ) -> ReceiverStream<Result<T, Status>>
    where
        T: Send + 'static,
        F: FnMut(i64, usize) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<(i64, T)>, Status>> + Send,
        L: Fn() -> LastFut + Send + 'static,
        LastFut: Future<Output = Result<i64, Status>> + Send,
    {
        let feed = self.channel;
        let mut caught_up = Some(markers.caught_up);
        let mut wake = self.wakeups.subscribe(self.channel);
        let poll = self.wakeups.poll();
        let mut closing = self.closing.subscribe();
        let clock = self.clock.clone();
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut cursor = since;
            let mut sent_at = Instant::now();
            loop {
                // Mark the current generation seen before reading, so a write that
                // lands during the read still wakes the next wait.
                wake.borrow_and_update();
                let rows = match fetch(cursor, BATCH).await {
                    Ok(rows) if rows.is_empty() && cursor > 0 => match last().await {
                        Ok(last) if cursor > last => Err(went_back(feed, cursor, last)),
                        Ok(_) => Ok(rows),
                        Err(status) => Err(status),
                    },
                    fetched => fetched,
                };
                let rows = match rows {
                    Ok(rows) => rows,
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                };
                let full = rows.len() == BATCH;
                for (position, row) in rows {
                    cursor = position;
                    if sender.send(Ok(row)).await.is_err() {
                        return;
                    }
                    sent_at = Instant::now();
                }
                if full {
                    continue;
                }
                let marker = match caught_up.take() {
                    Some(marker) => Some(marker),
                    None if sent_at.elapsed() >= HEARTBEAT => Some(markers.heartbeat),
                    None => None,
                };
                if let Some(marker) = marker {
                    if sender.send(Ok(marker(cursor))).await.is_err() {
                        return;
                    }
                    sent_at = Instant::now();
                }
                // Checked once what is due has been sent: a token accepted
                // within the verifier's leeway still gets its replay.
                if clock.now_unix() >= expires_at {
                    tracing::debug!("feed subscriber's token expired: stream ends");
                    return;
                }
                tokio::select! {
                    // A closed channel (its wake-ups gone) leaves the poll.
                    Ok(()) = wake.changed() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = closing.wait_for(|closing| *closing) => return,
                    _ = sender.closed() => return,
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

/// Why a stream cannot go on from `cursor`: `feed`'s store went back to
/// `last` under it.
fn went_back(feed: &str, cursor: i64, last: i64) -> Status {
    Status::out_of_range(format!(
        "cursor {cursor} is past the {feed} feed's last position {last}: its store went back; resubscribe from the start"
    ))
}

/// The next event of a followed stream; a stream silent for
/// [`SILENCE_TIMEOUT`] (no event, no heartbeat) is an error, so that a stuck
/// connection is dropped and the feed's silence starts to count.
pub async fn next_event<T>(stream: &mut tonic::Streaming<T>) -> Result<Option<T>, Status> {
    tokio::time::timeout(SILENCE_TIMEOUT, stream.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no event or heartbeat for {} s",
                SILENCE_TIMEOUT.as_secs()
            ))
        })?
}

/// Subscribes with `subscribe` again and again until it answers `Ok(None)` (its
/// consumer is gone), telling `freshness` whenever a subscription ends (the
/// subscriber tells it what it hears). A subscription that ended cleanly (the
/// server closed it: restart, token expiry) is retried at once-ish; a failing
/// or short-lived one with a backoff growing to 2 s. `subscribe` resumes from
/// its own cursor; `Ok(Some(n))` is how many events it applied. Failures are
/// logged with their reason: refusals (credentials) at `error`, the rest at
/// `warn`, a repeat of the same reason only every [`LOG_EVERY`] attempts.
pub async fn follow<F, Fut>(feed: &'static str, freshness: Arc<FeedFreshness>, mut subscribe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<usize>, Status>>,
{
    const FIRST: Duration = Duration::from_millis(50);
    let mut backoff = FIRST;
    let mut failures = Failures::default();
    loop {
        let started = Instant::now();
        let subscription = subscribe();
        tokio::pin!(subscription);
        // Once events flow again after failures, say so (once).
        let outcome = loop {
            tokio::select! {
                outcome = &mut subscription => break outcome,
                _ = tokio::time::sleep(Duration::from_millis(200)), if failures.count > 0 => {
                    if freshness.is_connected() {
                        failures.recovered(feed);
                    }
                }
            }
        };
        if outcome.is_ok() {
            // A clean end (restart, token expiry) is the server speaking too:
            // silence counts from here should the next subscription fail.
            freshness.heard();
        }
        freshness.disconnected();
        match outcome {
            Ok(None) => return,
            Ok(Some(applied)) => {
                failures.recovered(feed);
                tracing::debug!(feed, applied, "feed stream ended: resubscribing");
                // A stream that lived less than a heartbeat proved little: keep
                // backing off (e.g. a token that expired on arrival).
                if started.elapsed() >= HEARTBEAT {
                    backoff = FIRST;
                }
            }
            Err(status) => failures.failed(feed, &status, freshness.silent_secs()),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A repeated failure is logged once per this many attempts.
const LOG_EVERY: u32 = 30;

/// Consecutive failures of one follower, for logging without flooding.
#[derive(Debug, Default)]
struct Failures {
    count: u32,
    last: Option<(tonic::Code, String)>,
}

impl Failures {
    fn failed(&mut self, feed: &'static str, status: &Status, silent_secs: Option<i64>) {
        self.count += 1;
        let reason = (status.code(), status.message().to_owned());
        let repeated = self.last.as_ref() == Some(&reason);
        if repeated && !self.count.is_multiple_of(LOG_EVERY) {
            return;
        }
        let (code, message, failures) = (status.code(), status.message(), self.count);
        let silent_secs = silent_secs.map_or_else(|| "never heard".to_owned(), |s| s.to_string());
        match code {
            // Our credentials or scopes are refused: no retry will fix that.
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => tracing::error!(
                feed,
                ?code,
                message,
                failures,
                silent_secs,
                "feed refused: check this service's client secret and scopes"
            ),
            _ => tracing::warn!(
                feed,
                ?code,
                message,
                failures,
                silent_secs,
                "feed unavailable"
            ),
        }
        self.last = Some(reason);
    }

    fn recovered(&mut self, feed: &'static str) {
        if self.count > 0 {
            tracing::info!(feed, failures = self.count, "feed resumed");
        }
        *self = Self::default();
    }
}
