//! Stored revocations are deleted once nothing they match can still be
//! valid — the access-token lifetime plus the most leeway a verifier allows
//! after the revocation — and the last row never is (its cursor must not be
//! reused).

use super::*;

/// Every stored revocation's cursor, expired or not.
async fn stored(fixture: &Fixture) -> Vec<i64> {
    let rows = fixture
        .auth
        .inner
        .revocations
        .store()
        .revocations_since(0, i64::MIN, 100)
        .await
        .expect("rows");
    rows.into_iter().map(|row| row.seq).collect()
}

async fn log_out(fixture: &Fixture, refresh_token: &str) {
    let request = LogoutRequest {
        refresh_token: refresh_token.into(),
    };
    fixture
        .auth
        .logout(Request::new(request))
        .await
        .expect("logged out");
}

async fn prune(fixture: &Fixture) -> u64 {
    let revocations = &fixture.auth.inner.revocations;
    revocations.prune_stored().await.expect("pruned")
}

tokenmesh_server::on_each_store!(
    stored_revocations_are_pruned_only_once_no_token_they_match_can_be_valid
);

async fn stored_revocations_are_pruned_only_once_no_token_they_match_can_be_valid(url: &str) {
    let clock = ManualClock::new();
    let config = AuthConfig::new(ISSUER).with_clock(Arc::new(clock.clone()));
    // A token issued just before a revocation lives this long at the most
    // lenient verifier (60 s of leeway).
    let matters = config.access_token_ttl + Duration::from_secs(60);
    let fixture = Fixture::with_config(url, config).await;
    let alice = fixture.alice().await;
    log_out(&fixture, &alice.refresh_token).await;
    let request = DeactivateUserRequest {
        username: "alice".into(),
    };
    fixture
        .auth
        .deactivate_user(Request::new(request))
        .await
        .expect("deactivated");
    // 1: alice's session; 2: alice's epoch, cut a second later.
    assert_eq!(stored(&fixture).await, [1, 2]);

    clock.advance(matters);
    assert_eq!(
        prune(&fixture).await,
        0,
        "the session's last token may still verify"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(prune(&fixture).await, 1);
    assert_eq!(stored(&fixture).await, [2]);
    clock.advance(Duration::from_secs(1));
    assert_eq!(prune(&fixture).await, 0, "the last row keeps its cursor");

    let carol = fixture
        .login("carol", "carol-password")
        .await
        .expect("carol");
    log_out(&fixture, &carol.refresh_token).await;
    assert_eq!(prune(&fixture).await, 1);
    assert_eq!(
        stored(&fixture).await,
        [3],
        "a new row never reuses a cursor"
    );
}
