//! Workflow 2 delivery: POST each signed bootstrap to the gateway's push endpoint over verified TLS, in
//! the background, retrying with bounded exponential backoff, and record every attempt in the engine.
//!
//! A 2xx answer delivers; 408, 429, 5xx and transport errors (refused, reset, timeout, TLS) are retried
//! until `--push-attempts` is reached; any other answer (3xx, 4xx: e.g. a MAC the gateway rejects)
//! fails at once. Redirects are not followed (the body carries credentials).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::PushSettings;
use crate::engine::{AttemptOutcome, Engine, PushJob};
use crate::error::StartError;
use crate::observe;

/// Pushes waiting to start before new ones are refused (recorded as failed).
pub const QUEUE_CAPACITY: usize = 1024;
/// Pushes running at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// The HTTP client of pushes: system trust anchors plus `--ca-cert`, no redirects, https only unless
/// `--push-allow-http`, the per-attempt time limit.
pub fn build_client(settings: &PushSettings) -> Result<reqwest::Client, StartError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("dmgw-bootstrap-server/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!settings.allow_http)
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout);
    if let Some(path) = &settings.ca_cert {
        let pem = std::fs::read(path).map_err(|e| StartError::Tls {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| StartError::Tls {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(StartError::Tls {
                path: path.clone(),
                reason: "no certificate in the file".into(),
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| StartError::PushClient {
        reason: error_chain(&e),
    })
}

/// An error and its causes, `: `-separated (reqwest's own message names only the URL).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    let mut depth = 0;
    while let Some(s) = source {
        depth += 1;
        if depth > 8 {
            break;
        }
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The wait before attempt `attempt + 1`: `initial * 2^(attempt-1)`, at most `max`.
pub fn backoff(settings: &PushSettings, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    settings
        .backoff_initial
        .saturating_mul(factor)
        .min(settings.backoff_max)
}

/// Where pushes are handed over; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pusher {
    tx: mpsc::Sender<PushJob>,
    engine: Arc<Engine>,
}

impl Pusher {
    /// Start delivering `jobs` in the background. A job that cannot be queued is recorded as failed.
    pub fn submit(&self, jobs: Vec<PushJob>) {
        for job in jobs {
            let id = job.record_id;
            if let Err(e) = self.tx.try_send(job) {
                let error = match e {
                    mpsc::error::TrySendError::Full(_) => "the push queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the server is stopping",
                };
                tracing::warn!(bootstrap = id, error, "push not queued");
                observe::count_job(2, "failed");
                self.engine.record_push(
                    id,
                    0,
                    &AttemptOutcome::GaveUp {
                        status: None,
                        error: error.to_owned(),
                    },
                );
            }
        }
    }
}

/// Start the dispatcher task on the current runtime; it runs until the returned handle is aborted (which
/// also aborts the pushes in flight) or every [`Pusher`] is dropped.
pub fn spawn(
    settings: PushSettings,
    client: reqwest::Client,
    engine: Arc<Engine>,
) -> (Pusher, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let pusher = Pusher {
        tx,
        engine: engine.clone(),
    };
    let task = tokio::spawn(dispatch(rx, Arc::new(settings), client, engine));
    (pusher, task)
}

async fn dispatch(
    mut rx: mpsc::Receiver<PushJob>,
    settings: Arc<PushSettings>,
    client: reqwest::Client,
    engine: Arc<Engine>,
) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { break };
                while running.len() >= MAX_IN_FLIGHT {
                    let _ = running.join_next().await;
                }
                running.spawn(deliver(job, settings.clone(), client.clone(), engine.clone()));
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

/// Deliver one push: attempts until delivered, refused, or out of attempts. The delivery is a
/// `bootstrap push` span continuing the trace of the association that asked for it, with a
/// `push attempt` span per attempt; the request carries `traceparent`, so the gateway's spans nest
/// below.
async fn deliver(
    job: PushJob,
    settings: Arc<PushSettings>,
    client: reqwest::Client,
    engine: Arc<Engine>,
) {
    let span = observe::push_span(
        job.record_id,
        &job.server_id,
        &job.gateway_id,
        &job.url,
        job.traceparent.as_deref(),
    );
    let (attempts, status, delivered) = attempts(&job, &settings, &client, &engine)
        .instrument(span.clone())
        .await;
    span.record("attempts", attempts);
    if let Some(status) = status {
        span.record("http.response.status_code", status);
    }
    span.record("outcome", if delivered { "delivered" } else { "failed" });
    if !delivered {
        observe::fail(&span, "the push was not delivered");
    }
    observe::count_job(2, if delivered { "delivered" } else { "failed" });
}

/// What follows an attempt.
enum Next {
    /// Delivered, or failed for good: `true` when delivered.
    Done(bool),
    /// Try again after this wait.
    Retry(Duration),
}

/// The attempts of one push: (attempts made, last HTTP status, delivered).
async fn attempts(
    job: &PushJob,
    settings: &PushSettings,
    client: &reqwest::Client,
    engine: &Engine,
) -> (u32, Option<u16>, bool) {
    let max = settings.max_attempts.max(1);
    let mut last_status = None;
    for attempt in 1..=max {
        let span = observe::attempt_span(attempt);
        let request = client
            .post(job.url.clone())
            .header(CONTENT_TYPE, job.content_type.as_str())
            .body(job.body.clone());
        let sent = telemetry::http::send(request)
            .instrument(span.clone())
            .await
            .map(|resp| resp.status());
        if let Ok(st) = &sent {
            last_status = Some(st.as_u16());
        }
        let next = span.in_scope(|| judge(job, settings, engine, attempt, max, sent, &span));
        match next {
            Next::Done(delivered) => return (attempt, last_status, delivered),
            Next::Retry(wait) => tokio::time::sleep(wait).await,
        }
    }
    (max, last_status, false)
}

/// Record the outcome of attempt `attempt` (in its span and in the engine) and say what follows.
fn judge(
    job: &PushJob,
    settings: &PushSettings,
    engine: &Engine,
    attempt: u32,
    max: u32,
    sent: reqwest::Result<reqwest::StatusCode>,
    span: &tracing::Span,
) -> Next {
    let (status, error, retryable) = match sent {
        Ok(st) => {
            span.record("http.response.status_code", st.as_u16());
            if st.is_success() {
                span.record("outcome", "delivered");
                tracing::info!(attempt, status = st.as_u16(), "bootstrap pushed");
                engine.record_push(
                    job.record_id,
                    attempt,
                    &AttemptOutcome::Delivered {
                        status: st.as_u16(),
                    },
                );
                return Next::Done(true);
            }
            let retryable = st.is_server_error()
                || st == reqwest::StatusCode::REQUEST_TIMEOUT
                || st == reqwest::StatusCode::TOO_MANY_REQUESTS;
            (
                Some(st.as_u16()),
                format!("the gateway answered HTTP {}", st.as_u16()),
                retryable,
            )
        }
        Err(e) => (None, error_chain(&e), true),
    };
    span.record("otel.status_code", "ERROR");
    if !retryable || attempt >= max {
        let error = if retryable {
            format!("gave up after {attempt} attempts: {error}")
        } else {
            error
        };
        span.record("outcome", "failed");
        tracing::warn!(attempt, status = ?status, error = %error, "push failed");
        engine.record_push(
            job.record_id,
            attempt,
            &AttemptOutcome::GaveUp { status, error },
        );
        return Next::Done(false);
    }
    let wait = backoff(settings, attempt);
    let retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    span.record("outcome", "retry");
    span.record("retry_in_ms", retry_in_ms);
    tracing::info!(attempt, status = ?status, error = %error, retry_in_ms, "push attempt failed");
    engine.record_push(
        job.record_id,
        attempt,
        &AttemptOutcome::Retry {
            status,
            error,
            next_at: OffsetDateTime::now_utc() + wait,
        },
    );
    Next::Retry(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = PushSettings {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(700),
            ..PushSettings::default()
        };
        let waits: Vec<u128> = (1..=6).map(|a| backoff(&s, a).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 700, 700, 700]);
        assert_eq!(backoff(&s, u32::MAX), Duration::from_millis(700));
        assert_eq!(backoff(&s, 0), Duration::from_millis(100));
    }

    #[test]
    fn error_chain_lists_causes_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "outer",
            Some(Box::new(E("inner", Some(Box::new(E("inner", None)))))),
        );
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
