//! `device-sim`: simulated OMA DM End Devices for dmgw's demos, tests and load runs. Each device has
//! a real management tree and DM client (`omadm`) and speaks the gateway's LAN contract over HTTP(S).

pub mod callback;
pub mod client;
pub mod device;
pub mod dm;
pub mod fleet;
pub mod health;
pub mod lan;
pub mod load;
pub mod relay;
pub mod scenario;
pub mod tls;
