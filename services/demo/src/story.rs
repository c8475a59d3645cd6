//! The story of each device: what the device did (device-sim's events), what the gateway made of
//! it and what the DM Servers received (snapshots), told as lines as it happens, and when a device
//! has settled. Plain data in, lines out: no I/O here, so tests drive it directly.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::discriminant;
use std::time::Duration;

use device_sim::fleet::{DeviceEvent, DeviceReport, Outcome};
use gateway::domain::{AlertState, DeviceView};
use omadm::alert::{DEVICE_ATTACHED, same_type};
use omadm::mo::DeviceState;

use crate::observe::Snapshot;
use crate::plan::{DevicePlan, consent_text, seconds};

/// A consent answered later than this is told with its delay.
const TELL_DELAY_FROM: Duration = Duration::from_millis(500);

/// A milestone of a device's onboarding, in the order the story tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// 1-1: the gateway took the announcement.
    Announced,
    /// 1-2: the gateway asked the device's user.
    ConsentAsked,
    /// 1-2: the user allowed, this long after being asked.
    Allowed {
        /// The user's delay.
        after: Duration,
    },
    /// 1-2: the user refused.
    Refused,
    /// 1-3: the device installed its DM account for the gateway.
    Provisioned,
    /// 1-4: the gateway received the device's ServerIDs.
    Reported(Vec<String>),
    /// 2-3: the gateway matched them (attached or waiting for a bootstrap).
    Matched,
    /// The gateway recorded the refusal.
    LeftAlone,
    /// The device's DM session with the gateway ended.
    SessionDone,
    /// A DM Server received `deviceattached` for the device.
    Alerted(String),
    /// The gateway created a bootstrap job for the device's unknown server.
    Job(i64),
}

impl Step {
    fn rank(&self) -> u8 {
        match self {
            Step::Announced => 0,
            Step::ConsentAsked => 1,
            Step::Allowed { .. } | Step::Refused => 2,
            Step::Provisioned => 3,
            Step::Reported(_) => 4,
            Step::Matched | Step::LeftAlone => 5,
            Step::SessionDone => 6,
            Step::Alerted(_) => 7,
            Step::Job(_) => 8,
        }
    }

    /// Same milestone (servers and jobs count one by one).
    fn same_as(&self, other: &Step) -> bool {
        match (self, other) {
            (Step::Alerted(a), Step::Alerted(b)) => a == b,
            (Step::Job(a), Step::Job(b)) => a == b,
            _ => discriminant(self) == discriminant(other),
        }
    }
}

/// A bootstrap job as the story knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSeen {
    /// The job's id.
    pub id: i64,
    /// The ServerID it is for.
    pub server_id: String,
    /// 1 or 2.
    pub workflow: i64,
    /// Its state (`pending`, ...).
    pub state: String,
}

/// Everything known about one device.
#[derive(Debug, Clone)]
pub struct DeviceTrack {
    /// The device's plan.
    pub plan: DevicePlan,
    /// Milestones reached, in the order seen.
    pub steps: Vec<Step>,
    /// device-sim's report of the first onboarding, once settled on the device's side.
    pub sim: Option<DeviceReport>,
    /// Why the onboarding failed, when it did.
    pub failure: Option<String>,
    /// The gateway's state of the device.
    pub state: Option<DeviceState>,
    /// The ServerIDs the gateway recorded for it.
    pub reported: Vec<String>,
    /// Those the gateway holds an account for.
    pub matched: Vec<String>,
    /// Those it does not.
    pub unmatched: Vec<String>,
    /// The DM Servers that received `deviceattached` for it.
    pub alerted: BTreeSet<String>,
    /// Its bootstrap jobs, by id.
    pub jobs: BTreeMap<i64, JobSeen>,
    /// When it settled (since the devices started).
    pub settled_at: Option<Duration>,
    consent_asked_at: Option<Duration>,
    last_device_step: Option<&'static str>,
}

fn join(ids: &[String]) -> String {
    ids.join(", ")
}

