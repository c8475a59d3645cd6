//! The whole demo with `--exit` semantics: through the library (the summary as a value) and through
//! the binary (`--exit --json-only`: exactly one JSON line on stdout). Both are bounded by the
//! demo's own timeout and, for the binary, by a wall-clock limit on the child process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use demo::{Options, StopReason, Summary};

const THERMOSTAT: &str = "IMEI:356938035643809";
const PLUG: &str = "MAC:00-1B-44-11-3A-B7";
const CAMERA: &str = "IMEI:490154203237518";
const TIMEOUT: Duration = Duration::from_secs(60);

fn assert_story(s: &Summary) {
    assert!(s.ok && s.settled, "not settled: {:?}", s.unsettled);
    assert_eq!(s.stopped_by, StopReason::Settled);
    assert!(s.tls);

    let t = s.device(THERMOSTAT).unwrap();
    assert_eq!(t.state.as_deref(), Some("attached"));
    assert_eq!(t.device_outcome.as_deref(), Some("done"));
    assert_eq!(t.matched, ["dms-1"]);
    assert_eq!(t.alerted, ["dms-1"]);

    let p = s.device(PLUG).unwrap();
    assert_eq!(p.state.as_deref(), Some("waiting_bootstrap"));
    assert_eq!(p.reported, ["dms-1", "dms-2"]);
    assert_eq!(p.matched, ["dms-1"]);
    assert_eq!(p.unmatched, ["dms-2"]);
    assert_eq!(p.alerted, ["dms-1"], "dms-1 is told of the plug");
    assert!(
        p.story.contains("waiting for a bootstrap for dms-2"),
        "{}",
        p.story
    );

    let c = s.device(CAMERA).unwrap();
    assert_eq!(c.state.as_deref(), Some("refused"));
    assert_eq!(c.device_outcome.as_deref(), Some("refused"));
    assert!(c.alerted.is_empty() && c.reported.is_empty());

    let dms1 = s.dm_server("dms-1").unwrap();
    assert!(dms1.known_to_gateway);
    assert_eq!(dms1.deviceattached, 2, "{:?}", dms1.alerts);
    let mut told: Vec<&str> = dms1
        .alerts
        .iter()
        .filter_map(|a| a.device.as_deref())
        .collect();
    told.sort_unstable();
    assert_eq!(told, [THERMOSTAT, PLUG]);
    assert!(dms1.alerts.iter().all(|a| a.from == s.gateway.dev_id));

    let dms2 = s.dm_server("dms-2").unwrap();
    assert!(!dms2.known_to_gateway);
    assert!(dms2.alerts.is_empty(), "{:?}", dms2.alerts);
    assert_eq!(dms2.deviceattached, 0);

    assert_eq!(s.bootstrap_jobs.len(), 1, "{:?}", s.bootstrap_jobs);
    let job = &s.bootstrap_jobs[0];
    assert_eq!(
        (job.server_id.as_str(), job.dev_id.as_str()),
        ("dms-2", PLUG)
    );
    assert_eq!(job.state, "pending");
}

#[test]
fn the_library_run_settles_as_the_story_says() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        timeout: TIMEOUT,
        ..Options::exit_quietly(tmp.path().join("demo"))
    };
    let summary = demo::run_blocking(&opts).unwrap();
    assert_story(&summary);
    assert!(summary.elapsed_ms < u64::try_from(TIMEOUT.as_millis()).unwrap());
}

#[test]
fn the_binary_prints_exactly_one_json_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmgw-demo"))
        .args(["--exit", "--json-only", "--timeout", "60s", "--data-dir"])
        .arg(&dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The demo's own timeout ends it; this only guards against a hang past it.
    let limit = Instant::now() + TIMEOUT + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > limit {
            child.kill().unwrap();
            panic!("dmgw-demo did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let summary: Summary = serde_json::from_str(lines[0]).unwrap();
    assert_story(&summary);
    assert!(
        !stderr.contains("[+"),
        "--json-only tells no story: {stderr}"
    );
    assert!(dir.join(".dmgw-demo").is_file());
}

#[test]
fn a_timeout_says_what_each_device_waits_for() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        timeout: Duration::from_millis(1),
        ..Options::exit_quietly(tmp.path().join("demo"))
    };
    let summary = demo::run_blocking(&opts).unwrap();
    assert_eq!(summary.stopped_by, StopReason::Timeout);
    assert!(!summary.ok);
    assert!(!summary.unsettled.is_empty());
    assert!(
        summary
            .unsettled
            .iter()
            .all(|u| u.contains(": waiting for ")),
        "{:?}",
        summary.unsettled
    );
}
