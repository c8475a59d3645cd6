//! DMAcc accounts: `accounts`, `account_addrs`, `account_ports`, `account_auths` and, apart,
//! `account_secrets`. Views for the API are read without ever selecting a secret column.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use omadm::mo::{AddrType, AppAddr, AppAuth, AuthLevel, AuthType, DmAcc, MoError, Port};
use omadm::secret::Secret;
use omadm::tree::Tree;
use omadm::uri::DmUri;
use sqlx::sqlite::SqliteConnection;
use sqlx::{FromRow, Sqlite};
use tracing::instrument;

use super::{Store, StoreError, json_ids, map_unique, next_cursor, parse_stored};
use crate::domain::{
    AccountView, AccountWrite, AddressView, AuthView, Millis, Origin, Page, Paged, PortView,
    StoredAccount, WriteOutcome, check_id, check_text,
};

#[derive(Debug, FromRow)]
struct AccountRow {
    id: i64,
    server_id: String,
    node_name: String,
    name: Option<String>,
    pref_con_ref: Option<String>,
    aauth_pref: Option<String>,
    bootstrap_server_url: Option<String>,
    origin: String,
    created_at: i64,
    updated_at: i64,
}

const ACCOUNT_COLUMNS: &str = "id, server_id, node_name, name, pref_con_ref, aauth_pref, \
                               bootstrap_server_url, origin, created_at, updated_at";

#[derive(Debug, FromRow)]
struct AddrRow {
    account_id: i64,
    node_name: String,
    addr: String,
    addr_type: String,
}

#[derive(Debug, FromRow)]
struct PortRow {
    account_id: i64,
    addr_node: String,
    node_name: String,
    port_nbr: i64,
}

/// An `account_auths` row with its secrets (only read to build a `DmAcc`).
#[derive(FromRow)]
struct AuthRow {
    account_id: i64,
    node_name: String,
    level: String,
    auth_type: String,
    auth_name: Option<String>,
    secret: Option<String>,
    data: Option<String>,
}

/// An `account_auths` row with only the presence of its secrets.
#[derive(Debug, FromRow)]
struct AuthFlagsRow {
    account_id: i64,
    node_name: String,
    level: String,
    auth_type: String,
    auth_name: Option<String>,
    has_secret: bool,
    has_data: bool,
}

/// The node name of a new account when none is given: the escaped ServerID (`omadm::mo`).
pub fn default_node_name(server_id: &str) -> Result<String, StoreError> {
    omadm::mo::escape_name(server_id).map_err(|_| StoreError::Invalid {
        field: "server_id",
        reason: "cannot name a ./DMAcc node".into(),
    })
}

fn mo_invalid(e: &MoError) -> StoreError {
    let field = match e {
        MoError::InvalidField { field, .. } => field,
        _ => "account",
    };
    StoreError::Invalid {
        field,
        reason: e.to_string(),
    }
}

/// Check that `acc` can be stored and shown at `./DMAcc/<node_name>`: `DmAcc::validate`, the
/// length rules, and a trial write into a scratch tree (node names, values).
pub fn validate_account(acc: &DmAcc, node_name: &str) -> Result<(), StoreError> {
    acc.validate().map_err(|e| mo_invalid(&e))?;
    check_id("server_id", &acc.server_id)?;
    check_id("node_name", node_name)?;
    for (field, value) in [
        ("name", acc.name.as_deref()),
        ("pref_con_ref", acc.pref_con_ref.as_deref()),
        ("bootstrap_server_url", acc.bootstrap_server_url.as_deref()),
    ] {
        if let Some(v) = value {
            check_text(field, v)?;
        }
    }
    for a in &acc.app_addr {
        check_text("app_addr addr", &a.addr)?;
    }
    for a in &acc.app_auth {
        if let Some(n) = &a.name {
            check_text("app_auth name", n)?;
        }
    }
    let mut scratch = Tree::new();
    let at = DmAcc::root(&scratch)
        .and_then(|root| Ok(root.join_with_limits(node_name, &scratch.limits().uri)?))
        .map_err(|e| StoreError::Invalid {
            field: "node_name",
            reason: e.to_string(),
        })?;
    acc.write(&mut scratch, &at).map_err(|e| mo_invalid(&e))
}

