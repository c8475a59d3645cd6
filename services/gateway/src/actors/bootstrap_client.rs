//! BootstrapClient (steps 4-7): persistent bootstrap jobs for the ServerIDs the gateway does not know,
//! one per (server, device), with the workflow chosen by policy; they survive restarts in the store.

use actix::prelude::*;
use serde_json::json;
use tracing::Instrument;

use std::sync::Arc;
use std::time::Duration;

use omadm::bootstrap::Bootstrap;

use super::matching::{AccountsChanged, MatchDevice, Matching};
use super::{ActorError, Traced, TracedExt};
use crate::bootstrap::{Fetcher, GatewayBootstrapError, apply};
pub use crate::config::WorkflowPolicy;
use crate::domain::{
    ApplyOutcome, BootstrapJob, JobState, JobUpdate, Millis, NewEvent, NewJob, ServerReport,
    Workflow,
};
use crate::store::{Store, StoreError, events, jobs};

/// Bootstrap jobs are needed for these unmatched servers of a device.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<BootstrapJob>, ActorError>")]
pub struct BootstrapNeeded {
    /// The device that reported them.
    pub dev_id: String,
    /// The unmatched servers, with the bootstrap URL the device gave where it did.
    pub servers: Vec<ServerReport>,
}

/// The plain logic of BootstrapClient.
#[derive(Debug, Clone, Copy)]
pub struct BootstrapLogic;

impl BootstrapLogic {
    /// The workflow for one server under a policy (`None`: nothing can be done, with why).
    pub fn workflow(policy: WorkflowPolicy, server: &ServerReport) -> Result<Workflow, String> {
        let has_url = server
            .bootstrap_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty());
        match policy {
            WorkflowPolicy::One if has_url => Ok(Workflow::One),
            WorkflowPolicy::One => {
                Err("workflow 1 needs a bootstrap-server URL and the device gave none".into())
            }
            WorkflowPolicy::Two => Ok(Workflow::Two),
            WorkflowPolicy::OneThenTwo if has_url => Ok(Workflow::One),
            WorkflowPolicy::OneThenTwo => Ok(Workflow::Two),
        }
    }
}

/// Connect BootstrapClient to Matching (they need each other's address; sent once at start).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Wire {
    /// Matching, told when accounts were added.
    pub matching: Addr<Matching>,
}

/// Look for due jobs now (timer, new jobs).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct RunDue;

/// A bootstrap pushed to the WAN face (workflow 2), its MAC already verified.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ApplyOutcome, GatewayBootstrapError>")]
pub struct PushReceived {
    /// The decoded bootstrap, addressed to this gateway.
    pub bootstrap: Bootstrap,
}

/// What BootstrapClient needs besides the store.
#[derive(Debug, Clone)]
pub struct BootstrapSettings {
    /// Workflow policy.
    pub policy: WorkflowPolicy,
    /// Fetches workflow-1 bootstraps.
    pub fetcher: Fetcher,
    /// How long a workflow-2 job waits for its push.
    pub push_timeout: Duration,
    /// Attempts at a workflow-1 fetch.
    pub max_attempts: u32,
    /// May a bootstrap overwrite an existing account.
    pub overwrite: bool,
}

/// The BootstrapClient actor.
pub struct BootstrapClient {
    store: Store,
    policy: WorkflowPolicy,
    settings: Arc<BootstrapSettings>,
    matching: Option<Addr<Matching>>,
    running: bool,
}

impl std::fmt::Debug for BootstrapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapClient")
            .field("policy", &self.policy)
            .finish()
    }
}

impl BootstrapClient {
    /// A BootstrapClient.
    pub fn new(store: Store, settings: Arc<BootstrapSettings>) -> BootstrapClient {
        BootstrapClient {
            store,
            policy: settings.policy,
            settings,
            matching: None,
            running: false,
        }
    }
}

impl Actor for BootstrapClient {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(JOB_TICK, |_, ctx| ctx.notify(RunDue));
    }
}

impl Supervised for BootstrapClient {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Claimed jobs of the lost run become due again when their lease ends.
        self.running = false;
        super::restarted("bootstrap_client");
    }
}

/// How often due jobs are looked for.
pub const JOB_TICK: Duration = Duration::from_millis(500);
/// How long a claimed workflow-1 job is leased to one attempt.
pub const JOB_LEASE: Duration = Duration::from_secs(120);

/// The delay before retrying a failed workflow-1 fetch.
pub fn retry_delay(attempts: u32) -> Duration {
    let policy = crate::config::RetryPolicy {
        max_attempts: u32::MAX,
        base: Duration::from_secs(2),
        max: Duration::from_secs(300),
    };
    super::alerting::AlertingLogic::backoff(attempts, &policy, rand::random::<f64>())
}

