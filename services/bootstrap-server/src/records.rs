//! What the server remembers, in memory and bounded: the bootstraps it issued (both workflows, with the
//! delivery state of each push) and the AssociatedGateway alerts it received; the JSON the API returns.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Default page size of the list queries.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size of the list queries.
pub const MAX_LIMIT: usize = 1000;

/// How a workflow-1 gateway authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A client certificate whose fingerprint is trusted.
    Certificate,
    /// HTTP Basic credentials.
    Basic,
}

/// Where a pushed bootstrap is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Queued, no attempt finished yet.
    Pending,
    /// An attempt failed; another is scheduled.
    Retrying,
    /// The gateway answered 2xx.
    Delivered,
    /// Given up: the gateway refused it (4xx/3xx), or every attempt failed.
    Failed,
}

/// The delivery of a pushed bootstrap (workflow 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The gateway's push endpoint.
    pub url: String,
    /// The SEC method of the MAC (`USERPIN`, `NETWPIN`, `USERNETWPIN`).
    pub sec: String,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The HTTP status of the last answer, if there was one.
    pub last_http_status: Option<u16>,
    /// Why the last attempt failed (never a secret).
    pub last_error: Option<String>,
    /// When the next attempt is due (while `retrying`).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When the gateway accepted it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

/// One bootstrap issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapRecord {
    /// Sequence number, from 1.
    pub id: u64,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// 1 (HTTPS GET by the gateway) or 2 (pushed after an AssociatedGateway alert).
    pub workflow: u8,
    /// The gateway (its DevId).
    pub gateway_id: String,
    /// The DM Server the account is for.
    pub server_id: String,
    /// `xml` or `wbxml`.
    pub encoding: String,
    /// Workflow 1: how the gateway authenticated.
    pub client_auth: Option<ClientAuth>,
    /// Workflow 2: the association (alert) that asked for it.
    pub association: Option<u64>,
    /// Workflow 2: the push.
    pub delivery: Option<Delivery>,
}

/// What became of an AssociatedGateway alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssociationOutcome {
    /// Accepted: bootstraps are pushed for the known ServerIDs.
    Accepted,
    /// Refused (untrusted gateway, address not allowed, no known ServerID, no push key).
    Refused,
    /// The data could not be parsed.
    Malformed,
    /// A bootstrap could not be built (server fault).
    Failed,
}

impl AssociationOutcome {
    /// The name used in records, spans and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AssociationOutcome::Accepted => "accepted",
            AssociationOutcome::Refused => "refused",
            AssociationOutcome::Malformed => "malformed",
            AssociationOutcome::Failed => "failed",
        }
    }
}

/// One AssociatedGateway alert item received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationRecord {
    /// Sequence number, from 1.
    pub id: u64,
    /// When it was received.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The End Device (SyncHdr Source LocURI).
    pub dev_id: String,
    /// The account it authenticated with (`None` with `--device-auth none`).
    pub account: Option<String>,
    /// The SyncML SessionID.
    pub session_id: String,
    /// The Alert's Correlator.
    pub correlator: Option<String>,
    /// `GatewayID` (absent when the data was malformed).
    pub gateway_id: Option<String>,
    /// `GatewayAddress`.
    pub gateway_address: Option<String>,
    /// The ServerIDs asked for.
    pub server_ids: Vec<String>,
    /// The ServerIDs skipped: no profile, or the gateway may not receive them.
    pub unknown_server_ids: Vec<String>,
    /// The DM status answering the alert.
    pub status: u16,
    /// The outcome.
    pub outcome: AssociationOutcome,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The bootstraps pushed for it (ids in `/api/v1/bootstraps`).
    pub bootstraps: Vec<u64>,
}

/// Filters and page of `GET /api/v1/bootstraps` and `GET /api/v1/associations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this gateway.
    pub gateway_id: Option<String>,
    /// Only this ServerID (bootstraps).
    pub server_id: Option<String>,
    /// Only this workflow, 1 or 2 (bootstraps).
    pub workflow: Option<u8>,
    /// Only this device (associations).
    pub dev_id: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Records to skip.
    pub offset: Option<usize>,
}

