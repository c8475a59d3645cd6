//! `dm-server`: an OMA DM 1.2 Server, the northbound peer of the dmgw gateway, for demos, integration
//! tests and container e2e. It authenticates clients, records Generic Alerts exactly once, sends queued commands.
//!
//! Layers: [`config`] (flags, accounts, master key) → [`http`] (actix routes, TLS, [`start`]) →
//! [`engine`] (DM sessions over `omadm::session::ServerSession`) → [`store`] (records, JSON Lines file).
//! [`derive`] holds the derived-password construction shared with the DM Bootstrap Server.

pub mod accounts;
pub mod config;
pub mod derive;
pub mod engine;
pub mod error;
pub mod health;
pub mod http;
pub mod observe;
pub mod sessions;
pub mod store;

pub use config::Config;
pub use derive::derive_password;
pub use http::{RunningServer, start};
