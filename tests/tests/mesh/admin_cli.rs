//! The admin CLI — the real `tokenmesh` binary against a live mesh: what it
//! prints, its sentences for refusals, and its exit codes (0 done, 1 refused,
//! 2 usage, 3 cannot connect).

use std::time::{Duration, UNIX_EPOCH};

use tokenmesh_tests::{
    Mesh, calls::login, claims_of, code_and_text, output_within_deadline,
    replica_process::tokenmesh_binary,
};
use tokio::process::Command;

/// Runs `tokenmesh args…` against `mesh` with `env` (and nothing inherited
/// that would change how it authenticates); its exit code, stdout and stderr.
async fn tokenmesh(mesh: &Mesh, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(tokenmesh_binary());
    command
        .args(args)
        .env("TOKENMESH_AUTH_URL", mesh.auth_addr().to_string())
        .env("TOKENMESH_PRODUCTS_URL", mesh.products_addr().to_string())
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0");
    for variable in [
        "TOKENMESH_TOKEN",
        "TOKENMESH_TOKEN_FILE",
        "TOKENMESH_USERNAME",
        "TOKENMESH_PASSWORD",
        "TOKENMESH_NEW_PASSWORD",
        "TOKENMESH_CONFIG",
    ] {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    let output = output_within_deadline(&format!("tokenmesh {}", args.join(" ")), command)
        .await
        .expect("tokenmesh runs");
    code_and_text(output)
}

/// Unix seconds as the CLI prints them.
fn rfc3339(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

#[tokio::test]
async fn the_admin_cli_manages_users_with_sentences_and_exit_codes() {
    let mesh = Mesh::start().await;
    let admin = [("TOKENMESH_PASSWORD", "admin-demo")];
    let as_admin = |args: &[&'static str]| {
        let mut args = args.to_vec();
        args.extend(["--username", "admin"]);
        args
    };

    let listed = tokenmesh(&mesh, &as_admin(&["users", "list"]), &admin).await;
    assert_eq!(
        listed,
        (
            0,
            "USERNAME  ACTIVE  SCOPES\n\
             admin     yes     admin\n\
             alice     yes     none\n\
             bob       yes     none\n"
                .to_owned(),
            String::new()
        )
    );

    // A token from a file; the new user's password from the environment.
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{}\n", mesh.login("admin").await)).expect("write");
    let token_file = token_file.to_str().expect("utf-8 path");
    let created = tokenmesh(
        &mesh,
        &[
            "users",
            "create",
            "carol",
            "--scopes",
            "admin",
            "--token-file",
            token_file,
        ],
        &[("TOKENMESH_NEW_PASSWORD", "carol-password")],
    )
    .await;
    assert_eq!(
        created,
        (
            0,
            "created user carol (scopes: admin)\n".into(),
            String::new()
        )
    );
    let mut auth = mesh.auth().await;
    login(&mut auth, "carol", "carol-password")
        .await
        .expect("carol logs in with the password she was given");

    // A token from the environment.
    let token = mesh.login("admin").await;
    let by_token = [("TOKENMESH_TOKEN", token.as_str())];
    assert_eq!(
        tokenmesh(&mesh, &["users", "deactivate", "bob"], &by_token).await,
        (
            0,
            "deactivated user bob: their logins ended and every token issued to them is revoked\n"
                .into(),
            String::new()
        )
    );
    assert!(login(&mut auth, "bob", "bob-demo").await.is_err());
    assert_eq!(
        tokenmesh(&mesh, &["users", "reactivate", "bob"], &by_token).await,
        (
            0,
            "reactivated user bob: they can log in again (tokens revoked before stay revoked)\n"
                .into(),
            String::new()
        )
    );
    login(&mut auth, "bob", "bob-demo")
        .await
        .expect("bob logs in again");

    // Refusals: sentences, exit 1.
    assert_eq!(
        tokenmesh(&mesh, &["users", "deactivate", "nobody"], &by_token).await,
        (
            1,
            String::new(),
            "tokenmesh: deactivating user nobody: user nobody not found.\n".into()
        )
    );
    assert_eq!(
        tokenmesh(
            &mesh,
            &["users", "list", "--username", "alice"],
            &[("TOKENMESH_PASSWORD", "alice-demo")]
        )
        .await,
        (
            1,
            String::new(),
            "tokenmesh: listing users: insufficient scope: this method requires `admin`. \
             Log in as a user with scope `admin`.\n"
                .into()
        )
    );
    assert_eq!(
        tokenmesh(
            &mesh,
            &as_admin(&["users", "list"]),
            &[("TOKENMESH_PASSWORD", "wrong-password")]
        )
        .await,
        (
            1,
            String::new(),
            "tokenmesh: logging in as admin: invalid username or password. Check the username \
             and the password (TOKENMESH_PASSWORD, or typed when asked).\n"
                .into()
        )
    );
    assert_eq!(
        tokenmesh(
            &mesh,
            &["users", "list"],
            &[("TOKENMESH_TOKEN", "not-a-token")]
        )
        .await,
        (
            1,
            String::new(),
            "tokenmesh: listing users: malformed token: not a JWS in compact form with a known alg. \
             Log in with --username, or give an \
             admin token in TOKENMESH_TOKEN or --token-file.\n"
                .into()
        )
    );
    // Usage: exit 2.
    assert_eq!(
        tokenmesh(&mesh, &["users", "list"], &[]).await,
        (
            2,
            String::new(),
            "tokenmesh: no credentials: set TOKENMESH_TOKEN, or give --token-file or --username\n"
                .into()
        )
    );
    // No password in the environment and nothing on stdin.
    let (code, _, stderr) = tokenmesh(&mesh, &as_admin(&["users", "list"]), &[]).await;
    assert_eq!(
        (code, stderr.as_str()),
        (
            2,
            "tokenmesh: no password: set TOKENMESH_PASSWORD or type it when asked\n"
        )
    );
    let (code, _, stderr) = tokenmesh(&mesh, &["users", "frobnicate"], &[]).await;
    assert_eq!(code, 2, "{stderr}");
    // Nothing listening: exit 3.
    let (code, stdout, stderr) = tokenmesh(
        &mesh,
        &as_admin(&["users", "list", "--auth-url", "127.0.0.1:1"]),
        &admin,
    )
    .await;
    assert_eq!((code, stdout.as_str()), (3, ""));
    assert!(
        stderr.starts_with("tokenmesh: cannot connect to Auth at 127.0.0.1:1: "),
        "{stderr}"
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn the_admin_cli_manages_entitlements_rotates_keys_and_decodes_tokens() {
    let mesh = Mesh::start().await;
    let token = mesh.login("admin").await;
    let admin = [("TOKENMESH_TOKEN", token.as_str())];

    let (code, granted, stderr) =
        tokenmesh(&mesh, &["entitlements", "grant", "bob", "P-100"], &admin).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        granted.starts_with("granted bob product P-100 (feed cursor "),
        "{granted}"
    );
    assert_eq!(
        tokenmesh(&mesh, &["entitlements", "grant", "bob", "P-100"], &admin).await,
        (
            0,
            "bob already holds product P-100: nothing changed\n".into(),
            String::new()
        )
    );
    let (code, listed, _) =
        tokenmesh(&mesh, &["entitlements", "list", "--subject", "bob"], &admin).await;
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|line| line.split_whitespace().take(4).collect())
        .collect();
    assert_eq!(
        (code, rows),
        (
            0,
            vec![
                vec!["SUBJECT", "PRODUCT", "ACTIONS", "MAX_QUANTITY"],
                vec!["bob", "P-100", "view,order", "no"],
                vec!["bob", "P-101", "view,order", "no"],
            ]
        )
    );
    let (code, revoked, _) =
        tokenmesh(&mesh, &["entitlements", "revoke", "bob", "P-100"], &admin).await;
    assert_eq!(code, 0);
    assert!(
        revoked.starts_with("revoked bob's product P-100 (feed cursor "),
        "{revoked}"
    );
    assert_eq!(
        tokenmesh(&mesh, &["entitlements", "grant", "bob", "P-999"], &admin).await,
        (
            1,
            String::new(),
            "tokenmesh: granting bob product P-999: product P-999 not found.\n".into()
        )
    );

    // Online rotation: Auth publishes the new key at once.
    let old_kid = mesh.jwks().await.keys[0].kid.clone();
    let (code, rotated, stderr) = tokenmesh(&mesh, &["keys", "rotate"], &admin).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = rotated.lines().collect();
    let new_kid = lines[0].strip_prefix("signing with ").expect(&rotated);
    assert!(
        lines[1].starts_with(&format!("retired {old_kid}: published until 20")),
        "{rotated}"
    );
    let published: Vec<String> = mesh.jwks().await.keys.into_iter().map(|k| k.kid).collect();
    assert!(published.iter().any(|kid| kid == new_kid), "{published:?}");

    // Decoding verifies against the JWKS (the new key included) and prints dates.
    let alice = mesh.login("alice").await;
    let claims = claims_of(&alice);
    let (code, decoded, stderr) = tokenmesh(&mesh, &["token", "decode", &alice], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    let exp = claims["exp"].as_u64().expect("exp");
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(decoded.contains("claims version: 1\n"), "{decoded}");
    assert!(
        decoded.contains(&format!("issued at: {}\n", rfc3339(iat))),
        "{decoded}"
    );
    assert!(
        decoded.contains(&format!("expires at: {}\n", rfc3339(exp))),
        "{decoded}"
    );
    assert!(decoded.contains(r#""sub":"alice""#), "{decoded}");
    assert!(
        decoded.contains(&format!(r#""kid":"{new_kid}""#)),
        "{decoded}"
    );
    let forged = format!("{}x", &alice[..alice.len() - 2]);
    let (code, stdout, stderr) = tokenmesh(&mesh, &["token", "decode", &forged], &[]).await;
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(
        stderr.starts_with("tokenmesh: the token does not verify: "),
        "{stderr}"
    );
    mesh.shutdown().await;
}
