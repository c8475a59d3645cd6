//! The demo's TLS material, made fresh at each run with rcgen: a CA, and one certificate for
//! `localhost` and `127.0.0.1` that every loopback server of the demo (DM Servers, gateway, devices) uses.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::datadir::{write_file, write_private};
use crate::error::DemoError;

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// The CA certificate: the only trust anchor of every client in the demo.
    pub ca_cert: PathBuf,
    /// The loopback servers' certificate chain.
    pub server_cert: PathBuf,
    /// Its private key (owner-readable only).
    pub server_key: PathBuf,
}

/// Make a CA and a loopback server certificate signed by it; write them under `dir`.
pub fn generate(dir: &Path) -> Result<Pki, DemoError> {
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dmgw demo CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "dmgw demo loopback");
    let cert = params.signed_by(&key, &issuer)?;
    let pki = Pki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    write_file(&pki.ca_cert, ca.pem().as_bytes())?;
    write_file(&pki.server_cert, cert.pem().as_bytes())?;
    write_private(&pki.server_key, key.serialize_pem().as_bytes())?;
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_a_loopback_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = generate(&tmp.path().join("tls")).unwrap();
        let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        let cert = std::fs::read(&pki.server_cert).unwrap();
        assert!(reqwest::Certificate::from_pem(&cert).is_ok());
        let key = std::fs::read_to_string(&pki.server_key).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert_ne!(ca, String::from_utf8(cert).unwrap());
    }
}
