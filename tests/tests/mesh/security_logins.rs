//! Issue 10, items 2, 3 and 9, attacked through real sockets: logins racing a
//! password change or a deactivation, a burst of guesses against the login
//! throttle, and what refused or replayed refresh tokens may learn and keep.

use std::time::Duration;

use tokenmesh_proto::auth::v1::{
    ChangePasswordRequest, CreateUserRequest, DeactivateUserRequest, IssueServiceTokenRequest,
    LogoutRequest, TokenResponse, auth_service_client::AuthServiceClient,
};
use tokenmesh_tests::calls::{assert_status, assert_throttled, login, refresh, with_bearer};
use tokenmesh_tests::{ManualClock, Mesh, MeshBuilder, eventually, on_sqlite_and_postgres};
use tonic::{Code, Status, transport::Channel};

/// Logins started at most.
const MAX_RACING_LOGINS: usize = 200;

/// A bound for an effect that never comes (a revocation that does not reach
/// Products), not a speed goal.
const DEADLINE: Duration = Duration::from_secs(60);

on_sqlite_and_postgres!(
    logins_racing_a_password_change_leave_no_survivor,
    logins_racing_a_deactivation_leave_no_survivor,
    refreshes_racing_a_password_change_leave_no_survivor,
    a_burst_of_guesses_is_evaluated_only_up_to_the_failure_budget,
    refused_refresh_tokens_all_get_one_message,
    a_login_ends_at_its_absolute_cap_however_often_it_refreshes,
    reuse_of_a_refresh_token_revokes_the_access_tokens_of_its_login,
    service_names_cannot_be_taken_as_usernames,
    refresh_logout_and_service_tokens_are_rate_limited,
);

/// The one answer to every refused refresh token.
const INVALID_REFRESH: &str = "invalid refresh token";

/// Failures allowed before the throttle locks, in the throttle tests.
const FAILURE_BUDGET: u32 = 3;
/// Concurrent wrong guesses in a burst.
const BURST: usize = 20;

/// Creates `username` (password `<username>-password`) as the demo admin.
async fn create_user(mesh: &Mesh, username: &str) -> Result<(), Status> {
    let admin = mesh.login("admin").await;
    mesh.auth()
        .await
        .create_user(with_bearer(
            CreateUserRequest {
                username: username.into(),
                password: format!("{username}-password"),
                scopes: String::new(),
            },
            &admin,
        ))
        .await
        .map(|_| ())
}

/// Logins of `username` with its password, each on its own connection, racing
/// `cut_off`: `first_wave` are in flight when it starts (and one has answered),
/// and new ones keep starting until it has answered (at most `MAX_RACING_LOGINS`), so that some
/// read the user before the cut-off commits and check the password after it.
/// Returns every login that succeeded, and how many were started.
async fn race_logins<F>(
    mesh: &Mesh,
    username: &str,
    first_wave: usize,
    cut_off: F,
) -> (Vec<TokenResponse>, usize)
where
    F: Future<Output = ()>,
{
    let (answered, mut first_answer) = tokio::sync::mpsc::channel::<()>(MAX_RACING_LOGINS);
    let mut logins = tokio::task::JoinSet::new();
    let spawn = async |logins: &mut tokio::task::JoinSet<_>| {
        let mut auth = mesh.auth().await;
        let (username, answered) = (username.to_owned(), answered.clone());
        logins.spawn(async move {
            let result = login(&mut auth, &username, &format!("{username}-password")).await;
            let _ = answered.send(()).await;
            result
        });
    };
    for _ in 0..first_wave {
        spawn(&mut logins).await;
    }
    if first_wave > 0 {
        first_answer.recv().await.expect("a login answers");
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let keep_starting = async {
        while !done.load(std::sync::atomic::Ordering::SeqCst) && logins.len() < MAX_RACING_LOGINS {
            spawn(&mut logins).await;
        }
    };
    let cut = async {
        cut_off.await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    tokio::join!(cut, keep_starting);
    let started = logins.len();
    let mut succeeded = Vec::new();
    while let Some(result) = logins.join_next().await {
        match result.expect("login task") {
            Ok(tokens) => succeeded.push(tokens),
            Err(status) => assert_eq!(
                (status.code(), status.message()),
                (Code::Unauthenticated, "invalid username or password")
            ),
        }
    }
    (succeeded, started)
}

/// Every token pair in `logins` is dead: Refresh refuses the refresh token, and
/// Products (once the revocation has reached it) refuses the access token.
async fn assert_no_survivor(
    mesh: &Mesh,
    (logins, started): (Vec<TokenResponse>, usize),
    what: &str,
) {
    let mut auth = mesh.auth().await;
    let mut refreshed = 0;
    for tokens in &logins {
        if let Ok(next) = refresh(&mut auth, &tokens.refresh_token).await {
            refreshed += 1;
            eprintln!(
                "survivor: a refresh after the {what} answered {:?}",
                next.expires_in
            );
        }
    }
    eprintln!(
        "MEASURED: {} of {started} logins racing the {what} succeeded; {refreshed} kept a working refresh token",
        logins.len()
    );
    assert_eq!(refreshed, 0, "refresh tokens surviving the {what}");
    for tokens in &logins {
        eventually(DEADLINE, || async {
            mesh.accepted_by(&tokens.access_token)
                .await
                .0
                .is_err()
                .then_some(())
        })
        .await;
        let (products, _) = mesh.accepted_by(&tokens.access_token).await;
        let status = products.expect_err("Products refuses the access token");
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unauthenticated, "token revoked")
        );
    }
}