/// A page of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// Records matching, in all pages.
    pub total: usize,
    /// Records skipped.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
    /// This page, oldest first.
    pub items: Vec<T>,
}

fn page<'a, T: Clone + 'a>(
    matching: impl Iterator<Item = &'a T>,
    limit: Option<usize>,
    offset: Option<usize>,
) -> Page<T> {
    let all: Vec<&T> = matching.collect();
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let offset = offset.unwrap_or(0);
    Page {
        total: all.len(),
        offset,
        limit,
        items: all.into_iter().skip(offset).take(limit).cloned().collect(),
    }
}

/// The records, oldest first, each list holding at most `cap` entries (the oldest are dropped).
#[derive(Debug, Clone)]
pub struct Records {
    bootstraps: VecDeque<BootstrapRecord>,
    associations: VecDeque<AssociationRecord>,
    next_bootstrap: u64,
    next_association: u64,
    cap: usize,
}

fn find_mut<T>(list: &mut VecDeque<T>, id: u64, key: impl Fn(&T) -> u64) -> Option<&mut T> {
    // Ids increase in insertion order, so the list is sorted by id.
    let i = list.binary_search_by_key(&id, key).ok()?;
    list.get_mut(i)
}

impl Records {
    /// Empty records keeping at most `cap` of each kind (at least 1).
    pub fn new(cap: usize) -> Records {
        Records {
            bootstraps: VecDeque::new(),
            associations: VecDeque::new(),
            next_bootstrap: 1,
            next_association: 1,
            cap: cap.max(1),
        }
    }

    /// Record a bootstrap (its `id` is assigned here); returns the id.
    pub fn add_bootstrap(&mut self, mut record: BootstrapRecord) -> u64 {
        let id = self.next_bootstrap;
        self.next_bootstrap = self.next_bootstrap.saturating_add(1);
        record.id = id;
        if self.bootstraps.len() >= self.cap {
            self.bootstraps.pop_front();
        }
        self.bootstraps.push_back(record);
        id
    }

    /// Record an association (its `id` is assigned here); returns the id.
    pub fn add_association(&mut self, mut record: AssociationRecord) -> u64 {
        let id = self.next_association;
        self.next_association = self.next_association.saturating_add(1);
        record.id = id;
        if self.associations.len() >= self.cap {
            self.associations.pop_front();
        }
        self.associations.push_back(record);
        id
    }

    /// The bootstrap record `id`, if still kept.
    pub fn bootstrap(&self, id: u64) -> Option<&BootstrapRecord> {
        let i = self.bootstraps.binary_search_by_key(&id, |r| r.id).ok()?;
        self.bootstraps.get(i)
    }

    /// The delivery of bootstrap `id`, for updating, if still kept.
    pub fn delivery_mut(&mut self, id: u64) -> Option<&mut Delivery> {
        find_mut(&mut self.bootstraps, id, |r| r.id)?
            .delivery
            .as_mut()
    }

    /// The association record `id`, for updating, if still kept.
    pub fn association_mut(&mut self, id: u64) -> Option<&mut AssociationRecord> {
        find_mut(&mut self.associations, id, |r| r.id)
    }

    /// A push of a bootstrap for (`gateway_id`, `server_id`) to `url` that is still queued or retrying.
    pub fn pending_push(&self, gateway_id: &str, server_id: &str, url: &str) -> Option<u64> {
        self.bootstraps
            .iter()
            .rev()
            .find(|r| {
                r.gateway_id == gateway_id
                    && r.server_id == server_id
                    && r.delivery.as_ref().is_some_and(|d| {
                        d.url == url
                            && matches!(d.state, DeliveryState::Pending | DeliveryState::Retrying)
                    })
            })
            .map(|r| r.id)
    }

