//! Derived client credentials: the password of client account G at DM Server S, computed from a master
//! key shared with the DM Bootstrap Server, so both agree on credentials without a shared database.
//!
//! The construction is `base64url_nopad(HMAC-SHA256(master_key, S + "|" + G))`:
//! - `master_key` is the raw key bytes (the dm-server reads them from `--master-key-file` or the
//!   `DMS_MASTER_KEY` environment variable, surrounding whitespace trimmed);
//! - `S` is the DM Server's ServerID (`--server-id`), `G` the client's account name (the AAuthName the
//!   bootstrap server writes into the gateway's DMAcc, and the LocName / user name the client sends);
//! - the 32-byte MAC is written in the URL-safe base64 alphabet without padding (43 characters), so the
//!   password is plain ASCII that survives TNDS, TOML, JSON and HTTP unescaped.
//!
//! The bootstrap server calls [`derive_password`] with the same inputs when it hands a gateway its DMAcc.
//! The input is not escaped: a ServerID containing `|` could collide with another (ServerID, name) pair,
//! so ServerIDs should not contain `|` (URIs and plain names never need it).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use omadm::secret::Secret;
use sha2::Sha256;

/// Separator between the ServerID and the account name in the MAC input.
pub const SEPARATOR: &str = "|";

/// The password of client account `client_name` at DM Server `server_id`:
/// `base64url_nopad(HMAC-SHA256(master_key, server_id + "|" + client_name))`.
///
/// Any key length is accepted (HMAC hashes long keys and pads short ones); callers should use at least
/// 32 random bytes. The result is a [`Secret`]: never log it.
pub fn derive_password(master_key: &[u8], server_id: &str, client_name: &str) -> Secret {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the fallback keeps the
    // no-panic rule without an unreachable branch that could hide a real error.
    let mac = match Hmac::<Sha256>::new_from_slice(master_key) {
        Ok(mut mac) => {
            mac.update(server_id.as_bytes());
            mac.update(SEPARATOR.as_bytes());
            mac.update(client_name.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    Secret::new(URL_SAFE_NO_PAD.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed independently with Python:
    /// ```text
    /// import hmac, hashlib, base64
    /// def d(k, s, g):
    ///     m = hmac.new(k, (s + "|" + g).encode(), hashlib.sha256).digest()
    ///     return base64.urlsafe_b64encode(m).rstrip(b"=").decode()
    /// d(b"0123456789abcdef0123456789abcdef", "dms-1", "gw-test")
    ///   == "SfWGdVyqfbbC9qEuqnCrIk0Zyo4zEx2Mop0oLTjM20A"
    /// d(b"master-key", "https://dms.example.com", "IMEI:1")
    ///   == "6Ff90vtwaJJZMCoNkyAZCQkJHmr_tgpNu2--QNMZAZ4"
    /// ```
    #[test]
    fn known_answers() {
        assert_eq!(
            derive_password(b"0123456789abcdef0123456789abcdef", "dms-1", "gw-test").expose(),
            "SfWGdVyqfbbC9qEuqnCrIk0Zyo4zEx2Mop0oLTjM20A"
        );
        assert_eq!(
            derive_password(b"master-key", "https://dms.example.com", "IMEI:1").expose(),
            "6Ff90vtwaJJZMCoNkyAZCQkJHmr_tgpNu2--QNMZAZ4"
        );
    }

    #[test]
    fn differs_per_server_and_client() {
        let k = b"k";
        let a = derive_password(k, "s1", "g");
        assert_ne!(a, derive_password(k, "s2", "g"));
        assert_ne!(a, derive_password(k, "s1", "h"));
        assert_ne!(a, derive_password(b"other", "s1", "g"));
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
