//! The report function: phone home, outbound only (see [`apiary_core::phone_home`]).
//!
//! One action, `report`, run by the phone-home workflow on its schedule:
//!
//! 1. with no endpoint (`PhoneHomeUrl` empty) it does nothing and says so;
//! 2. it takes the deployment's outbox lease, so that two runs never number or send at
//!    once (a run that dies keeps it only until the lease runs out, [`LEASE`]); a run
//!    that finds it held makes and sends nothing and says so;
//! 3. it makes this execution's report: the next number from the outbox's counter,
//!    recorded against the execution, then the body built from the state table
//!    (deployment record, journal, backup ledger, restore-test verdict, open alarms),
//!    kept in the outbox. A retried attempt of the same execution keeps its number and
//!    makes no second report;
//! 4. it POSTs every kept report, oldest first, each signed, and removes a report once
//!    the endpoint answered 2xx. It stops at the first that is not accepted: a later
//!    report is never delivered before an earlier one.
//!
//! An endpoint that cannot be reached, times out, or answers 408, 429 or 5xx is
//! transient: the reports stay kept and the step succeeds, saying how many wait, until
//! the oldest has waited [`UNDELIVERED_LIMIT`]; then the step fails so a person hears of
//! it (an egress rule, a certificate, the vendor's endpoint down for a day). Any
//! other answer (a 4xx: a wrong URL, a key the vendor has not pinned) will not change
//! by waiting: the step fails naming the endpoint's host and the status, so the
//! workflow's failed-run alarm tells a person; the reports stay kept for
//! [`OUTBOX_DAYS`](apiary_core::phone_home::OUTBOX_DAYS).

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiary_core::aws::Env;
use apiary_core::naming::Layer;
use apiary_core::phone_home::{
    self, KEY_ID_HEADER, OUTBOX_DAYS, SIGNATURE_HEADER, SigningKey, Sources, StatusReport,
};
use apiary_core::step::{Action, Done, Recorder, Step, StepContext};
use apiary_core::store::{KeptReport, Store};
use apiary_core::{Error, Result};
use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod secret;
mod sender;
#[cfg(test)]
mod tests;

pub use secret::{ensure_signing_key, load_signing_key};
pub use sender::{HttpsSender, Posted, Sender, Unreachable};

/// The endpoint (the stack's `PhoneHomeUrl`); unset or empty: phone home is off.
pub const ENDPOINT_ENV: &str = "APIARY_PHONE_HOME_URL";
/// The signing key's secret (the stack's `SigningKeySecret`).
pub const SECRET_ENV: &str = "APIARY_SIGNING_KEY_SECRET";
/// The function's timeout in the template (`ReportFunction.Timeout`).
pub const LAMBDA_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one POST may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// No POST starts after this much of the invocation: the last one ends before the
/// function's timeout, and the lease is released.
pub const SEND_WINDOW: Duration = Duration::from_secs(40);
/// The outbox lease: longer than the function can run, so a live run never loses it,
/// and short enough that a dead run's lease is gone by the next hourly run.
pub const LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(120);
/// A transient failure fails the run (and its alarm tells a person) once the oldest kept
/// report has waited this long.
pub const UNDELIVERED_LIMIT: chrono::TimeDelta = chrono::TimeDelta::hours(24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ReportAction {
    #[serde(rename = "report")]
    Report,
}

impl Action for ReportAction {
    fn as_str(self) -> &'static str {
        "report"
    }
}

pub struct Deps {
    pub store: Store,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// The signing key's secret; `None` only where phone home is off.
    pub secret_id: Option<String>,
    /// Where reports go; `None`: phone home is off.
    pub endpoint: Option<String>,
    pub sender: Arc<dyn Sender>,
    /// The control plane's release, reported under `versions.apiary`.
    pub release: String,
    pub send_window: Duration,
}

impl Deps {
    pub fn new(store: Store, config: &aws_config::SdkConfig, sender: Arc<dyn Sender>) -> Self {
        Deps {
            store,
            secrets: apiary_core::client!(aws_sdk_secretsmanager, config),
            secret_id: None,
            endpoint: None,
            sender,
            release: env!("CARGO_PKG_VERSION").to_owned(),
            send_window: SEND_WINDOW,
        }
    }

