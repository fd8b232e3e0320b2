//! Logins, refreshes, logouts and the cut-offs that end them: password
//! changes, deactivations, the throttle and token lifetimes.

use super::*;

tokenmesh_server::on_each_store!(
    login_with_the_right_password_answers_a_bearer_token_pair,
    login_with_a_wrong_password_or_an_unknown_user_is_unauthenticated,
    a_refresh_rotates_the_token_and_a_replay_revokes_the_family,
    concurrent_refreshes_committed_together_each_rotate_once_and_a_replay_among_them_revokes_its_login,
    a_spend_run_again_after_its_commit_is_its_rotation_not_a_reuse,
    logout_is_idempotent_and_ends_the_refresh_token,
    a_deactivated_user_can_neither_log_in_nor_refresh,
    a_password_change_revokes_tokens_minted_before_it,
    failures_beyond_the_free_ones_are_throttled,
    an_access_token_expires_when_the_clock_passes_its_lifetime_and_the_leeway,
);

async fn login_with_the_right_password_answers_a_bearer_token_pair(url: &str) {
    // A still clock: on the system clock a second can tick between the login
    // reading it and the token being minted, and `expires_in` says 299.
    let config = AuthConfig::new(ISSUER).with_clock(Arc::new(ManualClock::new()));
    let fixture = Fixture::with_config(url, config).await;
    let tokens = fixture.alice().await;
    assert_eq!(tokens.token_type, BEARER);
    assert_eq!(tokens.expires_in, 300);
    assert!(!tokens.refresh_token.is_empty());
    let claims = fixture
        .verify(&tokens.access_token)
        .await
        .expect("Auth accepts its token");
    assert_eq!(claims.subject(), "alice");
    assert_eq!(claims.0.aud, audience::USER_TOKEN);
}

async fn login_with_a_wrong_password_or_an_unknown_user_is_unauthenticated(url: &str) {
    let fixture = Fixture::start(url).await;
    for (username, password) in [("alice", "wrong-password"), ("mallory", "alice-password")] {
        assert_status(
            fixture.login(username, password).await,
            Code::Unauthenticated,
            "invalid username or password",
        );
    }
    assert_status(
        fixture.login("alice", "").await,
        Code::InvalidArgument,
        "password: required",
    );
}

