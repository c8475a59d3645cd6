//! `bootstrap-server`: a DM Bootstrap Server for dmgw gateways. Workflow 1: a gateway GETs a DM-profile
//! bootstrap over TLS; workflow 2: an End Device's AssociatedGateway alert makes it push one, MAC-signed.
//!
//! Layers: [`config`] and [`profiles`] (flags, profiles file) → [`http`] (actix routes, TLS via [`tls`],
//! [`start`]) → [`engine`] (gateway authentication, device DM sessions, associations) → [`issue`]
//! (the bootstrap messages), [`push`] (background delivery), [`records`] (what the API shows).
//! [`assoc`] defines the AssociatedGateway data format. Credentials come from
//! `dm_server::derive_password`, so the DM Server sharing a profile's master key accepts them.

pub mod assoc;
pub mod config;
pub mod engine;
pub mod error;
pub mod health;
pub mod http;
pub mod issue;
pub mod observe;
pub mod profiles;
pub mod push;
pub mod records;
pub mod tls;

pub use config::Config;
pub use http::{RunningServer, start};
