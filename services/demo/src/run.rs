//! One run of the demo: a fresh data folder, CA and secrets, the DM Servers, the gateway, the
//! bootstrap server, then the devices; watch (device events as they come, the gateway, bootstrap
//! server and DM Servers every poll interval), tell the story with a progress bar, stop when
//! settled (`--exit`), at the timeout, or on the stop signal.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::MissedTickBehavior;

use crate::cli::Options;
use crate::error::DemoError;
use crate::observe::{Observer, Snapshot};
use crate::plan::{self, DEVICES, consent_text, seconds};
use crate::stack::{self, BootstrapServer, Devices, DmServer, Gateway, GatewayFiles, Secrets};
use crate::story::Tracker;
use crate::summary::{self, GatewaySummary, RunFacts, StopReason, Summary};
use crate::{datadir, pki};

/// Tells the story on stderr, above a progress bar (nothing at all when quiet).
#[derive(Debug)]
pub struct Narrator {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Narrator {
    /// A narrator; `quiet` tells nothing.
    pub fn new(quiet: bool) -> Narrator {
        Narrator { quiet, bar: None }
    }

    /// Show the progress bar: `settled / total` devices.
    pub fn start_bar(&mut self, total: usize) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::with_draw_target(
            Some(u64::try_from(total).unwrap_or(u64::MAX)),
            ProgressDrawTarget::stderr(),
        );
        let style = ProgressStyle::with_template(
            "{spinner} {elapsed:>3} [{bar:24}] {pos}/{len} devices settled {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bar = Some(bar);
    }

    /// Tell one line.
    pub fn say(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// Tell several lines.
    pub fn lines(&self, lines: Vec<String>) {
        for l in lines {
            self.say(&l);
        }
    }

    /// Move the bar.
    pub fn progress(&self, settled: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(u64::try_from(settled).unwrap_or(u64::MAX));
        }
    }

