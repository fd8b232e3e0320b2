//! Which verified tokens are nonetheless dead: revoked token ids (`jti`),
//! revoked sessions (`sid`) and per-subject "not before" epochs. Never keyed by token bytes — an ECDSA token
//! has several valid spellings. Bounded: an entry is forgotten once every token
//! it could match has expired.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::FeedFreshness;

/// Revoked token ids and subject epochs, as fed by the issuer's revocation stream.
#[derive(Debug, Default)]
pub struct RevocationSet {
    entries: RwLock<Entries>,
    /// The stream position this set has applied, to resume after a reconnect.
    cursor: AtomicU64,
    /// For a set fed by a remote stream: whether it is current. `None`: the
    /// set is the issuer's own, complete by construction.
    freshness: Option<Arc<FeedFreshness>>,
}

#[derive(Debug, Default)]
struct Entries {
    /// `jti` → when the token expires (after which the entry is useless).
    tokens: HashMap<String, i64>,
    /// `sub` → (tokens issued before this are revoked, forget after).
    subjects: HashMap<String, (i64, i64)>,
    /// `sid` → when the session's last token expires.
    sessions: HashMap<String, i64>,
}

impl RevocationSet {
    /// An empty set, complete by construction (the issuer's own).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set fed by a remote stream: a verifier refuses tokens while
    /// `freshness` says the set may be missing revocations.
    pub fn followed(freshness: Arc<FeedFreshness>) -> Self {
        Self {
            freshness: Some(freshness),
            ..Self::default()
        }
    }

    /// Whether the set can clear a token now: the issuer's own always; a
    /// followed one only while its feed is current (a set that may be missing
    /// revocations cannot clear anyone).
    pub fn current(&self) -> Result<(), crate::Stale> {
        self.freshness
            .as_ref()
            .map_or(Ok(()), |freshness| freshness.check())
    }

    /// How current a followed set is; `None` for the issuer's own.
    pub fn freshness(&self) -> Option<&Arc<FeedFreshness>> {
        self.freshness.as_ref()
    }

    /// Revokes the token `jti`, which expires at `expires_at` (Unix seconds).
    pub fn revoke_token(&self, jti: &str, expires_at: i64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.tokens.insert(jti.to_owned(), expires_at);
    }

    /// Revokes every token of the session `sid`; the entry can be forgotten
    /// after `forget_after` (when the last such token has expired).
    pub fn revoke_session(&self, sid: &str, forget_after: i64) {
        if sid.is_empty() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let entry = entries
            .sessions
            .entry(sid.to_owned())
            .or_insert(forget_after);
        *entry = (*entry).max(forget_after);
    }

    /// Revokes every token of `subject` issued before `not_before`; the entry can
    /// be forgotten after `forget_after` (when the last such token has expired).
    pub fn revoke_subject(&self, subject: &str, not_before: i64, forget_after: i64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let entry = entries
            .subjects
            .entry(subject.to_owned())
            .or_insert((not_before, forget_after));
        entry.0 = entry.0.max(not_before);
        entry.1 = entry.1.max(forget_after);
    }

    /// Whether a token of `subject` with id `jti`, of login session `sid`
    /// (empty: none), issued at `issued_at`, is revoked: one read of the set
    /// per verified call.
    pub fn is_revoked(&self, subject: &str, jti: &str, sid: &str, issued_at: i64) -> bool {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        if entries.tokens.is_empty() && entries.subjects.is_empty() && entries.sessions.is_empty() {
            return false;
        }
        (!jti.is_empty() && entries.tokens.contains_key(jti))
            || (!sid.is_empty() && entries.sessions.contains_key(sid))
            || entries
                .subjects
                .get(subject)
                .is_some_and(|(not_before, _)| issued_at < *not_before)
    }

    /// Forgets entries that can no longer match an unexpired token.
    pub fn prune(&self, now: i64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.tokens.retain(|_, expires_at| *expires_at >= now);
        entries
            .subjects
            .retain(|_, (_, forget_after)| *forget_after >= now);
        entries
            .sessions
            .retain(|_, forget_after| *forget_after >= now);
    }

    /// How many entries the set holds (tokens, subjects).
    pub fn len(&self) -> (usize, usize) {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        (entries.tokens.len(), entries.subjects.len())
    }

    /// How many revoked sessions the set holds.
    pub fn sessions(&self) -> usize {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.sessions.len()
    }

    /// Whether the set holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0) && self.sessions() == 0
    }

    /// The last stream position applied.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// Records that the stream has been applied up to `cursor` (and tells a
    /// followed set's freshness, for `/metrics`).
    pub fn set_cursor(&self, cursor: u64) {
        let cursor = self.cursor.fetch_max(cursor, Ordering::AcqRel).max(cursor);
        if let Some(freshness) = &self.freshness {
            freshness.applied(cursor);
        }
    }

    /// The feed's store went back (a restore, a failover to a lagging
    /// standby): its positions no longer mean what the cursor says, so the
    /// next subscription replays the feed from its start. The entries stay: a
    /// revocation once heard is never dropped before it expires.
    pub fn rewind_cursor(&self) {
        self.cursor.store(0, Ordering::Release);
        if let Some(freshness) = &self.freshness {
            freshness.applied(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_subject_epochs_revoke_and_are_forgotten_after_expiry() {
        let set = RevocationSet::new();
        assert!(!set.is_revoked("alice", "j1", "", 100));
        set.revoke_token("j1", 500);
        set.revoke_subject("bob", 200, 600);
        assert!(set.is_revoked("alice", "j1", "", 100));
        assert!(!set.is_revoked("alice", "j2", "", 100));
        assert!(set.is_revoked("bob", "j3", "", 199));
        assert!(
            !set.is_revoked("bob", "j4", "", 200),
            "issued at the epoch: valid"
        );
        set.revoke_subject("bob", 150, 550);
        assert!(
            set.is_revoked("bob", "j3", "", 199),
            "an older epoch never lowers the bar"
        );
        set.prune(501);
        assert_eq!(set.len(), (0, 1));
        set.prune(601);
        assert!(set.is_empty());
    }

    #[test]
    fn a_revoked_session_revokes_its_tokens_only_until_forgotten() {
        let set = RevocationSet::new();
        set.revoke_session("s1", 500);
        set.revoke_session("", 500);
        assert!(set.is_revoked("alice", "", "s1", 0));
        assert!(!set.is_revoked("alice", "", "s2", 0));
        assert!(
            !set.is_revoked("alice", "", "", 0),
            "no sid: no session to revoke"
        );
        assert_eq!(set.sessions(), 1);
        set.prune(501);
        assert!(set.is_empty());
    }

    #[test]
    fn the_cursor_only_moves_forward_until_rewound_and_a_rewind_keeps_the_entries() {
        let set = RevocationSet::new();
        set.revoke_token("j1", 500);
        set.set_cursor(7);
        set.set_cursor(5);
        assert_eq!(set.cursor(), 7, "a position already passed");
        set.rewind_cursor();
        assert_eq!(set.cursor(), 0);
        assert!(set.is_revoked("alice", "j1", "", 0), "still revoked");
        set.set_cursor(5);
        assert_eq!(set.cursor(), 5, "the store's positions, from the start");
    }
}
