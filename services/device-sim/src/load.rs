//! The load generator: N generated devices onboarded at R per second, one poller of the gateway's
//! admin API for the attach times, and the figures (rate achieved, latency percentiles).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use omadm::codec::Encoding;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument, warn};
use url::Url;

use crate::callback::{CallbackError, CallbackServer};
use crate::client::{ClientError, Transport, as_base, resolve};
use crate::fleet::{DeviceEvent, Fleet, FleetContext, Outcome};
use crate::scenario::{AccountSpec, ConsentPolicy, DeviceSpec, check_server_id};

/// Most devices one load run may generate.
pub const MAX_DEVICES: usize = 100_000;
/// Highest onboarding rate accepted, devices per second.
pub const MAX_RATE: f64 = 10_000.0;
/// Longest a load run may last.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Page size asked of the admin API (its maximum).
pub const PAGE_LIMIT: u32 = 500;

/// A load run that cannot start or was cut short.
#[derive(Debug, Error)]
pub enum LoadError {
    /// A setting is out of range.
    #[error("{setting}: {reason}")]
    Setting {
        /// The flag.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The callback server refused a device.
    #[error(transparent)]
    Callback(#[from] CallbackError),
    /// An HTTP setting or target is refused.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The admin API of the gateway, to learn when devices are attached.
#[derive(Debug, Clone)]
pub struct AdminApi {
    /// The admin base URL (e.g. `https://127.0.0.1:9443/`).
    pub url: Url,
    /// The bearer token.
    pub token: Option<String>,
}

/// What a load run does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Devices to onboard.
    pub devices: usize,
    /// Devices started per second.
    pub rate: f64,
    /// The ServerIDs every generated device holds an account for.
    pub servers: Vec<String>,
    /// `Ext/BootstrapServerURL` of every account; `{server_id}` is replaced by the ServerID.
    pub bootstrap_server_url: Option<String>,
    /// Where to read attach states, if anywhere.
    pub admin: Option<AdminApi>,
    /// The whole run stops after this long.
    pub timeout: Duration,
    /// Pause between two passes of the poller.
    pub poll_interval: Duration,
    /// Heartbeat interval of the generated devices.
    pub heartbeat: Duration,
    /// Accept of the provisioning GET.
    pub provisioning_encoding: Encoding,
    /// DM session encoding.
    pub dm_encoding: Encoding,
    /// Prefix of the generated DevIds (`<prefix>-000001`, ...).
    pub id_prefix: String,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl LoadConfig {
    /// Check the bounds of the settings.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |setting, reason: &str| LoadError::Setting {
            setting,
            reason: reason.to_owned(),
        };
        if self.devices == 0 || self.devices > MAX_DEVICES {
            return Err(bad("--devices", "must be 1..=100000"));
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(bad(
                "--rate",
                "must be more than 0 and at most 10000 per second",
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(bad("--timeout", "must be more than 0 and at most 1h"));
        }
        if self.poll_interval < Duration::from_millis(10) {
            return Err(bad("--poll-interval", "must be at least 10ms"));
        }
        if self.heartbeat.is_zero() {
            return Err(bad("--heartbeat", "must be more than 0"));
        }
        for s in &self.servers {
            check_server_id("--servers", s).map_err(|e| LoadError::Setting {
                setting: "--servers",
                reason: e.to_string(),
            })?;
        }
        crate::scenario::check_dev_id("--id-prefix", &format!("{}-000000", self.id_prefix))
            .map_err(|e| LoadError::Setting {
                setting: "--id-prefix",
                reason: e.to_string(),
            })?;
        Ok(())
    }
}

/// The devices of a load run: `<prefix>-000001` ... with one account per server, consent allowed.
pub fn generate_devices(cfg: &LoadConfig) -> Vec<DeviceSpec> {
    (1..=cfg.devices)
        .map(|i| DeviceSpec {
            dev_id: format!("{}-{i:06}", cfg.id_prefix),
            man: "dmgw device-sim".to_owned(),
            model: "load".to_owned(),
            dev_type: Some("simulated".to_owned()),
            consent: ConsentPolicy::Allow,
            heartbeat: cfg.heartbeat,
            provisioning_encoding: cfg.provisioning_encoding,
            dm_encoding: cfg.dm_encoding,
            accounts: cfg
                .servers
                .iter()
                .enumerate()
                .map(|(j, s)| AccountSpec {
                    server_id: s.clone(),
                    addr: format!("https://{}.dm.invalid/dm", j.saturating_add(1)),
                    bootstrap_server_url: cfg
                        .bootstrap_server_url
                        .as_ref()
                        .map(|t| t.replace("{server_id}", s)),
                    node_name: format!("S{}", j.saturating_add(1)),
                    hide_bootstrap_url: false,
                })
                .collect(),
        })
        .collect()
}

// =============================================================================================
// Statistics

/// Latency percentiles in milliseconds (nearest-rank method).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// The `p`-th percentile (0 < p <= 100) of sorted samples by the nearest-rank method: the smallest
/// sample such that at least p% of the samples are at or below it. `None` for no samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n).saturating_sub(1)).copied()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// Summarize samples (in any order). `None` for no samples.
pub fn summarize(samples: &[Duration]) -> Option<LatencySummary> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    Some(LatencySummary {
        count: sorted.len(),
        p50_ms: ms(percentile(&sorted, 50.0)?),
        p90_ms: ms(percentile(&sorted, 90.0)?),
        p99_ms: ms(percentile(&sorted, 99.0)?),
        max_ms: ms(*sorted.last()?),
    })
}

/// Events completed per second between the first start and the last completion.
pub fn rate(count: usize, span: Duration) -> Option<f64> {
    (count > 0 && !span.is_zero()).then(|| count as f64 / span.as_secs_f64())
}

// =============================================================================================
// The attach poller

#[derive(Debug, Deserialize)]
struct DevicePage {
    #[serde(default)]
    items: Vec<DeviceItem>,
    #[serde(default)]
    next: Option<serde_json::Value>,
    #[serde(default)]
    next_after: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct DeviceItem {
    dev_id: String,
    #[serde(default)]
    state: Option<String>,
}

/// The URL of the next page given the cursor a page returned: a URL or absolute path is followed
/// as is; any other value (number or token) is passed as `after=`. `None` ends the listing.
fn next_page(first: &Url, base: &Url, cursor: Option<&serde_json::Value>) -> Option<Url> {
    let token = match cursor? {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) if s.trim().is_empty() => return None,
        serde_json::Value::String(s) if s.starts_with('/') || s.contains("://") => {
            return resolve(base, s).ok();
        }
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let mut url = first.clone();
    url.query_pairs_mut().append_pair("after", &token);
    Some(url)
}

/// The first page of attached devices: `{admin}/api/v1/devices?state=attached&limit=500`.
pub fn attached_url(admin: &Url) -> Result<Url, ClientError> {
    let mut url = as_base(admin)
        .join("api/v1/devices")
        .map_err(|e| ClientError::InvalidUrl {
            url: admin.to_string(),
            reason: e.to_string(),
        })?;
    url.query_pairs_mut()
        .append_pair("state", "attached")
        .append_pair("limit", &PAGE_LIMIT.to_string());
    Ok(url)
}

/// One pass over every page of attached devices; returns the DevIds among `wanted` that are attached.
pub async fn poll_attached(
    transport: &Transport,
    admin: &AdminApi,
    wanted: &HashSet<String>,
) -> Result<HashSet<String>, ClientError> {
    let first = attached_url(&admin.url)?;
    let base = as_base(&admin.url);
    let max_pages = wanted.len() / PAGE_LIMIT as usize + 1_000;
    let mut found = HashSet::new();
    let mut seen_urls = HashSet::new();
    let mut url = Some(first.clone());
    while let Some(u) = url.take() {
        if seen_urls.len() >= max_pages || !seen_urls.insert(u.to_string()) {
            warn!(%u, "admin API pagination repeats itself or never ends; pass cut short");
            break;
        }
        let page: DevicePage = transport.get_json(&u, admin.token.as_deref()).await?;
        for item in page.items {
            let attached = item
                .state
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("attached"));
            if attached && wanted.contains(&item.dev_id) {
                found.insert(item.dev_id);
            }
        }
        url = next_page(
            &first,
            &base,
            page.next.as_ref().or(page.next_after.as_ref()),
        );
    }
    Ok(found)
}

/// The one poller of a load run: passes over the attached list every `interval` while devices are
/// still unattached, and sends each newly attached DevId with the time its page arrived.
async fn poller(
    transport: Transport,
    admin: AdminApi,
    wanted: Arc<HashSet<String>>,
    interval: Duration,
    found_tx: mpsc::UnboundedSender<(String, Instant)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut remaining: HashSet<String> = (*wanted).clone();
    while !remaining.is_empty() {
        // Each pass is a short trace of its own (the admin API's pages).
        let span = tracing::info_span!(parent: None, "attached poll", waiting = remaining.len());
        let pass = poll_attached(&transport, &admin, &remaining).instrument(span);
        let result = tokio::select! {
            r = pass => r,
            _ = stop.changed() => return,
        };
        let at = Instant::now();
        match result {
            Ok(found) => {
                for id in found {
                    remaining.remove(&id);
                    if found_tx.send((id, at)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => warn!(error = %e, "polling the admin API failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

// =============================================================================================
// The run

/// The figures of a load run (the final JSON line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Devices generated.
    pub devices: usize,
    /// Target rate, devices per second.
    pub target_rate: f64,
    /// Devices that announced.
    pub announced: usize,
    /// Devices whose DM session with the gateway completed.
    pub sessions_done: usize,
    /// Devices whose user refused.
    pub refused: usize,
    /// Devices that failed.
    pub failed: usize,
    /// Devices the admin API reported attached (`None` without `--admin-url`).
    pub attached: Option<usize>,
    /// Onboarded devices per second, first announcement to last onboarding (attached when the admin
    /// API is polled, else session done).
    pub onboarding_rate: Option<f64>,
    /// Announcement to attached, per the admin API.
    pub attach_latency: Option<LatencySummary>,
    /// Announcement to the device's DM session done.
    pub session_latency: Option<LatencySummary>,
    /// Seconds the run lasted.
    pub elapsed_secs: f64,
    /// True when the timeout ended the run before every device was onboarded.
    pub timed_out: bool,
    /// The first failure reasons (at most 5 distinct).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failure_reasons: Vec<String>,
}

impl LoadReport {
    /// The human summary printed before the JSON line.
    pub fn human(&self) -> String {
        let lat = |name: &str, l: &Option<LatencySummary>| match l {
            Some(l) => format!(
                "{name}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} devices)\n",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
            ),
            None => format!("{name}: no samples\n"),
        };
        let mut out = format!(
            "devices {}: announced {}, sessions done {}, refused {}, failed {}{}\n",
            self.devices,
            self.announced,
            self.sessions_done,
            self.refused,
            self.failed,
            self.attached
                .map(|a| format!(", attached {a}"))
                .unwrap_or_default()
        );
        out.push_str(&match self.onboarding_rate {
            Some(r) => format!(
                "onboarding rate: {r:.2} devices/s (target {:.2})\n",
                self.target_rate
            ),
            None => "onboarding rate: n/a\n".to_owned(),
        });
        if self.attached.is_some() {
            out.push_str(&lat("announce -> attached", &self.attach_latency));
        }
        out.push_str(&lat("announce -> session done", &self.session_latency));
        if self.timed_out {
            out.push_str("stopped by the timeout\n");
        }
        out
    }
}

fn progress_bar(cfg: &LoadConfig) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(
        Some(cfg.devices as u64),
        ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} onboarded {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Onboard the generated devices against the gateway and measure. Stops when every device is
/// onboarded (attached, when the admin API is polled), refused or failed, or at the timeout.
pub async fn run_load(
    cfg: &LoadConfig,
    ctx: FleetContext,
    callback: &CallbackServer,
) -> Result<LoadReport, LoadError> {
    cfg.validate()?;
    let transport = ctx.client.transport().clone();
    if let Some(admin) = &cfg.admin {
        transport.policy().check(&admin.url)?;
    }
    let specs = generate_devices(cfg);
    let wanted: Arc<HashSet<String>> = Arc::new(specs.iter().map(|s| s.dev_id.clone()).collect());
    let started = Instant::now();
    let deadline = started + cfg.timeout;
    let mut fleet = Fleet::spawn(specs, ctx, callback, Some(cfg.rate))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (found_tx, mut found_rx) = mpsc::unbounded_channel();
    let poller_task = cfg.admin.clone().map(|admin| {
        tokio::spawn(poller(
            transport.clone(),
            admin,
            wanted.clone(),
            cfg.poll_interval,
            found_tx.clone(),
            stop_rx.clone(),
        ))
    });
    drop(found_tx);

    let pb = progress_bar(cfg);
    let mut announced_at: HashMap<String, Instant> = HashMap::new();
    let mut done_at: HashMap<String, Instant> = HashMap::new();
    let mut attached_at: HashMap<String, Instant> = HashMap::new();
    let mut refused = HashSet::new();
    let mut failed = HashSet::new();
    let mut reasons: Vec<String> = Vec::new();
    let polling = cfg.admin.is_some();
    let mut timed_out = false;
    let mut fleet_open = true;
    let mut poller_open = polling;

    loop {
        let onboarded = if polling {
            attached_at.len()
        } else {
            done_at.len()
        };
        // Polling, a device is finished once attached and settled on its side too (its last DM
        // reply may reach it after the gateway already shows it attached).
        let finished = if polling {
            attached_at.len().min(done_at.len()) + refused.len() + failed.len()
        } else {
            done_at.len() + refused.len() + failed.len()
        };
        pb.set_position(onboarded as u64);
        pb.set_message(format!(
            "(announced {}, sessions {}, refused {}, failed {})",
            announced_at.len(),
            done_at.len(),
            refused.len(),
            failed.len()
        ));
        if finished >= cfg.devices {
            break;
        }
        tokio::select! {
            ev = fleet.next_event(), if fleet_open => match ev {
                Some(DeviceEvent::Announcing { dev_id, at }) => {
                    announced_at.entry(dev_id).or_insert(at);
                }
                Some(DeviceEvent::Progress { .. }) => {}
                Some(DeviceEvent::Settled(r)) => match r.outcome {
                    Outcome::Done => {
                        done_at.entry(r.dev_id).or_insert_with(Instant::now);
                    }
                    Outcome::Refused => {
                        refused.insert(r.dev_id);
                    }
                    Outcome::Failed => {
                        if let Some(reason) = &r.reason
                            && reasons.len() < 5
                            && !reasons.contains(reason)
                        {
                            reasons.push(reason.clone());
                        }
                        if !done_at.contains_key(&r.dev_id) {
                            failed.insert(r.dev_id);
                        }
                    }
                },
                None => fleet_open = false,
            },
            found = found_rx.recv(), if poller_open => match found {
                Some((dev_id, at)) => {
                    attached_at.entry(dev_id).or_insert(at);
                }
                None => poller_open = false,
            },
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    pb.finish_and_clear();
    let _ = stop_tx.send(true);
    fleet.shutdown().await;
    if let Some(t) = poller_task
        && let Err(e) = t.await
    {
        warn!(error = %e, "the poller task failed");
    }

    let latencies = |ends: &HashMap<String, Instant>| -> Vec<Duration> {
        ends.iter()
            .filter_map(|(id, end)| {
                announced_at
                    .get(id)
                    .map(|start| end.saturating_duration_since(*start))
            })
            .collect()
    };
    let onboarded = if polling { &attached_at } else { &done_at };
    let first_announce = announced_at.values().min().copied();
    let last_onboarded = onboarded.values().max().copied();
    let onboarding_rate = match (first_announce, last_onboarded) {
        (Some(a), Some(b)) => rate(onboarded.len(), b.saturating_duration_since(a)),
        _ => None,
    };
    Ok(LoadReport {
        devices: cfg.devices,
        target_rate: cfg.rate,
        announced: announced_at.len(),
        sessions_done: done_at.len(),
        refused: refused.len(),
        failed: failed.len(),
        attached: polling.then_some(attached_at.len()),
        onboarding_rate,
        attach_latency: if polling {
            summarize(&latencies(&attached_at))
        } else {
            None
        },
        session_latency: summarize(&latencies(&done_at)),
        elapsed_secs: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        timed_out,
        failure_reasons: reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<Duration> = (1..=100).map(ms_).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(ms_(50)));
        assert_eq!(percentile(&sorted, 90.0), Some(ms_(90)));
        assert_eq!(percentile(&sorted, 99.0), Some(ms_(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(ms_(100)));
        assert_eq!(percentile(&sorted, 0.5), Some(ms_(1)));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&sorted, 0.0), None);
        assert_eq!(percentile(&sorted, 101.0), None);
        assert_eq!(percentile(&sorted, f64::NAN), None);
        // One sample is every percentile.
        assert_eq!(percentile(&[ms_(7)], 99.0), Some(ms_(7)));
        // Ten samples: p90 is the 9th, p99 the 10th.
        let ten: Vec<Duration> = (1..=10).map(|v| ms_(v * 10)).collect();
        assert_eq!(percentile(&ten, 50.0), Some(ms_(50)));
        assert_eq!(percentile(&ten, 90.0), Some(ms_(90)));
        assert_eq!(percentile(&ten, 99.0), Some(ms_(100)));
    }

    #[test]
    fn summary_sorts_and_reports_max() {
        let samples = [ms_(30), ms_(10), ms_(20), ms_(40)];
        let s = summarize(&samples).unwrap();
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, 20.0);
        assert_eq!(s.p90_ms, 40.0);
        assert_eq!(s.p99_ms, 40.0);
        assert_eq!(s.max_ms, 40.0);
        assert!(summarize(&[]).is_none());
        let s = summarize(&[Duration::from_micros(1500)]).unwrap();
        assert_eq!(s.p50_ms, 1.5);
    }

    #[test]
    fn rates() {
        assert_eq!(rate(10, Duration::from_secs(2)), Some(5.0));
        assert_eq!(rate(0, Duration::from_secs(2)), None);
        assert_eq!(rate(3, Duration::ZERO), None);
    }

    #[test]
    fn pagination_cursors() {
        let admin = Url::parse("http://127.0.0.1:9000/admin").unwrap();
        let first = attached_url(&admin).unwrap();
        assert_eq!(
            first.as_str(),
            "http://127.0.0.1:9000/admin/api/v1/devices?state=attached&limit=500"
        );
        let base = as_base(&admin);
        let num = serde_json::json!(42);
        assert_eq!(
            next_page(&first, &base, Some(&num)).unwrap().as_str(),
            "http://127.0.0.1:9000/admin/api/v1/devices?state=attached&limit=500&after=42"
        );
        let path = serde_json::json!("/admin/api/v1/devices?cursor=abc");
        assert_eq!(
            next_page(&first, &base, Some(&path)).unwrap().as_str(),
            "http://127.0.0.1:9000/admin/api/v1/devices?cursor=abc"
        );
        let token = serde_json::json!("c-9");
        assert!(
            next_page(&first, &base, Some(&token))
                .unwrap()
                .as_str()
                .ends_with("&after=c-9")
        );
        assert!(next_page(&first, &base, Some(&serde_json::Value::Null)).is_none());
        assert!(next_page(&first, &base, None).is_none());
    }

    fn cfg() -> LoadConfig {
        LoadConfig {
            devices: 3,
            rate: 10.0,
            servers: vec!["dms-1".into(), "dms-2".into()],
            bootstrap_server_url: Some("http://127.0.0.1:1/bs/{server_id}".into()),
            admin: None,
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(100),
            heartbeat: Duration::from_secs(30),
            provisioning_encoding: Encoding::Xml,
            dm_encoding: Encoding::Wbxml,
            id_prefix: "LOAD:abc".into(),
            progress: false,
        }
    }

    #[test]
    fn generated_devices() {
        let specs = generate_devices(&cfg());
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[2].dev_id, "LOAD:abc-000003");
        assert_eq!(specs[0].accounts[1].server_id, "dms-2");
        assert_eq!(
            specs[0].accounts[1].bootstrap_server_url.as_deref(),
            Some("http://127.0.0.1:1/bs/dms-2")
        );
        let ids: HashSet<_> = specs.iter().map(|s| &s.dev_id).collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn settings_are_bounded() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.devices = 0;
        assert!(matches!(
            c.validate(),
            Err(LoadError::Setting {
                setting: "--devices",
                ..
            })
        ));
        let mut c = cfg();
        c.rate = f64::INFINITY;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.timeout = Duration::from_secs(7200);
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.servers = vec!["a+b".into()];
        assert!(c.validate().is_err());
    }

    #[test]
    fn human_summary_mentions_the_figures() {
        let r = LoadReport {
            devices: 2,
            target_rate: 5.0,
            announced: 2,
            sessions_done: 2,
            refused: 0,
            failed: 0,
            attached: Some(2),
            onboarding_rate: Some(4.5),
            attach_latency: summarize(&[ms_(10), ms_(20)]),
            session_latency: summarize(&[ms_(5), ms_(8)]),
            elapsed_secs: 0.5,
            timed_out: false,
            failure_reasons: vec![],
        };
        let h = r.human();
        assert!(h.contains("4.50 devices/s"), "{h}");
        assert!(h.contains("p99 20.0 ms"), "{h}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["attach_latency"]["p50_ms"], 10.0);
    }
}
