//! `dmgw`: the OMA DM Gateway. `dmgw serve` runs it; `dmgw devices|accounts|alerts` ask a running one.
//! Everything lives in the `gateway` library; this file parses the command line and reports errors.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::cli::{self, ClientArgs, ClientCommand};
use gateway::config::ServeArgs;
use gateway::health::HealthArgs;

/// dmgw, an OMA DM Gateway (OMA GwMO).
#[derive(Debug, Parser)]
#[command(name = "dmgw", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(Box<ServeArgs>),
    /// Exit 0 when the admin API of the gateway these settings describe is ready (container health check).
    Health(HealthArgs),
    /// Ask a running gateway's admin API (devices, accounts, alerts).
    #[command(flatten)]
    Client(ClientCmd),
}

#[derive(Debug, Subcommand)]
enum ClientCmd {
    /// List the End Devices (or show one).
    Devices {
        #[command(flatten)]
        args: ClientArgs,
        /// Show only this device.
        dev_id: Option<String>,
        /// Only devices in this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// List the gateway's DM accounts (secrets are never shown).
    Accounts {
        #[command(flatten)]
        args: ClientArgs,
    },
    /// List the alert outbox.
    Alerts {
        #[command(flatten)]
        args: ClientArgs,
        /// Only alerts in this state (pending, delivered, failed).
        #[arg(long)]
        state: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match gateway::startup::serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dmgw: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Health(args) => health(&args),
        Command::Client(c) => {
            let (args, cmd) = match c {
                ClientCmd::Devices {
                    args,
                    dev_id,
                    state,
                } => (args, ClientCommand::Devices { dev_id, state }),
                ClientCmd::Accounts { args } => (args, ClientCommand::Accounts),
                ClientCmd::Alerts { args, state } => (args, ClientCommand::Alerts { state }),
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("dmgw: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(cli::run(&args, &cmd)) {
                Ok(out) => {
                    println!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dmgw: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn health(args: &HealthArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dmgw health: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(gateway::health::run(args)) {
        Ok(answer) => {
            println!("healthy: {answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dmgw health: {e}");
            ExitCode::FAILURE
        }
    }
}