fn is_final(state: Option<DeviceState>) -> bool {
    matches!(
        state,
        Some(DeviceState::Attached | DeviceState::WaitingBootstrap | DeviceState::Refused)
    )
}

impl DeviceTrack {
    fn new(plan: DevicePlan) -> DeviceTrack {
        DeviceTrack {
            plan,
            steps: Vec::new(),
            sim: None,
            failure: None,
            state: None,
            reported: Vec::new(),
            matched: Vec::new(),
            unmatched: Vec::new(),
            alerted: BTreeSet::new(),
            jobs: BTreeMap::new(),
            settled_at: None,
            consent_asked_at: None,
            last_device_step: None,
        }
    }

    /// Record a milestone; false when it was already reached.
    fn record(&mut self, step: Step) -> bool {
        if self.steps.iter().any(|s| s.same_as(&step)) {
            return false;
        }
        self.steps.push(step);
        true
    }

    /// True once the device and the gateway agree it is done: the device's onboarding ended, the
    /// gateway holds it as attached, waiting for a bootstrap or refused, every matched server
    /// received `deviceattached` and every unknown server has a bootstrap job. A failed device
    /// counts as settled (the run then fails).
    pub fn is_settled(&self) -> bool {
        if self.failure.is_some() {
            return true;
        }
        if self.sim.is_none() {
            return false;
        }
        match self.state {
            Some(DeviceState::Refused) => true,
            Some(DeviceState::Attached | DeviceState::WaitingBootstrap) => {
                self.matched.iter().all(|s| self.alerted.contains(s))
                    && self
                        .unmatched
                        .iter()
                        .all(|s| self.jobs.values().any(|j| &j.server_id == s))
            }
            _ => false,
        }
    }

    /// What an unsettled device still waits for, in words.
    pub fn waiting_for(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sim.is_none() {
            out.push(format!(
                "the device to finish its onboarding (last step: {})",
                self.last_device_step.unwrap_or("none yet")
            ));
        }
        match self.state {
            None => out.push("the gateway to record it".into()),
            s if !is_final(s) => out.push(format!(
                "the gateway to finish with it (state {})",
                s.map_or("unknown", |s| s.as_str())
            )),
            _ => {}
        }
        for s in self.matched.iter().filter(|s| !self.alerted.contains(*s)) {
            out.push(format!("{s} to receive deviceattached"));
        }
        for s in self
            .unmatched
            .iter()
            .filter(|s| !self.jobs.values().any(|j| &j.server_id == *s))
        {
            out.push(format!("a bootstrap job for {s}"));
        }
        out
    }

    /// The whole story in one line: `announced → consent asked → allowed → ...`.
    pub fn chain(&self) -> String {
        let mut steps: Vec<&Step> = self.steps.iter().collect();
        steps.sort_by_key(|s| s.rank());
        let mut parts: Vec<String> = Vec::new();
        for step in steps {
            match step {
                Step::Announced => parts.push("announced".into()),
                Step::ConsentAsked => parts.push("consent asked".into()),
                Step::Allowed { after } if *after >= TELL_DELAY_FROM => {
                    parts.push(format!("allowed after {}", seconds(*after)));
                }
                Step::Allowed { .. } => parts.push("allowed".into()),
                Step::Refused => parts.push("refused".into()),
                Step::Provisioned => parts.push("provisioned".into()),
                Step::Reported(ids) => parts.push(format!("reported {}", join(ids))),
                Step::Matched
                | Step::LeftAlone
                | Step::SessionDone
                | Step::Alerted(_)
                | Step::Job(_) => {}
            }
        }
        if let Some(f) = &self.failure {
            parts.push(format!("failed: {f}"));
            return parts.join(" → ");
        }
        match self.state {
            Some(DeviceState::Refused) => parts.push("left alone".into()),
            Some(DeviceState::Attached | DeviceState::WaitingBootstrap) => {
                let mut end = Vec::new();
                if !self.matched.is_empty() {
                    let got: Vec<String> = self
                        .matched
                        .iter()
                        .filter(|s| self.alerted.contains(*s))
                        .cloned()
                        .collect();
                    let told = if got.is_empty() {
                        "deviceattached not received yet".to_owned()
                    } else {
                        format!("deviceattached received by {}", join(&got))
                    };
                    end.push(format!("attached to {} ({told})", join(&self.matched)));
                }
                if !self.unmatched.is_empty() {
                    let servers: Vec<String> = self
                        .unmatched
                        .iter()
                        .map(|s| match self.jobs.values().find(|j| &j.server_id == s) {
                            Some(j) => {
                                format!("{s} (job #{}, workflow {}, {})", j.id, j.workflow, j.state)
                            }
                            None => s.clone(),
                        })
                        .collect();
                    end.push(format!(
                        "waiting for a bootstrap for {}",
                        servers.join(", ")
                    ));
                }
                if end.is_empty() {
                    end.push("attached (no DM Server to tell)".into());
                }
                parts.push(end.join("; "));
            }
            Some(other) => parts.push(format!("gateway state {other}")),
            None => {}
        }
        parts.join(" → ")
    }
}

