//! device-sim against a fake LAN gateway: every step of the contract, consent policies, heartbeats,
//! the load command's poller, and HTTPS with a private CA.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod fake_gateway;

use std::time::Duration;

use device_sim::callback::{CallbackConfig, CallbackServer};
use device_sim::client::{GatewayClient, HttpSettings, TargetPolicy, Transport};
use device_sim::fleet::{
    DeviceEvent, DeviceReport, Fleet, FleetContext, Outcome, RunOptions, run_scenario,
};
use device_sim::load::{AdminApi, LoadConfig, run_load};
use device_sim::scenario::Scenario;
use fake_gateway::{ADMIN_TOKEN, FakeGateway, GW_ID, Options};
use omadm::codec::Encoding;
use omadm::element::Limits;

const DEV: &str = "IMEI:356938035643809";

/// Spans (and so `traceparent` headers) exist only with a subscriber: install one, without an
/// exporter, for the whole test process (the first call wins).
fn tracing_on() {
    let _ = telemetry::init_with(
        telemetry::Options {
            service_name: "device-sim",
            service_version: env!("CARGO_PKG_VERSION"),
            log_format: telemetry::LogFormat::Text,
            filter: "info".into(),
        },
        None,
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::sink),
    );
}

fn scenario(consent: &str, prov: &str, dm: &str, heartbeat: &str) -> Scenario {
    Scenario::parse(&format!(
        r#"
        provisioning_encoding = "{prov}"
        dm_encoding = "{dm}"
        [[device]]
        dev_id = "{DEV}"
        man = "Acme"
        model = "Thermo 3"
        dev_type = "thermostat"
        consent = {consent}
        heartbeat = "{heartbeat}"
        [[device.account]]
        server_id = "dms-1"
        addr = "https://dms1.example.com/dm"
        bootstrap_server_url = "https://bs1.example.com/bootstrap"
        [[device.account]]
        server_id = "dms-2"
        addr = "https://dms2.example.com/dm"
        "#
    ))
    .unwrap()
}

fn plain_transport() -> Transport {
    Transport::new(&HttpSettings {
        policy: TargetPolicy {
            plain_http: true,
            loopback_only: true,
        },
        timeout: Duration::from_secs(10),
        ..HttpSettings::default()
    })
    .unwrap()
}

fn ctx(gw: &FakeGateway, transport: Transport) -> FleetContext {
    FleetContext {
        client: GatewayClient::new(transport, &gw.base).unwrap(),
        limits: Limits::default(),
    }
}

/// Run the scenario until every device settled once (bounded by a timeout).
async fn run_once(gw: &FakeGateway, s: Scenario) -> Vec<DeviceReport> {
    let callback = CallbackServer::start(CallbackConfig::default())
        .await
        .unwrap();
    let mut lines = Vec::new();
    let summary = run_scenario(
        s.devices,
        ctx(gw, plain_transport()),
        &callback,
        RunOptions {
            exit_when_settled: true,
            timeout: Some(Duration::from_secs(20)),
        },
        |r| lines.push(serde_json::to_string(r).unwrap()),
        std::future::pending(),
    )
    .await
    .unwrap();
    callback.stop().await;
    assert!(!summary.timed_out, "{lines:?}");
    // Every report is one JSON line.
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["dev_id"], DEV);
    }
    summary.first_reports
}

fn steps(r: &DeviceReport) -> Vec<&'static str> {
    r.steps.iter().map(|s| s.step).collect()
}

