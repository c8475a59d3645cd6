//! `device-sim` command line: `run` a scenario of simulated End Devices against a gateway, or `load`
//! it with N generated devices and report the onboarding rate and latencies.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use device_sim::callback::{CallbackConfig, CallbackServer};
use device_sim::client::{GatewayClient, HttpSettings, TargetPolicy, Transport};
use device_sim::fleet::{FleetContext, RunOptions, run_scenario};
use device_sim::health::HealthArgs;
use device_sim::load::{AdminApi, LoadConfig, run_load};
use device_sim::scenario::{Scenario, parse_duration, parse_encoding, parse_http_url};
use omadm::codec::Encoding;
use omadm::element::Limits;
use tracing::error;
use url::Url;

/// Simulated OMA DM End Devices for dmgw.
#[derive(Debug, Parser)]
#[command(name = "device-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the devices of a scenario file; print one JSON line per device as it settles.
    Run(Box<RunArgs>),
    /// Onboard N generated devices at R per second and report the rate and latencies.
    Load(Box<LoadArgs>),
    /// Exit 0 when the callback server the DEVICE_SIM_* settings describe answers (container health check).
    Health(HealthArgs),
}

/// The callback server's settings, read from the environment only (what `run` sees in a container).
#[derive(Debug, Parser)]
#[command(name = "device-sim")]
struct EnvCommon {
    #[command(flatten)]
    common: Common,
}

