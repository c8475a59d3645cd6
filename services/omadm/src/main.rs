//! The `omadm` command-line tool: decode, encode and check SyncML DM messages and TNDS documents.
//! For operators debugging DM traffic; XML or WBXML in (detected from the bytes), one-line errors out.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::tnds::MgmtTree;
use omadm::{wbxml, xml};

/// Decode, encode and check OMA DM 1.2 messages (application/vnd.syncml.dm+xml / +wbxml).
#[derive(Debug, Parser)]
#[command(name = "omadm", version, about)]
struct Cli {
    /// Largest accepted input, in bytes.
    #[arg(long, global = true, default_value_t = Limits::default().max_message_bytes)]
    max_bytes: usize,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// XML or WBXML in (detected from the bytes), indented XML on standard output.
    Decode {
        /// Input file, or `-` for standard input.
        file: PathBuf,
    },
    /// XML in, WBXML on standard output.
    Encode {
        /// Input file, or `-` for standard input.
        file: PathBuf,
    },
    /// Parse and validate as a SyncML DM message (or a TNDS MgmtTree); exit 1 on any problem.
    Check {
        /// Input file, or `-` for standard input.
        file: PathBuf,
    },
}

fn read_input(path: &PathBuf, max: usize) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let res = if path.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    res.map_err(|e| e.to_string())?;
    if buf.len() > max {
        return Err(format!(
            "input is larger than {max} bytes (see --max-bytes)"
        ));
    }
    Ok(buf)
}

/// Check a decoded document: a SyncML message or a TNDS tree. Returns the problems found.
fn check(root: &omadm::element::Element, limits: &Limits) -> Vec<String> {
    if codec::is_tnds(root) {
        return match MgmtTree::from_element(root, limits) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        };
    }
    match codec::from_element(root, limits) {
        Ok(msg) => omadm::validate::validate(&msg)
            .into_iter()
            .map(|p| p.to_string())
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let limits = Limits {
        max_message_bytes: cli.max_bytes,
        ..Limits::default()
    };
    let mut out = std::io::stdout().lock();
    match cli.command {
        Cmd::Decode { file } => {
            let bytes = read_input(&file, cli.max_bytes)?;
            let root = codec::decode_element(&bytes, Encoding::sniff(&bytes), &limits)
                .map_err(|e| e.to_string())?;
            let text = xml::encode_pretty(&root);
            out.write_all(text.as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| e.to_string())?;
        }
        Cmd::Encode { file } => {
            let bytes = read_input(&file, cli.max_bytes)?;
            let root = xml::decode(&bytes, &limits).map_err(|e| format!("XML: {e}"))?;
            let wb = wbxml::encode(&root).map_err(|e| format!("WBXML: {e}"))?;
            out.write_all(&wb).map_err(|e| e.to_string())?;
        }
        Cmd::Check { file } => {
            let bytes = read_input(&file, cli.max_bytes)?;
            let problems = match codec::decode_element(&bytes, Encoding::sniff(&bytes), &limits) {
                Ok(root) => check(&root, &limits),
                Err(e) => vec![e.to_string()],
            };
            if !problems.is_empty() {
                for p in problems {
                    eprintln!("omadm: {p}");
                }
                return Ok(ExitCode::from(1));
            }
            writeln!(out, "ok").map_err(|e| e.to_string())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("omadm: {e}");
            ExitCode::from(2)
        }
    }
}
