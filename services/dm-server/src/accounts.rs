//! Client accounts the server accepts: the static list from the accounts file, then passwords derived
//! from the master key; and the `ClientDirectory` view that `omadm`'s server session authenticates against.

use std::collections::HashMap;

use omadm::secret::Secret;
use omadm::session::ClientDirectory;

use crate::config::{Account, MasterKey};
use crate::derive::derive_password;

/// Where client passwords come from.
#[derive(Debug, Clone)]
pub struct Accounts {
    server_id: String,
    accounts: Vec<Account>,
    master_key: Option<MasterKey>,
}

impl Accounts {
    /// Static accounts, and derived ones when a master key is given.
    pub fn new(
        server_id: impl Into<String>,
        accounts: Vec<Account>,
        master_key: Option<MasterKey>,
    ) -> Accounts {
        Accounts {
            server_id: server_id.into(),
            accounts,
            master_key,
        }
    }

    /// The password of account `name` used by device `dev_id`: a static account of that name (bound to
    /// that DevId, or to none) first, else the derived password when there is a master key.
    pub fn password(&self, dev_id: &str, name: &str) -> Option<Secret> {
        let mut unbound = None;
        for a in self.accounts.iter().filter(|a| a.name == name) {
            match a.dev_id.as_deref() {
                Some(d) if d == dev_id => return Some(a.password.clone()),
                Some(_) => {}
                None => unbound = unbound.or(Some(a)),
            }
        }
        if let Some(a) = unbound {
            return Some(a.password.clone());
        }
        if self.accounts.iter().any(|a| a.name == name) {
            // A static account of this name exists but is bound to another device: no fallback.
            return None;
        }
        self.master_key
            .as_ref()
            .map(|k| derive_password(k.as_bytes(), &self.server_id, name))
    }

    /// True when no client can authenticate (no static account, no master key).
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.master_key.is_none()
    }
}

/// What an `omadm` server session sees: the accounts and the nonces this server issued.
#[derive(Debug)]
pub struct Directory<'a> {
    /// The accounts.
    pub accounts: &'a Accounts,
    /// Nonces by DevId.
    pub nonces: &'a HashMap<String, Vec<u8>>,
}

impl ClientDirectory for Directory<'_> {
    fn password(&self, dev_id: &str, name: &str) -> Option<Secret> {
        self.accounts.password(dev_id, name)
    }

    fn nonce(&self, dev_id: &str) -> Option<Vec<u8>> {
        self.nonces.get(dev_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(name: &str, pw: &str, dev: Option<&str>) -> Account {
        Account {
            name: name.into(),
            password: Secret::new(pw),
            dev_id: dev.map(str::to_owned),
        }
    }

    #[test]
    fn static_then_derived() {
        let key = MasterKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let a = Accounts::new(
            "dms-1",
            vec![
                acc("bound", "b", Some("IMEI:1")),
                acc("open", "o", None),
                acc("both", "any", None),
                acc("both", "one", Some("IMEI:1")),
            ],
            Some(key),
        );
        assert_eq!(a.password("IMEI:1", "bound").unwrap().expose(), "b");
        assert_eq!(a.password("IMEI:2", "bound"), None);
        assert_eq!(a.password("IMEI:9", "open").unwrap().expose(), "o");
        assert_eq!(a.password("IMEI:1", "both").unwrap().expose(), "one");
        assert_eq!(a.password("IMEI:2", "both").unwrap().expose(), "any");
        assert_eq!(
            a.password("IMEI:5", "gw-test").unwrap().expose(),
            "SfWGdVyqfbbC9qEuqnCrIk0Zyo4zEx2Mop0oLTjM20A"
        );
        let none = Accounts::new("dms-1", Vec::new(), None);
        assert!(none.is_empty());
        assert_eq!(none.password("d", "n"), None);
    }
}
