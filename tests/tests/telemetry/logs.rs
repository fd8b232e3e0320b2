//! `--log-format json`: every line one JSON object a pipeline can parse, with
//! per-request events at DEBUG and no credential in any line, even at DEBUG.

use tokenmesh_proto::auth::v1::auth_service_client::AuthServiceClient;
use tokenmesh_tests::{
    Mesh,
    calls::{login, refresh},
    up_process::UpProcess,
};
use tonic::Code;

#[tokio::test]
async fn a_json_log_is_one_object_per_line_and_shows_no_password_or_token() {
    // DEBUG everywhere, libraries included: nothing may leak at any level a
    // pipeline might be given.
    let mut up = UpProcess::start(&[], &[("RUST_LOG", "debug")]).await;
    let mut auth = AuthServiceClient::new(Mesh::channel(up.auth).await);
    let wrong_password = "not-alices-password-7f3a";
    let refused = login(&mut auth, "alice", wrong_password).await;
    assert_eq!(
        refused.expect_err("wrong password").code(),
        Code::Unauthenticated
    );
    let first = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    let second = refresh(&mut auth, &first.refresh_token)
        .await
        .expect("refresh");
    assert!(up.terminate().await.success(), "{}", up.log());

    let lines = up.log_lines();
    for line in &lines {
        assert!(line["timestamp"].is_string(), "no timestamp: {line}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG"].contains(&line["level"].as_str().unwrap_or("")),
            "no level: {line}"
        );
        assert!(line["target"].is_string(), "no target: {line}");
        assert!(line["fields"].is_object(), "no fields: {line}");
    }
    let with_message = |message: &str| {
        lines
            .iter()
            .filter(|line| line["fields"]["message"] == message)
            .collect::<Vec<_>>()
    };
    let up_line = with_message("mesh up");
    assert_eq!(up_line.len(), 1, "one `mesh up` line");
    assert_eq!(
        (&up_line[0]["level"], &up_line[0]["target"]),
        (&"INFO".into(), &"tokenmesh".into())
    );
    // Per request: DEBUG, never INFO (a flood of logins is no flood of lines).
    for message in ["login", "login refused"] {
        let events = with_message(message);
        assert_eq!(events.len(), 1, "one `{message}` event");
        assert_eq!(events[0]["level"], "DEBUG", "{}", events[0]);
    }

    let log = up.log();
    assert!(!log.contains('\u{1b}'), "colour codes in a JSON log");
    let signature = |jwt: &str| jwt.rsplit('.').next().unwrap_or_default().to_owned();
    for (what, secret) in [
        ("the password", "alice-demo".to_owned()),
        ("the wrong password", wrong_password.to_owned()),
        (
            "an access token's signature",
            signature(&first.access_token),
        ),
        (
            "a refreshed access token's signature",
            signature(&second.access_token),
        ),
        ("a refresh token", first.refresh_token.clone()),
        ("a refreshed refresh token", second.refresh_token.clone()),
    ] {
        assert!(!secret.is_empty());
        assert!(!log.contains(&secret), "{what} is in the log");
    }
}
