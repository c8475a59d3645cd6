//! One trace per device onboarding: the whole demo (gateway, DM Servers, bootstrap server, devices,
//! all over HTTPS) in this process, its spans exported over OTLP/HTTP to a real receiver (the
//! `opentelemetry-proto` decoder) and the tree of each onboarding checked; no secret anywhere.
//! Its own test binary: the tracing subscriber is process-wide.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use demo::Options;
use telemetry::receiver::{CollectedSpan, Receiver};
use telemetry::{ExporterConfig, LogFormat};

const THERMOSTAT: &str = "IMEI:356938035643809";
const PLUG: &str = "MAC:00-1B-44-11-3A-B7";
const CAMERA: &str = "IMEI:490154203237518";
const METER: &str = "MAC:00-50-C2-9F-41-07";

/// A receiver on its own thread and actix system, alive for the rest of the process.
fn start_receiver() -> (String, telemetry::receiver::Collected) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let r = Receiver::start("127.0.0.1:0".parse().unwrap()).unwrap();
            tx.send((r.endpoint(), r.collected.clone())).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

struct Spans {
    all: Vec<CollectedSpan>,
    by_id: HashMap<String, usize>,
}

impl Spans {
    fn new(all: Vec<CollectedSpan>) -> Spans {
        let by_id = all
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id.clone(), i))
            .collect();
        Spans { all, by_id }
    }

    fn get(&self, span_id: &str) -> Option<&CollectedSpan> {
        self.by_id.get(span_id).map(|i| &self.all[*i])
    }

    fn attr<'a>(s: &'a CollectedSpan, key: &str) -> Option<&'a str> {
        s.attributes.get(key).map(String::as_str)
    }

    /// Spans named `name` about device `dev_id`.
    fn of(&self, name: &str, dev_id: &str) -> std::vec::IntoIter<&CollectedSpan> {
        self.all
            .iter()
            .filter(|s| s.name == name && Self::attr(s, "dev_id") == Some(dev_id))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn one(&self, name: &str, dev_id: &str) -> &CollectedSpan {
        let found: Vec<_> = self.of(name, dev_id).collect();
        assert_eq!(found.len(), 1, "{name} of {dev_id}: {found:#?}");
        found[0]
    }

    fn children<'a>(
        &'a self,
        parent: &'a CollectedSpan,
    ) -> impl Iterator<Item = &'a CollectedSpan> {
        self.all
            .iter()
            .filter(move |s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
    }

    /// True when `root` has a descendant for which `pred` holds.
    fn has_descendant(&self, root: &CollectedSpan, pred: &dyn Fn(&CollectedSpan) -> bool) -> bool {
        let mut stack = vec![root];
        while let Some(s) = stack.pop() {
            for c in self.children(s) {
                if pred(c) {
                    return true;
                }
                stack.push(c);
            }
        }
        false
    }

    /// The chain of ancestors of `s`, nearest first (as far as they were received).
    fn ancestors(&self, s: &CollectedSpan) -> Vec<&CollectedSpan> {
        let mut out = Vec::new();
        let mut cur = s;
        while let Some(p) = self.get(&cur.parent_span_id) {
            out.push(p);
            cur = p;
        }
        out
    }

    /// The `onboard device` span of `dev_id` that the onboarding's steps hang from.
    fn onboarding(&self, dev_id: &str, step: &str) -> &CollectedSpan {
        let step = self
            .of(step, dev_id)
            .next()
            .unwrap_or_else(|| panic!("no {step} span for {dev_id}"));
        let parent = self
            .get(&step.parent_span_id)
            .unwrap_or_else(|| panic!("the parent of {dev_id}'s {step:?} was not received"));
        assert_eq!(parent.name, "onboard device", "{dev_id}: {parent:#?}");
        assert_eq!(Self::attr(parent, "dev_id"), Some(dev_id));
        parent
    }
}