/// A story line: `[+  1.02s] [who] text`.
pub fn line(at: Duration, who: &str, text: impl std::fmt::Display) -> String {
    format!("[+{:>6.2}s] [{who}] {text}", at.as_secs_f64())
}

/// The `deviceattached` of `urn:oma:at:oma-gwmo:deviceattached:1.0`.
pub fn short_type(urn: &str) -> &str {
    urn.rsplit(':')
        .nth(1)
        .filter(|s| !s.is_empty())
        .unwrap_or(urn)
}

/// Follows every device of the plan and tells what happens to it.
#[derive(Debug, Clone)]
pub struct Tracker {
    devices: Vec<DeviceTrack>,
    seen_alerts: BTreeSet<(String, u64)>,
    outbox: BTreeMap<i64, (u32, AlertState)>,
    job_states: BTreeMap<i64, String>,
}

impl Tracker {
    /// A tracker of these devices.
    pub fn new(plans: &[DevicePlan]) -> Tracker {
        Tracker {
            devices: plans.iter().copied().map(DeviceTrack::new).collect(),
            seen_alerts: BTreeSet::new(),
            outbox: BTreeMap::new(),
            job_states: BTreeMap::new(),
        }
    }

    /// The devices, in plan order.
    pub fn devices(&self) -> &[DeviceTrack] {
        &self.devices
    }

    fn track(&mut self, dev_id: &str) -> Option<&mut DeviceTrack> {
        self.devices.iter_mut().find(|d| d.plan.dev_id == dev_id)
    }

