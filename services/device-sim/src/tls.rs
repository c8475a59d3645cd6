//! TLS material from PEM files: the CA the devices trust for the gateway (reqwest over rustls), and the
//! certificate and key of the callback server (actix-web over rustls, ring provider).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

/// TLS material that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable item of the expected kind, or a malformed one.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[error("TLS configuration from {cert} and {key}: {reason}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The CA certificates of a PEM bundle, for `reqwest`'s root store.
pub fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let pem = read(path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no CERTIFICATE in the file".to_owned(),
        });
    }
    Ok(certs)
}

/// A rustls server configuration from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
/// or SEC1), using the ring provider explicitly so that no process-wide default is needed.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_pem = read(cert)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_owned(),
            reason: "no CERTIFICATE in the file".to_owned(),
        });
    }
    let key_pem = read(key)?;
    let private = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Pem {
            path: key.to_owned(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Pem {
            path: key.to_owned(),
            reason: "no PRIVATE KEY in the file".to_owned(),
        })?;
    let config_error = |reason: String| TlsError::Config {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason,
    };
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| config_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        assert!(matches!(load_ca(&missing), Err(TlsError::Read { .. })));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        assert!(matches!(load_ca(&empty), Err(TlsError::Pem { .. })));
        assert!(matches!(
            load_server_config(&empty, &empty),
            Err(TlsError::Pem { .. })
        ));
    }

    #[test]
    fn generated_certificate_and_key_make_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        load_server_config(&cert, &key).unwrap();
        assert_eq!(load_ca(&cert).unwrap().len(), 1);
    }
}