/// The tree of one trace, one span per line (`cargo test -p demo --test otel -- --nocapture`).
fn render(spans: &Spans, trace_id: &str) -> String {
    fn walk(spans: &Spans, s: &CollectedSpan, depth: usize, out: &mut String) {
        let keys = [
            "dev_id",
            "server_id",
            "decision",
            "workflow",
            "attempt",
            "dm.status",
            "alert.code",
            "dm.target",
            "outcome",
            "state",
            "http.response.status_code",
        ];
        let attrs: Vec<String> = keys
            .iter()
            .filter_map(|k| Spans::attr(s, k).map(|v| format!("{k}={v}")))
            .collect();
        let module = target(s).split("::").next().unwrap_or_default();
        out.push_str(&format!(
            "{}{} [{module}] {}\n",
            "  ".repeat(depth),
            s.name,
            attrs.join(" ")
        ));
        let mut kids: Vec<&CollectedSpan> = spans.children(s).collect();
        kids.sort_by_key(|k| k.start_unix_nano);
        for k in kids {
            walk(spans, k, depth + 1, out);
        }
    }
    let mut out = String::new();
    let mut roots: Vec<&CollectedSpan> = spans
        .all
        .iter()
        .filter(|s| s.trace_id == trace_id && spans.get(&s.parent_span_id).is_none())
        .collect();
    roots.sort_by_key(|r| r.start_unix_nano);
    for r in roots {
        walk(spans, r, 0, &mut out);
    }
    out
}

fn target(s: &CollectedSpan) -> &str {
    Spans::attr(s, "target").unwrap_or_default()
}

