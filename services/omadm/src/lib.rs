//! `omadm`: the OMA DM 1.2 protocol as a library, free of any runtime, web framework or database.
//! SyncML DM model, XML and WBXML codecs, TNDS, management tree, auth, Generic Alerts, bootstrap, sessions.

pub mod alert;
pub mod auth;
pub mod bootstrap;
pub mod codec;
pub mod element;
pub mod mo;
pub mod model;
pub mod secret;
pub mod session;
pub mod tnds;
pub mod tree;
pub mod uri;
pub mod wbxml;
pub mod xml;