fn build_addrs(
    addrs: Vec<AddrRow>,
    ports: Vec<PortRow>,
) -> Result<BTreeMap<i64, Vec<AppAddr>>, StoreError> {
    let mut port_map: BTreeMap<(i64, String), Vec<Port>> = BTreeMap::new();
    for p in ports {
        let port_nbr = u16::try_from(p.port_nbr).map_err(|_| {
            StoreError::corrupt(
                "account_ports.port_nbr",
                format!("{} out of range", p.port_nbr),
            )
        })?;
        port_map
            .entry((p.account_id, p.addr_node))
            .or_default()
            .push(Port {
                key: p.node_name,
                port_nbr,
            });
    }
    let mut out: BTreeMap<i64, Vec<AppAddr>> = BTreeMap::new();
    for a in addrs {
        let addr_type = parse_stored("account_addrs.addr_type", &a.addr_type, AddrType::parse)?;
        let ports = port_map
            .remove(&(a.account_id, a.node_name.clone()))
            .unwrap_or_default();
        out.entry(a.account_id).or_default().push(AppAddr {
            key: a.node_name,
            addr: a.addr,
            addr_type,
            ports,
        });
    }
    Ok(out)
}

async fn load_addrs(
    conn: &mut SqliteConnection,
    ids: &str,
) -> Result<BTreeMap<i64, Vec<AppAddr>>, StoreError> {
    let addrs: Vec<AddrRow> = sqlx::query_as(
        "SELECT account_id, node_name, addr, addr_type FROM account_addrs \
         WHERE account_id IN (SELECT value FROM json_each(?1)) ORDER BY account_id, node_name",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let ports: Vec<PortRow> = sqlx::query_as(
        "SELECT account_id, addr_node, node_name, port_nbr FROM account_ports \
         WHERE account_id IN (SELECT value FROM json_each(?1)) \
         ORDER BY account_id, addr_node, node_name",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    build_addrs(addrs, ports)
}

fn parse_level(text: &str) -> Result<AuthLevel, StoreError> {
    parse_stored("account_auths.level", text, AuthLevel::parse)
}

fn parse_auth_type(text: &str) -> Result<AuthType, StoreError> {
    parse_stored("account_auths.auth_type", text, AuthType::parse)
}

async fn load_auths(
    conn: &mut SqliteConnection,
    ids: &str,
) -> Result<BTreeMap<i64, Vec<AppAuth>>, StoreError> {
    let rows: Vec<AuthRow> = sqlx::query_as(
        "SELECT a.account_id, a.node_name, a.level, a.auth_type, a.auth_name, s.secret, s.data \
         FROM account_auths a LEFT JOIN account_secrets s \
           ON s.account_id = a.account_id AND s.node_name = a.node_name \
         WHERE a.account_id IN (SELECT value FROM json_each(?1)) \
         ORDER BY a.account_id, a.node_name",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<i64, Vec<AppAuth>> = BTreeMap::new();
    for r in rows {
        let auth = AppAuth {
            level: parse_level(&r.level)?,
            auth_type: parse_auth_type(&r.auth_type)?,
            key: r.node_name,
            name: r.auth_name,
            secret: r.secret.map(Secret::new),
            data: r.data.map(Secret::new),
        };
        out.entry(r.account_id).or_default().push(auth);
    }
    Ok(out)
}

async fn load_auth_views(
    conn: &mut SqliteConnection,
    ids: &str,
) -> Result<BTreeMap<i64, Vec<AuthView>>, StoreError> {
    let rows: Vec<AuthFlagsRow> = sqlx::query_as(
        "SELECT a.account_id, a.node_name, a.level, a.auth_type, a.auth_name, \
                s.secret IS NOT NULL AS has_secret, s.data IS NOT NULL AS has_data \
         FROM account_auths a LEFT JOIN account_secrets s \
           ON s.account_id = a.account_id AND s.node_name = a.node_name \
         WHERE a.account_id IN (SELECT value FROM json_each(?1)) \
         ORDER BY a.account_id, a.node_name",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<i64, Vec<AuthView>> = BTreeMap::new();
    for r in rows {
        let view = AuthView {
            level: parse_level(&r.level)?,
            auth_type: parse_auth_type(&r.auth_type)?,
            key: r.node_name,
            name: r.auth_name,
            has_secret: r.has_secret,
            has_data: r.has_data,
        };
        out.entry(r.account_id).or_default().push(view);
    }
    Ok(out)
}

fn parse_pref(row: &AccountRow) -> Result<Option<AuthType>, StoreError> {
    row.aauth_pref
        .as_deref()
        .map(|t| parse_stored("accounts.aauth_pref", t, AuthType::parse))
        .transpose()
}

fn to_stored(
    row: AccountRow,
    addrs: &mut BTreeMap<i64, Vec<AppAddr>>,
    auths: &mut BTreeMap<i64, Vec<AppAuth>>,
) -> Result<StoredAccount, StoreError> {
    let origin = parse_stored("accounts.origin", &row.origin, Origin::parse)?;
    let aauth_pref = parse_pref(&row)?;
    Ok(StoredAccount {
        account: DmAcc {
            server_id: row.server_id,
            name: row.name,
            pref_con_ref: row.pref_con_ref,
            app_addr: addrs.remove(&row.id).unwrap_or_default(),
            aauth_pref,
            app_auth: auths.remove(&row.id).unwrap_or_default(),
            bootstrap_server_url: row.bootstrap_server_url,
        },
        node_name: row.node_name,
        origin,
        created_at: Millis(row.created_at),
        updated_at: Millis(row.updated_at),
    })
}

fn to_view(
    row: AccountRow,
    addrs: &mut BTreeMap<i64, Vec<AppAddr>>,
    auths: &mut BTreeMap<i64, Vec<AuthView>>,
) -> Result<AccountView, StoreError> {
    let origin = parse_stored("accounts.origin", &row.origin, Origin::parse)?;
    let aauth_pref = parse_pref(&row)?;
    Ok(AccountView {
        server_id: row.server_id,
        node_name: row.node_name,
        name: row.name,
        pref_con_ref: row.pref_con_ref,
        aauth_pref,
        addresses: addrs
            .remove(&row.id)
            .unwrap_or_default()
            .into_iter()
            .map(|a| AddressView {
                key: a.key,
                addr: a.addr,
                addr_type: a.addr_type,
                ports: a
                    .ports
                    .into_iter()
                    .map(|p| PortView {
                        key: p.key,
                        port_nbr: p.port_nbr,
                    })
                    .collect(),
            })
            .collect(),
        auths: auths.remove(&row.id).unwrap_or_default(),
        bootstrap_server_url: row.bootstrap_server_url,
        origin,
        created_at: Millis(row.created_at),
        updated_at: Millis(row.updated_at),
    })
}

async fn views_of(
    conn: &mut SqliteConnection,
    rows: Vec<AccountRow>,
) -> Result<Vec<AccountView>, StoreError> {
    let ids = json_ids(rows.iter().map(|r| r.id));
    let mut addrs = load_addrs(conn, &ids).await?;
    let mut auths = load_auth_views(conn, &ids).await?;
    rows.into_iter()
        .map(|r| to_view(r, &mut addrs, &mut auths))
        .collect()
}

async fn stored_of(
    conn: &mut SqliteConnection,
    rows: Vec<AccountRow>,
) -> Result<Vec<StoredAccount>, StoreError> {
    let ids = json_ids(rows.iter().map(|r| r.id));
    let mut addrs = load_addrs(conn, &ids).await?;
    let mut auths = load_auths(conn, &ids).await?;
    rows.into_iter()
        .map(|r| to_stored(r, &mut addrs, &mut auths))
        .collect()
}

async fn row_by_server_id(
    conn: &mut SqliteConnection,
    server_id: &str,
) -> Result<Option<AccountRow>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE server_id = ?1");
    Ok(
        sqlx::query_as::<Sqlite, AccountRow>(sqlx::AssertSqlSafe(sql))
            .bind(server_id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

async fn write_children(
    conn: &mut SqliteConnection,
    account_id: i64,
    acc: &DmAcc,
) -> Result<(), StoreError> {
    for a in &acc.app_addr {
        sqlx::query(
            "INSERT INTO account_addrs (account_id, node_name, addr, addr_type) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(account_id)
        .bind(&a.key)
        .bind(&a.addr)
        .bind(a.addr_type.as_str())
        .execute(&mut *conn)
        .await?;
        for p in &a.ports {
            sqlx::query(
                "INSERT INTO account_ports (account_id, addr_node, node_name, port_nbr) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(account_id)
            .bind(&a.key)
            .bind(&p.key)
            .bind(i64::from(p.port_nbr))
            .execute(&mut *conn)
            .await?;
        }
    }
    for a in &acc.app_auth {
        sqlx::query(
            "INSERT INTO account_auths (account_id, node_name, level, auth_type, auth_name) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(account_id)
        .bind(&a.key)
        .bind(a.level.as_str())
        .bind(a.auth_type.as_str())
        .bind(a.name.as_deref())
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO account_secrets (account_id, node_name, secret, data) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(account_id)
        .bind(&a.key)
        .bind(a.secret.as_ref().map(Secret::expose))
        .bind(a.data.as_ref().map(|d| d.expose().trim()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_validated(
    conn: &mut SqliteConnection,
    acc: &DmAcc,
    node_name: &str,
    origin: Origin,
    now: Millis,
) -> Result<StoredAccount, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO accounts (server_id, node_name, name, pref_con_ref, aauth_pref, \
                               bootstrap_server_url, origin, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) RETURNING id",
    )
    .bind(&acc.server_id)
    .bind(node_name)
    .bind(acc.name.as_deref())
    .bind(acc.pref_con_ref.as_deref())
    .bind(acc.aauth_pref.map(AuthType::as_str))
    .bind(acc.bootstrap_server_url.as_deref())
    .bind(origin.as_str())
    .bind(now.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        map_unique(
            e,
            &[
                ("accounts.server_id", "account", &acc.server_id),
                ("accounts.node_name", "account node", node_name),
            ],
        )
    })?;
    write_children(conn, id, acc).await?;
    Ok(StoredAccount {
        node_name: node_name.to_owned(),
        origin,
        account: acc.clone(),
        created_at: now,
        updated_at: now,
    })
}

/// Insert `acc` (with its AppAddr, AppAuth and secrets) at `./DMAcc/<node_name>` (default: the
/// escaped ServerID). `Conflict` when the ServerID or the node name is taken.
#[instrument(skip_all, fields(server_id = %acc.server_id, origin = %origin))]
pub async fn insert(
    conn: &mut SqliteConnection,
    acc: &DmAcc,
    node_name: Option<&str>,
    origin: Origin,
) -> Result<AccountView, StoreError> {
    let node = match node_name {
        Some(n) => n.to_owned(),
        None => default_node_name(&acc.server_id)?,
    };
    validate_account(acc, &node)?;
    let stored = insert_validated(conn, acc, &node, origin, Millis::now()).await?;
    Ok(AccountView::of(&stored))
}

async fn node_name_taken(conn: &mut SqliteConnection, node_name: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE node_name = ?1")
        .bind(node_name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(n > 0)
}

/// Insert `acc`, or, when its ServerID exists, overwrite it (`overwrite`) or leave it
/// (`Skipped`). A replaced account keeps its node name and creation time. A new account whose
/// wanted node name is taken by another ServerID is put at the escaped ServerID instead.
#[instrument(skip_all, fields(server_id = %acc.server_id, origin = %origin, overwrite = overwrite))]
pub async fn upsert(
    conn: &mut SqliteConnection,
    acc: &DmAcc,
    node_name: Option<&str>,
    origin: Origin,
    overwrite: bool,
) -> Result<AccountWrite, StoreError> {
    let fallback = default_node_name(&acc.server_id)?;
    let wanted = node_name.unwrap_or(&fallback).to_owned();
    validate_account(acc, &wanted)?;
    let now = Millis::now();
    match row_by_server_id(conn, &acc.server_id).await? {
        None => {
            let node = if wanted != fallback && node_name_taken(conn, &wanted).await? {
                validate_account(acc, &fallback)?;
                fallback
            } else {
                wanted
            };
            let stored = insert_validated(conn, acc, &node, origin, now).await?;
            Ok(AccountWrite {
                outcome: WriteOutcome::Inserted,
                account: AccountView::of(&stored),
            })
        }
        Some(row) if !overwrite => {
            let mut views = views_of(conn, vec![row]).await?;
            let account = views
                .pop()
                .ok_or_else(|| StoreError::not_found("account", &acc.server_id))?;
            Ok(AccountWrite {
                outcome: WriteOutcome::Skipped,
                account,
            })
        }
        Some(row) => {
            validate_account(acc, &row.node_name)?;
            let origin_was = row.origin.clone();
            sqlx::query(
                "UPDATE accounts SET name = ?2, pref_con_ref = ?3, aauth_pref = ?4, \
                        bootstrap_server_url = ?5, origin = ?6, updated_at = ?7 \
                 WHERE id = ?1",
            )
            .bind(row.id)
            .bind(acc.name.as_deref())
            .bind(acc.pref_con_ref.as_deref())
            .bind(acc.aauth_pref.map(AuthType::as_str))
            .bind(acc.bootstrap_server_url.as_deref())
            .bind(origin.as_str())
            .bind(now.0)
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM account_addrs WHERE account_id = ?1")
                .bind(row.id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM account_auths WHERE account_id = ?1")
                .bind(row.id)
                .execute(&mut *conn)
                .await?;
            write_children(conn, row.id, acc).await?;
            tracing::debug!(origin_was = %origin_was, "account replaced");
            let stored = StoredAccount {
                node_name: row.node_name,
                origin,
                account: acc.clone(),
                created_at: Millis(row.created_at),
                updated_at: now,
            };
            Ok(AccountWrite {
                outcome: WriteOutcome::Replaced,
                account: AccountView::of(&stored),
            })
        }
    }
}

/// The view (no secrets) of the account with `server_id`.
#[instrument(skip_all, fields(server_id = %server_id))]
pub async fn view(conn: &mut SqliteConnection, server_id: &str) -> Result<AccountView, StoreError> {
    let row = row_by_server_id(conn, server_id)
        .await?
        .ok_or_else(|| StoreError::not_found("account", server_id))?;
    views_of(conn, vec![row])
        .await?
        .pop()
        .ok_or_else(|| StoreError::not_found("account", server_id))
}

/// A page of account views, in creation order.
#[instrument(skip_all, fields(limit = page.limit(), after = page.after()))]
pub async fn list(
    conn: &mut SqliteConnection,
    page: &Page,
) -> Result<Paged<AccountView>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > ?1 ORDER BY id LIMIT ?2");
    let rows: Vec<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(page.after().unwrap_or(i64::MIN))
        .bind(i64::from(page.limit()))
        .fetch_all(&mut *conn)
        .await?;
    let next_after = next_cursor(page, rows.len(), rows.last().map(|r| r.id));
    Ok(Paged {
        items: views_of(conn, rows).await?,
        next_after,
    })
}

/// The full account (with secrets) with `server_id`.
#[instrument(skip_all, fields(server_id = %server_id))]
pub async fn load(
    conn: &mut SqliteConnection,
    server_id: &str,
) -> Result<StoredAccount, StoreError> {
    let row = row_by_server_id(conn, server_id)
        .await?
        .ok_or_else(|| StoreError::not_found("account", server_id))?;
    stored_of(conn, vec![row])
        .await?
        .pop()
        .ok_or_else(|| StoreError::not_found("account", server_id))
}

/// Every account with its secrets, in creation order.
#[instrument(skip_all)]
pub async fn load_all(conn: &mut SqliteConnection) -> Result<Vec<StoredAccount>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id");
    let rows: Vec<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    stored_of(conn, rows).await
}

/// The ServerIDs of every account.
#[instrument(skip_all)]
pub async fn server_ids(conn: &mut SqliteConnection) -> Result<BTreeSet<String>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT server_id FROM accounts")
        .fetch_all(&mut *conn)
        .await?;
    Ok(ids.into_iter().collect())
}

/// Delete the account with `server_id` (its addresses, auths and secrets go with it) and mark
/// the devices' reports of that ServerID unmatched.
#[instrument(skip_all, fields(server_id = %server_id))]
pub async fn delete(conn: &mut SqliteConnection, server_id: &str) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM accounts WHERE server_id = ?1")
        .bind(server_id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::not_found("account", server_id));
    }
    sqlx::query("UPDATE device_servers SET matched = 0 WHERE server_id = ?1")
        .bind(server_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Store a new `AAuthData` (nonce, base64 text) for `AppAuth/<auth_key>` of the account with
/// `server_id`, or clear it (`None`). Done after each DM session that changed a nonce.
#[instrument(skip_all, fields(server_id = %server_id, auth_key = %auth_key))]
pub async fn set_auth_data(
    conn: &mut SqliteConnection,
    server_id: &str,
    auth_key: &str,
    data: Option<&Secret>,
) -> Result<(), StoreError> {
    let data = data.map(|d| d.expose().trim());
    if let Some(d) = data
        && B64.decode(d).is_err()
    {
        return Err(StoreError::Invalid {
            field: "app_auth data",
            reason: "not base64".into(),
        });
    }
    let done = sqlx::query(
        "UPDATE account_secrets SET data = ?3 \
         WHERE account_id = (SELECT id FROM accounts WHERE server_id = ?1) AND node_name = ?2",
    )
    .bind(server_id)
    .bind(auth_key)
    .bind(data)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            what: "account auth",
            key: format!("{server_id}/AppAuth/{auth_key}"),
        });
    }
    Ok(())
}

/// `./DMAcc/<node_name>` of a tree, for callers that place accounts.
pub fn account_uri(tree: &Tree, node_name: &str) -> Result<DmUri, StoreError> {
    DmAcc::root(tree)
        .and_then(|root| Ok(root.join_with_limits(node_name, &tree.limits().uri)?))
        .map_err(|e| StoreError::Invalid {
            field: "node_name",
            reason: e.to_string(),
        })
}

impl Store {
    /// Insert an account in its own transaction (see [`insert`]).
    #[instrument(skip_all, fields(server_id = %acc.server_id))]
    pub async fn insert_account(
        &self,
        acc: &DmAcc,
        node_name: Option<&str>,
        origin: Origin,
    ) -> Result<AccountView, StoreError> {
        let mut tx = self.begin().await?;
        let view = insert(&mut tx, acc, node_name, origin).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Insert or replace an account in its own transaction (see [`upsert`]).
    #[instrument(skip_all, fields(server_id = %acc.server_id, overwrite = overwrite))]
    pub async fn insert_or_replace_account(
        &self,
        acc: &DmAcc,
        node_name: Option<&str>,
        origin: Origin,
        overwrite: bool,
    ) -> Result<AccountWrite, StoreError> {
        let mut tx = self.begin().await?;
        let out = upsert(&mut tx, acc, node_name, origin, overwrite).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The view (no secrets) of the account with `server_id`.
    #[instrument(skip_all, fields(server_id = %server_id))]
    pub async fn account(&self, server_id: &str) -> Result<AccountView, StoreError> {
        let mut tx = self.begin_read().await?;
        let out = view(&mut tx, server_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// A page of account views.
    #[instrument(skip_all)]
    pub async fn list_accounts(&self, page: &Page) -> Result<Paged<AccountView>, StoreError> {
        let mut tx = self.begin_read().await?;
        let out = list(&mut tx, page).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The full account (with secrets) with `server_id`.
    #[instrument(skip_all, fields(server_id = %server_id))]
    pub async fn load_account(&self, server_id: &str) -> Result<StoredAccount, StoreError> {
        let mut tx = self.begin_read().await?;
        let out = load(&mut tx, server_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Every account with its secrets.
    #[instrument(skip_all)]
    pub async fn load_accounts(&self) -> Result<Vec<StoredAccount>, StoreError> {
        let mut tx = self.begin_read().await?;
        let out = load_all(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The ServerIDs of every account.
    #[instrument(skip_all)]
    pub async fn server_ids(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut conn = self.conn().await?;
        server_ids(&mut conn).await
    }

    /// Delete an account in its own transaction (see [`delete`]).
    #[instrument(skip_all, fields(server_id = %server_id))]
    pub async fn delete_account(&self, server_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        delete(&mut tx, server_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Update a nonce in its own transaction (see [`set_auth_data`]).
    #[instrument(skip_all, fields(server_id = %server_id, auth_key = %auth_key))]
    pub async fn update_auth_data(
        &self,
        server_id: &str,
        auth_key: &str,
        data: Option<&Secret>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        set_auth_data(&mut tx, server_id, auth_key, data).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_refuses_bad_accounts() {
        let ok = DmAcc::new("s1", "https://s1/dm");
        assert!(validate_account(&ok, "S1").is_ok());
        assert!(matches!(
            validate_account(&ok, "a/b"),
            Err(StoreError::Invalid {
                field: "node_name",
                ..
            })
        ));
        let mut bad = ok.clone();
        bad.server_id = " ".into();
        assert!(matches!(
            validate_account(&bad, "S1"),
            Err(StoreError::Invalid {
                field: "server_id",
                ..
            })
        ));
        let mut bad = ok.clone();
        if let Some(a) = bad.app_addr.first_mut() {
            a.key = "x/y".into();
        }
        assert!(validate_account(&bad, "S1").is_err());
        let mut bad = ok;
        bad.app_auth.push(AppAuth {
            key: "1".into(),
            level: AuthLevel::Clcred,
            auth_type: AuthType::Digest,
            name: None,
            secret: Some(Secret::new("pw")),
            data: Some(Secret::new("not base64!")),
        });
        let e = validate_account(&bad, "S1").unwrap_err();
        assert!(!e.to_string().contains("pw"));
        assert!(matches!(
            e,
            StoreError::Invalid {
                field: "app_auth data",
                ..
            }
        ));
    }

    #[test]
    fn default_node_names() {
        assert_eq!(
            default_node_name("dm.example.com").unwrap(),
            "dm_2Eexample_2Ecom"
        );
        assert!(default_node_name(&".".repeat(40)).is_err());
    }

    #[test]
    fn addr_rows_assemble() {
        let addrs = vec![
            AddrRow {
                account_id: 1,
                node_name: "1".into(),
                addr: "https://a".into(),
                addr_type: "URI".into(),
            },
            AddrRow {
                account_id: 2,
                node_name: "1".into(),
                addr: "10.0.0.1".into(),
                addr_type: "IPv4".into(),
            },
        ];
        let ports = vec![PortRow {
            account_id: 2,
            addr_node: "1".into(),
            node_name: "p".into(),
            port_nbr: 8080,
        }];
        let map = build_addrs(addrs, ports).unwrap();
        assert_eq!(map.get(&2).unwrap()[0].ports[0].port_nbr, 8080);
        assert!(map.get(&1).unwrap()[0].ports.is_empty());
        let bad_port = vec![PortRow {
            account_id: 2,
            addr_node: "1".into(),
            node_name: "p".into(),
            port_nbr: 70_000,
        }];
        assert!(matches!(
            build_addrs(Vec::new(), bad_port),
            Err(StoreError::Corrupt { .. })
        ));
        let bad_type = vec![AddrRow {
            account_id: 1,
            node_name: "1".into(),
            addr: "x".into(),
            addr_type: "X25".into(),
        }];
        assert!(build_addrs(bad_type, Vec::new()).is_err());
    }
}
