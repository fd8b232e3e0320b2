//! `tokenmesh bench` as a user runs it: the scenarios start their servers as
//! child processes of the real binary, load them and report JSON. Short runs, and
//! no assertion on speed — only that every call was answered, counted and
//! attributed to the right server.

use serde_json::Value;
use tokio::process::Command;

// The test crate's child-process helper, shared by path: a dev-dependency on
// `tokenmesh-tests` would be a cycle (it depends on this crate).
#[path = "../../../tests/src/child.rs"]
mod child;

async fn bench(args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenmesh"));
    command
        .arg("bench")
        .args(args)
        .args(["--warmup", "0s", "--json"])
        .env("RUST_LOG", "warn");
    let what = format!("tokenmesh bench {}", args.join(" "));
    let output = child::output_within_deadline(&what, command)
        .await
        .expect("tokenmesh runs");
    assert!(
        output.status.success(),
        "tokenmesh bench {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON report")
}

fn reports(value: &Value) -> &Vec<Value> {
    value["reports"].as_array().expect("reports")
}

#[tokio::test]
async fn the_overhead_scenario_reports_three_error_free_runs_with_server_usage() {
    let value = bench(&[
        "overhead",
        "--requests",
        "200",
        "--in-flight",
        "8",
        "--distinct",
        "200",
    ])
    .await;
    let runs = reports(&value);
    let modes: Vec<&str> = runs
        .iter()
        .map(|r| r["token_mode"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(modes, ["none", "reuse", "fresh"]);
    for run in runs {
        assert_eq!(run["ok"], 200, "{run}");
        assert_eq!(run["failed"], 0, "{run}");
        assert!(
            run["server"]["peak_rss_mib"].as_f64().unwrap_or(0.0) > 0.0,
            "{run}"
        );
    }
    assert_eq!(runs[2]["distinct_tokens"], 200);
    assert!(value["reuse_over_none"].as_f64().is_some());
}

#[tokio::test]
async fn the_mesh_scenario_covers_every_method_and_each_services_memory() {
    let value = bench(&["mesh", "--requests", "20", "--in-flight", "4"]).await;
    let labels: Vec<&str> = reports(&value)
        .iter()
        .map(|r| r["label"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        labels,
        [
            "trivial Health/Check, no layer",
            "Login (argon2id)",
            "GetProduct",
            "ListProducts",
            "PlaceOrder, grant",
            "PlaceOrder, no grant (default chain: replica)",
            "IssueServiceToken",
            "Refresh (a login per request in flight, each token's successor next)",
        ]
    );
    // Refresh too: four chains, each token's successor refreshed next, none refused.
    for run in reports(&value) {
        assert_eq!(
            (&run["ok"], &run["failed"]),
            (&20.into(), &0.into()),
            "{run}"
        );
    }
    let services: Vec<&str> = value["memory"]
        .as_array()
        .expect("memory")
        .iter()
        .map(|m| m["service"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(services, ["auth", "products", "orders"]);
    let over_trivial = value["over_trivial"].as_array().expect("over_trivial");
    assert_eq!(over_trivial.len(), labels.len());
    assert_eq!(over_trivial[0]["throughput_ratio"], 1.0);
}

#[tokio::test]
async fn the_in_flight_sweep_draws_its_plot_and_the_token_sweep_cycles_its_pools() {
    let plot = std::env::temp_dir().join(format!("tokenmesh-bench-{}.svg", std::process::id()));
    let plot_arg = plot.display().to_string();
    let value = bench(&[
        "in-flight",
        "--levels",
        "1,4",
        "--requests",
        "10",
        "--plot",
        &plot_arg,
    ])
    .await;
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    let _ = std::fs::remove_file(&plot);
    assert!(svg.contains("<svg") && svg.contains("requests in flight"));
    let in_flight: Vec<u64> = reports(&value)
        .iter()
        .map(|r| r["in_flight"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        in_flight,
        [1, 4, 1, 4, 1, 4],
        "three series, each at every level"
    );

    let value = bench(&[
        "tokens",
        "--levels",
        "3,50",
        "--requests",
        "20",
        "--in-flight",
        "4",
    ])
    .await;
    let pools: Vec<(u64, u64)> = reports(&value)
        .iter()
        .map(|r| {
            (
                r["distinct_tokens"].as_u64().unwrap_or(0),
                r["ok"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(pools, [(3, 20), (50, 20)]);
}

#[tokio::test]
async fn a_run_where_no_call_succeeded_prints_its_report_and_exits_non_zero() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    // A server that has no ProductsService: every call is UNIMPLEMENTED.
    let mut server = Command::new(env!("CARGO_BIN_EXE_tokenmesh"))
        .args(["bench", "trivial-server"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("trivial server starts");
    let mut first = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .await
        .expect("its address");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_owned();

    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenmesh"));
    command
        .args(["bench", "run", "--addr", &addr])
        .args([
            "--method",
            "tokenmesh.products.v1.ProductsService/GetProduct",
        ])
        .args([
            "--data",
            r#"{"id":"P-100"}"#,
            "--requests",
            "20",
            "--in-flight",
            "2",
        ])
        .args(["--warmup", "0s", "--json"])
        .env("RUST_LOG", "warn");
    let output = child::output_within_deadline("tokenmesh bench run", command)
        .await
        .expect("tokenmesh runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("the report is printed");
    assert_eq!(report["reports"][0]["ok"], 0);
    assert_eq!(report["reports"][0]["errors"]["UNIMPLEMENTED"], 20);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.ends_with("failed (UNIMPLEMENTED×20)\n") && stderr.contains("no call succeeded in "),
        "{stderr}"
    );
    server.kill().await.expect("stopped");
}