    /// The Lambda's: endpoint and secret from [`ENDPOINT_ENV`] and [`SECRET_ENV`].
    pub fn from_env(
        store: Store,
        config: &aws_config::SdkConfig,
        env: &dyn Env,
        sender: Arc<dyn Sender>,
    ) -> Self {
        let mut deps = Deps::new(store, config, sender);
        deps.endpoint = env.var(ENDPOINT_ENV);
        deps.secret_id = env.var(SECRET_ENV);
        deps
    }

    pub fn with_endpoint(
        mut self,
        endpoint: impl Into<String>,
        secret_id: impl Into<String>,
    ) -> Self {
        self.endpoint = Some(endpoint.into());
        self.secret_id = Some(secret_id.into());
        self
    }
}

/// What the step returns (and the workflow's output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// False when phone home is off.
    pub enabled: bool,
    /// The endpoint's host (never the rest of the URL: its query may carry a token).
    pub host: Option<String>,
    pub key_id: Option<String>,
    /// The report this execution made.
    pub made: Option<u64>,
    /// The reports delivered by this run, in order.
    pub delivered: Vec<u64>,
    /// The reports still kept, to be sent by a later run.
    pub kept: Vec<u64>,
    /// Why delivery stopped early, when it did (`null` otherwise).
    #[serde(default)]
    pub stopped: Option<String>,
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Control;
    type Action = ReportAction;
    type Output = Output;

    async fn run(&self, step: &StepContext<'_, ReportAction>) -> Result<Done<Output>> {
        let started = Instant::now();
        let Some(url) = &self.endpoint else {
            return Ok(Done::ready(Output {
                enabled: false,
                host: None,
                key_id: None,
                made: None,
                delivered: Vec::new(),
                kept: Vec::new(),
                stopped: None,
            })
            .with_detail("phone home is off: the stack's PhoneHomeUrl is empty"));
        };
        let url = phone_home::endpoint(url, "PhoneHomeUrl")?;
        let host = host_of(&url);
        let secret_id = self.secret_id.as_deref().ok_or_else(|| {
            Error::fatal(format!(
                "{SECRET_ENV} is not set: the function has no signing key secret"
            ))
        })?;
        let key = load_signing_key(&self.secrets, secret_id).await?;
        let deployment = step.names.deployment();
        let owner = step.execution_id.as_str();
        // The lease first: a report is numbered and kept only by the run that sends, so
        // a later number is never sent before an earlier one is kept.
        match self
            .store
            .acquire_outbox_lease(deployment, owner, LEASE, Utc::now())
            .await
        {
            Ok(_) => {}
            Err(Error::Conflict(holder)) => {
                let kept = seqs(&self.store.pending_reports(deployment, Utc::now()).await?);
                let why = format!(
                    "another run is making and sending reports ({holder}); this run made none"
                );
                return Ok(Done::ready(Output {
                    enabled: true,
                    host: Some(host),
                    key_id: Some(key.key_id()),
                    made: None,
                    delivered: Vec::new(),
                    kept,
                    stopped: Some(why.clone()),
                })
                .with_detail(why));
            }
            Err(err) => return Err(err),
        }
        let work = async {
            let made = self.make(step, deployment, &key).await?;
            let (delivered, stopped) = self.deliver(deployment, &url, &key, started).await?;
            Ok::<_, Error>((made, delivered, stopped))
        }
        .await;
        // Released whatever happened; a failed release only delays the next run until
        // the lease runs out.
        if let Err(err) = self.store.release_outbox_lease(deployment, owner).await {
            tracing::warn!(error = %err, "could not release the phone-home lease");
        }
        let (made, delivered, stopped) = work?;
        let kept = seqs(&self.store.pending_reports(deployment, Utc::now()).await?);
        let detail = match &stopped {
            None => format!(
                "made report {made}; delivered {} report(s) to {host}",
                delivered.len()
            ),
            Some(why) => format!(
                "made report {made}; delivered {} report(s) to {host}; {} kept: {why}",
                delivered.len(),
                kept.len()
            ),
        };
        Ok(Done::ready(Output {
            enabled: true,
            host: Some(host),
            key_id: Some(key.key_id()),
            made: Some(made),
            delivered,
            kept,
            stopped,
        })
        .with_detail(detail))
    }

    fn state(&self) -> &dyn Recorder {
        &self.store
    }

    fn journal_step(&self, _options: &Map<String, Value>) -> String {
        phone_home::WORKFLOW.to_owned()
    }
}

