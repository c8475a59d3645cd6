//! dmgw, the OMA DM Gateway: actors, the SQLite store, the admin API and the gateway's DM faces.
//! `main.rs` only parses the command line; everything else is here so tests can drive it.

pub mod actors;
pub mod api;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod dm_client;
pub mod domain;
pub mod health;
pub mod lan;
pub mod mdns;
pub mod onboarding;
pub mod provision;
pub mod startup;
pub mod state;
pub mod store;
pub mod wan;