/// `/healthz` of the callback server the environment describes; `None` when it listens on port 0.
fn callback_healthz() -> Result<Option<String>, String> {
    let env = EnvCommon::try_parse_from(["device-sim"]).map_err(|e| e.to_string())?;
    let c = env.common;
    Ok((c.listen.port() != 0)
        .then(|| device_sim::health::local_url(c.listen, c.tls_cert.is_some(), "/healthz")))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Settings both commands share.
#[derive(Debug, Args)]
struct Common {
    /// PEM bundle of the CA(s) to trust for the gateway (only these are trusted when given).
    #[arg(long, env = "DEVICE_SIM_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Allow plain http:// gateway URLs (local tests only; the gateway is HTTPS in production).
    #[arg(long, env = "DEVICE_SIM_PLAIN_HTTP")]
    plain_http: bool,
    /// Address of the callback server the gateway calls for consent (port 0: any free port).
    #[arg(long, env = "DEVICE_SIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The callback base URL to give the gateway, when it cannot reach the listen address as is
    /// (e.g. http://device-sim:8080 in docker-compose).
    #[arg(long, env = "DEVICE_SIM_CALLBACK_BASE", value_parser = url_arg)]
    callback_base: Option<Url>,
    /// PEM certificate chain of the callback server (HTTPS); needs --tls-key.
    #[arg(long, env = "DEVICE_SIM_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the callback server; needs --tls-cert.
    #[arg(long, env = "DEVICE_SIM_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Timeout of one HTTP request to the gateway.
    #[arg(long, env = "DEVICE_SIM_HTTP_TIMEOUT", default_value = "30s", value_parser = duration_arg)]
    http_timeout: Duration,
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(
        long,
        env = "DEVICE_SIM_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The scenario file (TOML; see scenarios/demo.toml).
    #[arg(long, env = "DEVICE_SIM_SCENARIO")]
    scenario: PathBuf,
    /// The gateway's LAN base URL; overrides the scenario's `gateway`.
    #[arg(long, env = "DEVICE_SIM_GATEWAY", value_parser = url_arg)]
    gateway: Option<Url>,
    /// Exit once every device settled (done, refused or failed); else run until Ctrl-C.
    #[arg(long)]
    exit_when_settled: bool,
    /// Stop after this long (e.g. 60s); devices not settled by then are reported failed.
    #[arg(long, env = "DEVICE_SIM_TIMEOUT", value_parser = duration_arg)]
    timeout: Option<Duration>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The gateway's LAN base URL (loopback only unless --allow-remote).
    #[arg(long, env = "DEVICE_SIM_GATEWAY", value_parser = url_arg)]
    gateway: Url,
    /// Devices to onboard (1..=100000).
    #[arg(long)]
    devices: usize,
    /// Devices started per second.
    #[arg(long)]
    rate: f64,
    /// ServerIDs every generated device holds an account for (comma-separated).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Ext/BootstrapServerURL of every account; `{server_id}` is replaced by the ServerID.
    #[arg(long)]
    bootstrap_server_url: Option<String>,
    /// The gateway's admin API base URL, polled for attached devices.
    #[arg(long, env = "DEVICE_SIM_ADMIN_URL", value_parser = url_arg, requires = "admin_token")]
    admin_url: Option<Url>,
    /// Bearer token of the admin API.
    #[arg(long, env = "DEVICE_SIM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The run stops by itself after this long (at most 1h).
    #[arg(long, default_value = "300s", value_parser = duration_arg)]
    timeout: Duration,
    /// Pause between two passes over the admin API's attached list.
    #[arg(long, default_value = "250ms", value_parser = duration_arg)]
    poll_interval: Duration,
    /// Heartbeat interval of the generated devices.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    heartbeat: Duration,
    /// Accept of the provisioning GET: xml or wbxml.
    #[arg(long, default_value = "xml", value_parser = encoding_arg)]
    provisioning_encoding: Encoding,
    /// Encoding of the DM sessions: xml or wbxml.
    #[arg(long, default_value = "xml", value_parser = encoding_arg)]
    dm_encoding: Encoding,
    /// Prefix of the generated DevIds (default: SIM:<random>).
    #[arg(long)]
    id_prefix: Option<String>,
    /// Allow a gateway or admin URL outside the loopback range.
    #[arg(long)]
    allow_remote: bool,
    /// Do not draw the progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    common: Common,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration("duration", s).map_err(|e| e.to_string())
}

fn url_arg(s: &str) -> Result<Url, String> {
    parse_http_url("URL", s).map_err(|e| e.to_string())
}

fn encoding_arg(s: &str) -> Result<Encoding, String> {
    parse_encoding("encoding", s).map_err(|e| e.to_string())
}

/// Logs on stderr (`RUST_LOG`, else `default_filter`), and OTLP traces when `OTEL_*` asks for them
/// (spans have their own filter, `DMGW_TRACE_FILTER`).
fn init_telemetry(
    format: LogFormat,
    default_filter: &str,
) -> Result<Option<telemetry::Telemetry>, telemetry::TelemetryError> {
    telemetry::init_service(
        "device-sim",
        env!("CARGO_PKG_VERSION"),
        matches!(format, LogFormat::Json),
        default_filter,
    )
}

fn callback_config(c: &Common) -> CallbackConfig {
    CallbackConfig {
        listen: c.listen,
        public_base: c.callback_base.clone(),
        tls: c.tls_cert.clone().zip(c.tls_key.clone()),
        workers: 2,
    }
}

fn transport(c: &Common, loopback_only: bool) -> Result<Transport, String> {
    Transport::new(&HttpSettings {
        ca_cert: c.ca_cert.clone(),
        policy: TargetPolicy {
            plain_http: c.plain_http,
            loopback_only,
        },
        timeout: c.http_timeout,
        connect_timeout: Duration::from_secs(5),
    })
    .map_err(|e| e.to_string())
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not worth failing the run over.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run(args: RunArgs) -> Result<bool, String> {
    let scenario = Scenario::load(&args.scenario).map_err(|e| e.to_string())?;
    let gateway = args.gateway.or(scenario.gateway).ok_or_else(|| {
        "no gateway URL: set `gateway` in the scenario or pass --gateway".to_owned()
    })?;
    let transport = transport(&args.common, false)?;
    let client = GatewayClient::new(transport, &gateway).map_err(|e| e.to_string())?;
    let callback = CallbackServer::start(callback_config(&args.common))
        .await
        .map_err(|e| e.to_string())?;
    let ctx = FleetContext {
        client,
        limits: Limits::default(),
    };
    let opts = RunOptions {
        exit_when_settled: args.exit_when_settled,
        timeout: args.timeout,
    };
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let result = run_scenario(
        scenario.devices,
        ctx,
        &callback,
        opts,
        |report| match serde_json::to_string(report) {
            Ok(line) => print_line(&line),
            Err(e) => error!(error = %e, "cannot print a report"),
        },
        stop,
    )
    .await;
    callback.stop().await;
    let summary = result.map_err(|e| e.to_string())?;
    Ok(!summary.any_failed())
}

async fn load(args: LoadArgs) -> Result<bool, String> {
    let transport = transport(&args.common, !args.allow_remote)?;
    let client = GatewayClient::new(transport, &args.gateway).map_err(|e| e.to_string())?;
    let id_prefix = args
        .id_prefix
        .unwrap_or_else(|| format!("SIM:{:06x}", rand::random_range(0..0x100_0000u32)));
    let cfg = LoadConfig {
        devices: args.devices,
        rate: args.rate,
        servers: args.servers,
        bootstrap_server_url: args.bootstrap_server_url,
        admin: args.admin_url.map(|url| AdminApi {
            url,
            token: args.admin_token,
        }),
        timeout: args.timeout,
        poll_interval: args.poll_interval,
        heartbeat: args.heartbeat,
        provisioning_encoding: args.provisioning_encoding,
        dm_encoding: args.dm_encoding,
        id_prefix,
        progress: !args.no_progress,
    };
    cfg.validate().map_err(|e| e.to_string())?;
    let callback = CallbackServer::start(callback_config(&args.common))
        .await
        .map_err(|e| e.to_string())?;
    let ctx = FleetContext {
        client,
        limits: Limits::default(),
    };
    let result = run_load(&cfg, ctx, &callback).await;
    callback.stop().await;
    let report = result.map_err(|e| e.to_string())?;
    print!("{}", report.human());
    let line = serde_json::to_string(&report).map_err(|e| e.to_string())?;
    print_line(&line);
    Ok(!report.timed_out && report.failed == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (format, default_filter) = match &cli.command {
        Command::Run(a) => (a.common.log_format, "info,actix_server=warn"),
        Command::Load(a) => (a.common.log_format, "warn"),
        Command::Health(a) => return health(a),
    };
    let telemetry = match init_telemetry(format, default_filter) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("device-sim: telemetry: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("device-sim: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(a) => run(*a).await,
            Command::Load(a) => load(*a).await,
            Command::Health(_) => Ok(true),
        }
    });
    // Flush the spans still queued once the devices are gone.
    drop(runtime);
    drop(telemetry);
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("device-sim: {e}");
            ExitCode::from(2)
        }
    }
}

fn health(args: &HealthArgs) -> ExitCode {
    let default_url = match callback_healthz() {
        Ok(url) => url,
        Err(e) => {
            eprintln!("device-sim health: settings: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("device-sim health: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(device_sim::health::run(args, default_url));
    device_sim::health::report("device-sim health", result)
}