async fn allow_goes_through_every_step(enc: Encoding, name: &str) {
    tracing_on();
    let gw = FakeGateway::start(Options::default()).await;
    let reports = run_once(&gw, scenario("\"allow\"", name, name, "30s")).await;
    gw.wait_until(|s| s.consent_requests.iter().all(|r| r.2 != 0))
        .await;
    let r = &reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(
        steps(r),
        vec![
            "announced",
            "consent_requested",
            "consent_allowed",
            "provisioned",
            "session_done",
            "handover_relayed"
        ]
    );
    // The fake gateway hands dms-2 over for workflow 2, but the scenario gives the device no
    // bootstrap server for it: the relay's failure is reported, not hidden.
    let relay = r.relayed.get("dms-2").expect("dms-2 relay attempted");
    assert!(relay.status.is_none(), "{relay:?}");
    assert!(
        relay
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no bootstrap server")),
        "{relay:?}"
    );
    assert_eq!(r.gateway_id.as_deref(), Some(GW_ID));
    assert_eq!(r.reported_server_ids, vec!["dms-1", "dms-2"]);
    let session = r.session.as_ref().unwrap();
    assert!(session.challenged, "the first package 1 asks for a nonce");
    assert_eq!(session.alert_status, 200);
    assert!(
        session
            .gateway_commands
            .iter()
            .any(|c| c == "Get ./DMAcc/dms-1/Ext/BootstrapServerURL")
    );

    {
        let seen = gw.seen();
        // Announcement.
        assert_eq!(seen.announces.len(), 1);
        let a = &seen.announces[0];
        assert_eq!(
            (a.man.as_str(), a.model.as_str(), a.dev_type.as_deref()),
            ("Acme", "Thermo 3", Some("thermostat"))
        );
        assert!(a.callback_url.ends_with("/devices/IMEI_3A356938035643809"));
        assert_eq!(a.heartbeat_secs, Some(30));
        // Consent: the callback answered 202, the answer came back with the token.
        assert_eq!(seen.consent_requests[0].2, 202);
        assert!(seen.consent_answers[0].0.allow);
        // Provisioning was fetched once, in the scenario's encoding.
        assert_eq!(seen.provisioning_fetches.len(), 1);
        assert_eq!(seen.provisioning_fetches[0].1, enc.mime());
        // The DM session: 407 first, then the alert with the other ServerIDs (not the gateway's).
        assert_eq!(seen.auth_failures, vec![(DEV.to_string(), 407)]);
        assert_eq!(
            seen.dms_lists,
            vec![(DEV.to_string(), vec!["dms-1".to_string(), "dms-2".into()])]
        );
        assert!(seen.dm_content_types.iter().all(|c| c == enc.mime()));
        // The gateway's Gets were answered from the device's tree ...
        assert_eq!(
            seen.result(DEV, "./DMAcc/dms-1/Ext/BootstrapServerURL")
                .as_deref(),
            Some("https://bs1.example.com/bootstrap")
        );
        assert_eq!(
            seen.result(DEV, "./DMAcc/dms-2/ServerID").as_deref(),
            Some("dms-2")
        );
        assert_eq!(seen.status(DEV, "bsu:dms-2"), Some(404));
        assert_eq!(seen.status(DEV, "list"), Some(200));
        // ... and the Replace of AssociatedGateway was applied.
        assert_eq!(seen.status(DEV, "ag:dms-1"), Some(200));
        assert_eq!(seen.status(DEV, "ag:dms-2"), Some(200));
        let expected = format!("{GW_ID} {}", gw.base);
        assert_eq!(
            r.associated_gateway.get("dms-1").map(String::as_str),
            Some(expected.as_str())
        );
        assert_eq!(seen.attached, vec![DEV.to_string()]);
        // The fake gateway's consent callback starts a trace of its own (it does not continue the
        // device's): after it, every request of the device carries the gateway's trace.
        let gw_trace = seen.consent_traces[0].clone();
        let after_consent: Vec<_> = seen
            .traceparents
            .iter()
            .filter(|(path, _)| !path.ends_with("announce") && !path.ends_with("heartbeat"))
            .collect();
        assert!(after_consent.len() >= 4, "{after_consent:?}");
        for (path, tp) in after_consent {
            assert_eq!(
                tp.as_deref().and_then(|t| t.split('-').nth(1)),
                Some(gw_trace.as_str()),
                "{path}"
            );
        }
        let announce_tp = &seen.traceparents[0];
        assert!(announce_tp.0.ends_with("announce") && announce_tp.1.is_some());
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_goes_through_every_step_in_xml() {
    allow_goes_through_every_step(Encoding::Xml, "xml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_goes_through_every_step_in_wbxml() {
    allow_goes_through_every_step(Encoding::Wbxml, "wbxml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_fetches_no_provisioning() {
    let gw = FakeGateway::start(Options::default()).await;
    let reports = run_once(&gw, scenario("\"refuse\"", "xml", "xml", "30s")).await;
    let r = &reports[0];
    assert_eq!(r.outcome, Outcome::Refused);
    assert_eq!(
        steps(r),
        vec!["announced", "consent_requested", "consent_refused"]
    );
    assert!(r.session.is_none());
    {
        let seen = gw.seen();
        assert_eq!(seen.consent_answers.len(), 1);
        assert!(!seen.consent_answers[0].0.allow);
        assert!(seen.provisioning_fetches.is_empty());
        assert!(seen.dm_content_types.is_empty());
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_after_waits_before_answering() {
    let gw = FakeGateway::start(Options::default()).await;
    let reports = run_once(
        &gw,
        scenario("{ allow_after = \"50ms\" }", "xml", "wbxml", "30s"),
    )
    .await;
    assert_eq!(reports[0].outcome, Outcome::Done);
    gw.wait_until(|s| s.consent_requests.iter().all(|r| r.2 != 0))
        .await;
    {
        let seen = gw.seen();
        let (_, asked, status) = &seen.consent_requests[0];
        assert_eq!(*status, 202);
        let (answer, answered) = &seen.consent_answers[0];
        assert!(answer.allow);
        // The answer comes after the request, and after the user's delay at the least.
        assert!(answered > asked);
        assert!(answered.duration_since(*asked) >= Duration::from_millis(50));
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_404_makes_the_device_announce_again() {
    let gw = FakeGateway::start(Options {
        forget_on_first_heartbeat: true,
        ..Options::default()
    })
    .await;
    let s = scenario("\"allow\"", "xml", "xml", "50ms");
    let callback = CallbackServer::start(CallbackConfig::default())
        .await
        .unwrap();
    let mut fleet = Fleet::spawn(s.devices, ctx(&gw, plain_transport()), &callback, None).unwrap();
    let mut reports = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = fleet.next_event().await {
            if let DeviceEvent::Settled(r) = ev {
                let second = r.onboarding == 2;
                reports.push(*r);
                if second {
                    break;
                }
            }
        }
    })
    .await;
    fleet.shutdown().await;
    callback.stop().await;
    assert!(waited.is_ok(), "no second onboarding: {reports:?}");
    {
        let seen = gw.seen();
        assert!(seen.announces.len() >= 2);
        let first_404 = seen
            .heartbeats
            .iter()
            .position(|(_, code)| *code == 404)
            .unwrap();
        assert_eq!(first_404, 0, "{:?}", seen.heartbeats);
        // The second onboarding ran to its end with fresh provisioning.
        let last = reports.last().unwrap();
        assert_eq!(last.outcome, Outcome::Done, "{last:?}");
        assert_eq!(steps(last)[0], "announced");
        assert_eq!(seen.provisioning_fetches.len(), 2);
        assert_eq!(seen.dms_lists.len(), 2);
        assert_eq!(seen.dms_lists[1].1, vec!["dms-1", "dms-2"]);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_polls_the_admin_api_for_attach_times() {
    let gw = FakeGateway::start(Options {
        page_size: Some(2),
        ..Options::default()
    })
    .await;
    let callback = CallbackServer::start(CallbackConfig::default())
        .await
        .unwrap();
    let cfg = LoadConfig {
        devices: 5,
        rate: 50.0,
        servers: vec!["dms-1".into(), "dms-2".into()],
        bootstrap_server_url: Some("https://bs.example.com/{server_id}".into()),
        admin: Some(AdminApi {
            url: gw.base.clone(),
            token: Some(ADMIN_TOKEN.into()),
        }),
        timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        heartbeat: Duration::from_secs(30),
        provisioning_encoding: Encoding::Wbxml,
        dm_encoding: Encoding::Xml,
        id_prefix: "LOAD:t".into(),
        progress: false,
    };
    let report = run_load(&cfg, ctx(&gw, plain_transport()), &callback)
        .await
        .unwrap();
    callback.stop().await;
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(report.announced, 5);
    assert_eq!(report.sessions_done, 5);
    assert_eq!(report.failed, 0);
    assert_eq!(report.attached, Some(5));
    let lat = report.attach_latency.unwrap();
    assert_eq!(lat.count, 5);
    assert!(lat.p50_ms <= lat.p90_ms && lat.p90_ms <= lat.p99_ms && lat.p99_ms <= lat.max_ms);
    assert!(report.onboarding_rate.unwrap() > 0.0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["attached"], 5);
    {
        let seen = gw.seen();
        assert_eq!(seen.dms_lists.len(), 5);
        assert!(
            seen.dms_lists
                .iter()
                .all(|(_, ids)| ids == &["dms-1", "dms-2"])
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_refuses_remote_targets_by_default() {
    let callback = CallbackServer::start(CallbackConfig::default())
        .await
        .unwrap();
    let transport = plain_transport();
    let remote = url::Url::parse("http://192.0.2.10:8080/").unwrap();
    assert!(matches!(
        GatewayClient::new(transport.clone(), &remote),
        Err(device_sim::client::ClientError::NotLoopback { .. })
    ));
    // The admin URL is checked too.
    let local = url::Url::parse("http://127.0.0.1:9/").unwrap();
    let cfg = LoadConfig {
        devices: 1,
        rate: 1.0,
        servers: vec![],
        bootstrap_server_url: None,
        admin: Some(AdminApi {
            url: remote,
            token: None,
        }),
        timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(100),
        heartbeat: Duration::from_secs(30),
        provisioning_encoding: Encoding::Xml,
        dm_encoding: Encoding::Xml,
        id_prefix: "LOAD:r".into(),
        progress: false,
    };
    let ctx = FleetContext {
        client: GatewayClient::new(transport, &local).unwrap(),
        limits: Limits::default(),
    };
    let err = run_load(&cfg, ctx, &callback).await.unwrap_err();
    assert!(err.to_string().contains("not a loopback"), "{err}");
    callback.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_gateway_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    // A CA, and a certificate for localhost signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("gw.pem"),
        dir.path().join("gw.key"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();

    let gw = FakeGateway::start(Options {
        tls: Some((cert, key)),
        ..Options::default()
    })
    .await;
    assert_eq!(gw.base.scheme(), "https");
    let https_only = TargetPolicy {
        plain_http: false,
        loopback_only: true,
    };
    // Without the CA the gateway's certificate is not trusted.
    let untrusted = Transport::new(&HttpSettings {
        policy: https_only,
        ..HttpSettings::default()
    })
    .unwrap();
    let announce = device_sim::lan::Announce {
        dev_id: DEV.into(),
        man: "Acme".into(),
        model: "T".into(),
        dev_type: None,
        callback_url: "http://127.0.0.1:9/devices/x".into(),
        heartbeat_secs: None,
    };
    let err = GatewayClient::new(untrusted, &gw.base)
        .unwrap()
        .announce(&announce)
        .await
        .unwrap_err();
    assert!(
        matches!(err, device_sim::client::ClientError::Transport { .. }),
        "{err}"
    );
    assert!(gw.seen().announces.is_empty());

    // With the CA the whole flow runs over HTTPS (the callback server stays plain HTTP here).
    let trusted = Transport::new(&HttpSettings {
        ca_cert: Some(ca),
        policy: https_only,
        ..HttpSettings::default()
    })
    .unwrap();
    let callback = CallbackServer::start(CallbackConfig::default())
        .await
        .unwrap();
    let summary = run_scenario(
        scenario("\"allow\"", "xml", "xml", "30s").devices,
        ctx(&gw, trusted),
        &callback,
        RunOptions {
            exit_when_settled: true,
            timeout: Some(Duration::from_secs(20)),
        },
        |_| {},
        std::future::pending(),
    )
    .await
    .unwrap();
    callback.stop().await;
    let r = &summary.first_reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(gw.seen().dms_lists.len(), 1);
    gw.stop().await;
}