    /// How many devices have settled.
    pub fn settled_count(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.settled_at.is_some())
            .count()
    }

    /// True when every device has settled.
    pub fn all_settled(&self) -> bool {
        self.devices.iter().all(|d| d.settled_at.is_some())
    }

    /// True when a device failed.
    pub fn any_failed(&self) -> bool {
        self.devices.iter().any(|d| d.failure.is_some())
    }

    /// For each unsettled device, what it waits for: `dev_id: a; b`.
    pub fn unsettled(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter(|d| d.settled_at.is_none())
            .map(|d| {
                format!(
                    "{}: waiting for {}",
                    d.plan.dev_id,
                    d.waiting_for().join("; ")
                )
            })
            .collect()
    }

    /// Take in one of device-sim's events; the lines it tells.
    pub fn on_device_event(&mut self, ev: DeviceEvent, at: Duration) -> Vec<String> {
        let mut out = Vec::new();
        match ev {
            DeviceEvent::Announcing { .. } => {}
            DeviceEvent::Progress {
                dev_id,
                step,
                error,
            } => {
                if let Some(t) = self.track(&dev_id) {
                    t.on_progress(step, error, at, &mut out);
                }
            }
            DeviceEvent::Settled(report) => {
                if let Some(t) = self.track(&report.dev_id) {
                    t.on_settled(*report, at, &mut out);
                }
            }
        }
        self.check_settled(at, &mut out);
        out
    }

    /// Take in a look at the gateway and the DM Servers; the lines it tells.
    pub fn on_snapshot(&mut self, snap: &Snapshot, at: Duration) -> Vec<String> {
        let mut out = Vec::new();
        for view in &snap.devices {
            if let Some(t) = self.track(&view.dev_id) {
                t.on_view(view, at, &mut out);
            }
        }
        for row in &snap.outbox {
            let before = self.outbox.insert(row.id.0, (row.attempts, row.state));
            let (attempts, state) = before.unwrap_or((0, AlertState::Pending));
            let what = format!("{} to {}", short_type(&row.alert_type), row.server_id);
            if row.attempts > attempts
                && let Some(e) = &row.last_error
            {
                out.push(line(
                    at,
                    "gateway",
                    format!(
                        "delivery of {what} failed (attempt {}): {e}; will retry",
                        row.attempts
                    ),
                ));
            }
            if row.state == AlertState::Failed && state != AlertState::Failed {
                out.push(line(
                    at,
                    "gateway",
                    format!("gave up delivering {what} for {}", row.dev_id),
                ));
            }
        }
        for (server_id, alerts) in &snap.received {
            for a in alerts {
                if !self.seen_alerts.insert((server_id.clone(), a.id)) {
                    continue;
                }
                let device = a.data.as_deref().map(str::trim).unwrap_or("?").to_owned();
                out.push(line(
                    at,
                    server_id,
                    format!(
                        "received {} for {device} from {}",
                        short_type(&a.alert_type),
                        a.dev_id
                    ),
                ));
                if same_type(&a.alert_type, DEVICE_ATTACHED)
                    && let Some(t) = self.track(&device)
                {
                    t.alerted.insert(server_id.clone());
                    t.record(Step::Alerted(server_id.clone()));
                }
            }
        }
        for job in &snap.jobs {
            let state = job.state.as_str().to_owned();
            let before = self.job_states.insert(job.id.0, state.clone());
            let Some(t) = self.track(&job.dev_id) else {
                continue;
            };
            let seen = JobSeen {
                id: job.id.0,
                server_id: job.server_id.clone(),
                workflow: job.workflow.number(),
                state: state.clone(),
            };
            t.jobs.insert(job.id.0, seen);
            match before {
                None => {
                    t.record(Step::Job(job.id.0));
                    out.push(line(
                        at,
                        &job.dev_id,
                        format!(
                            "bootstrap job #{} for {} created (workflow {}, {state}); \
                             bootstrap workflows are not implemented yet, so it stays there",
                            job.id.0,
                            job.server_id,
                            job.workflow.number()
                        ),
                    ));
                }
                Some(old) if old != state => out.push(line(
                    at,
                    &job.dev_id,
                    format!("bootstrap job #{}: {old} → {state}", job.id.0),
                )),
                Some(_) => {}
            }
        }
        self.check_settled(at, &mut out);
        out
    }

    fn check_settled(&mut self, at: Duration, out: &mut Vec<String>) {
        for t in &mut self.devices {
            if t.settled_at.is_none() && t.is_settled() {
                t.settled_at = Some(at);
                let mark = if t.failure.is_some() { "✘" } else { "✔" };
                out.push(line(at, t.plan.dev_id, format!("{mark} {}", t.chain())));
            }
        }
    }
}

