//! The gateway's management tree as a view over the store: `./DevInfo`, `./DMAcc/<X>` per
//! account and `./DeviceInventory/<X>` per device; and bootstrapped `./DMAcc` written back.

use std::collections::BTreeSet;

use omadm::mo::{DEVICE_INVENTORY_MO_ID, DevInfo, DeviceRecord, DmAcc};
use omadm::tree::{NewNode, Tree, TreeLimits};
use omadm::uri::DmUri;
use sqlx::sqlite::SqliteConnection;
use tracing::instrument;

use super::{Store, StoreError, accounts, devices};
use crate::domain::{ApplyOutcome, DeviceView, Origin, StoredAccount, WriteOutcome};

/// Spare nodes on top of the computed bound.
const NODE_MARGIN: usize = 64;

/// An upper bound on the nodes `build_tree` creates (so the tree's `max_nodes` never refuses
/// a large inventory, yet stays bounded by what the store holds).
pub fn node_bound(devinfo: &DevInfo, accounts: &[StoredAccount], devices: &[DeviceView]) -> usize {
    // Root, ./DMAcc, ./DeviceInventory; DevInfo: itself, 5 leaves, Ext and its leaves.
    let mut n = 3usize
        .saturating_add(7)
        .saturating_add(devinfo.ext.len())
        .saturating_add(NODE_MARGIN);
    for a in accounts {
        // The account, AppID, ServerID, Name, PrefConRef, AAuthPref, AppAddr, AppAuth, Ext and
        // Ext/BootstrapServerURL; per address 4 nodes and 2 per port; per auth 6.
        let addrs = a.account.app_addr.iter().fold(0usize, |acc, addr| {
            acc.saturating_add(4)
                .saturating_add(addr.ports.len().saturating_mul(2))
        });
        n = n
            .saturating_add(10)
            .saturating_add(addrs)
            .saturating_add(a.account.app_auth.len().saturating_mul(6));
    }
    for d in devices {
        // The record, 8 leaves, ServerIDs; 3 per reported server.
        n = n
            .saturating_add(10)
            .saturating_add(d.servers.len().saturating_mul(3));
    }
    n
}

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(what, e.to_string())
}

/// Copy the subtree at `uri` of `from` into `into` (which must not hold `uri` yet).
fn graft(from: &Tree, into: &mut Tree, uri: &DmUri) -> Result<(), StoreError> {
    for (at, node) in from.walk(uri).map_err(|e| corrupt("devices", e))? {
        let new = NewNode {
            format: node.format,
            mime_type: node.mime_type.clone(),
            acl: node.acl.clone(),
            value: node.value.clone(),
            permanent: node.permanent,
        };
        into.add(&at, new).map_err(|e| corrupt("devices", e))?;
    }
    Ok(())
}

/// Build the management tree from `devinfo` (the gateway's own), the accounts (secrets
/// included: the tree's no-Get rule keeps `AAuthSecret`/`AAuthData` from DM Get) and the devices.
pub fn build_tree(
    devinfo: &DevInfo,
    accounts: &[StoredAccount],
    devices: &[DeviceView],
) -> Result<Tree, StoreError> {
    let mut tree = Tree::with_limits(TreeLimits {
        max_nodes: node_bound(devinfo, accounts, devices),
        ..TreeLimits::default()
    });
    devinfo.write(&mut tree).map_err(|e| StoreError::Invalid {
        field: "devinfo",
        reason: e.to_string(),
    })?;
    let dmacc = DmAcc::root(&tree).map_err(|e| corrupt("accounts", e))?;
    tree.add(&dmacc, NewNode::interior())
        .map_err(|e| corrupt("accounts", e))?;
    for a in accounts {
        let at = accounts::account_uri(&tree, &a.node_name)
            .map_err(|e| corrupt("accounts.node_name", e))?;
        a.account
            .write(&mut tree, &at)
            .map_err(|e| corrupt("accounts", e))?;
    }
    let inventory = DeviceRecord::root(&tree).map_err(|e| corrupt("devices", e))?;
    tree.add(
        &inventory,
        NewNode::interior().with_type(DEVICE_INVENTORY_MO_ID),
    )
    .map_err(|e| corrupt("devices", e))?;
    // Each record is written into a small scratch tree and grafted: `DeviceRecord::write` is
    // all-or-nothing by copying the tree it writes to, which would be quadratic here.
    for d in devices {
        let record = d.to_record().map_err(|e| corrupt("devices", e))?;
        let mut scratch = Tree::new();
        let at = record
            .write(&mut scratch)
            .map_err(|e| corrupt("devices", e))?;
        graft(&scratch, &mut tree, &at)?;
    }
    Ok(tree)
}

/// The accounts of `./DMAcc` in `tree` with their node names; `Invalid` when one is malformed
/// or two share a ServerID.
pub fn accounts_of(tree: &Tree) -> Result<Vec<(String, DmAcc)>, StoreError> {
    let found = DmAcc::all(tree).map_err(|e| StoreError::Invalid {
        field: "dmacc",
        reason: e.to_string(),
    })?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(found.len());
    for (uri, acc) in found {
        if !seen.insert(acc.server_id.clone()) {
            return Err(StoreError::Invalid {
                field: "dmacc",
                reason: "two accounts with the same ServerID".into(),
            });
        }
        let name = uri.name().unwrap_or_default().to_owned();
        out.push((name, acc));
    }
    Ok(out)
}

