//! The web console in a real browser, as a newcomer meets it: a fresh
//! `tokenmesh up --demo` (the built binary; 3-second access tokens, so that
//! the page's refresh is seen), its printed console URL opened in Debian's
//! chromium, driven by playwright-core (`web/test/console.test.mjs`): sign in,
//! see the decoded grant, order, an admin revokes, the next order is refused;
//! no token ever stored. It takes two screenshots, `console-grant.png` and
//! `console-refused.png`: into `$TOKENMESH_SCREENSHOTS_DIR` when set (`docs`
//! to renew the README's), else into a temp dir, so a test run leaves the
//! tree clean.

use std::path::Path;

use tokenmesh_tests::{output_within_deadline, tool_on_path, up_process::UpProcess};

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

    // Short-lived access tokens: the page must refresh them while the test
    // watches (the feeds stay trusted as long as by default).
    let up = UpProcess::start(
        &["--access-token-ttl", "3s", "--max-feed-silence", "5m"],
        &[],
    )
    .await;
    let url = up.printed("Web console: ").await;
    // The demo mesh lets its own console call it: the URL stands alone.
    assert_eq!(url, format!("http://{}/", up.http));

    let mut browser = tokio::process::Command::new(node);
    browser
        .arg("test/console.test.mjs")
        .arg(&url)
        .arg(
            std::env::var_os("TOKENMESH_SCREENSHOTS_DIR")
                .map_or_else(|| up.dir().to_owned(), |shots| root.join(shots)),
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
        up.log()
    );
    eprintln!("{said}");
    assert!(said.contains("console test passed"), "{said}");
}
