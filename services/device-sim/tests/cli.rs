//! The `device-sim` binary against the fake gateway: `run` prints one JSON line per settled device
//! and exits 0; `load` prints its figures and a final JSON line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod fake_gateway;

use std::process::{Command, Output};

use fake_gateway::{ADMIN_TOKEN, FakeGateway, Options};

async fn device_sim(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_device-sim"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_one_json_line_per_device() {
    let gw = FakeGateway::start(Options::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.toml");
    let demo = include_str!("../scenarios/demo.toml")
        .replace("https://127.0.0.1:8443", gw.base.as_str())
        .replace("{ allow_after = \"2s\" }", "{ allow_after = \"20ms\" }");
    std::fs::write(&file, demo).unwrap();
    let out = device_sim(vec![
        "run".into(),
        "--scenario".into(),
        file.display().to_string(),
        "--plain-http".into(),
        "--exit-when-settled".into(),
        "--timeout".into(),
        "30s".into(),
    ])
    .await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let outcome = |id: &str| {
        lines
            .iter()
            .find(|l| l["dev_id"] == id)
            .map(|l| l["outcome"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(outcome("IMEI:356938035643809"), "done");
    assert_eq!(outcome("MAC:00-1B-44-11-3A-B7"), "done");
    assert_eq!(outcome("IMEI:490154203237518"), "refused");
    {
        let seen = gw.seen();
        assert_eq!(seen.dms_lists.len(), 2);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_prints_its_figures() {
    let gw = FakeGateway::start(Options::default()).await;
    let out = device_sim(vec![
        "load".into(),
        "--gateway".into(),
        gw.base.to_string(),
        "--plain-http".into(),
        "--devices".into(),
        "4".into(),
        "--rate".into(),
        "40".into(),
        "--servers".into(),
        "dms-1,dms-2".into(),
        "--admin-url".into(),
        gw.base.to_string(),
        "--admin-token".into(),
        ADMIN_TOKEN.into(),
        "--poll-interval".into(),
        "20ms".into(),
        "--timeout".into(),
        "30s".into(),
        "--no-progress".into(),
    ])
    .await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    assert!(stdout.contains("onboarding rate:"), "{stdout}");
    assert!(stdout.contains("announce -> attached: p50"), "{stdout}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["attached"], 4);
    assert_eq!(last["attach_latency"]["count"], 4);
    assert!(last["attach_latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    gw.stop().await;
}