async fn a_refresh_rotates_the_token_and_a_replay_revokes_the_family(url: &str) {
    let fixture = Fixture::start(url).await;
    let first = fixture.alice().await;
    let second = fixture
        .refresh(&first.refresh_token)
        .await
        .expect("rotated");
    assert_ne!(second.refresh_token, first.refresh_token);
    fixture
        .verify(&second.access_token)
        .await
        .expect("the new access token works");
    assert_status(
        fixture.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_status(
        fixture.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_status(
        fixture.refresh("never-issued").await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
}

async fn concurrent_refreshes_committed_together_each_rotate_once_and_a_replay_among_them_revokes_its_login(
    url: &str,
) {
    let fixture = Fixture::start(url).await;
    let mut logins = Vec::new();
    for _ in 0..8 {
        logins.push(fixture.alice().await.refresh_token);
    }
    // Queued together, so that one group commits them; the first login's
    // token is presented twice in it.
    let presented: Vec<&str> = logins
        .iter()
        .map(String::as_str)
        .chain([logins[0].as_str()])
        .collect();
    let answers =
        futures::future::join_all(presented.iter().map(|token| fixture.refresh(token))).await;
    for answer in &answers[1..8] {
        let rotated = answer.as_ref().expect("each other login rotates");
        fixture
            .refresh(&rotated.refresh_token)
            .await
            .expect("its successor is live");
    }
    let (won, lost): (Vec<_>, Vec<_>) = [&answers[0], &answers[8]]
        .into_iter()
        .partition(|answer| answer.is_ok());
    assert_eq!(
        (won.len(), lost.len()),
        (1, 1),
        "one of the two spends of one token wins"
    );
    let winner = won[0].as_ref().expect("won");
    assert_eq!(
        lost[0].as_ref().map_err(|s| (s.code(), s.message())).err(),
        Some((Code::Unauthenticated, "invalid refresh token"))
    );
    // The replay ended the login: the winner's successor and access token too.
    assert_status(
        fixture.refresh(&winner.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_eq!(
        fixture.verify(&winner.access_token).await.map(|_| ()),
        Err(AuthError::Revoked)
    );
}

async fn a_spend_run_again_after_its_commit_is_its_rotation_not_a_reuse(url: &str) {
    use crate::store::{NewRefreshToken, SessionRules, Spend};
    let fixture = Fixture::start(url).await;
    let presented = crate::tokens::hex_sha256(&fixture.alice().await.refresh_token);
    let now = tokenmesh_server::now_unix();
    let successor = |token: &str| NewRefreshToken {
        token_hash: crate::tokens::hex_sha256(token),
        issued_at: now,
        expires_at: now + 3600,
    };
    let rules = SessionRules {
        max_lifetime: 86_400,
        revocation_lifetime: 600,
    };
    let store = &fixture.store;
    let first = store
        .spend_refresh_token(&presented, &successor("next"), rules)
        .await
        .expect("spent");
    let Spend::Rotated { family_id, .. } = &first else {
        panic!("a live token rotates: {first:?}");
    };
    // The same spend again (its group's commit reported a failure that did
    // take place): its own successor is stored, so it is the same rotation.
    assert_eq!(
        store
            .spend_refresh_token(&presented, &successor("next"), rules)
            .await
            .expect("spent"),
        first
    );
    assert!(
        store
            .revocations_since(0, now, 100)
            .await
            .expect("feed")
            .iter()
            .all(|revocation| revocation.session_id != *family_id),
        "no revocation for a spend run twice"
    );
    // Another spend of the same token is a reuse: the login ends, on the feed.
    assert_eq!(
        store
            .spend_refresh_token(&presented, &successor("other"), rules)
            .await
            .expect("spent"),
        Spend::Reused {
            family_id: family_id.clone(),
            forget_after: now + 600,
        }
    );
    let sessions: Vec<String> = store
        .revocations_since(0, now, 100)
        .await
        .expect("feed")
        .into_iter()
        .map(|revocation| revocation.session_id)
        .filter(|session| !session.is_empty())
        .collect();
    assert_eq!(sessions, std::slice::from_ref(family_id));
}

async fn logout_is_idempotent_and_ends_the_refresh_token(url: &str) {
    let fixture = Fixture::start(url).await;
    let tokens = fixture.alice().await;
    for presented in [
        tokens.refresh_token.as_str(),
        &tokens.refresh_token,
        "unknown",
    ] {
        let request = LogoutRequest {
            refresh_token: presented.into(),
        };
        fixture
            .auth
            .logout(Request::new(request))
            .await
            .expect("logout answers OK");
    }
    assert_status(
        fixture.refresh(&tokens.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
}

async fn a_deactivated_user_can_neither_log_in_nor_refresh(url: &str) {
    let fixture = Fixture::start(url).await;
    let tokens = fixture.alice().await;
    let request = DeactivateUserRequest {
        username: "alice".into(),
    };
    let user = fixture
        .auth
        .deactivate_user(Request::new(request))
        .await
        .expect("deactivated")
        .into_inner();
    assert!(!user.active);
    assert_status(
        fixture.login("alice", "alice-password").await,
        Code::Unauthenticated,
        "invalid username or password",
    );
    assert_status(
        fixture.refresh(&tokens.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_eq!(
        fixture.verify(&tokens.access_token).await.map(|_| ()),
        Err(AuthError::Revoked)
    );
}

async fn a_password_change_revokes_tokens_minted_before_it(url: &str) {
    let fixture = Fixture::start(url).await;
    let before = fixture.alice().await;
    let change = ChangePasswordRequest {
        current_password: "alice-password".into(),
        new_password: "alice-new-password".into(),
    };
    let request = fixture
        .sent_by_holder_of(&before.access_token, change)
        .await;
    fixture
        .auth
        .change_password(request)
        .await
        .expect("password changed");
    assert_eq!(
        fixture.verify(&before.access_token).await.map(|_| ()),
        Err(AuthError::Revoked),
        "Auth's own verifier refuses the old token"
    );
    assert_status(
        fixture.refresh(&before.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_status(
        fixture.login("alice", "alice-password").await,
        Code::Unauthenticated,
        "invalid username or password",
    );
    let after = fixture
        .login("alice", "alice-new-password")
        .await
        .expect("the next login works");
    fixture
        .verify(&after.access_token)
        .await
        .expect("and its token is not caught by the revocation");
}

async fn failures_beyond_the_free_ones_are_throttled(url: &str) {
    let mut config = AuthConfig::new(ISSUER);
    config.throttle.free_failures = 2;
    config.throttle.base_delay = Duration::from_secs(30);
    let fixture = Fixture::with_config(url, config).await;
    // The failure that uses up the free ones starts the first delay.
    for _ in 0..2 {
        assert_status(
            fixture.login("alice", "wrong-password").await,
            Code::Unauthenticated,
            "invalid username or password",
        );
    }
    let status = fixture
        .login("alice", "alice-password")
        .await
        .expect_err("throttled, even with the right password");
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    // The message says how long to wait, rounded up to whole seconds.
    let seconds = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::ResourceExhausted,
            format!("too many failed logins; retry in {seconds} s").as_str()
        )
    );
    assert!(
        retry > Duration::from_secs(20) && retry <= Duration::from_secs(30),
        "{retry:?}"
    );
}

async fn an_access_token_expires_when_the_clock_passes_its_lifetime_and_the_leeway(url: &str) {
    let clock = ManualClock::new();
    let config = AuthConfig::new(ISSUER).with_clock(Arc::new(clock.clone()));
    let ttl = config.access_token_ttl;
    let fixture = Fixture::with_config(url, config).await;
    let tokens = fixture.alice().await;
    fixture
        .verify(&tokens.access_token)
        .await
        .expect("valid at first");
    // Auth's verifier allows the default 30 s of leeway on `exp`.
    clock.advance(ttl + Duration::from_secs(30));
    fixture
        .verify(&tokens.access_token)
        .await
        .expect("still within the leeway");
    clock.advance(Duration::from_secs(1));
    let refused = fixture
        .verify(&tokens.access_token)
        .await
        .expect_err("expired");
    assert_eq!(refused.reason(), "TOKEN_EXPIRED");
}