/// What running one job decided.
struct JobOutcome {
    update: JobUpdate,
    added: Vec<String>,
    event: Option<(&'static str, String)>,
}

/// Decide what a claimed job becomes (and do its workflow-1 fetch).
async fn step_job(
    store: &Store,
    settings: &BootstrapSettings,
    job: &BootstrapJob,
) -> Result<JobOutcome, StoreError> {
    let now = Millis::now();
    let update = |state, last_error, next_attempt_at| JobUpdate {
        state,
        count_attempt: true,
        last_error,
        next_attempt_at,
        bootstrap_url: None,
    };
    Ok(match (job.workflow, job.state) {
        // Workflow 2: the hand-over happened in the device's DM session; wait for the push.
        (Workflow::Two, JobState::InProgress) => JobOutcome {
            update: update(
                JobState::AwaitingPush,
                None,
                now.saturating_add(settings.push_timeout),
            ),
            added: Vec::new(),
            event: None,
        },
        (Workflow::Two, _) => {
            let why = format!(
                "no bootstrap was pushed within {} s of the hand-over",
                settings.push_timeout.as_secs()
            );
            metrics::counter!("dmgw_bootstrap_jobs_total", "workflow" => "2", "outcome" => "failed")
                .increment(1);
            JobOutcome {
                update: update(JobState::Failed, Some(why.clone()), now),
                added: Vec::new(),
                event: Some(("bootstrap_failed", why)),
            }
        }
        (Workflow::One, _) => {
            let url = job.bootstrap_url.clone().unwrap_or_default();
            let tried = job.attempts.saturating_add(1);
            let result = match settings.fetcher.fetch(&url, &job.server_id).await {
                Ok(b) => apply(store, &b, settings.overwrite).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(outcome) => {
                    let note = (!outcome.skipped.is_empty()).then(|| {
                        format!(
                            "an account for {} exists; the bootstrap was not applied (overwrite is off)",
                            outcome.skipped.join(", ")
                        )
                    });
                    metrics::counter!("dmgw_bootstrap_jobs_total", "workflow" => "1", "outcome" => "done")
                        .increment(1);
                    JobOutcome {
                        update: update(JobState::Done, note, now),
                        added: outcome.added,
                        event: Some(("bootstrapped", format!("workflow 1 from {url}"))),
                    }
                }
                Err(GatewayBootstrapError::Store(e)) => return Err(e),
                Err(e) => {
                    let give_up = tried >= settings.max_attempts
                        || matches!(
                            e,
                            GatewayBootstrapError::Url(_)
                                | GatewayBootstrapError::NotForUs { .. }
                                | GatewayBootstrapError::MissingAccount { .. }
                        );
                    tracing::warn!(error = %e, give_up, "workflow-1 bootstrap failed");
                    metrics::counter!(
                        "dmgw_bootstrap_jobs_total",
                        "workflow" => "1",
                        "outcome" => if give_up { "failed" } else { "retry" }
                    )
                    .increment(1);
                    JobOutcome {
                        update: update(
                            if give_up {
                                JobState::Failed
                            } else {
                                JobState::Pending
                            },
                            Some(e.to_string()),
                            now.saturating_add(retry_delay(tried)),
                        ),
                        added: Vec::new(),
                        event: give_up.then(|| ("bootstrap_failed", e.to_string())),
                    }
                }
            }
        }
    })
}

/// Run one claimed job and record what happened; returns the ServerIDs whose accounts were added.
async fn run_job(
    store: &Store,
    settings: &BootstrapSettings,
    job: BootstrapJob,
) -> Result<Vec<String>, StoreError> {
    let span = tracing::info_span!(
        "bootstrap",
        otel.name = %format_args!("bootstrap {}", job.server_id),
        server_id = %job.server_id,
        dev_id = %job.dev_id,
        workflow = job.workflow.number(),
        attempt = job.attempts.saturating_add(1),
        state = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::onboarding::adopt(store, &span, &job.dev_id).await;
    let current = span.clone();
    async {
        let outcome = step_job(store, settings, &job).await?;
        current.record("state", outcome.update.state.as_str());
        if outcome.update.state == JobState::Failed {
            current.record("otel.status_code", "ERROR");
        }
        let mut tx = store.begin().await?;
        jobs::update(&mut tx, job.id, &outcome.update).await?;
        if let Some((kind, detail)) = outcome.event {
            events::log(
                &mut tx,
                &[NewEvent {
                    dev_id: Some(job.dev_id.clone()),
                    kind: kind.into(),
                    detail: json!({
                        "server_id": job.server_id,
                        "workflow": job.workflow.number(),
                        "detail": detail,
                    }),
                    at: Millis::now(),
                }],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(outcome.added)
    }
    .instrument(span)
    .await
}

impl Handler<Wire> for BootstrapClient {
    type Result = ();

    fn handle(&mut self, w: Wire, ctx: &mut Context<Self>) {
        self.matching = Some(w.matching);
        ctx.notify(RunDue);
    }
}

impl Handler<RunDue> for BootstrapClient {
    type Result = ();

    fn handle(&mut self, _: RunDue, ctx: &mut Context<Self>) {
        if self.running || self.matching.is_none() {
            return;
        }
        self.running = true;
        let store = self.store.clone();
        let settings = self.settings.clone();
        ctx.spawn(
            async move {
                let now = Millis::now();
                let claimed = store
                    .claim_due_jobs(now, now.saturating_add(JOB_LEASE), 20)
                    .await?;
                let mut added = Vec::new();
                let mut ended = Vec::new();
                let more = !claimed.is_empty();
                for job in claimed {
                    let dev = job.dev_id.clone();
                    added.extend(run_job(&store, &settings, job).await?);
                    ended.push(dev);
                }
                Ok::<_, StoreError>((added, ended, more))
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                act.running = false;
                match res {
                    Ok((added, ended, more)) => {
                        if let Some(m) = &act.matching {
                            if !added.is_empty() {
                                m.do_send(AccountsChanged { server_ids: added }.traced());
                            }
                            // A job that ended may settle its device (failed jobs count as settled).
                            for dev_id in ended {
                                m.do_send(MatchDevice { dev_id }.traced());
                            }
                        }
                        if more {
                            ctx.notify(RunDue);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "bootstrap job run failed"),
                }
            }),
        );
    }
}

/// Mark the open workflow-2 jobs of these servers done; returns the devices concerned, each
/// with the ServerID and attempt count of its job.
async fn settle_pushed(
    store: &Store,
    outcome: &ApplyOutcome,
) -> Result<Vec<(String, String, u32)>, StoreError> {
    let now = Millis::now();
    let mut tx = store.begin().await?;
    let mut devices = Vec::new();
    let mut settled = Vec::new();
    for server_id in outcome
        .added
        .iter()
        .chain(&outcome.replaced)
        .chain(&outcome.skipped)
    {
        for job in jobs::for_server(&mut tx, server_id).await? {
            if job.workflow == Workflow::Two && job.state.is_open() {
                jobs::update(
                    &mut tx,
                    job.id,
                    &JobUpdate {
                        state: JobState::Done,
                        count_attempt: true,
                        last_error: None,
                        next_attempt_at: now,
                        bootstrap_url: None,
                    },
                )
                .await?;
                devices.push(job.dev_id.clone());
                settled.push((
                    job.dev_id.clone(),
                    server_id.clone(),
                    job.attempts.saturating_add(1),
                ));
            }
        }
    }
    let log: Vec<NewEvent> = devices
        .iter()
        .map(|d| NewEvent {
            dev_id: Some(d.clone()),
            kind: "bootstrapped".into(),
            detail: json!({ "workflow": 2, "added": outcome.added }),
            at: now,
        })
        .collect();
    if !log.is_empty() {
        events::log(&mut tx, &log).await?;
    }
    tx.commit().await?;
    Ok(settled)
}

impl Handler<Traced<PushReceived>> for BootstrapClient {
    type Result = ResponseActFuture<Self, Result<ApplyOutcome, GatewayBootstrapError>>;

    fn handle(&mut self, m: Traced<PushReceived>, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let overwrite = self.settings.overwrite;
        let span = m.span;
        Box::pin(
            async move {
                let outcome = apply(&store, &m.msg.bootstrap, overwrite).await?;
                let settled = settle_pushed(&store, &outcome).await?;
                // Each device's onboarding shows its workflow-2 job settled by this push.
                let push = telemetry::traceparent();
                for (dev_id, server_id, attempt) in settled {
                    let span = tracing::info_span!(
                        "bootstrap",
                        otel.name = %format_args!("bootstrap {server_id}"),
                        server_id = %server_id,
                        dev_id = %dev_id,
                        workflow = 2,
                        attempt,
                        state = "done",
                    );
                    crate::onboarding::adopt(&store, &span, &dev_id).await;
                    telemetry::link_traceparent(&span, push.as_deref());
                    span.in_scope(|| tracing::info!("bootstrap pushed and applied"));
                    metrics::counter!("dmgw_bootstrap_jobs_total", "workflow" => "2", "outcome" => "done")
                        .increment(1);
                }
                metrics::counter!("dmgw_bootstrap_pushes_total", "outcome" => "applied")
                    .increment(1);
                Ok(outcome)
            }
            .instrument(span)
            .into_actor(self)
            .map(|res: Result<ApplyOutcome, GatewayBootstrapError>, act, _| {
                if let (Ok(outcome), Some(m)) = (&res, &act.matching) {
                    let changed: Vec<String> = outcome
                        .added
                        .iter()
                        .chain(&outcome.replaced)
                        .cloned()
                        .collect();
                    if !changed.is_empty() {
                        m.do_send(
                            AccountsChanged {
                                server_ids: changed,
                            }
                            .traced(),
                        );
                    }
                }
                res
            }),
        )
    }
}

async fn create_jobs(
    store: Store,
    policy: WorkflowPolicy,
    m: BootstrapNeeded,
) -> Result<Vec<BootstrapJob>, ActorError> {
    let mut tx = store.begin().await?;
    let now = Millis::now();
    let mut out = Vec::with_capacity(m.servers.len());
    let mut log = Vec::new();
    for server in &m.servers {
        let workflow = match BootstrapLogic::workflow(policy, server) {
            Ok(w) => w,
            Err(why) => {
                log.push(NewEvent {
                    dev_id: Some(m.dev_id.clone()),
                    kind: "bootstrap_impossible".into(),
                    detail: json!({ "server_id": server.server_id, "reason": why }),
                    at: now,
                });
                continue;
            }
        };
        let created = jobs::create_or_get(
            &mut tx,
            &NewJob {
                server_id: server.server_id.clone(),
                dev_id: m.dev_id.clone(),
                workflow,
                bootstrap_url: server.bootstrap_url.clone(),
                next_attempt_at: now,
            },
        )
        .await?;
        if created.created {
            metrics::counter!("dmgw_bootstrap_jobs_created_total", "workflow" => if workflow == Workflow::One { "1" } else { "2" }).increment(1);
            log.push(NewEvent {
                dev_id: Some(m.dev_id.clone()),
                kind: "bootstrap_job".into(),
                detail: json!({ "server_id": server.server_id, "workflow": workflow.number(), "job": created.job.id.0 }),
                at: now,
            });
        }
        out.push(created.job);
    }
    if !log.is_empty() {
        events::log(&mut tx, &log).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(out)
}

/// Record the workflow-2 jobs of the servers a device is being handed over for (`server_ids`),
/// before the hand-over leaves the gateway: the push it leads to may come back before Matching
/// would create them, and a push must find its job open (existing jobs are left as they are).
pub async fn record_handovers(
    store: &Store,
    dev_id: &str,
    server_ids: &[String],
) -> Result<Vec<BootstrapJob>, ActorError> {
    let servers = server_ids
        .iter()
        .map(|s| ServerReport {
            server_id: s.clone(),
            bootstrap_url: None,
        })
        .collect();
    create_jobs(
        store.clone(),
        WorkflowPolicy::Two,
        BootstrapNeeded {
            dev_id: dev_id.to_owned(),
            servers,
        },
    )
    .await
}

impl Handler<Traced<BootstrapNeeded>> for BootstrapClient {
    type Result = ResponseActFuture<Self, Result<Vec<BootstrapJob>, ActorError>>;

    fn handle(&mut self, m: Traced<BootstrapNeeded>, _: &mut Context<Self>) -> Self::Result {
        let span = tracing::info_span!(parent: &m.span, "bootstrap jobs", dev_id = %m.msg.dev_id);
        Box::pin(
            create_jobs(self.store.clone(), self.policy, m.msg)
                .instrument(span)
                .into_actor(self)
                .map(|res, _, ctx| {
                    ctx.notify(RunDue);
                    res
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: Option<&str>) -> ServerReport {
        ServerReport {
            server_id: "s".into(),
            bootstrap_url: url.map(str::to_owned),
        }
    }

    #[test]
    fn workflow_follows_policy() {
        let with = server(Some("https://bs.example/b"));
        let without = server(None);
        assert_eq!(
            BootstrapLogic::workflow(WorkflowPolicy::One, &with),
            Ok(Workflow::One)
        );
        assert!(BootstrapLogic::workflow(WorkflowPolicy::One, &without).is_err());
        assert_eq!(
            BootstrapLogic::workflow(WorkflowPolicy::Two, &with),
            Ok(Workflow::Two)
        );
        assert_eq!(
            BootstrapLogic::workflow(WorkflowPolicy::OneThenTwo, &without),
            Ok(Workflow::Two)
        );
        assert_eq!(
            BootstrapLogic::workflow(WorkflowPolicy::OneThenTwo, &with),
            Ok(Workflow::One)
        );
    }
}
