//! The command line of `dmgw-demo` (every flag also an environment variable) and the [`Options`]
//! the run takes, so tests can run the demo without parsing anything.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// How long `--exit` waits for the devices by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the gateway and the DM Servers are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Where the demo keeps its files by default (emptied at each start).
pub const DEFAULT_DATA_DIR: &str = "./data/demo";

/// dmgw demo: three OMA DM Servers, a DM Bootstrap Server, the DM Gateway and four End Devices in
/// one process, on loopback. Tells each device's onboarding, both bootstrap workflows included, as
/// it happens, then prints one JSON summary line.
#[derive(Debug, Clone, Parser)]
#[command(name = "dmgw-demo", version, about)]
pub struct Cli {
    /// Stop once every device has settled: refused, or attached with its bootstrap jobs done and
    /// every expected alert received by its DM Server. Without it the demo keeps running until
    /// Ctrl-C, so the admin API can be explored.
    #[arg(long, env = "DMGW_DEMO_EXIT")]
    pub exit: bool,
    /// Folder for the demo's files (SQLite database, DM Server data, bootstrap-server profiles, TLS
    /// material). Emptied at start; a non-empty folder that the demo did not create is refused.
    #[arg(long, env = "DMGW_DEMO_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// With --exit: give up when not settled after this long (e.g. 30s, 2m); exit status 1.
    /// Default: 60s.
    #[arg(long, env = "DMGW_DEMO_TIMEOUT", requires = "exit", value_parser = duration_arg)]
    pub timeout: Option<Duration>,
    /// Print only the JSON summary line on stdout (no story, no progress bar).
    #[arg(long, env = "DMGW_DEMO_JSON_ONLY")]
    pub json_only: bool,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    device_sim::scenario::parse_duration("--timeout", text).map_err(|e| e.to_string())
}

/// What one run of the demo does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Folder for the demo's files (emptied at start).
    pub data_dir: PathBuf,
    /// Stop once everything settled (else run until the stop signal).
    pub exit: bool,
    /// With `exit`: give up after this long.
    pub timeout: Duration,
    /// Tell nothing; only the summary is produced.
    pub json_only: bool,
    /// Pause between two looks at the gateway and the DM Servers.
    pub poll_interval: Duration,
}

impl Options {
    /// `--exit --json-only` semantics in `data_dir`: what tests run.
    pub fn exit_quietly(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            data_dir: data_dir.into(),
            exit: true,
            timeout: DEFAULT_TIMEOUT,
            json_only: true,
            poll_interval: POLL_INTERVAL,
        }
    }
}

impl Cli {
    /// The options these flags ask for.
    pub fn options(&self) -> Options {
        Options {
            data_dir: self.data_dir.clone(),
            exit: self.exit,
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            json_only: self.json_only,
            poll_interval: POLL_INTERVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_options() {
        let cli = Cli::try_parse_from(["dmgw-demo"]).unwrap();
        let o = cli.options();
        assert!(!o.exit && !o.json_only);
        assert_eq!(o.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(o.timeout, DEFAULT_TIMEOUT);
        let cli = Cli::try_parse_from([
            "dmgw-demo",
            "--exit",
            "--timeout",
            "5s",
            "--json-only",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        let o = cli.options();
        assert!(o.exit && o.json_only);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn timeout_needs_exit_and_a_duration() {
        assert!(Cli::try_parse_from(["dmgw-demo", "--timeout", "5s"]).is_err());
        assert!(Cli::try_parse_from(["dmgw-demo", "--exit", "--timeout", "soon"]).is_err());
    }
}
