//! dmgw, the OMA DM Gateway, as a library: domain types, the SQLite store, and (later) the
//! actors and the HTTP faces. `main.rs` only wires them together.

pub mod domain;
pub mod store;
