//! The whole demo with `--exit` semantics, both bootstrap workflows included: through the library
//! (the summary as a value) and through the binary (`--exit --json-only`: exactly one JSON line on
//! stdout). Both are bounded by the demo's own timeout and, for the binary, by a wall-clock limit.

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
const METER: &str = "MAC:00-50-C2-9F-41-07";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The ids of the devices `server_id` received `deviceattached` for, sorted.
fn told(s: &Summary, server_id: &str) -> Vec<String> {
    let dms = s.dm_server(server_id).unwrap();
    let mut told: Vec<String> = dms
        .alerts
        .iter()
        .filter(|a| a.alert_type == "deviceattached")
        .filter_map(|a| a.device.clone())
        .collect();
    told.sort_unstable();
    assert!(dms.alerts.iter().all(|a| a.from == s.gateway.dev_id));
    told
}

fn assert_story(s: &Summary) {
    assert!(s.ok && s.settled, "not settled: {:?}", s.unsettled);
    assert_eq!(s.stopped_by, StopReason::Settled);
    assert!(s.tls);

    let t = s.device(THERMOSTAT).unwrap();
    assert_eq!(t.state.as_deref(), Some("attached"));
    assert_eq!(t.device_outcome.as_deref(), Some("done"));
    assert_eq!(t.matched, ["dms-1"]);
    assert_eq!(t.alerted, ["dms-1"]);

    // Workflow 1: the plug names dms-2's bootstrap server; the gateway GETs an account for dms-2.
    let p = s.device(PLUG).unwrap();
    assert_eq!(p.state.as_deref(), Some("attached"), "{}", p.story);
    assert_eq!(p.reported, ["dms-1", "dms-2"]);
    assert_eq!(p.matched, ["dms-1", "dms-2"]);
    assert!(p.unmatched.is_empty());
    assert_eq!(p.alerted, ["dms-1", "dms-2"]);
    assert!(p.relayed.is_empty(), "{:?}", p.relayed);
    for part in [
        "gateway knew dms-1, not dms-2",
        "dms-2 bootstrapped by workflow 1",
        "re-matched",
        "attached to dms-1, dms-2 (deviceattached received by dms-1, dms-2)",
    ] {
        assert!(p.story.contains(part), "{part:?} not in {}", p.story);
    }

    let c = s.device(CAMERA).unwrap();
    assert_eq!(c.state.as_deref(), Some("refused"));
    assert_eq!(c.device_outcome.as_deref(), Some("refused"));
    assert!(c.alerted.is_empty() && c.reported.is_empty());

    // Workflow 2: the meter's bootstrap URL is hidden; it relays the hand-over, dms-3 is pushed.
    let m = s.device(METER).unwrap();
    assert_eq!(m.state.as_deref(), Some("attached"), "{}", m.story);
    assert_eq!(m.reported, ["dms-3"]);
    assert_eq!(m.matched, ["dms-3"]);
    assert_eq!(m.alerted, ["dms-3"]);
    assert_eq!(m.relayed.len(), 1, "{:?}", m.relayed);
    assert_eq!(m.relayed[0].server_id, "dms-3");
    assert_eq!(m.relayed[0].status, Some(200));
    assert_eq!(m.relayed[0].url, format!("{}/dm", s.bootstrap_server.url));
    for part in [
        "hand-over for dms-3 relayed to the bootstrap server (200)",
        "dms-3 bootstrapped by workflow 2",
        "attached to dms-3 (deviceattached received by dms-3)",
    ] {
        assert!(m.story.contains(part), "{part:?} not in {}", m.story);
    }

    // Each DM Server is told exactly once per device attached to it.
    assert_eq!(s.dm_server("dms-1").unwrap().deviceattached, 2);
    assert_eq!(told(s, "dms-1"), [THERMOSTAT, PLUG]);
    assert_eq!(s.dm_server("dms-2").unwrap().deviceattached, 1);
    assert_eq!(told(s, "dms-2"), [PLUG]);
    assert_eq!(s.dm_server("dms-3").unwrap().deviceattached, 1);
    assert_eq!(told(s, "dms-3"), [METER]);
    assert!(s.dm_server("dms-1").unwrap().known_to_gateway);
    for id in ["dms-2", "dms-3"] {
        let d = s.dm_server(id).unwrap();
        assert!(!d.known_to_gateway && d.bootstrap_profile);
        assert_eq!(d.gateway_account.as_deref(), Some("bootstrap"));
    }

    // The gateway's accounts: the factory one and the two bootstrapped ones.
    let mut accounts: Vec<(&str, &str)> = s
        .gateway_accounts
        .iter()
        .map(|a| (a.server_id.as_str(), a.origin.as_str()))
        .collect();
    accounts.sort_unstable();
    assert_eq!(
        accounts,
        [
            ("dms-1", "factory"),
            ("dms-2", "bootstrap"),
            ("dms-3", "bootstrap")
        ]
    );
    assert_eq!(
        s.gateway_account("dms-2").unwrap().addr.as_deref(),
        Some(s.dm_server("dms-2").unwrap().dm_url.as_str())
    );

    // Its jobs: workflow 1 for the plug's dms-2, workflow 2 for the meter's dms-3, both done.
    let mut jobs: Vec<(&str, &str, i64, &str)> = s
        .bootstrap_jobs
        .iter()
        .map(|j| {
            (
                j.server_id.as_str(),
                j.dev_id.as_str(),
                j.workflow,
                j.state.as_str(),
            )
        })
        .collect();
    jobs.sort_unstable();
    assert_eq!(
        jobs,
        [("dms-2", PLUG, 1, "done"), ("dms-3", METER, 2, "done")],
        "{:?}",
        s.bootstrap_jobs
    );

    // The bootstrap server: one workflow-1 issue (HTTP Basic), one delivered workflow-2 push.
    let bs = &s.bootstrap_server;
    assert_eq!(bs.bootstraps.len(), 2, "{:?}", bs.bootstraps);
    let one: Vec<_> = bs.bootstraps.iter().filter(|b| b.workflow == 1).collect();
    assert_eq!(one.len(), 1, "{:?}", bs.bootstraps);
    assert_eq!(one[0].server_id, "dms-2");
    assert_eq!(one[0].gateway_id, s.gateway.dev_id);
    assert_eq!(
        one[0].client_auth,
        Some(bootstrap_server::records::ClientAuth::Basic)
    );
    assert!(one[0].delivery.is_none());
    let two: Vec<_> = bs.bootstraps.iter().filter(|b| b.workflow == 2).collect();
    assert_eq!(two.len(), 1, "{:?}", bs.bootstraps);
    assert_eq!(two[0].server_id, "dms-3");
    let d = two[0].delivery.as_ref().unwrap();
    assert_eq!(
        d.state,
        bootstrap_server::records::DeliveryState::Delivered,
        "{d:?}"
    );
    assert_eq!(d.url, format!("{}/wan/v1/bootstrap", s.gateway.wan_url));
    assert_eq!(d.sec, "USERPIN");
    assert_eq!(bs.associations.len(), 1, "{:?}", bs.associations);
    let a = &bs.associations[0];
    assert_eq!(a.dev_id, METER);
    assert_eq!(a.server_ids, ["dms-3"]);
    assert_eq!(
        a.outcome,
        bootstrap_server::records::AssociationOutcome::Accepted
    );
    assert_eq!(two[0].association, Some(a.id));
}

/// The summary line must never carry the run's secrets.
fn assert_no_secrets(line: &str, data_dir: &std::path::Path) {
    let profiles =
        std::fs::read_to_string(data_dir.join("bootstrap-server/profiles.toml")).unwrap();
    let value = |key: &str| {
        profiles
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap()
            .to_owned()
    };
    for secret in [value("pin"), value("password")] {
        assert!(!line.contains(&secret), "a secret is in the summary");
    }
    for key in ["dms-2.key", "dms-3.key"] {
        let key = std::fs::read_to_string(data_dir.join("bootstrap-server").join(key)).unwrap();
        assert!(!line.contains(key.trim()), "a master key is in the summary");
    }
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
    assert_no_secrets(
        &serde_json::to_string(&summary).unwrap(),
        &tmp.path().join("demo"),
    );
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
    assert_no_secrets(lines[0], &dir);
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