    /// The latest accepted association from `dev_id` with this correlator (a repeated alert).
    pub fn repeated_association(
        &self,
        dev_id: &str,
        correlator: &str,
    ) -> Option<&AssociationRecord> {
        self.associations.iter().rev().find(|a| {
            a.dev_id == dev_id
                && a.correlator.as_deref() == Some(correlator)
                && a.outcome == AssociationOutcome::Accepted
        })
    }

    /// Bootstraps matching the query, oldest first.
    pub fn bootstraps(&self, q: &ListQuery) -> Page<BootstrapRecord> {
        page(
            self.bootstraps.iter().filter(|r| {
                q.gateway_id.as_deref().is_none_or(|g| g == r.gateway_id)
                    && q.server_id.as_deref().is_none_or(|s| s == r.server_id)
                    && q.workflow.is_none_or(|w| w == r.workflow)
            }),
            q.limit,
            q.offset,
        )
    }

    /// Associations matching the query, oldest first.
    pub fn associations(&self, q: &ListQuery) -> Page<AssociationRecord> {
        page(
            self.associations.iter().filter(|a| {
                q.gateway_id
                    .as_deref()
                    .is_none_or(|g| a.gateway_id.as_deref() == Some(g))
                    && q.dev_id.as_deref().is_none_or(|d| d == a.dev_id)
            }),
            q.limit,
            q.offset,
        )
    }

    /// Counts for `/healthz`: (bootstraps kept, associations kept, pushes pending or retrying).
    pub fn counts(&self) -> (usize, usize, usize) {
        let pending = self
            .bootstraps
            .iter()
            .filter(|r| {
                r.delivery.as_ref().is_some_and(|d| {
                    matches!(d.state, DeliveryState::Pending | DeliveryState::Retrying)
                })
            })
            .count();
        (self.bootstraps.len(), self.associations.len(), pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(gw: &str, workflow: u8, url: Option<&str>) -> BootstrapRecord {
        BootstrapRecord {
            id: 0,
            issued_at: OffsetDateTime::UNIX_EPOCH,
            workflow,
            gateway_id: gw.into(),
            server_id: "s".into(),
            encoding: "wbxml".into(),
            client_auth: None,
            association: None,
            delivery: url.map(|u| Delivery {
                url: u.into(),
                sec: "USERPIN".into(),
                state: DeliveryState::Pending,
                attempts: 0,
                max_attempts: 3,
                last_http_status: None,
                last_error: None,
                next_attempt_at: None,
                delivered_at: None,
            }),
        }
    }

    #[test]
    fn capped_ids_and_updates() {
        let mut r = Records::new(2);
        assert_eq!(r.add_bootstrap(boot("a", 1, None)), 1);
        assert_eq!(r.add_bootstrap(boot("b", 2, Some("https://gw/p"))), 2);
        assert_eq!(r.add_bootstrap(boot("c", 2, Some("https://gw/p"))), 3);
        assert!(r.bootstrap(1).is_none());
        assert_eq!(r.pending_push("b", "s", "https://gw/p"), Some(2));
        r.delivery_mut(2).unwrap().state = DeliveryState::Delivered;
        assert_eq!(r.pending_push("b", "s", "https://gw/p"), None);
        assert!(r.delivery_mut(1).is_none());
        assert_eq!(r.counts(), (2, 0, 1));
        let page = r.bootstraps(&ListQuery {
            workflow: Some(2),
            gateway_id: Some("c".into()),
            ..ListQuery::default()
        });
        assert_eq!(page.total, 1);
        assert_eq!(page.items[0].id, 3);
        let page = r.bootstraps(&ListQuery {
            limit: Some(0),
            offset: Some(1),
            ..ListQuery::default()
        });
        assert_eq!((page.total, page.limit, page.items.len()), (2, 1, 1));
        let json = serde_json::to_value(&page.items[0]).unwrap();
        assert_eq!(json["workflow"], 2);
        assert_eq!(json["delivery"]["state"], "pending");
    }
}