/// Write every `./DMAcc/*` account of `tree` (what a bootstrap produces): new ServerIDs are
/// added; existing ones are overwritten only with `overwrite`, else skipped. All accounts are
/// validated before any is written; all in the caller's transaction.
#[instrument(skip_all, fields(origin = %origin, overwrite = overwrite))]
pub async fn apply_dmacc(
    conn: &mut SqliteConnection,
    tree: &Tree,
    origin: Origin,
    overwrite: bool,
) -> Result<ApplyOutcome, StoreError> {
    let found = accounts_of(tree)?;
    for (node, acc) in &found {
        accounts::validate_account(acc, node)?;
    }
    let mut out = ApplyOutcome::default();
    for (node, acc) in &found {
        let written = accounts::upsert(conn, acc, Some(node), origin, overwrite).await?;
        let list = match written.outcome {
            WriteOutcome::Inserted => &mut out.added,
            WriteOutcome::Replaced => &mut out.replaced,
            WriteOutcome::Skipped => &mut out.skipped,
        };
        list.push(acc.server_id.clone());
    }
    tracing::info!(
        added = out.added.len(),
        replaced = out.replaced.len(),
        skipped = out.skipped.len(),
        "dmacc applied"
    );
    Ok(out)
}

impl Store {
    /// The management tree: `./DevInfo` from `devinfo`, `./DMAcc/<X>` for every account and
    /// `./DeviceInventory/<X>` for every device, read from one snapshot.
    #[instrument(skip_all)]
    pub async fn management_tree(&self, devinfo: &DevInfo) -> Result<Tree, StoreError> {
        let mut tx = self.begin_read().await?;
        let accounts = accounts::load_all(&mut tx).await?;
        let devices = devices::all(&mut tx).await?;
        tx.commit().await?;
        build_tree(devinfo, &accounts, &devices)
    }

    /// Write the `./DMAcc` accounts of `tree` in one transaction (see [`apply_dmacc`]).
    #[instrument(skip_all, fields(origin = %origin, overwrite = overwrite))]
    pub async fn apply_dmacc(
        &self,
        tree: &Tree,
        origin: Origin,
        overwrite: bool,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let out = apply_dmacc(&mut tx, tree, origin, overwrite).await?;
        tx.commit().await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Millis, ServerView};
    use omadm::mo::DeviceState;
    use std::collections::BTreeMap;

    fn devinfo() -> DevInfo {
        DevInfo {
            dev_id: "dmgw:gw-1".into(),
            man: "dmgw".into(),
            model: "gateway".into(),
            dm_v: "1.2".into(),
            lang: "en".into(),
            ext: BTreeMap::new(),
        }
    }

    fn device(i: usize, servers: usize) -> DeviceView {
        DeviceView {
            dev_id: format!("IMEI:{i}"),
            man: Some("ACME".into()),
            model: Some("S".into()),
            dev_type: Some("sensor".into()),
            dm_v: None,
            lang: None,
            address: Some("10.0.0.1".into()),
            state: DeviceState::Attached,
            first_seen: Millis(1_700_000_000_000),
            last_seen: Millis(1_700_000_000_000),
            updated_at: Millis(1_700_000_000_000),
            servers: (0..servers)
                .map(|s| ServerView {
                    server_id: format!("s{s}"),
                    matched: s % 2 == 0,
                    bootstrap_url: None,
                    reported_at: Millis(0),
                })
                .collect(),
        }
    }

    fn stored(server_id: &str, node: &str) -> StoredAccount {
        StoredAccount {
            node_name: node.into(),
            origin: Origin::Factory,
            account: DmAcc::new(server_id, "https://s/dm"),
            created_at: Millis(0),
            updated_at: Millis(0),
        }
    }

    #[test]
    fn bound_covers_the_tree() {
        let accounts = vec![stored("s0", "A"), stored("s1", "B")];
        let devices: Vec<DeviceView> = (0..50).map(|i| device(i, 3)).collect();
        let tree = build_tree(&devinfo(), &accounts, &devices).unwrap();
        assert!(tree.len() <= node_bound(&devinfo(), &accounts, &devices));
        assert_eq!(DeviceRecord::all(&tree).unwrap().len(), 50);
        assert_eq!(DmAcc::all(&tree).unwrap().len(), 2);
        assert_eq!(DevInfo::read(&tree).unwrap(), devinfo());
        let rec = DeviceRecord::find(&tree, "IMEI:7").unwrap().unwrap();
        assert_eq!(rec, device(7, 3).to_record().unwrap());
    }

    #[test]
    fn large_inventories_fit() {
        let devices: Vec<DeviceView> = (0..4000).map(|i| device(i, 2)).collect();
        let tree = build_tree(&devinfo(), &[], &devices).unwrap();
        assert!(tree.len() > TreeLimits::default().max_nodes);
    }

    #[test]
    fn empty_store_has_the_roots() {
        let tree = build_tree(&devinfo(), &[], &[]).unwrap();
        for uri in ["./DMAcc", "./DeviceInventory", "./DevInfo/DevId"] {
            assert!(tree.exists(&uri.parse().unwrap()), "{uri}");
        }
    }

    #[test]
    fn accounts_of_refuses_duplicates() {
        let mut t = Tree::new();
        DmAcc::new("s", "https://a")
            .write(&mut t, &"./DMAcc/A".parse().unwrap())
            .unwrap();
        assert_eq!(accounts_of(&t).unwrap().len(), 1);
        assert_eq!(accounts_of(&t).unwrap()[0].0, "A");
        DmAcc::new("s", "https://b")
            .write(&mut t, &"./DMAcc/B".parse().unwrap())
            .unwrap();
        assert!(matches!(
            accounts_of(&t),
            Err(StoreError::Invalid { field: "dmacc", .. })
        ));
        assert!(accounts_of(&Tree::new()).unwrap().is_empty());
    }
}
