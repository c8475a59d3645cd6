//! Matching (steps 2-4): the ServerIDs a device reported against the gateway's DMAcc tree. Matched
//! servers get `deviceattached` (via Alerting); unmatched ones start bootstrap jobs (BootstrapClient).

use actix::prelude::*;
use omadm::mo::DeviceState;
use serde_json::json;
use sqlx::SqliteConnection;
use tracing::Instrument;

use super::alerting::{Alerting, AttachMatched};
use super::bootstrap_client::{BootstrapClient, BootstrapNeeded};
use super::{ActorError, Traced, TracedExt};
use crate::domain::{DeviceView, JobState, Millis, NewEvent, ServerReport, StateChange};
use crate::store::{Store, StoreError, devices, events, jobs};

/// Match one device's reported ServerIDs (after step 1-4, or again after a bootstrap).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<MatchOutcome, ActorError>")]
pub struct MatchDevice {
    /// The device.
    pub dev_id: String,
}

/// Accounts were added to or removed from the gateway's DMAcc tree: re-match the waiting devices.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<usize, ActorError>")]
pub struct AccountsChanged {
    /// The ServerIDs concerned.
    pub server_ids: Vec<String>,
}

/// The result of matching one device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MatchOutcome {
    /// ServerIDs the gateway holds an account for.
    pub matched: Vec<String>,
    /// ServerIDs it does not (with the bootstrap-server URL the device gave, if any).
    pub unmatched: Vec<ServerReport>,
}

/// The plain logic of Matching.
#[derive(Debug, Clone, Copy)]
pub struct MatchingLogic;

impl MatchingLogic {
    /// Split a device's reported servers by their match flag (the store sets it against DMAcc).
    pub fn split(device: &DeviceView) -> MatchOutcome {
        let mut out = MatchOutcome::default();
        for s in &device.servers {
            if s.matched {
                out.matched.push(s.server_id.clone());
            } else {
                out.unmatched.push(ServerReport {
                    server_id: s.server_id.clone(),
                    bootstrap_url: s.bootstrap_url.clone(),
                });
            }
        }
        out
    }

    /// The device's state after matching: attached when nothing is left to bootstrap. A device
    /// that an operator detached, that refused, or that was lost keeps its state.
    pub fn next_state(current: DeviceState, outcome: &MatchOutcome) -> Option<DeviceState> {
        match current {
            DeviceState::Detached | DeviceState::Refused | DeviceState::Lost => None,
            _ if outcome.unmatched.is_empty() => Some(DeviceState::Attached),
            _ => Some(DeviceState::WaitingBootstrap),
        }
    }
}

/// The Matching actor.
pub struct Matching {
    store: Store,
    alerting: Addr<Alerting>,
    bootstrap: Addr<BootstrapClient>,
}

impl std::fmt::Debug for Matching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Matching")
    }
}

impl Matching {
    /// A Matching actor.
    pub fn new(
        store: Store,
        alerting: Addr<Alerting>,
        bootstrap: Addr<BootstrapClient>,
    ) -> Matching {
        Matching {
            store,
            alerting,
            bootstrap,
        }
    }
}

impl Actor for Matching {
    type Context = Context<Self>;
}

impl Supervised for Matching {
    fn restarting(&mut self, _: &mut Context<Self>) {
        super::restarted("matching");
    }
}

/// The servers of `outcome` that still hold the device back: an unmatched server whose bootstrap
/// job failed (with its reason) no longer does; its onboarding is complete when every ServerID is
/// matched or failed.
async fn still_open(
    conn: &mut SqliteConnection,
    dev_id: &str,
    outcome: &MatchOutcome,
) -> Result<MatchOutcome, StoreError> {
    let mut open = MatchOutcome {
        matched: outcome.matched.clone(),
        unmatched: Vec::new(),
    };
    for s in &outcome.unmatched {
        let failed = jobs::for_server(conn, &s.server_id)
            .await?
            .iter()
            .any(|j| j.dev_id == dev_id && j.state == JobState::Failed);
        if !failed {
            open.unmatched.push(s.clone());
        }
    }
    Ok(open)
}

