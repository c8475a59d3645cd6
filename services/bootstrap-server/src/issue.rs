//! What the bootstrap server hands out: the DMAcc of a DM Server profile for one gateway (credentials
//! derived from the master key shared with that DM Server), as an encoded DM-profile bootstrap message.

use dm_server::derive_password;
use omadm::bootstrap::{build_tnds, sign_push};
use omadm::codec::{self, Encoding};
use omadm::mo::{AppAuth, AuthLevel, DmAcc};
use omadm::tnds::MgmtTree;
use omadm::tree::Tree;

use crate::error::IssueError;
use crate::profiles::{PushKey, ServerProfile};

/// The `AppAuth/<X>` node name of the client credentials written into the account.
pub const CLCRED_KEY: &str = "1";

/// The DMAcc a gateway gets for `profile`: `ServerID`, `Name`, `AppAddr/1` (the profile's address,
/// AddrType URI), `AAuthPref` and one `AppAuth` CLCRED with `AAuthName` = the gateway id and
/// `AAuthSecret` = `derive_password(master_key, server_id, gateway_id)`.
pub fn account(profile: &ServerProfile, gateway_id: &str) -> DmAcc {
    let mut acc = DmAcc::new(profile.server_id.clone(), profile.address.clone());
    acc.name = profile.name.clone();
    acc.aauth_pref = Some(profile.auth_type);
    acc.app_auth = vec![AppAuth {
        key: CLCRED_KEY.to_owned(),
        level: AuthLevel::Clcred,
        auth_type: profile.auth_type,
        name: Some(gateway_id.to_owned()),
        secret: Some(derive_password(
            profile.master_key.as_bytes(),
            &profile.server_id,
            gateway_id,
        )),
        data: None,
    }];
    acc
}

/// The encoded bootstrap message for `gateway_id` (SyncHdr Target) from `source` (this server's public
/// URL): an Add to `./Inbox` of a TNDS object holding `./DMAcc/<X>`, `<X>` the escaped ServerID.
pub fn bootstrap_message(
    profile: &ServerProfile,
    gateway_id: &str,
    source: &str,
    encoding: Encoding,
) -> Result<Vec<u8>, IssueError> {
    let acc = account(profile, gateway_id);
    let mut tree = Tree::new();
    let uri = DmAcc::account_uri(&tree, &profile.server_id)
        .map_err(|source| IssueError::Account { source })?;
    acc.write(&mut tree, &uri)
        .map_err(|source| IssueError::Account { source })?;
    let tnds = MgmtTree::from_subtree(&tree, &uri).map_err(|source| IssueError::Tnds { source })?;
    let msg = build_tnds(gateway_id, source, &tnds, encoding);
    codec::encode(&msg, encoding).map_err(|source| IssueError::Encode { source })
}

/// The Content-Type of a pushed `body`: `<DM mime>; SEC=<method>; MAC=<hex HMAC-SHA1>` under `key`.
pub fn push_content_type(
    body: &[u8],
    encoding: Encoding,
    key: &PushKey,
) -> Result<String, IssueError> {
    sign_push(encoding.mime(), key.sec, &key.material, body)
        .map_err(|source| IssueError::Sign { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dm_server::config::MasterKey;
    use omadm::auth::{PushKeyMaterial, Sec};
    use omadm::bootstrap::{Bootstrap, verify_push};
    use omadm::element::Limits;
    use omadm::mo::AuthType;
    use omadm::secret::Secret;

    fn profile(server_id: &str) -> ServerProfile {
        ServerProfile {
            server_id: server_id.into(),
            name: Some("Test DM".into()),
            address: "https://dms.example.com/dm".into(),
            auth_type: AuthType::Digest,
            master_key: MasterKey::new("0123456789abcdef0123456789abcdef").unwrap(),
        }
    }

    #[test]
    fn bootstrap_decodes_to_the_derived_account() {
        for enc in [Encoding::Xml, Encoding::Wbxml] {
            // A ServerID that needs escaping as a node name.
            for sid in ["dms-1", "https://dms.example.com:443/x"] {
                let p = profile(sid);
                let bytes = bootstrap_message(&p, "gw-test", "https://bs.example", enc).unwrap();
                let msg = codec::decode_as(&bytes, enc, &Limits::default()).unwrap();
                assert_eq!(msg.hdr.target.loc_uri, "gw-test");
                assert_eq!(msg.hdr.source.loc_uri, "https://bs.example");
                assert_eq!(msg.hdr.session_id, "0");
                let b = Bootstrap::decode(&bytes, &Limits::default()).unwrap();
                let accounts = b.accounts().unwrap();
                assert_eq!(accounts.len(), 1);
                let a = &accounts[0];
                assert_eq!(a.server_id, sid);
                assert_eq!(a.server_url(), Some("https://dms.example.com/dm"));
                assert_eq!(a.aauth_pref, Some(AuthType::Digest));
                let c = a.client_credentials().unwrap();
                assert_eq!(c.auth_type, AuthType::Digest);
                assert_eq!(c.name.as_deref(), Some("gw-test"));
                assert_eq!(
                    c.secret.as_ref().unwrap(),
                    &derive_password(p.master_key.as_bytes(), sid, "gw-test")
                );
            }
        }
        // The dm-server's known answer: the bootstrap carries exactly what it accepts.
        let a = account(&profile("dms-1"), "gw-test");
        assert_eq!(
            a.client_credentials()
                .unwrap()
                .secret
                .as_ref()
                .unwrap()
                .expose(),
            "SfWGdVyqfbbC9qEuqnCrIk0Zyo4zEx2Mop0oLTjM20A"
        );
    }

    #[test]
    fn push_signature_verifies() {
        let key = PushKey {
            sec: Sec::UserPin,
            material: PushKeyMaterial::pin(Secret::new("4711")),
        };
        let body = bootstrap_message(&profile("s"), "gw", "https://bs", Encoding::Wbxml).unwrap();
        let ct = push_content_type(&body, Encoding::Wbxml, &key).unwrap();
        assert!(ct.starts_with("application/vnd.syncml.dm+wbxml; SEC=USERPIN; MAC="));
        assert_eq!(
            verify_push(&ct, &key.material, &body).unwrap(),
            Sec::UserPin
        );
    }
}