async fn logins_racing_a_password_change_leave_no_survivor(builder: MeshBuilder) {
    let mesh = builder
        .clock(ManualClock::new())
        .login_throttle(1000, Duration::from_secs(1))
        .start()
        .await;
    create_user(&mesh, "carol").await.expect("carol created");
    let mut auth = mesh.auth().await;
    let carol = login(&mut auth, "carol", "carol-password")
        .await
        .expect("carol logs in");
    let logins = race_logins(&mesh, "carol", 0, async {
        auth.change_password(with_bearer(
            ChangePasswordRequest {
                current_password: "carol-password".into(),
                new_password: "carol-new-password".into(),
            },
            &carol.access_token,
        ))
        .await
        .expect("password changed");
    })
    .await;
    assert_no_survivor(&mesh, logins, "password change").await;
    login(&mut auth, "carol", "carol-new-password")
        .await
        .expect("the new password logs in");
    mesh.shutdown().await;
}

async fn logins_racing_a_deactivation_leave_no_survivor(builder: MeshBuilder) {
    let mesh = builder
        .clock(ManualClock::new())
        .login_throttle(1000, Duration::from_secs(1))
        .start()
        .await;
    create_user(&mesh, "dave").await.expect("dave created");
    let admin = mesh.login("admin").await;
    let mut auth = mesh.auth().await;
    let logins = race_logins(&mesh, "dave", 8, async {
        auth.deactivate_user(with_bearer(
            DeactivateUserRequest {
                username: "dave".into(),
            },
            &admin,
        ))
        .await
        .expect("dave deactivated");
    })
    .await;
    assert_no_survivor(&mesh, logins, "deactivation").await;
    mesh.shutdown().await;
}

/// Several logins of one user, each refreshing again and again, racing a
/// password change: Auth commits concurrent refreshes together, so one group
/// may hold several of the user's logins while the change revokes them all.
/// The change must go through (no lock cycle between the two) and leave no
/// login alive.
async fn refreshes_racing_a_password_change_leave_no_survivor(builder: MeshBuilder) {
    /// Logins refreshing at once.
    const CHAINS: usize = 8;
    /// Refreshes per login at most: a bound for a survivor, which then fails below.
    const MAX_REFRESHES: usize = 10_000;
    let mesh = builder
        .clock(ManualClock::new())
        .login_throttle(1000, Duration::from_secs(1))
        .refresh_rate_limit(0)
        .start()
        .await;
    create_user(&mesh, "erin").await.expect("erin created");
    let mut auth = mesh.auth().await;
    let (refreshed, mut first_refreshes) = tokio::sync::mpsc::channel::<()>(CHAINS);
    let mut chains = tokio::task::JoinSet::new();
    let mut bearer = None;
    for _ in 0..CHAINS {
        let mut last = login(&mut auth, "erin", "erin-password")
            .await
            .expect("erin logs in");
        bearer.get_or_insert_with(|| last.access_token.clone());
        let (mut auth, refreshed) = (mesh.auth().await, refreshed.clone());
        chains.spawn(async move {
            for n in 0..MAX_REFRESHES {
                match refresh(&mut auth, &last.refresh_token).await {
                    Ok(next) => {
                        last = next;
                        if n == 0 {
                            refreshed.send(()).await.expect("the test waits");
                        }
                    }
                    Err(status) => {
                        assert_eq!(
                            (status.code(), status.message()),
                            (Code::Unauthenticated, INVALID_REFRESH)
                        );
                        break;
                    }
                }
            }
            last
        });
    }
    drop(refreshed);
    for _ in 0..CHAINS {
        first_refreshes.recv().await.expect("each login refreshes");
    }
    auth.change_password(with_bearer(
        ChangePasswordRequest {
            current_password: "erin-password".into(),
            new_password: "erin-new-password".into(),
        },
        &bearer.expect("a login"),
    ))
    .await
    .expect("password changed while the logins refresh");
    let mut lasts = Vec::new();
    while let Some(last) = chains.join_next().await {
        lasts.push(last.expect("refresh chain"));
    }
    assert_no_survivor(&mesh, (lasts, CHAINS), "password change").await;
    mesh.shutdown().await;
}