async fn match_device(
    store: Store,
    alerting: Addr<Alerting>,
    bootstrap: Addr<BootstrapClient>,
    dev_id: String,
) -> Result<MatchOutcome, ActorError> {
    let device = store.device(&dev_id).await?;
    let outcome = MatchingLogic::split(&device);
    let open = {
        let mut tx = store.begin_read().await?;
        still_open(&mut tx, &dev_id, &outcome).await?
    };
    if MatchingLogic::next_state(device.state, &open).is_none() {
        return Ok(outcome);
    }
    metrics::counter!("dmgw_match_total").increment(1);
    let span = tracing::Span::current();
    span.record("matched", outcome.matched.len());
    span.record("unmatched", outcome.unmatched.len());
    tracing::info!(
        dev_id = %dev_id,
        matched = outcome.matched.len(),
        unmatched = outcome.unmatched.len(),
        "matched"
    );
    if !outcome.matched.is_empty() {
        alerting
            .send(
                AttachMatched {
                    dev_id: dev_id.clone(),
                    server_ids: outcome.matched.clone(),
                }
                .traced(),
            )
            .await??;
    }
    if !open.unmatched.is_empty() {
        bootstrap
            .send(
                BootstrapNeeded {
                    dev_id: dev_id.clone(),
                    servers: open.unmatched.clone(),
                }
                .traced(),
            )
            .await??;
    }
    // The state is decided on what is committed now, inside the write transaction (writes are
    // serialised): matches run concurrently, and a bootstrap applied while this one awaited the
    // other actors has its own match, whose state this older view must not overwrite.
    let mut tx = store.begin().await?;
    let now = devices::get(&mut tx, &dev_id).await?;
    let current = MatchingLogic::split(&now);
    let open = still_open(&mut tx, &dev_id, &current).await?;
    let mut settled = None;
    if let Some(state) = MatchingLogic::next_state(now.state, &open)
        && state != now.state
    {
        settled = Some(state);
        devices::set_states(
            &mut tx,
            &[StateChange {
                dev_id: dev_id.clone(),
                state,
            }],
        )
        .await?;
        events::log(
            &mut tx,
            &[NewEvent {
                dev_id: Some(dev_id.clone()),
                kind: "matched".into(),
                detail: json!({
                    "matched": current.matched,
                    "unmatched": current.unmatched.iter().map(|s| &s.server_id).collect::<Vec<_>>(),
                    "state": state.as_str(),
                }),
                at: Millis::now(),
            }],
        )
        .await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    if let Some(state) = settled {
        tracing::Span::current().record("state", state.as_str());
        if state == DeviceState::Attached {
            if let Some(started) = store.onboarding_started(&dev_id).await {
                crate::onboarding::attached(started, Millis::now());
            }
            crate::onboarding::close(&dev_id, "attached");
        }
    }
    Ok(outcome)
}

impl Handler<Traced<MatchDevice>> for Matching {
    type Result = ResponseFuture<Result<MatchOutcome, ActorError>>;

    fn handle(&mut self, m: Traced<MatchDevice>, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let alerting = self.alerting.clone();
        let bootstrap = self.bootstrap.clone();
        Box::pin(async move {
            let span = tracing::info_span!(
                parent: &m.span,
                "match",
                dev_id = %m.msg.dev_id,
                matched = tracing::field::Empty,
                unmatched = tracing::field::Empty,
                state = tracing::field::Empty,
            );
            crate::onboarding::adopt(&store, &span, &m.msg.dev_id).await;
            match_device(store, alerting, bootstrap, m.msg.dev_id)
                .instrument(span)
                .await
        })
    }
}

impl Handler<Traced<AccountsChanged>> for Matching {
    type Result = ResponseFuture<Result<usize, ActorError>>;

    fn handle(&mut self, m: Traced<AccountsChanged>, ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let me = ctx.address();
        let span = m.span;
        Box::pin(
            async move {
                let mut devices_to_match = std::collections::BTreeSet::new();
                for server_id in &m.msg.server_ids {
                    // Added account: the devices that now match it. Removed account: the devices
                    // that lost their match (the store un-matched them) must be re-evaluated too.
                    devices_to_match.extend(store.rematch_server(server_id).await?);
                    devices_to_match.extend(store.devices_waiting_on(server_id).await?);
                }
                let n = devices_to_match.len();
                for dev_id in devices_to_match {
                    me.do_send(MatchDevice { dev_id }.traced());
                }
                Ok(n)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ServerView;

    fn device(servers: &[(&str, bool)]) -> DeviceView {
        DeviceView {
            dev_id: "d".into(),
            man: None,
            model: None,
            dev_type: None,
            dm_v: None,
            lang: None,
            address: None,
            state: DeviceState::Provisioned,
            first_seen: Millis(0),
            last_seen: Millis(0),
            updated_at: Millis(0),
            servers: servers
                .iter()
                .map(|(id, m)| ServerView {
                    server_id: (*id).into(),
                    matched: *m,
                    bootstrap_url: None,
                    reported_at: Millis(0),
                })
                .collect(),
        }
    }

    #[test]
    fn split_and_state() {
        let o = MatchingLogic::split(&device(&[("a", true), ("b", false), ("c", true)]));
        assert_eq!(o.matched, vec!["a".to_string(), "c".into()]);
        assert_eq!(o.unmatched.len(), 1);
        assert_eq!(
            MatchingLogic::next_state(DeviceState::Provisioned, &o),
            Some(DeviceState::WaitingBootstrap)
        );
        let all = MatchingLogic::split(&device(&[("a", true)]));
        assert_eq!(
            MatchingLogic::next_state(DeviceState::WaitingBootstrap, &all),
            Some(DeviceState::Attached)
        );
        assert_eq!(MatchingLogic::next_state(DeviceState::Detached, &all), None);
        let none = MatchingLogic::split(&device(&[]));
        assert_eq!(
            MatchingLogic::next_state(DeviceState::Provisioned, &none),
            Some(DeviceState::Attached)
        );
    }
}
