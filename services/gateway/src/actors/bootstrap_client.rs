//! BootstrapClient (steps 4-7): persistent bootstrap jobs for the ServerIDs the gateway does not know,
//! one per (server, device), with the workflow chosen by policy; they survive restarts in the store.

use actix::prelude::*;
use serde_json::json;
use tracing::Instrument;

use super::{ActorError, Traced};
use crate::domain::{BootstrapJob, Millis, NewEvent, NewJob, ServerReport, Workflow};
use crate::store::{Store, StoreError, events, jobs};

/// Which workflow the gateway uses to get bootstrapped for an unknown ServerID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkflowPolicy {
    /// Workflow 1 only: the device gives the bootstrap server's URL; the gateway GETs it.
    One,
    /// Workflow 2 only: the device asks its bootstrap server to push to the gateway.
    Two,
    /// Workflow 1 where the device gave a URL, else workflow 2.
    #[default]
    OneThenTwo,
}

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

/// The BootstrapClient actor.
pub struct BootstrapClient {
    store: Store,
    policy: WorkflowPolicy,
}

impl std::fmt::Debug for BootstrapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapClient")
            .field("policy", &self.policy)
            .finish()
    }
}

impl BootstrapClient {
    /// A BootstrapClient with the default policy (workflow 1, falling back to 2).
    pub fn new(store: Store) -> BootstrapClient {
        BootstrapClient {
            store,
            policy: WorkflowPolicy::default(),
        }
    }
}

impl Actor for BootstrapClient {
    type Context = Context<Self>;
}

impl Supervised for BootstrapClient {
    fn restarting(&mut self, _: &mut Context<Self>) {
        super::restarted("bootstrap_client");
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

impl Handler<Traced<BootstrapNeeded>> for BootstrapClient {
    type Result = ResponseFuture<Result<Vec<BootstrapJob>, ActorError>>;

    fn handle(&mut self, m: Traced<BootstrapNeeded>, _: &mut Context<Self>) -> Self::Result {
        let span = tracing::info_span!(parent: &m.span, "bootstrap jobs", dev_id = %m.msg.dev_id);
        Box::pin(create_jobs(self.store.clone(), self.policy, m.msg).instrument(span))
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
