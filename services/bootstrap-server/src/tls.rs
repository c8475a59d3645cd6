//! TLS of the listener (rustls, ring, TLS 1.2/1.3, optional client certificates chained to
//! `--client-ca`), and the SHA-256 fingerprint of the client certificate, handed to handlers per connection.

use std::any::Any;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};

use crate::config::TlsFiles;
use crate::error::StartError;

/// The client certificate of a TLS connection: the SHA-256 of its DER (the leaf), if one was presented.
/// Inserted into every connection's data by [`on_connect`]; absent on plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCertificate(pub Option<[u8; 32]>);

/// SHA-256 of a certificate's DER encoding (what `cert_sha256` in the profiles file holds).
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The `HttpServer::on_connect` hook: record the client certificate's fingerprint of a TLS connection.
pub fn on_connect(conn: &dyn Any, data: &mut Extensions) {
    if let Some(tls) = conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>() {
        let (_, session) = tls.get_ref();
        let fp = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| fingerprint(leaf.as_ref()));
        data.insert(PeerCertificate(fp));
    }
}

fn tls_err(path: &Path, reason: impl std::fmt::Display) -> StartError {
    StartError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, StartError> {
    let file = File::open(path).map_err(|e| tls_err(path, e))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, e))?;
    if certs.is_empty() {
        return Err(tls_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Load a rustls server configuration from PEM files. With a client CA, clients are asked for a
/// certificate chaining to it; one is not required (gateways may use HTTP Basic instead), but one that
/// does not chain to the CA fails the handshake.
pub fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, StartError> {
    let certs = load_certs(&files.cert)?;
    let key_file = File::open(&files.key).map_err(|e| tls_err(&files.key, e))?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_file))
        .map_err(|e| tls_err(&files.key, e))?
        .ok_or_else(|| tls_err(&files.key, "no private key in the file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| tls_err(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&files.key, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_of_der() {
        // sha256("abc")
        assert_eq!(
            hex::encode(fingerprint(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn missing_or_empty_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(load_certs(&empty), Err(StartError::Tls { .. })));
        let files = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: empty.clone(),
            client_ca: None,
        };
        assert!(matches!(server_config(&files), Err(StartError::Tls { .. })));
    }
}
