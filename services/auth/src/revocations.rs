//! Revocations as Auth keeps them: the in-memory [`RevocationSet`] its own
//! verifier checks, the epochs cut-offs write, and the WatchRevocations feed that
//! carries them to every other verifier — and, in process, to this replica's own
//! set, so that a revocation written by another Auth replica is enforced here too.

use std::{
    pin::Pin,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt};
use tokenmesh_interceptor::{FeedFreshness, RevocationSet, SharedClock};
use tokenmesh_proto::auth::v1::{
    Heartbeat, RevocationEvent, SessionRevoked, SubjectRevoked, TokenRevoked,
    revocation_event::Revoked,
};
use tokenmesh_server::{Feed, Markers, apply_event, rewind_if_went_back, wakeups::REVOCATIONS};
use tonic::Status;

use crate::{
    AuthConfig, AuthServiceError,
    store::{Epoch, Revocation, Store, StoreError},
};

/// The WatchRevocations stream.
pub(crate) type RevocationStream =
    Pin<Box<dyn Stream<Item = Result<RevocationEvent, Status>> + Send>>;

/// Auth's revocations: the set, the feed's wake-ups, and the table behind both.
#[derive(Debug)]
pub(crate) struct Revocations {
    set: Arc<RevocationSet>,
    feed: Feed,
    /// Set once the feed is closed: the own-set follower stops resubscribing.
    closed: AtomicBool,
    store: Store,
    clock: SharedClock,
    /// Seconds a subject entry matters after its epoch.
    lifetime: i64,
}

impl Revocations {
    /// The revocations in `store` that still matter.
    pub(crate) async fn load(store: Store, config: &AuthConfig) -> Result<Self, StoreError> {
        let set = Arc::new(RevocationSet::new());
        let now = config.clock.now_unix();
        for revocation in store.revocations_since(0, now, i64::MAX).await? {
            apply_event(&set, &event(revocation));
        }
        Ok(Self {
            set,
            feed: Feed::new(config.clock.clone(), config.wakeups.clone(), REVOCATIONS),
            closed: AtomicBool::new(false),
            store,
            clock: config.clock.clone(),
            lifetime: config.revocation_lifetime(),
        })
    }

    /// The set Auth's own verifier checks.
    pub(crate) fn set(&self) -> Arc<RevocationSet> {
        self.set.clone()
    }

    /// The epoch of a cut-off now: everything issued up to the end of this
    /// second dies.
    pub(crate) fn epoch_now(&self) -> Epoch {
        let not_before = self.clock.now_unix() + 1;
        Epoch {
            not_before,
            forget_after: not_before + self.lifetime,
        }
    }

    /// Records a subject revocation (already stored) here and wakes the feeds.
    pub(crate) fn subject_revoked(&self, subject: &str, epoch: Epoch) {
        self.set
            .revoke_subject(subject, epoch.not_before, epoch.forget_after);
        self.feed.notify();
    }

    /// Records a session revocation (already stored) here and wakes the feeds.
    pub(crate) fn session_revoked(&self, session_id: &str, forget_after: i64) {
        self.set.revoke_session(session_id, forget_after);
        self.feed.notify();
    }

    /// Drops the entries that no longer matter.
    pub(crate) fn prune(&self) {
        self.set.prune(self.clock.now_unix());
    }

    /// The table behind the feed (tests read it).
    #[cfg(test)]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Deletes the stored rows that no longer matter (see the store's rule);
    /// answers how many.
    pub(crate) async fn prune_stored(&self) -> Result<u64, StoreError> {
        self.store.prune_revocations(self.clock.now_unix()).await
    }

    /// Ends every stream (server shutdown: open streams would hold the drain).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.feed.close();
    }

    /// Follows the revocations table — through the same feed other verifiers
    /// follow — into this replica's own set, until `self` is gone or closed:
    /// another replica's revocations are found by the feed's wake-ups or its poll.
    pub(crate) fn follow_table(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let revocations: Weak<Self> = Arc::downgrade(self);
        // Auth's own set is not gated on freshness (it is the table's reader,
        // not a remote follower): the value only feeds `follow`'s logging.
        let freshness = Arc::new(FeedFreshness::new(self.clock.clone(), Duration::MAX));
        tokio::spawn(tokenmesh_server::follow(
            "own revocations",
            freshness,
            move || {
                let revocations = revocations.clone();
                async move { follow_once(&revocations).await }
            },
        ))
    }

    /// The revocations after cursor `since`, a caught-up marker, then new ones
    /// as they come, with heartbeats, until `expires_at` (the subscriber's token).
    pub(crate) fn stream(&self, since: u64, expires_at: i64) -> RevocationStream {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let store = self.store.clone();
        let clock = self.clock.clone();
        let markers = Markers {
            caught_up: |cursor| RevocationEvent {
                cursor: u64::try_from(cursor).unwrap_or_default(),
                revoked: None,
            },
            heartbeat: |cursor| RevocationEvent {
                cursor: u64::try_from(cursor).unwrap_or_default(),
                revoked: Some(Revoked::Heartbeat(Heartbeat {})),
            },
        };
        let fetch = move |cursor, limit: usize| {
            let store = store.clone();
            let now = clock.now_unix();
            async move {
                let rows = store
                    .revocations_since(cursor, now, limit as i64)
                    .await
                    .map_err(status)?;
                Ok(rows.into_iter().map(|row| (row.seq, event(row))).collect())
            }
        };
        let store = self.store.clone();
        let last = move || {
            let store = store.clone();
            async move { store.last_revocation().await.map_err(status) }
        };
        Box::pin(self.feed.stream(since, fetch, last, markers, expires_at))
    }
}

/// One in-process subscription from the set's cursor; `Ok(None)` once Auth is
/// gone or its feed closed.
async fn follow_once(revocations: &Weak<Revocations>) -> Result<Option<usize>, Status> {
    let mut stream = match revocations.upgrade() {
        Some(revocations) if !revocations.closed.load(Ordering::Acquire) => {
            revocations.stream(revocations.set.cursor(), i64::MAX)
        }
        _ => return Ok(None),
    };
    let mut applied = 0;
    while let Some(event) = stream.next().await {
        let Some(revocations) = revocations.upgrade() else {
            return Ok(None);
        };
        let event = event.inspect_err(|status| rewind_if_went_back(&revocations.set, status))?;
        apply_event(&revocations.set, &event);
        applied += 1;
    }
    Ok(Some(applied))
}

/// A store failure as the feed ends with it.
fn status(error: StoreError) -> Status {
    Status::from(AuthServiceError::from(error))
}

fn event(revocation: Revocation) -> RevocationEvent {
    let revoked = if !revocation.session_id.is_empty() {
        Revoked::Session(SessionRevoked {
            session_id: revocation.session_id,
            forget_after: revocation.forget_after,
        })
    } else if revocation.jti.is_empty() {
        Revoked::Subject(SubjectRevoked {
            subject: revocation.subject,
            not_before: revocation.not_before,
            forget_after: revocation.forget_after,
        })
    } else {
        Revoked::Token(TokenRevoked {
            jti: revocation.jti,
            expires_at: revocation.forget_after,
        })
    };
    RevocationEvent {
        cursor: u64::try_from(revocation.seq).unwrap_or_default(),
        revoked: Some(revoked),
    }
}
