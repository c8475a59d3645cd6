//! Traces across processes: the real `dmgw` binary, configured only by the standard `OTEL_*`
//! variables, exports to an OTLP/HTTP receiver in this test process, where a simulated device and
//! a DM Server run (traced as `otel-peers`). One device onboards over TLS; its trace crosses both
//! processes in both directions, each side under its own `service.name`; no secret leaks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::FutureExt as _;

use dm_server::config::{Account, Config as DmsConfig, TlsFiles};
use omadm::codec::Encoding;
use omadm::secret::Secret;
use telemetry::receiver::{CollectedSpan, Receiver};
use telemetry::{BoxMakeWriter, ExporterConfig, LogFormat};

mod common;

use common::{free_port, pki, wait_for};

const TOKEN: &str = "otel-test-token-0123456789";
const GW_SECRET: &str = "gw-secret-otel-4711";
const DEV: &str = "IMEI:990000000000077";

fn attr<'a>(s: &'a CollectedSpan, key: &str) -> Option<&'a str> {
    s.attributes.get(key).map(String::as_str)
}

/// A DM Server (in this process), the `dmgw` binary with `env`, one simulated device onboarding.
struct Stack {
    _dir: tempfile::TempDir,
    log_path: PathBuf,
    ca: PathBuf,
    dms: dm_server::http::RunningServer,
    gw: std::process::Child,
    fleet: device_sim::fleet::Fleet,
    callback: device_sim::callback::CallbackServer,
}

impl Stack {
    async fn start(env: &[(&str, String)]) -> Stack {
        use device_sim::scenario::{AccountSpec, ConsentPolicy, DeviceSpec};

        let dir = tempfile::tempdir().unwrap();
        let pki = pki(dir.path());
        let mut cfg = DmsConfig::new("dms-1");
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.tls = Some(TlsFiles {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
        });
        cfg.accounts = vec![Account {
            name: "gw-1".into(),
            password: Secret::new(GW_SECRET),
            dev_id: None,
        }];
        cfg.data_file = Some(dir.path().join("dms.jsonl"));
        cfg.handle_signals = false;
        let dms = dm_server::http::start(cfg).unwrap();
        let accounts = dir.path().join("accounts.toml");
        std::fs::write(
            &accounts,
            format!(
                "[[account]]\nserver_id = \"dms-1\"\naddr = \"https://127.0.0.1:{}/dm\"\n\
                 auth_type = \"DIGEST\"\nauth_name = \"gw-1\"\nauth_secret = \"{GW_SECRET}\"\n",
                dms.addr().port()
            ),
        )
        .unwrap();

        // The gateway binary: traces configured by the standard variables alone, JSON logs.
        let ports = (free_port(), free_port(), free_port());
        let path = |p: &Path| p.display().to_string();
        let log_path = dir.path().join("dmgw.log");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dmgw"));
        cmd.args(["serve", "--database", &path(&dir.path().join("gw.db"))])
            .args(["--admin-listen", &format!("127.0.0.1:{}", ports.0)])
            .args(["--admin-token", TOKEN])
            .args(["--lan-listen", &format!("127.0.0.1:{}", ports.1)])
            .args([
                "--lan-tls-cert",
                &path(&pki.cert),
                "--lan-tls-key",
                &path(&pki.key),
            ])
            .args(["--wan-listen", &format!("127.0.0.1:{}", ports.2)])
            .args([
                "--wan-tls-cert",
                &path(&pki.cert),
                "--wan-tls-key",
                &path(&pki.key),
            ])
            .args(["--ca-cert", &path(&pki.ca)])
            .args(["--accounts-file", &path(&accounts)])
            .args(["--dev-id", "urn:dmgw:otel-gw"])
            .args(["--log", "debug,sqlx=warn", "--log-format", "json"])
            .env_remove("DMGW_CONFIG")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_SDK_DISABLED")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let gw = cmd.spawn().unwrap();
        wait_for("the gateway up", || async {
            reqwest::get(format!("http://127.0.0.1:{}/readyz", ports.0))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;

        let spec = DeviceSpec {
            dev_id: DEV.into(),
            man: "Acme".into(),
            model: "K".into(),
            dev_type: None,
            consent: ConsentPolicy::Allow,
            heartbeat: Duration::from_secs(30),
            provisioning_encoding: Encoding::Xml,
            dm_encoding: Encoding::Xml,
            accounts: vec![AccountSpec {
                server_id: "dms-1".into(),
                addr: "https://dms1.example.com/dm".into(),
                bootstrap_server_url: None,
                node_name: "dms-1".into(),
                hide_bootstrap_url: false,
            }],
        };
        let (fleet, callback) = common::devices(&pki, ports.1, vec![spec]).await;
        Stack {
            ca: pki.ca.clone(),
            _dir: dir,
            log_path,
            dms,
            gw,
            fleet,
            callback,
        }
    }

    /// The `deviceattached` alerts the DM Server received for the device.
    async fn alerts_received(&self) -> usize {
        let client = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap(),
            ])
            .build()
            .unwrap();
        let Ok(resp) = client
            .get(format!(
                "https://127.0.0.1:{}/api/v1/alerts?limit=100",
                self.dms.addr().port()
            ))
            .send()
            .await
        else {
            return 0;
        };
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        v["items"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|a| a["data"] == DEV).count())
    }

    /// SIGTERM the gateway (a graceful stop flushes its spans), then stop the peers.
    async fn stop(mut self) -> String {
        let pid = self.gw.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        assert!(self.gw.wait().unwrap().success());
        self.fleet.shutdown().await;
        self.callback.stop().await;
        self.dms.stop().await.unwrap();
        std::fs::read_to_string(&self.log_path).unwrap()
    }
}

