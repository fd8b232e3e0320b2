//! `tokenmesh keys rotate-grant-key`: a new grant key in Products' store, the
//! one it replaced retired but still published.

use tokio::process::Command;

// The test crate's child-process helper, shared by path (see bench.rs).
#[path = "../../../tests/src/child.rs"]
mod child;

async fn rotate(data_dir: &std::path::Path) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenmesh"));
    command
        .args(["keys", "rotate-grant-key", "--data-dir"])
        .arg(data_dir);
    let output = child::output_within_deadline("tokenmesh keys rotate-grant-key", command)
        .await
        .expect("tokenmesh runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[tokio::test]
async fn rotating_the_grant_key_signs_with_a_new_one_and_retires_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let first = rotate(&data_dir).await;
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 2, "{first}");
    let generated_then_retired = lines[1]
        .strip_prefix("retired ")
        .and_then(|rest| rest.split(':').next())
        .expect("the first key, generated on opening, is retired");
    let kid = lines[0]
        .strip_prefix("signing grants with ")
        .expect("the new key")
        .to_owned();
    assert_ne!(kid, generated_then_retired);

    let second = rotate(&data_dir).await;
    let retired = second.lines().nth(1).expect("retired line");
    let until = retired
        .strip_prefix(&format!("retired {kid}: published until "))
        .expect(&second);
    humantime::parse_rfc3339(until).expect("an RFC 3339 date");
    assert!(
        data_dir.join("key-encryption-key").exists(),
        "the key-encryption key generated on first use"
    );
}