impl DeviceTrack {
    fn on_progress(
        &mut self,
        step: &'static str,
        error: Option<String>,
        at: Duration,
        out: &mut Vec<String>,
    ) {
        let who = self.plan.dev_id;
        if step != "announce_failed" {
            self.last_device_step = Some(step);
        }
        let (milestone, text) = match step {
            "announced" => (
                Step::Announced,
                "announced itself to the gateway".to_owned(),
            ),
            "consent_requested" => {
                self.consent_asked_at = Some(at);
                (
                    Step::ConsentAsked,
                    format!(
                        "consent asked; its user will answer: {}",
                        consent_text(self.plan.consent)
                    ),
                )
            }
            "consent_allowed" => {
                let after = self
                    .consent_asked_at
                    .map_or(Duration::ZERO, |asked| at.saturating_sub(asked));
                let text = if after >= TELL_DELAY_FROM {
                    format!("allowed (after {})", seconds(after))
                } else {
                    "allowed".to_owned()
                };
                (Step::Allowed { after }, text)
            }
            "consent_refused" => (Step::Refused, "refused".to_owned()),
            "provisioned" => (
                Step::Provisioned,
                "provisioned: installed its DM account for the gateway".to_owned(),
            ),
            "session_done" => {
                self.record(Step::SessionDone);
                return;
            }
            "announce_failed" => {
                out.push(line(
                    at,
                    who,
                    format!(
                        "announcement failed ({}); trying again",
                        error.unwrap_or_default()
                    ),
                ));
                return;
            }
            other => {
                out.push(line(at, who, other));
                return;
            }
        };
        if self.record(milestone) {
            out.push(line(at, who, text));
        }
    }