/// How many passwords Auth has verified (argon2id), from the mesh's `/metrics`.
fn password_checks(mesh: &Mesh) -> Option<u64> {
    mesh.metrics().lines().find_map(|line| {
        line.strip_prefix("tokenmesh_auth_password_checks_total ")
            .and_then(|value| value.trim().parse().ok())
    })
}

async fn a_burst_of_guesses_is_evaluated_only_up_to_the_failure_budget(builder: MeshBuilder) {
    let mesh = builder
        .login_throttle(FAILURE_BUDGET, Duration::from_secs(30))
        .start()
        .await;
    create_user(&mesh, "erin").await.expect("erin created");
    let checks_before = password_checks(&mesh);
    let (answered, mut first_answer) = tokio::sync::mpsc::channel::<()>(BURST);
    let mut guesses = tokio::task::JoinSet::new();
    for guess in 0..BURST {
        let mut auth = mesh.auth().await;
        let answered = answered.clone();
        guesses.spawn(async move {
            let result = login(&mut auth, "erin", &format!("wrong-guess-{guess}")).await;
            let _ = answered.send(()).await;
            result
        });
    }
    // The burst has started to be answered: the right password now comes after
    // every wrong guess.
    first_answer.recv().await.expect("a guess answers");
    let right = login(&mut mesh.auth().await, "erin", "erin-password").await;
    assert_throttled(right, "too many failed logins");
    let (mut evaluated, mut throttled) = (0, 0);
    while let Some(result) = guesses.join_next().await {
        let status = result.expect("guess task").expect_err("wrong guess");
        match status.code() {
            Code::Unauthenticated => evaluated += 1,
            Code::ResourceExhausted => throttled += 1,
            other => panic!("unexpected {other:?}: {}", status.message()),
        }
    }
    eprintln!(
        "MEASURED: {BURST} concurrent wrong guesses: {evaluated} evaluated, {throttled} throttled"
    );
    assert_eq!(
        (evaluated, throttled),
        (FAILURE_BUDGET as usize, BURST - FAILURE_BUDGET as usize)
    );
    let checks_before = checks_before.expect("password checks exported on /metrics");
    assert_eq!(
        password_checks(&mesh),
        Some(checks_before + u64::from(FAILURE_BUDGET)),
        "argon2 verifications: the budget, no more"
    );
    mesh.shutdown().await;
}

async fn logout(auth: &mut AuthServiceClient<Channel>, token: &str) -> Result<(), Status> {
    auth.logout(LogoutRequest {
        refresh_token: token.into(),
    })
    .await
    .map(|_| ())
}

async fn refused_refresh_tokens_all_get_one_message(builder: MeshBuilder) {
    let clock = ManualClock::new();
    let mesh = builder.clock(clock.clone()).start().await;
    let mut auth = mesh.auth().await;
    let unknown = refresh(&mut auth, "no-such-refresh-token").await;
    assert_status(unknown, Code::Unauthenticated, INVALID_REFRESH);

    let first = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    refresh(&mut auth, &first.refresh_token)
        .await
        .expect("rotates");
    let reused = refresh(&mut auth, &first.refresh_token).await;
    assert_status(reused, Code::Unauthenticated, INVALID_REFRESH);

    let second = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    logout(&mut auth, &second.refresh_token)
        .await
        .expect("logout");
    let revoked = refresh(&mut auth, &second.refresh_token).await;
    assert_status(revoked, Code::Unauthenticated, INVALID_REFRESH);

    let third = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    clock.advance(Duration::from_secs(31 * 24 * 3600));
    let expired = refresh(&mut auth, &third.refresh_token).await;
    assert_status(expired, Code::Unauthenticated, INVALID_REFRESH);
    mesh.shutdown().await;
}