/// The telemetry of this test process (device simulator and DM Server): exported to `receiver`.
/// The first test to call it installs it; the subscriber is process-wide.
fn peers_telemetry(receiver: &Receiver) -> Option<telemetry::Telemetry> {
    telemetry::init_with(
        telemetry::Options {
            service_name: "otel-peers",
            service_version: "test",
            log_format: LogFormat::Text,
            filter: "error".into(),
        },
        Some(ExporterConfig::endpoint(receiver.endpoint())),
        BoxMakeWriter::new(std::io::sink),
    )
    .unwrap()
}

#[actix_web::test]
async fn a_collector_that_hangs_holds_nothing_up() {
    // Accepts connections, never answers.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in hole.incoming().take(64) {
            conns.push(c);
        }
    });
    let stack = Stack::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{hole_addr}")),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
    ])
    .await;
    wait_for("the device's deviceattached at the DM Server", || {
        stack.alerts_received().map(|n| n == 1)
    })
    .await;
    let log = stack.stop().await;
    assert!(log.contains("exporting traces over OTLP"), "{log}");
    drop(held);
}

#[actix_web::test]
async fn one_onboarding_is_one_trace_across_processes() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let telemetry = peers_telemetry(&receiver).expect("the first subscriber of this test binary");
    let stack = Stack::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=otel-test".into(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ])
    .await;
    // Done when the gateway's `alert dms-1` span arrived (exported within ~100 ms).
    wait_for("the gateway's alert span", || async {
        receiver.collected.spans().iter().any(|s| {
            s.service == "dmgw"
                && s.name == "alert dms-1"
                && attr(s, "outcome") == Some("delivered")
        })
    })
    .await;
    let log = stack.stop().await;
    let t = std::thread::spawn(move || drop(telemetry));
    actix_web::rt::task::spawn_blocking(move || t.join().unwrap())
        .await
        .unwrap();

    let spans = receiver.collected.spans();
    let by_id: HashMap<&str, &CollectedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let gw_spans: Vec<&CollectedSpan> = spans.iter().filter(|s| s.service == "dmgw").collect();
    assert!(!gw_spans.is_empty());
    for s in &gw_spans {
        assert_eq!(
            s.resource.get("service.version").map(String::as_str),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            s.resource.get("deployment.environment").map(String::as_str),
            Some("otel-test")
        );
    }
    let onboard = gw_spans
        .iter()
        .find(|s| s.name == "onboard device" && attr(s, "outcome") == Some("attached"))
        .expect("the gateway's onboard device span");
    assert_eq!(attr(onboard, "dev_id"), Some(DEV));
    let trace = onboard.trace_id.as_str();

    // Device -> gateway: the announce request's server span (dmgw) is the child of a client span
    // of the device simulator (otel-peers).
    let announce = by_id[onboard.parent_span_id.as_str()];
    assert_eq!((announce.service.as_str(), announce.kind), ("dmgw", 2));
    let device_client = by_id
        .get(announce.parent_span_id.as_str())
        .expect("the device's client span was exported by the test process");
    assert_eq!(
        (device_client.service.as_str(), device_client.kind),
        ("otel-peers", 3)
    );

    // Gateway -> device: the consent request arrives at the device's callback under the gateway's
    // consent span.
    let consent = gw_spans
        .iter()
        .find(|s| s.name == "consent" && s.parent_span_id == onboard.span_id)
        .expect("consent span");
    let consent_client = spans
        .iter()
        .find(|s| s.service == "dmgw" && s.kind == 3 && s.parent_span_id == consent.span_id)
        .expect("the gateway's client span of the consent request");
    assert!(
        spans.iter().any(|s| s.service == "otel-peers"
            && s.kind == 2
            && s.parent_span_id == consent_client.span_id),
        "the device's callback did not continue the gateway's trace"
    );

    // Gateway -> DM Server: the alert's session reaches dm-server's spans in this process.
    let alert = gw_spans
        .iter()
        .find(|s| s.name == "alert dms-1" && s.parent_span_id == onboard.span_id)
        .expect("alert span under the onboarding");
    assert_eq!(alert.trace_id, trace);
    let (_, session_id) = alert.links.first().expect("alert linked to its session");
    let session = by_id[session_id.as_str()];
    let mut under_session = vec![session];
    let mut reached_dms = false;
    while let Some(s) = under_session.pop() {
        for c in spans.iter().filter(|c| c.parent_span_id == s.span_id) {
            if c.service == "otel-peers" && c.kind == 2 {
                reached_dms = true;
            }
            under_session.push(c);
        }
    }
    assert!(
        reached_dms,
        "no dm-server span under the gateway's alert session"
    );

    // The gateway's JSON log lines carry the IDs of the spans they were written in, and no
    // secret is in any span or line.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() > 10, "{log}");
    assert!(
        lines.iter().any(|l| l["trace_id"] == trace),
        "no log line of the onboarding's trace"
    );
    // Lines in a traced span carry its IDs; store spans outside any flow are not traced.
    let untraced_root = |l: &serde_json::Value| {
        l["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("gateway::store"))
            && l["spans"].as_array().is_some_and(|s| s.len() == 1)
    };
    for l in lines
        .iter()
        .filter(|l| l.get("span").is_some() && !untraced_root(l))
    {
        assert!(l["trace_id"].as_str().is_some_and(|t| t.len() == 32), "{l}");
    }
    let dump = format!("{spans:?}");
    for secret in [GW_SECRET, TOKEN] {
        assert!(!dump.contains(secret), "a secret is in a span");
        assert!(!log.contains(secret), "a secret is in a log line");
    }
    receiver.stop().await;
}
