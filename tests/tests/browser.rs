//! The web console in a real browser, as a newcomer meets it: a fresh
//! `tokenmesh up --demo` (the built binary; 3-second access tokens, so that
//! the page's refresh is seen), its printed console URL opened in Debian's
//! chromium, driven by playwright-core (`web/test/console.test.mjs`): sign in,
//! see the decoded grant, order, an admin revokes, the next order is refused;
//! no token ever stored. It takes two screenshots, `console-grant.png` and
//! `console-refused.png`: into `$TOKENMESH_SCREENSHOTS_DIR` when set (`docs`
//! to renew the README's), else into a temp dir, so a test run leaves the
//! tree clean.

use std::{path::Path, process::Stdio, time::Duration};

use tokenmesh_tests::{
    eventually_or, output_within_deadline, replica_process::tokenmesh_binary, tool_on_path,
};

/// How long `up` may take to print the console's URL: only a hang trips it.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_newcomer_signs_in_orders_and_sees_an_order_refused_after_a_revocation() {
    let (Some(chromium), Some(node)) = (
        tool_on_path("chromium", "apt-get install chromium"),
        tool_on_path("node", "apt-get install nodejs npm"),
    ) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let web = root.join("web");
    if !web.join("node_modules/playwright-core").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "web/node_modules is required in CI (.ci/run runs npm ci)"
        );
        eprintln!("SKIPPED: no web/node_modules; run `npm ci` in web/");
        return;
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("up.out"), dir.path().join("up.err"));
    let file = |path: &Path| std::fs::File::create(path).expect("log file");
    let mut up = tokio::process::Command::new(tokenmesh_binary());
    up.args(["up", "--demo", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--auth-addr",
            "127.0.0.1:0",
            "--products-addr",
            "127.0.0.1:0",
        ])
        .args(["--orders-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        // Short-lived access tokens: the page must refresh them while the test
        // watches (the feeds stay trusted as long as by default).
        .args(["--access-token-ttl", "3s", "--max-feed-silence", "5m"])
        .stdin(Stdio::null())
        .stdout(file(&out))
        .stderr(file(&err))
        .kill_on_drop(true);
    let mut up = up.spawn().expect("tokenmesh up starts");
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let (url, _) = eventually_or(
        STARTUP_DEADLINE,
        || format!(": no console URL printed\n{}\n{}", read(&out), read(&err)),
        || {
            let exited = up.try_wait().expect("polls the child");
            let printed = read(&out);
            async move {
                assert_eq!(exited, None, "tokenmesh up exited: {printed}");
                printed
                    .lines()
                    .find_map(|line| line.strip_prefix("Web console: "))
                    .map(str::to_owned)
            }
        },
    )
    .await;
    // The demo mesh lets its own console call it: the URL stands alone.
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );

    let mut browser = tokio::process::Command::new(node);
    browser
        .arg("test/console.test.mjs")
        .arg(&url)
        .arg(
            std::env::var_os("TOKENMESH_SCREENSHOTS_DIR")
                .map_or_else(|| dir.path().to_owned(), |shots| root.join(shots)),
        )
        .current_dir(&web)
        .env("CHROMIUM", chromium);
    let ran = output_within_deadline("the browser test", browser)
        .await
        .expect("node runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        ran.status.success(),
        "browser test failed:\n{said}\ntokenmesh up:\n{}",
        read(&err)
    );
    eprintln!("{said}");
    assert!(said.contains("console test passed"), "{said}");
}