/// The secrets of the run, read from the files the demo wrote for its services.
fn secrets(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let profiles =
        std::fs::read_to_string(data_dir.join("bootstrap-server/profiles.toml")).unwrap();
    for key in ["pin", "password"] {
        let v = profiles
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap();
        out.push(v.to_owned());
    }
    for key in ["dms-2.key", "dms-3.key"] {
        let key = std::fs::read_to_string(data_dir.join("bootstrap-server").join(key)).unwrap();
        out.push(key.trim().to_owned());
    }
    // The gateway's factory account secret for dms-1.
    for entry in walk(data_dir) {
        if entry.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&entry).unwrap();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("auth_secret = \"") {
                    out.push(v.trim_end_matches('"').to_owned());
                }
            }
        }
    }
    assert!(out.len() >= 5, "secrets found: {}", out.len());
    assert!(out.iter().all(|s| s.len() >= 8));
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn each_device_onboarding_is_one_trace_across_the_services() {
    let (endpoint, collected) = start_receiver();
    let lines = telemetry::receiver::LogLines::default();
    let telemetry = telemetry::init_with(
        telemetry::Options {
            service_name: "dmgw-demo",
            service_version: env!("CARGO_PKG_VERSION"),
            log_format: LogFormat::Json,
            filter: "info".into(),
        },
        Some(ExporterConfig::endpoint(endpoint)),
        lines.make_writer(),
    )
    .unwrap()
    .expect("the first subscriber of this test binary");

    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("demo");
    let opts = Options {
        timeout: Duration::from_secs(60),
        ..Options::exit_quietly(&data_dir)
    };
    let summary = demo::run_blocking(&opts).unwrap();
    assert!(summary.ok && summary.settled, "{:?}", summary.unsettled);
    // Shutting the exporter down exports everything still queued.
    std::thread::spawn(move || drop(telemetry)).join().unwrap();
    let spans = Spans::new(collected.spans());
    assert!(spans.all.len() > 100, "{} spans", spans.all.len());
    assert!(spans.all.iter().all(|s| s.service == "dmgw-demo"));

    // Every step of an attached device's onboarding hangs directly from its `onboard device`.
    // (device, servers it is attached to, (server, workflow) of the bootstraps it needed)
    type Expected<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, u8)]);
    let expected: [Expected; 3] = [
        (THERMOSTAT, &["dms-1"], &[]),
        (PLUG, &["dms-1", "dms-2"], &[("dms-2", 1)]),
        (METER, &["dms-3"], &[("dms-3", 2)]),
    ];
    let mut traces = BTreeSet::new();
    for (dev_id, alerted, bootstraps) in expected {
        let onboard = spans.onboarding(dev_id, "match");
        assert!(
            traces.insert(onboard.trace_id.clone()),
            "{dev_id} shares a trace"
        );
        assert_eq!(
            Spans::attr(onboard, "outcome"),
            Some("attached"),
            "{dev_id}"
        );
        assert_eq!(Spans::attr(onboard, "via"), Some("http"));
        for step in [
            "consent",
            "consent answer",
            "provision",
            "dm session",
            "match",
        ] {
            let s: Vec<_> = spans
                .of(step, dev_id)
                .filter(|s| s.parent_span_id == onboard.span_id)
                .collect();
            assert!(!s.is_empty(), "{dev_id}: no {step} under its onboarding");
            assert!(s.iter().all(|s| s.trace_id == onboard.trace_id));
        }
        assert_eq!(
            Spans::attr(spans.one("consent answer", dev_id), "decision"),
            Some("allow")
        );
        // Everything the gateway did about this device is in this one trace.
        for s in spans
            .all
            .iter()
            .filter(|s| Spans::attr(s, "dev_id") == Some(dev_id))
        {
            if target(s).starts_with("gateway") && s.name != "onboard device" {
                assert_eq!(s.trace_id, onboard.trace_id, "{dev_id}: {s:#?}");
            }
        }
        // The device itself started it: the announcement came from device-sim with a traceparent.
        let up = spans.ancestors(onboard);
        assert!(
            up.iter()
                .any(|a| a.kind == 2 && Spans::attr(a, "http.route") == Some("/lan/v1/announce")),
            "{dev_id}: onboarding not under the announce request: {up:#?}"
        );
        assert!(
            up.iter().any(|a| target(a).starts_with("device_sim")),
            "{dev_id}: no device-sim span above the onboarding: {up:#?}"
        );

        // The DM session with the device: messages, and one span per DM command.
        let session = spans
            .of("dm session", dev_id)
            .find(|s| s.parent_span_id == onboard.span_id)
            .unwrap();
        assert_eq!(Spans::attr(session, "dm.auth"), Some("ok"));
        let messages: Vec<_> = spans
            .children(session)
            .filter(|s| s.name == "dm message")
            .collect();
        assert!(
            messages.len() >= 2,
            "{dev_id}: {} DM messages",
            messages.len()
        );
        let commands: Vec<&CollectedSpan> = messages
            .iter()
            .flat_map(|m| spans.children(m))
            .filter(|c| Spans::attr(c, "dm.from").is_some())
            .collect();
        assert!(
            commands
                .iter()
                .any(|c| c.name == "Alert" && Spans::attr(c, "alert.code") == Some("1226")),
            "{dev_id}: no Generic Alert command span: {commands:#?}"
        );
        assert!(commands.iter().any(|c| c.name == "Get"
            && Spans::attr(c, "dm.target").is_some_and(|t| t.starts_with("./DMAcc"))));
        assert!(
            commands
                .iter()
                .any(|c| c.name == "Status" && Spans::attr(c, "dm.status").is_some())
        );

        // One `alert <server>` per attempt, under the onboarding, delivered; its session reaches
        // the DM Server, whose own spans continue the trace there.
        for server in alerted {
            let name = format!("alert {server}");
            let alerts: Vec<_> = spans.of(&name, dev_id).collect();
            assert!(!alerts.is_empty(), "{dev_id}: no {name}");
            let last = alerts.iter().max_by_key(|a| a.start_unix_nano).unwrap();
            assert_eq!(last.parent_span_id, onboard.span_id, "{dev_id} {name}");
            assert_eq!(Spans::attr(last, "outcome"), Some("delivered"));
            assert_eq!(Spans::attr(last, "dm.status"), Some("200"));
            assert_eq!(Spans::attr(last, "server_id"), Some(*server));
            assert!(Spans::attr(last, "attempt").is_some());
            let (_, session_id) = last.links.first().expect("linked to its DM session");
            let session = spans.get(session_id).expect("the alert session span");
            assert_eq!(session.name, "alert session");
            assert!(
                spans.has_descendant(session, &|s| target(s).starts_with("dm_server")),
                "{dev_id} {name}: no dm-server span under the session"
            );
        }
        for (server, workflow) in bootstraps {
            let name = format!("bootstrap {server}");
            let b = spans
                .of(&name, dev_id)
                .find(|b| Spans::attr(b, "state") == Some("done"))
                .unwrap_or_else(|| panic!("{dev_id}: no finished {name}"));
            assert_eq!(b.parent_span_id, onboard.span_id);
            assert_eq!(
                Spans::attr(b, "workflow"),
                Some(workflow.to_string().as_str())
            );
            if *workflow == 1 {
                // The HTTPS GET of workflow 1 reaches the bootstrap server within the trace.
                assert!(
                    spans.has_descendant(b, &|s| target(s).starts_with("bootstrap_server")),
                    "{dev_id}: no bootstrap-server span under {name}"
                );
            } else {
                // Workflow 2: the job is settled by the push, whose span it links to.
                assert!(
                    !b.links.is_empty(),
                    "{dev_id}: {name} not linked to the push"
                );
            }
        }
    }

    let plug = spans.onboarding(PLUG, "match");
    eprintln!(
        "span tree of {PLUG}'s onboarding:\n{}",
        render(&spans, &plug.trace_id)
    );

    // The refusing device: consented no, never provisioned, its onboarding closed as refused.
    let refused = spans.onboarding(CAMERA, "consent answer");
    assert_eq!(Spans::attr(refused, "outcome"), Some("refused"));
    assert_eq!(
        Spans::attr(spans.one("consent answer", CAMERA), "decision"),
        Some("refuse")
    );
    assert_eq!(spans.of("match", CAMERA).count(), 0);

    // The metrics of the same run (one Prometheus recorder per process, shared by the services).
    let metrics = telemetry::prometheus::install().render();
    for name in [
        "dmgw_onboarding_duration_seconds_bucket",
        "dmgw_alerts_total{outcome=\"delivered\"}",
        "dmgw_dm_sessions_total{outcome=\"ok\"}",
        "dmgw_lan_dm_sessions_total{status=\"authenticated\"}",
        "dmgw_bootstrap_jobs_total{workflow=\"1\",outcome=\"done\"}",
        "dmgw_bootstrap_jobs_total{workflow=\"2\",outcome=\"done\"}",
        "dm_server_sessions_total{",
        "bootstrap_server_jobs_total{",
        "device_sim_onboardings_total{",
        "http_server_request_duration_seconds_bucket{",
    ] {
        assert!(metrics.contains(name), "{name} missing from the metrics");
    }

    // No secret in any span, attribute, event or log line.
    let text = lines.text();
    let dump = format!("{:?}", spans.all);
    for secret in secrets(&data_dir) {
        assert!(!dump.contains(&secret), "a secret is in a span");
        assert!(!text.contains(&secret), "a secret is in a log line");
    }
    // Every log line written inside a traced span carries its trace and span IDs: all but those
    // of a store span outside any flow (store spans are not exported by default).
    let logged: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!logged.is_empty());
    let untraced_root = |l: &serde_json::Value| {
        l["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("gateway::store"))
            && l["spans"].as_array().is_some_and(|s| s.len() == 1)
    };
    for l in logged
        .iter()
        .filter(|l| l.get("span").is_some() && !untraced_root(l))
    {
        assert!(l["trace_id"].as_str().is_some_and(|t| t.len() == 32), "{l}");
        assert!(l["span_id"].as_str().is_some_and(|t| t.len() == 16), "{l}");
    }
}
