//! Integration tests of the admin API: each test starts the real `Application` on port 0 with a
//! fresh SQLite file (`helpers::spawn_app`) and talks to it over HTTP as operators and `dmgw` do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod accounts;
mod auth;
mod cli;
mod devices;
mod errors;
mod health;
mod helpers;
mod lifecycle;
mod lists;
mod metrics;
mod openapi;
mod secrets;
mod tree;
