//! What the gateway's process-level tests share: a test CA with a loopback certificate (rcgen),
//! free ports, and polling a condition with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test code; each test binary uses a part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// PEM files of a test CA and a certificate for localhost and 127.0.0.1 signed by it.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Write a fresh test PKI into `dir`.
pub fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dmgw test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let p = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&p.ca, ca.pem()).unwrap();
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    p
}

/// Poll `f` every 50 ms until it holds; panic after 30 s.
pub async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A port free at the time of asking (the gateway binary needs fixed ports to be restarted on).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Simulated devices (device-sim, in this process) onboarding over TLS at the gateway's LAN face
/// on `lan_port`, with their consent callback server.
pub async fn devices(
    pki: &Pki,
    lan_port: u16,
    specs: Vec<device_sim::scenario::DeviceSpec>,
) -> (
    device_sim::fleet::Fleet,
    device_sim::callback::CallbackServer,
) {
    use device_sim::callback::{CallbackConfig, CallbackServer};
    use device_sim::client::{GatewayClient, HttpSettings, TargetPolicy, Transport};
    use device_sim::fleet::{Fleet, FleetContext};

    let transport = Transport::new(&HttpSettings {
        ca_cert: Some(pki.ca.clone()),
        policy: TargetPolicy {
            plain_http: false,
            loopback_only: true,
        },
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let base = url::Url::parse(&format!("https://127.0.0.1:{lan_port}")).unwrap();
    let callback = CallbackServer::start(CallbackConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_base: None,
        tls: Some((pki.cert.clone(), pki.key.clone())),
        workers: 1,
    })
    .await
    .unwrap();
    let ctx = FleetContext {
        client: GatewayClient::new(transport, &base).unwrap(),
        limits: omadm::element::Limits::default(),
    };
    let fleet = Fleet::spawn(specs, ctx, &callback, None).unwrap();
    (fleet, callback)
}