async fn a_login_ends_at_its_absolute_cap_however_often_it_refreshes(builder: MeshBuilder) {
    let clock = ManualClock::new();
    let mesh = builder
        .clock(clock.clone())
        .session_max_lifetime(Duration::from_secs(3600))
        .start()
        .await;
    let mut auth = mesh.auth().await;
    let mut tokens = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    for _ in 0..3 {
        clock.advance(Duration::from_secs(15 * 60));
        tokens = refresh(&mut auth, &tokens.refresh_token)
            .await
            .expect("within the cap, each refresh slides");
    }
    clock.advance(Duration::from_secs(15 * 60));
    let capped = refresh(&mut auth, &tokens.refresh_token).await;
    assert_status(capped, Code::Unauthenticated, INVALID_REFRESH);
    mesh.shutdown().await;
}

async fn reuse_of_a_refresh_token_revokes_the_access_tokens_of_its_login(builder: MeshBuilder) {
    let mesh = builder.clock(ManualClock::new()).start().await;
    let mut auth = mesh.auth().await;
    let stolen = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    let other_login = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    let rotated = refresh(&mut auth, &stolen.refresh_token)
        .await
        .expect("rotates");
    let (products, _) = mesh.accepted_by(&rotated.access_token).await;
    products.expect("accepted before the reuse");

    let replay = refresh(&mut auth, &stolen.refresh_token).await;
    assert_status(replay, Code::Unauthenticated, INVALID_REFRESH);
    for token in [&stolen.access_token, &rotated.access_token] {
        eventually(DEADLINE, || async {
            mesh.accepted_by(token).await.0.is_err().then_some(())
        })
        .await;
        assert_status(
            mesh.accepted_by(token).await.0,
            Code::Unauthenticated,
            "token revoked",
        );
        // Auth's own verifier refuses it too (before looking at the request).
        let change = auth
            .change_password(with_bearer(ChangePasswordRequest::default(), token))
            .await;
        assert_status(change, Code::Unauthenticated, "token revoked");
    }
    let (products, _) = mesh.accepted_by(&other_login.access_token).await;
    products.expect("another login of the same user lives on");
    mesh.shutdown().await;
}

async fn service_names_cannot_be_taken_as_usernames(builder: MeshBuilder) {
    let mesh = builder.start().await;
    for name in ["auth", "products", "orders", "Orders"] {
        assert_status(
            create_user(&mesh, name).await,
            Code::InvalidArgument,
            "username: reserved for a service",
        );
    }
    create_user(&mesh, "ordersman")
        .await
        .expect("not a service name");
    mesh.shutdown().await;
}

async fn refresh_logout_and_service_tokens_are_rate_limited(builder: MeshBuilder) {
    let mesh = builder
        .refresh_rate_limit(4)
        .service_token_rate_limit(3)
        .start()
        .await;
    let mut auth = mesh.auth().await;
    for _ in 0..3 {
        let unknown = refresh(&mut auth, "no-such-refresh-token").await;
        assert_status(unknown, Code::Unauthenticated, INVALID_REFRESH);
    }
    logout(&mut auth, "no-such-refresh-token")
        .await
        .expect("logout of nothing");
    let limited = "too many requests";
    let refreshed = refresh(&mut auth, "no-such-refresh-token").await;
    assert_throttled(refreshed, limited);
    let logged_out = logout(&mut auth, "no-such-refresh-token").await;
    assert_throttled(logged_out, limited);

    let service_token = |client_id: &str| IssueServiceTokenRequest {
        client_id: client_id.into(),
        client_secret: "wrong-secret".into(),
        audience: "products".into(),
    };
    for _ in 0..3 {
        let wrong = auth.issue_service_token(service_token("nosuch")).await;
        assert_status(wrong, Code::Unauthenticated, "invalid client credentials");
    }
    let limited_client = auth.issue_service_token(service_token("nosuch")).await;
    assert_throttled(limited_client, limited);
    let other_client = auth.issue_service_token(service_token("other")).await;
    assert_status(
        other_client,
        Code::Unauthenticated,
        "invalid client credentials",
    );
    mesh.shutdown().await;
}