impl Deps {
    /// This execution's report, numbered and kept before anything is sent. The number is
    /// recorded against the execution before the report is kept, so a retried attempt
    /// keeps its number (and keeping the same number again is a no-op): a run makes one
    /// report, however often its step is retried.
    async fn make(
        &self,
        step: &StepContext<'_, ReportAction>,
        deployment: &str,
        key: &SigningKey,
    ) -> Result<u64> {
        let seq = match self.store.report_made(deployment).await? {
            Some((execution, seq)) if execution == step.execution_id => seq,
            _ => {
                // Numbered first: a run that dies after this leaves a gap, never two
                // reports with one number.
                let seq = self.store.next_report_seq(deployment).await?;
                self.store
                    .set_report_made(deployment, &step.execution_id, seq)
                    .await?;
                seq
            }
        };
        let record = self
            .store
            .get_deployment(deployment)
            .await?
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "no deployment named {deployment} in the state table"
                ))
            })?;
        let journal = self.store.journal(deployment).await?;
        let alarms = self.store.alarms(deployment).await?;
        let outputs = self.store.layer_outputs(deployment).await?;
        let sources = Sources {
            record: &record,
            journal: &journal,
            outputs: &outputs,
            alarms: &alarms,
        };
        let now = Utc::now();
        let report = StatusReport::build(&sources, seq, key, &self.release, now);
        self.store
            .put_report(
                deployment,
                seq,
                &report.body(),
                now,
                now + chrono::Duration::days(OUTBOX_DAYS),
            )
            .await?;
        Ok(seq)
    }

    /// Sends the kept reports in order; returns the ones delivered and, when it stopped
    /// early for a reason that may pass, why. An answer that will not change by waiting
    /// is an error.
    async fn deliver(
        &self,
        deployment: &str,
        url: &str,
        key: &SigningKey,
        started: Instant,
    ) -> Result<(Vec<u64>, Option<String>)> {
        let host = host_of(url);
        let mut delivered = Vec::new();
        for KeptReport { seq, body, made_at } in
            self.store.pending_reports(deployment, Utc::now()).await?
        {
            if started.elapsed() >= self.send_window {
                return Ok((
                    delivered,
                    Some("out of time for this run; the next sends the rest".to_owned()),
                ));
            }
            let headers = vec![
                (SIGNATURE_HEADER, key.sign(body.as_bytes())),
                (KEY_ID_HEADER, key.key_id()),
            ];
            match self.sender.post(url, body, headers).await {
                Posted::Accepted(status) => {
                    tracing::info!(seq, host, status, "report delivered");
                    self.store.delete_report(deployment, seq).await?;
                    delivered.push(seq);
                }
                Posted::Transient(why) => {
                    tracing::warn!(seq, host, why, "report kept for the next run");
                    // A blip passes unseen; a day without delivery needs a person (an
                    // egress rule, a certificate, the vendor's endpoint).
                    let waited = Utc::now() - made_at;
                    if waited >= UNDELIVERED_LIMIT {
                        return Err(Error::fatal(format!(
                            "no report has reached the phone-home endpoint {host} for {} h \
                             (the oldest kept, report {seq}, was made at {made_at}): {why}; \
                             the reports stay kept for up to {OUTBOX_DAYS} days",
                            waited.num_hours()
                        )));
                    }
                    return Ok((delivered, Some(format!("report {seq}: {why}"))));
                }
                Posted::Refused(status) => {
                    return Err(Error::fatal(format!(
                        "the phone-home endpoint {host} refused report {seq} with HTTP \
                         {status}; the reports stay kept (for up to {OUTBOX_DAYS} days) \
                         until it accepts them: check PhoneHomeUrl and that the vendor \
                         has pinned key {}",
                        key.key_id()
                    )));
                }
            }
        }
        Ok((delivered, None))
    }
}

fn seqs(reports: &[KeptReport]) -> Vec<u64> {
    reports.iter().map(|r| r.seq).collect()
}

/// The URL's host: what may be shown of it.
pub fn host_of(url: &str) -> String {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The function's entry point.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}
