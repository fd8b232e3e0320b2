//! Resumable streams over an append-only table (revocations, entitlement
//! changes). Server side, [`Feed`]: replay from the client's cursor, then follow
//! live — woken at once by writes in this process, and by a short poll for writes
//! by other replicas. Client side, [`follow`]: resubscribe after every drop.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// How often a stream looks for rows written by other replicas.
const POLL: Duration = Duration::from_millis(500);
/// Rows read per query.
const BATCH: usize = 500;

/// The wake-up and shutdown signals of one feed.
#[derive(Debug)]
pub struct Feed {
    wake: watch::Sender<u64>,
    closing: watch::Sender<bool>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    /// A feed with no subscriber yet.
    pub fn new() -> Self {
        Self {
            wake: watch::Sender::new(0),
            closing: watch::Sender::new(false),
        }
    }

    /// Wakes every stream: rows were appended.
    pub fn notify(&self) {
        self.wake
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Ends every stream (server shutdown: open streams would hold the drain).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// A stream of the rows after `since`, then of new rows as they come.
    /// `fetch(cursor, limit)` returns rows after `cursor` in order, each with its
    /// own cursor; an error ends the stream with that status.
    pub fn stream<T, F, Fut>(&self, since: i64, fetch: F) -> ReceiverStream<Result<T, Status>>
    where
        T: Send + 'static,
        F: FnMut(i64, usize) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<(i64, T)>, Status>> + Send,
    {
        self.stream_marked(since, fetch, None)
    }

    /// Like [`Feed::stream`], and once the replay has caught up with the table,
    /// sends `caught_up(cursor)` once, so a replica knows it is complete.
    pub fn stream_marked<T, F, Fut>(
        &self,
        since: i64,
        mut fetch: F,
        caught_up: Option<fn(i64) -> T>,
    ) -> ReceiverStream<Result<T, Status>>
    where
        T: Send + 'static,
        F: FnMut(i64, usize) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<(i64, T)>, Status>> + Send,
    {
        let mut caught_up = caught_up;
        let mut wake = self.wake.subscribe();
        let mut closing = self.closing.subscribe();
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut cursor = since;
            loop {
                // Mark the current generation seen before reading, so a write that
                // lands during the read still wakes the next wait.
                wake.borrow_and_update();
                let rows = match fetch(cursor, BATCH).await {
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
                }
                if full {
                    continue;
                }
                if let Some(marker) = caught_up.take()
                    && sender.send(Ok(marker(cursor))).await.is_err()
                {
                    return;
                }
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = closing.wait_for(|closing| *closing) => return,
                    _ = sender.closed() => return,
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

/// Subscribes with `subscribe` again and again until it answers `Ok(None)` (its
/// consumer is gone). A subscription that ended cleanly (the server closed it,
/// e.g. on restart) is retried at once-ish; a failing one with a backoff growing
/// to 2 s. `subscribe` resumes from its own cursor; `Ok(Some(n))` is how many
/// events it applied.
pub async fn follow<F, Fut>(feed: &'static str, mut subscribe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<usize>, Status>>,
{
    const FIRST: Duration = Duration::from_millis(50);
    let mut backoff = FIRST;
    loop {
        match subscribe().await {
            Ok(None) => return,
            Ok(Some(_)) => backoff = FIRST,
            Err(status) => {
                tracing::debug!(feed, code = ?status.code(), message = status.message(), "feed interrupted");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