    /// Leave the bar as it is, drawn once more.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// Resolves on Ctrl-C (never, when the signal cannot be listened to).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Run the demo on a new actix system, stopping on Ctrl-C (or as `opts` say).
pub fn run_blocking(opts: &Options) -> Result<Summary, DemoError> {
    actix_rt::System::new().block_on(run(opts, ctrl_c()))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn row(label: &str, text: impl std::fmt::Display) -> String {
    format!("  {label:<17}{text}")
}

/// `Some(true)` when the gateway's admin API serves `/api/v1/devices`, `Some(false)` when it
/// answers 404 (a gateway without the `/api/v1` routes), `None` when it could not be asked.
async fn admin_routes_served(gw: &Gateway, ca_pem: &[u8]) -> Option<bool> {
    let cert = reqwest::Certificate::from_pem(ca_pem).ok()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .tls_certs_only([cert])
        .build()
        .ok()?;
    let resp = http
        .get(format!("{}/api/v1/devices", gw.admin_url))
        .bearer_auth(&gw.admin_token)
        .send()
        .await
        .ok()?;
    Some(resp.status() != reqwest::StatusCode::NOT_FOUND)
}

/// Tell the cast; `admin_routes` (not with `--exit`) adds how to explore the admin API.
fn intro(
    n: &Narrator,
    admin_routes: Option<bool>,
    data_dir: &std::path::Path,
    ca: &std::path::Path,
    servers: &[DmServer],
    gw: &Gateway,
    bs: &BootstrapServer,
) {
    n.say(
        "dmgw demo: an OMA DM Gateway onboards four End Devices and gets bootstrapped for the two DM \
         Servers it does not know (workflow 1 and workflow 2); everything runs in this process on 127.0.0.1",
    );
    n.say(&row(
        "TLS",
        format!(
            "every hop is HTTPS, trusting only a CA made for this run: {}",
            ca.display()
        ),
    ));
    n.say(&row(
        "data folder",
        format!(
            "{} (fresh each run; gateway database {})",
            data_dir.display(),
            gw.database
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    ));
    for s in servers {
        let known = match (s.plan.known_to_gateway, s.plan.bootstrap_profile) {
            (true, _) => "the gateway has a factory account for it",
            (false, true) => {
                "unknown to the gateway; the bootstrap server has a profile for it (its master key)"
            }
            (false, false) => "unknown to the gateway, and no bootstrap server knows it",
        };
        n.say(&row(
            &format!("DM Server {}", s.plan.server_id),
            format!("{}  {}; {known}", s.dm_url(), s.plan.name),
        ));
    }
    let profiles: Vec<&str> = servers
        .iter()
        .filter(|s| s.plan.bootstrap_profile)
        .map(|s| s.plan.server_id)
        .collect();
    n.say(&row(
        "bootstrap server",
        format!(
            "{}  profiles for {}; trusts the gateway: HTTP Basic as {} (workflow 1), pushes \
             MAC-signed with the gateway's PIN to {} (workflow 2)",
            bs.base_url(),
            profiles.join(", "),
            plan::GATEWAY_ACCOUNT,
            gw.push_url()
        ),
    ));
    n.say(&row(
        "gateway",
        format!(
            "{}  LAN {}  WAN {}  admin {}; bootstrap policy 1,2 (workflow 1 where the device names \
             a readable bootstrap server, else 2)",
            plan::GATEWAY_DEV_ID,
            gw.lan_url,
            gw.wan_url,
            gw.admin_url
        ),
    ));
    for d in &DEVICES {
        let encoding = match d.encoding {
            omadm::codec::Encoding::Wbxml => "WBXML",
            _ => "XML",
        };
        n.say(&row(
            "device",
            format!(
                "{:<22} {:<11} {encoding:<6} consent: {:<15} accounts {}",
                d.dev_id,
                d.name,
                consent_text(d.consent),
                d.accounts_text(),
            ),
        ));
    }
    if let Some(served) = admin_routes {
        n.say(&row(
            "admin API",
            format!("{}  bearer token {}", gw.admin_url, gw.admin_token),
        ));
        let path = if served {
            "/api/v1/devices"
        } else {
            // This build's gateway serves health and readiness only; /api/v1 comes with the admin API.
            "/readyz"
        };
        n.say(&row(
            "",
            format!(
                "curl --cacert {} -H 'Authorization: Bearer {}' {}{path}",
                ca.display(),
                gw.admin_token,
                gw.admin_url
            ),
        ));
        for s in servers {
            n.say(&row(
                "",
                format!(
                    "curl --cacert {} {}/api/v1/alerts   # what {} received",
                    ca.display(),
                    s.server.base_url(),
                    s.plan.server_id
                ),
            ));
        }
        n.say(&row(
            "",
            format!(
                "curl --cacert {} {}/api/v1/bootstraps   # what the bootstrap server issued",
                ca.display(),
                bs.base_url()
            ),
        ));
        n.say(&row("", "Ctrl-C stops the demo."));
    }
    n.say("");
}

fn outro(n: &Narrator, s: &Summary, tracker: &Tracker) {
    let last = tracker
        .devices()
        .iter()
        .filter_map(|d| d.settled_at)
        .max()
        .unwrap_or_default();
    let alerts: Vec<String> = s
        .dm_servers
        .iter()
        .map(|d| match d.deviceattached {
            0 => format!("{} received none", d.server_id),
            1 => format!("{} received 1 deviceattached", d.server_id),
            k => format!("{} received {k} deviceattached", d.server_id),
        })
        .collect();
    let accounts: Vec<String> = s
        .gateway_accounts
        .iter()
        .map(|a| format!("{} ({})", a.server_id, a.origin))
        .collect();
    let jobs: Vec<String> = s
        .bootstrap_jobs
        .iter()
        .map(|j| {
            format!(
                "#{} {} for {} (workflow {}, {})",
                j.id, j.server_id, j.dev_id, j.workflow, j.state
            )
        })
        .collect();
    let jobs = if jobs.is_empty() {
        "no bootstrap job".to_owned()
    } else {
        format!("bootstrap jobs {}", jobs.join(", "))
    };
    let issued: Vec<String> = s
        .bootstrap_server
        .bootstraps
        .iter()
        .map(|b| match &b.delivery {
            None => format!("{} by workflow 1", b.server_id),
            Some(d) => format!(
                "{} by workflow 2 (push {})",
                b.server_id,
                serde_json::to_value(d.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        })
        .collect();
    let issued = if issued.is_empty() {
        "the bootstrap server issued nothing".to_owned()
    } else {
        format!("the bootstrap server issued {}", issued.join(", "))
    };
    let head = if s.settled {
        format!(
            "all {} devices settled in {}",
            s.devices.len(),
            seconds(last)
        )
    } else {
        format!(
            "{} of {} devices settled",
            tracker.settled_count(),
            s.devices.len()
        )
    };
    n.say("");
    n.say(&format!("{head}: {}.", alerts.join(", ")));
    n.say(&format!(
        "gateway accounts {}; {jobs}; {issued}.",
        accounts.join(", ")
    ));
}

/// Stop what was started, in reverse order.
async fn stop_all(
    devices: Option<Devices>,
    bootstrap: Option<BootstrapServer>,
    gateway: Option<Gateway>,
    servers: Vec<DmServer>,
) {
    if let Some(d) = devices {
        d.stop().await;
    }
    if let Some(b) = bootstrap {
        b.stop().await;
    }
    if let Some(g) = gateway {
        g.stop().await;
    }
    stack::stop_dm_servers(servers).await;
}

/// Run the demo: start everything, tell the story, stop as `opts` say or when `stop` resolves,
/// and return the summary. Must run inside an actix system (see [`run_blocking`]).
pub async fn run<S>(opts: &Options, stop: S) -> Result<Summary, DemoError>
where
    S: Future<Output = ()>,
{
    let t0 = Instant::now();
    let mut narrator = Narrator::new(opts.json_only);
    let data_dir = datadir::prepare(&opts.data_dir)?;
    let pki = pki::generate(&data_dir.join("tls"))?;
    let ca_pem = std::fs::read(&pki.ca_cert).map_err(|source| DemoError::Write {
        path: pki.ca_cert.clone(),
        source,
    })?;
    let secrets = Secrets::generate();
    let servers = stack::start_dm_servers(&pki, &secrets, &data_dir)?;
    let dm_urls: BTreeMap<String, String> = servers
        .iter()
        .map(|s| (s.plan.server_id.to_owned(), s.dm_url()))
        .collect();
    let accounts = data_dir.join("gateway-accounts.toml");
    let gateway = match stack::write_factory_accounts(&accounts, &servers, &secrets) {
        Ok(()) => {
            Gateway::start(GatewayFiles {
                pki: &pki,
                database: data_dir.join("gateway.db"),
                accounts,
                secrets: &secrets,
            })
            .await
        }
        Err(e) => Err(e),
    };
    let gateway = match gateway {
        Ok(g) => g,
        Err(e) => {
            stop_all(None, None, None, servers).await;
            return Err(e);
        }
    };
    // The bootstrap server's profile of the gateway names the WAN push URL the gateway bound.
    let bootstrap = stack::write_bootstrap_profiles(
        &data_dir.join("bootstrap-server"),
        &servers,
        &secrets,
        &gateway.push_url(),
    )
    .and_then(|profiles| BootstrapServer::start(&pki, profiles));
    let bootstrap = match bootstrap {
        Ok(b) => b,
        Err(e) => {
            stop_all(None, None, Some(gateway), servers).await;
            return Err(e);
        }
    };
    let observer = Observer::new(
        gateway.state.store.clone(),
        servers
            .iter()
            .map(|s| (s.plan.server_id.to_owned(), s.server.base_url()))
            .collect(),
        bootstrap.base_url(),
        &ca_pem,
    );
    let observer = match observer {
        Ok(o) => o,
        Err(e) => {
            stop_all(None, Some(bootstrap), Some(gateway), servers).await;
            return Err(e.into());
        }
    };
    let admin_routes = if opts.exit || opts.json_only {
        None
    } else {
        Some(admin_routes_served(&gateway, &ca_pem).await.unwrap_or(true))
    };
    intro(
        &narrator,
        admin_routes,
        &data_dir,
        &pki.ca_cert,
        &servers,
        &gateway,
        &bootstrap,
    );
    let startup = t0.elapsed();
    let devices = Devices::start(
        &DEVICES,
        &dm_urls,
        &bootstrap.base_url(),
        &gateway.lan_url,
        &pki,
    )
    .await;
    let mut devices = match devices {
        Ok(d) => d,
        Err(e) => {
            stop_all(None, Some(bootstrap), Some(gateway), servers).await;
            return Err(e);
        }
    };
    let started = Instant::now();
    narrator.start_bar(DEVICES.len());

    let mut tracker = Tracker::new(&DEVICES);
    let mut last = Snapshot::default();
    let mut tick = tokio::time::interval(opts.poll_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = opts
        .exit
        .then(|| tokio::time::Instant::now().checked_add(opts.timeout))
        .flatten();
    let mut fleet_open = true;
    let mut last_error: Option<String> = None;
    let mut told_settled = false;
    tokio::pin!(stop);
    let stopped_by = loop {
        if opts.exit && tracker.all_settled() {
            break StopReason::Settled;
        }
        tokio::select! {
            ev = devices.fleet.next_event(), if fleet_open => match ev {
                Some(ev) => narrator.lines(tracker.on_device_event(ev, started.elapsed())),
                None => fleet_open = false,
            },
            _ = tick.tick() => match observer.snapshot().await {
                Ok(snap) => {
                    // Device events that happened while looking come first: the snapshot is newer.
                    while fleet_open && let Some(ev) = devices.fleet.next_event().now_or_never() {
                        match ev {
                            Some(ev) => narrator.lines(tracker.on_device_event(ev, started.elapsed())),
                            None => fleet_open = false,
                        }
                    }
                    narrator.lines(tracker.on_snapshot(&snap, started.elapsed()));
                    last = snap;
                    last_error = None;
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        narrator.say(&crate::story::line(started.elapsed(), "watch", format!("cannot look: {text}")));
                        last_error = Some(text);
                    }
                }
            },
            _ = sleep_until_opt(deadline), if deadline.is_some() => break StopReason::Timeout,
            _ = &mut stop => break StopReason::Interrupted,
        }
        narrator.progress(tracker.settled_count());
        if !opts.exit && !told_settled && tracker.all_settled() {
            told_settled = true;
            narrator.say(&format!(
                "all {} devices settled; the demo keeps running (Ctrl-C stops it)",
                DEVICES.len()
            ));
        }
    };
    let elapsed = started.elapsed();
    // One more look, so the summary shows the latest state (a stopping gateway may not answer).
    if let Ok(snap) = observer.snapshot().await {
        narrator.lines(tracker.on_snapshot(&snap, started.elapsed()));
        last = snap;
    }
    narrator.progress(tracker.settled_count());
    narrator.finish();

    let gateway_summary = GatewaySummary {
        dev_id: plan::GATEWAY_DEV_ID.to_owned(),
        lan_url: gateway.lan_url.clone(),
        wan_url: gateway.wan_url.clone(),
        admin_url: gateway.admin_url.clone(),
        database: gateway.database.display().to_string(),
    };
    let bootstrap_url = bootstrap.base_url();
    stop_all(Some(devices), Some(bootstrap), Some(gateway), servers).await;

    let summary = summary::build(
        RunFacts {
            stopped_by,
            elapsed_ms: millis(elapsed),
            startup_ms: millis(startup),
            data_dir: data_dir.display().to_string(),
            gateway: gateway_summary,
            dm_urls: dm_urls.into_iter().collect(),
            bootstrap_url,
        },
        &tracker,
        &last,
    );
    outro(&narrator, &summary, &tracker);
    Ok(summary)
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
