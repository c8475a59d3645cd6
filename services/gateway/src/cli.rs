//! `dmgw devices|accounts|alerts`: operators' commands that call a running gateway's admin API and
//! print a table (or the API's JSON with `--json`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;
use thiserror::Error;

/// Where the admin API is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the gateway's admin API.
    #[arg(long, env = "DMGW_ADMIN_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token of the admin API.
    #[arg(long, env = "DMGW_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Extra CA certificate (PEM) to trust for an HTTPS admin API.
    #[arg(long, env = "DMGW_ADMIN_CA")]
    pub ca_cert: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The operator commands.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// List the End Devices (or show one).
    Devices {
        /// Show only this device, with its reported ServerIDs.
        dev_id: Option<String>,
        /// Only devices in this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// List the DM accounts (DMAcc) of the gateway; secrets are never shown.
    Accounts,
    /// List the alert outbox.
    Alerts {
        /// Only alerts in this state (pending, delivered, failed).
        #[arg(long)]
        state: Option<String>,
    },
}

/// A command failed.
#[derive(Debug, Error)]
pub enum CliError {
    /// The request could not be made.
    #[error("cannot reach the admin API: {0}")]
    Http(#[from] reqwest::Error),
    /// The API answered with an error.
    #[error("the admin API answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error message from the body.
        message: String,
    },
    /// A file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn client(args: &ClientArgs) -> Result<reqwest::Client, CliError> {
    let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    if let Some(ca) = &args.ca_cert {
        let pem = std::fs::read(ca)?;
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(b.build()?)
}

async fn get(args: &ClientArgs, path: &str, query: &[(&str, &str)]) -> Result<Value, CliError> {
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let mut req = client(args)?.get(url).query(query);
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_owned();
        return Err(CliError::Api {
            status: status.as_u16(),
            message,
        });
    }
    Ok(body)
}

fn cell(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                Value::Object(_) if x.get("server_id").is_none() => {
                    // An account's address: its URL.
                    x.get("addr")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                }
                Value::Object(_) => {
                    let id = x.get("server_id").and_then(Value::as_str).unwrap_or("?");
                    let mark = if x.get("matched").and_then(Value::as_bool) == Some(true) {
                        "✓"
                    } else {
                        "…"
                    };
                    format!("{id}{mark}")
                }
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

fn table(rows: &[Value], columns: &[&str]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(columns.iter().copied());
    for r in rows {
        t.add_row(columns.iter().map(|c| cell(r, c)));
    }
    t.to_string()
}

fn items(v: &Value) -> Vec<Value> {
    match v.get("items").or(Some(v)) {
        Some(Value::Array(a)) => a.clone(),
        Some(obj @ Value::Object(_)) => vec![obj.clone()],
        _ => Vec::new(),
    }
}

/// Run one operator command; returns what to print.
pub async fn run(args: &ClientArgs, cmd: &ClientCommand) -> Result<String, CliError> {
    let (value, columns): (Value, &[&str]) = match cmd {
        ClientCommand::Devices {
            dev_id: Some(id), ..
        } => {
            let path = format!("/api/v1/devices/{}", urlencode(id));
            (
                get(args, &path, &[]).await?,
                &[
                    "dev_id",
                    "state",
                    "address",
                    "man",
                    "model",
                    "servers",
                    "last_seen",
                ],
            )
        }
        ClientCommand::Devices {
            dev_id: None,
            state,
        } => {
            let q: Vec<(&str, &str)> = state.iter().map(|s| ("state", s.as_str())).collect();
            (
                get(args, "/api/v1/devices", &q).await?,
                &["dev_id", "state", "address", "servers", "last_seen"],
            )
        }
        ClientCommand::Accounts => (
            get(args, "/api/v1/accounts", &[]).await?,
            &["server_id", "name", "origin", "addresses", "updated_at"],
        ),
        ClientCommand::Alerts { state } => {
            let q: Vec<(&str, &str)> = state.iter().map(|s| ("state", s.as_str())).collect();
            (
                get(args, "/api/v1/alerts", &q).await?,
                &[
                    "id",
                    "dev_id",
                    "server_id",
                    "alert_type",
                    "state",
                    "attempts",
                    "last_error",
                ],
            )
        }
    };
    if args.json {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or_default());
    }
    Ok(table(&items(&value), columns))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_nested_server_lists() {
        let rows = vec![serde_json::json!({
            "dev_id": "IMEI:1",
            "state": "attached",
            "servers": [{"server_id": "dms-1", "matched": true}, {"server_id": "dms-2", "matched": false}],
        })];
        let t = table(&rows, &["dev_id", "state", "servers"]);
        assert!(t.contains("IMEI:1"));
        assert!(t.contains("dms-1✓, dms-2…"));
        let rows = vec![serde_json::json!({
            "server_id": "dms-1",
            "addresses": [{"key": "1", "addr": "https://dms/dm", "addr_type": "URI", "ports": []}],
        })];
        assert!(table(&rows, &["addresses"]).contains("https://dms/dm"));
    }

    #[test]
    fn ids_are_escaped_in_paths() {
        assert_eq!(urlencode("IMEI:35/1"), "IMEI%3A35%2F1");
    }
}
