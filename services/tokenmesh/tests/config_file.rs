//! `--config tokenmesh.toml`: the file fills in what neither flags nor the
//! environment set (flags > env > file > defaults), unknown keys are refused
//! naming the key, `config print` shows the result with secrets redacted, and a
//! client secret out of bounds is refused from whichever layer gave it.

use std::{os::unix::fs::PermissionsExt, path::Path};

use tokio::process::Command;

// The test crate's child-process helper, shared by path (see bench.rs).
#[path = "../../../tests/src/child.rs"]
mod child;

/// Runs `tokenmesh args…` with `env` and no inherited TOKENMESH_ setting.
async fn tokenmesh(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenmesh"));
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0");
    for (variable, _) in std::env::vars() {
        if variable.starts_with("TOKENMESH_") {
            command.env_remove(variable);
        }
    }
    command.envs(env.iter().copied());
    let output = child::output_within_deadline("tokenmesh", command)
        .await
        .expect("tokenmesh runs");
    child::code_and_text(output)
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `keys rotate --offline` creates Auth's database in its data dir: which data
/// dir it used shows which layer won.
#[tokio::test]
async fn a_setting_comes_from_the_flag_else_the_environment_else_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [from_file, from_env, from_flag] =
        ["file", "env", "flag"].map(|name| dir.path().join(name));
    let config = dir.path().join("tokenmesh.toml");
    std::fs::write(
        &config,
        format!("data-dir = {:?}\noffline = true\n", path(&from_file)),
    )
    .expect("write");
    let rotate = ["--config", path(&config), "keys", "rotate"];

    let (code, stdout, stderr) = tokenmesh(&rotate, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("signing with "), "{stdout}");
    assert!(from_file.join("auth.db").exists(), "the file's data dir");

    let env = [("TOKENMESH_DATA_DIR", path(&from_env))];
    let (code, _, stderr) = tokenmesh(&rotate, &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(from_env.join("auth.db").exists(), "the environment's");

    let mut with_flag = rotate.to_vec();
    with_flag.extend(["--data-dir", path(&from_flag)]);
    let (code, _, stderr) = tokenmesh(&with_flag, &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(from_flag.join("auth.db").exists(), "the flag's");
}

#[tokio::test]
async fn config_print_shows_each_source_and_redacts_every_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tokenmesh.toml");
    std::fs::write(
        &config,
        r#"
demo = true
data-dir = "/srv/from-file"
database-url = "postgres://tokenmesh:hunter2@db:5432/mesh"
products-client-secret = "-products-secret-value"
request-timeout = "10s"
max-concurrent-requests = 64
entitlement-sources = ["replica", "rpc"]
"#,
    )
    .expect("write");
    let env = [
        ("TOKENMESH_REQUEST_TIMEOUT", "20s"),
        ("TOKENMESH_ORDERS_CLIENT_SECRET", "orders-secret-value"),
        (
            "TOKENMESH_KEY_ENCRYPTION_KEY",
            "a2V5LWVuY3J5cHRpb24ta2V5LXZhbHVl",
        ),
    ];
    let (code, printed, stderr) = tokenmesh(
        &[
            "--config",
            path(&config),
            "config",
            "print",
            "up",
            "--max-concurrent-requests",
            "8",
        ],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "# tokenmesh up: effective configuration",
        "demo = true  # file",
        r#"data-dir = "/srv/from-file"  # file"#,
        r#"database-url = "postgres://tokenmesh:<redacted>@db:5432/mesh"  # file"#,
        r#"products-client-secret = "<redacted>"  # file"#,
        r#"orders-client-secret = "<redacted>"  # environment"#,
        r#"key-encryption-key-base64 = "<redacted>"  # environment"#,
        r#"request-timeout = "20s"  # environment"#,
        r#"max-concurrent-requests = "8"  # flag"#,
        r#"entitlement-sources = "replica,rpc"  # file"#,
        r#"auth-addr = "127.0.0.1:50051"  # default"#,
        "# auth-database-url is not set",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line}\n{printed}");
    }
    for secret in [
        "hunter2",
        "products-secret-value",
        "orders-secret-value",
        "a2V5",
    ] {
        assert!(!printed.contains(secret), "{secret} shown:\n{printed}");
    }
}

#[tokio::test]
async fn an_unknown_key_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tokenmesh.toml");
    // `listen` is `serve`'s, not `up`'s.
    std::fs::write(&config, "demo = true\nlisten = \"127.0.0.1:1\"\n").expect("write");
    let (code, stdout, stderr) = tokenmesh(&["--config", path(&config), "up"], &[]).await;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (
            2,
            "",
            format!(
                "tokenmesh: the config file {} has an unknown key `listen`: `tokenmesh up` has no --listen option\n",
                config.display()
            )
            .as_str()
        )
    );
    std::fs::write(&config, "demo = \n").expect("write");
    let (code, _, stderr) = tokenmesh(&["--config", path(&config), "up"], &[]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(&format!(
            "tokenmesh: the config file {} is not valid TOML: ",
            config.display()
        )),
        "{stderr}"
    );
}

/// A service client's secret an operator sets is refused at start when it is
/// shorter than 32 bytes (guessable at IssueServiceToken's budget) or longer
/// than Auth receives, whichever layer gave it — flag, environment, file or the
/// data dir's secret file — naming the client and the length, never the value.
#[tokio::test]
async fn a_client_secret_out_of_bounds_is_refused_at_start_from_any_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let short = "s3cr3t-0123456789abcdef-0123456"; // 31 bytes
    let shortest = format!("{short}7"); // 32 bytes: accepted
    let too_long = "x".repeat(1025);
    let config = dir.path().join("tokenmesh.toml");
    std::fs::write(&config, format!("orders-client-secret = \"{too_long}\"\n")).expect("write");
    let serve = |service: &'static str| {
        vec![
            "serve",
            service,
            "--data-dir",
            path(&data_dir),
            "--listen",
            "127.0.0.1:0",
        ]
    };
    let refused = |client: &str, len: usize| {
        format!(
            "tokenmesh: the {client} client's secret is {len} bytes; it must be 32 to 1024 \
             (make one with `openssl rand -base64 32`)"
        )
    };

    let flag = format!("--products-client-secret={short}");
    let (code, _, stderr) = tokenmesh(&[serve("auth"), vec![flag.as_str()]].concat(), &[]).await;
    assert_eq!((code, stderr.trim()), (1, refused("products", 31).as_str()));

    let environment = [("TOKENMESH_ORDERS_CLIENT_SECRET", short)];
    let (code, _, stderr) = tokenmesh(&serve("orders"), &environment).await;
    assert_eq!((code, stderr.trim()), (1, refused("orders", 31).as_str()));

    // Auth reads Products' 32 bytes first and accepts them; Orders' comes from the file.
    let flag = format!("--products-client-secret={shortest}");
    let (code, _, stderr) = tokenmesh(
        &[
            vec!["--config", path(&config)],
            serve("auth"),
            vec![flag.as_str()],
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!((code, stderr.trim()), (1, refused("orders", 1025).as_str()));

    std::fs::create_dir_all(&data_dir).expect("data dir");
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let secret_file = data_dir.join("products-client-secret");
    std::fs::write(&secret_file, "short\n").expect("write");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, _, stderr) = tokenmesh(&serve("products"), &[]).await;
    assert_eq!((code, stderr.trim()), (1, refused("products", 5).as_str()));
    assert!(!stderr.contains(short), "{stderr}");
}