    fn on_settled(&mut self, report: DeviceReport, at: Duration, out: &mut Vec<String>) {
        let who = self.plan.dev_id;
        if self.sim.is_some() {
            out.push(line(
                at,
                who,
                format!(
                    "onboarding #{} ended on the device: {:?}",
                    report.onboarding, report.outcome
                ),
            ));
            return;
        }
        let step_ms = |name: &str| report.steps.iter().find(|s| s.step == name).map(|s| s.ms);
        if let (Some(asked), Some(allowed)) =
            (step_ms("consent_requested"), step_ms("consent_allowed"))
        {
            // The device's own clock is exact; the live line used the time events were seen.
            let after = Duration::from_millis(allowed.saturating_sub(asked));
            for s in &mut self.steps {
                if let Step::Allowed { after: a } = s {
                    *a = after;
                }
            }
        }
        match report.outcome {
            Outcome::Done => {
                if !report.reported_server_ids.is_empty() {
                    self.record(Step::Reported(report.reported_server_ids.clone()));
                }
                let reported = if report.reported_server_ids.is_empty() {
                    "no other DM Server".to_owned()
                } else {
                    join(&report.reported_server_ids)
                };
                let detail = report.session.as_ref().map_or(String::new(), |s| {
                    let challenged = if s.challenged {
                        " after a digest challenge"
                    } else {
                        ""
                    };
                    format!(
                        " ({} messages{challenged}; alert answered {})",
                        s.messages, s.alert_status
                    )
                });
                out.push(line(
                    at,
                    who,
                    format!("reported {reported} in a DM session with the gateway{detail}"),
                ));
                if let Some(s) = report
                    .session
                    .as_ref()
                    .filter(|s| !s.gateway_commands.is_empty())
                {
                    out.push(line(
                        at,
                        who,
                        format!("the gateway's commands: {}", s.gateway_commands.join(", ")),
                    ));
                }
            }
            Outcome::Refused => {}
            Outcome::Failed => {
                let reason = report
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into());
                out.push(line(at, who, format!("onboarding failed: {reason}")));
                self.failure = Some(reason);
            }
        }
        self.sim = Some(report);
    }

    fn on_view(&mut self, view: &DeviceView, at: Duration, out: &mut Vec<String>) {
        let who = self.plan.dev_id;
        let reported: Vec<String> = view.servers.iter().map(|s| s.server_id.clone()).collect();
        if !reported.is_empty() {
            self.record(Step::Reported(reported.clone()));
        }
        self.reported = reported;
        self.matched = view
            .servers
            .iter()
            .filter(|s| s.matched)
            .map(|s| s.server_id.clone())
            .collect();
        self.unmatched = view
            .servers
            .iter()
            .filter(|s| !s.matched)
            .map(|s| s.server_id.clone())
            .collect();
        if self.state == Some(view.state) {
            return;
        }
        self.state = Some(view.state);
        match view.state {
            DeviceState::Attached | DeviceState::WaitingBootstrap => {
                self.record(Step::Matched);
                let mut text = Vec::new();
                if !self.matched.is_empty() {
                    text.push(format!("the gateway knows {}", join(&self.matched)));
                }
                if !self.unmatched.is_empty() {
                    text.push(format!("does not know {}", join(&self.unmatched)));
                }
                if text.is_empty() {
                    text.push("no DM Server reported".to_owned());
                }
                let queued = if self.matched.is_empty() {
                    String::new()
                } else {
                    format!("; deviceattached queued for {}", join(&self.matched))
                };
                out.push(line(
                    at,
                    who,
                    format!("{} → {}{queued}", text.join(", "), view.state),
                ));
            }
            DeviceState::Refused => {
                self.record(Step::LeftAlone);
                out.push(line(
                    at,
                    who,
                    "the gateway recorded the refusal and leaves the device alone",
                ));
            }
            DeviceState::Lost | DeviceState::Detached => {
                out.push(line(at, who, format!("gateway state: {}", view.state)));
            }
            // Discovered, consented, provisioned: the device's own steps already told them.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::ReceivedAlert;
    use crate::plan::DEVICES;
    use device_sim::dm::SessionSummary;
    use gateway::domain::{BootstrapJob, JobId, JobState, Millis, ServerView, Workflow};

    const MS: Duration = Duration::from_millis(1);

    fn progress(dev: &str, step: &'static str) -> DeviceEvent {
        DeviceEvent::Progress {
            dev_id: dev.into(),
            step,
            error: None,
        }
    }

    fn settled(dev: &str, outcome: Outcome, servers: &[&str]) -> DeviceEvent {
        let mut r = DeviceReport::new(dev, outcome, None);
        r.reported_server_ids = servers.iter().map(|s| (*s).to_owned()).collect();
        if outcome == Outcome::Done {
            r.session = Some(SessionSummary {
                session_id: "1".into(),
                messages: 3,
                challenged: true,
                alert_status: 200,
                gateway_commands: vec!["Get ./DMAcc".into()],
            });
        }
        DeviceEvent::Settled(Box::new(r))
    }

    fn view(dev: &str, state: DeviceState, servers: &[(&str, bool)]) -> DeviceView {
        DeviceView {
            dev_id: dev.into(),
            man: None,
            model: None,
            dev_type: None,
            dm_v: None,
            lang: None,
            address: None,
            state,
            first_seen: Millis(0),
            last_seen: Millis(0),
            updated_at: Millis(0),
            servers: servers
                .iter()
                .map(|(s, m)| ServerView {
                    server_id: (*s).into(),
                    matched: *m,
                    bootstrap_url: None,
                    reported_at: Millis(0),
                })
                .collect(),
        }
    }

    fn received(id: u64, dev: &str) -> ReceivedAlert {
        ReceivedAlert {
            id,
            alert_type: DEVICE_ATTACHED.into(),
            data: Some(dev.into()),
            correlator: Some(format!("c{id}")),
            dev_id: "urn:dmgw:demo-gateway".into(),
            received_at: "2024-05-01T12:00:00Z".into(),
        }
    }

    fn job(id: i64, dev: &str, server: &str) -> BootstrapJob {
        BootstrapJob {
            id: JobId(id),
            server_id: server.into(),
            dev_id: dev.into(),
            workflow: Workflow::Two,
            bootstrap_url: None,
            state: JobState::Pending,
            attempts: 0,
            next_attempt_at: Millis(0),
            last_error: None,
            created_at: Millis(0),
            updated_at: Millis(0),
        }
    }

    fn device_side(t: &mut Tracker, dev: &str, allow: bool, servers: &[&str]) -> Vec<String> {
        let mut lines = Vec::new();
        for step in ["announced", "consent_requested"] {
            lines.extend(t.on_device_event(progress(dev, step), 10 * MS));
        }
        let events = if allow {
            vec![
                (progress(dev, "consent_allowed"), 1100),
                (progress(dev, "provisioned"), 1200),
                (progress(dev, "session_done"), 1300),
                (settled(dev, Outcome::Done, servers), 1300),
            ]
        } else {
            vec![
                (progress(dev, "consent_refused"), 20),
                (settled(dev, Outcome::Refused, &[]), 20),
            ]
        };
        for (ev, ms) in events {
            lines.extend(t.on_device_event(ev, ms * MS));
        }
        lines
    }

    #[test]
    fn a_device_with_an_unknown_server_settles_waiting_for_a_bootstrap() {
        let plug = DEVICES[1].dev_id;
        let mut t = Tracker::new(&DEVICES[1..2]);
        let lines = device_side(&mut t, plug, true, &["dms-1", "dms-2"]);
        assert!(
            lines.iter().any(|l| l.contains(
                "reported dms-1, dms-2 in a DM session with the gateway (3 messages after a digest \
                 challenge; alert answered 200)"
            )),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("the gateway's commands: Get ./DMAcc"))
        );
        assert!(!t.all_settled(), "the gateway has not been seen yet");
        let mut snap = Snapshot {
            devices: vec![view(
                plug,
                DeviceState::WaitingBootstrap,
                &[("dms-1", true), ("dms-2", false)],
            )],
            ..Snapshot::default()
        };
        let lines = t.on_snapshot(&snap, 1400 * MS);
        assert!(
            lines.iter().any(|l| l.contains(
                "the gateway knows dms-1, does not know dms-2 → waiting_bootstrap; \
                 deviceattached queued for dms-1"
            )),
            "{lines:?}"
        );
        assert!(!t.all_settled());
        let waiting = t.unsettled().join("\n");
        assert!(
            waiting.contains("dms-1 to receive deviceattached"),
            "{waiting}"
        );
        assert!(waiting.contains("a bootstrap job for dms-2"), "{waiting}");

        snap.received
            .insert("dms-1".into(), vec![received(1, plug)]);
        snap.jobs.push(job(1, plug, "dms-2"));
        let lines = t.on_snapshot(&snap, 1500 * MS);
        assert!(t.all_settled(), "{lines:?}");
        let last = lines.last().unwrap();
        assert!(
            last.contains(
                "✔ announced → consent asked → allowed after 1.1s → provisioned → reported dms-1, dms-2 \
                 → attached to dms-1 (deviceattached received by dms-1); waiting for a bootstrap \
                 for dms-2 (job #1, workflow 2, pending)"
            ),
            "{last}"
        );
        // The same snapshot again tells nothing new.
        assert!(t.on_snapshot(&snap, 1600 * MS).is_empty());
    }

    #[test]
    fn a_refusing_device_is_left_alone() {
        let cam = DEVICES[2].dev_id;
        let mut t = Tracker::new(&DEVICES[2..3]);
        device_side(&mut t, cam, false, &[]);
        let snap = Snapshot {
            devices: vec![view(cam, DeviceState::Refused, &[])],
            ..Snapshot::default()
        };
        let lines = t.on_snapshot(&snap, 30 * MS);
        assert!(t.all_settled());
        assert!(
            lines
                .last()
                .unwrap()
                .ends_with("✔ announced → consent asked → refused → left alone"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_failed_device_settles_as_failed() {
        let dev = DEVICES[0].dev_id;
        let mut t = Tracker::new(&DEVICES[0..1]);
        t.on_device_event(progress(dev, "announced"), MS);
        let mut r = DeviceReport::new(dev, Outcome::Failed, Some("boom".into()));
        r.onboarding = 1;
        let lines = t.on_device_event(DeviceEvent::Settled(Box::new(r)), 2 * MS);
        assert!(t.all_settled() && t.any_failed());
        assert!(lines.last().unwrap().contains("✘ announced → failed: boom"));
    }

    #[test]
    fn short_types() {
        assert_eq!(short_type(DEVICE_ATTACHED), "deviceattached");
        assert_eq!(short_type("plain"), "plain");
    }
}
