//! `dmgw-demo`: three DM Servers, a DM Bootstrap Server, the gateway and four simulated End Devices
//! started in one process on loopback, with the story of each device's onboarding (both bootstrap
//! workflows included) told as it happens and a JSON summary.
//!
//! Layers: [`cli`] (flags → [`Options`]) → [`run`] (start, watch, stop) over [`stack`] (the
//! services, TLS from [`pki`], files in [`datadir`]), [`observe`] (polling the gateway, the DM
//! Servers and the bootstrap server), [`story`] (what each device went through, when it has settled) and [`summary`] (the
//! JSON line). [`plan`] is the cast: which servers and devices, with which accounts and consent.

pub mod cli;
pub mod datadir;
pub mod error;
pub mod observe;
pub mod pki;
pub mod plan;
pub mod run;
pub mod stack;
pub mod story;
pub mod summary;

pub use cli::{Cli, Options};
pub use error::DemoError;
pub use run::{run, run_blocking};
pub use summary::{StopReason, Summary};
