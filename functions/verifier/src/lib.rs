//! The verifier: proves that a backup holds the data, by talking to the databases.
//!
//! It runs inside the data plane's VPC (the network step attaches it to the private
//! subnets with the control plane's security group, which the data stores admit on
//! their ports) and has three actions, each for one store (`options.store`: `postgres`,
//! `redis` or `documentdb`):
//!
//! - `write-sentinel`: writes a fresh sentinel (a unique id and the time) into the live
//!   store, whose endpoint and secret come from the databases layer's output in the state
//!   table, and keeps `{sentinel_id, written_at, written, facts}` under the slot
//!   `sentinel.<store>` for the backup workflow, which tags the snapshot with it.
//! - `verify-restore`: reads the scratch copy's coordinates that the restore step kept
//!   under `restore-test.<store>` (`endpoint`, `port`, `secret_arn` of the copy's own
//!   fresh password, `sentinel_id`), reads the sentinel back and compares. A sentinel that
//!   is missing or different is a result (`verified: false` with the `mismatch` named),
//!   not an error; a copy that does not answer yet is `Apiary.NotReady` (retried).
//! - `ensure-app-user` (PostgreSQL and DocumentDB): the ingestion pods' own database user,
//!   made or given its secret's password with the master login, then logged in as (see
//!   [`app_user`]). Provision runs it before the pods start; rotate-keys runs it with
//!   `options.rotation` to set the next user's password before it becomes current.
//!
//! Every connection is TLS, trusting only the CA bundle shipped with the function
//! ([`tls::CA_BUNDLE_ENV`]); there is no plaintext fallback. Locally the emulated
//! databases have no server behind them: [`Deps::local`] reports that, never a pass.

pub mod app_user;
pub mod datastore;
pub mod documentdb;
pub mod postgres;
pub mod redis_store;
pub mod secrets;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use apiary_core::naming::Layer;
use apiary_core::outputs::DatastoreEndpoint;
use apiary_core::step::{self, Done, Recorder, Step, StepContext};
use apiary_core::{Error, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use datastore::{Connector, Datastore, Facts, Sentinel, StoreError, StoreKind, Target};

/// What a locally run `write-sentinel` reports.
pub const LOCAL_SENTINEL_NOTE: &str = "sentinel: not written locally";
/// What a locally run `verify-restore` reports.
pub const LOCAL_VERIFY_NOTE: &str =
    "data check not possible locally: the emulated database has no server behind it";

pub struct Deps {
    pub recorder: Arc<dyn Recorder>,
    pub(crate) mode: Mode,
}

pub(crate) enum Mode {
    /// Real stores: credentials from Secrets Manager, connections over TLS.
    Live {
        secrets: aws_sdk_secretsmanager::Client,
        connector: Arc<dyn Connector>,
    },
    /// The local runner: the emulated databases have no server to talk to.
    Local,
}

impl Deps {
    /// The function on AWS: Secrets Manager from `config`, TLS trusting the bundle at
    /// `ca_bundle` (read at each step, so a missing bundle fails the step, named).
    pub fn new(
        config: &aws_config::SdkConfig,
        recorder: Arc<dyn Recorder>,
        ca_bundle: Option<PathBuf>,
    ) -> Self {
        Deps::with_connector(
            apiary_core::client!(aws_sdk_secretsmanager, config),
            recorder,
            Arc::new(TlsConnector { ca_bundle }),
        )
    }

    /// Live mode with another way to open stores (tests).
    pub fn with_connector(
        secrets: aws_sdk_secretsmanager::Client,
        recorder: Arc<dyn Recorder>,
        connector: Arc<dyn Connector>,
    ) -> Self {
        tls::install_default_provider();
        Deps {
            recorder,
            mode: Mode::Live { secrets, connector },
        }
    }

    /// The local runner's verifier: writes nothing, verifies nothing, and says so.
    pub fn local(recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            recorder,
            mode: Mode::Local,
        }
    }

    fn is_live(&self) -> bool {
        matches!(self.mode, Mode::Live { .. })
    }

    /// The CA bundle named by the environment.
    pub fn ca_bundle_from_env(env: &dyn apiary_core::aws::Env) -> Option<PathBuf> {
        env.var(tls::CA_BUNDLE_ENV).map(PathBuf::from)
    }
}

/// Opens the real engines over TLS with the bundle's CAs.
pub struct TlsConnector {
    pub ca_bundle: Option<PathBuf>,
}

#[async_trait]
impl Connector for TlsConnector {
    async fn connect(
        &self,
        kind: StoreKind,
        target: &Target,
    ) -> std::result::Result<Box<dyn Datastore>, StoreError> {
        let path = self.ca_bundle.as_ref().ok_or_else(|| {
            StoreError::Config(format!(
                "{} is not set: the verifier trusts only the database CA bundle it names",
                tls::CA_BUNDLE_ENV
            ))
        })?;
        let trust = tls::Trust::from_file(path)?;
        Ok(match kind {
            StoreKind::Postgres => Box::new(postgres::Postgres::connect(target, &trust).await?),
            StoreKind::Redis => Box::new(redis_store::Redis::connect(target, &trust).await?),
            StoreKind::DocumentDb => {
                Box::new(documentdb::DocumentDb::connect(target, &trust).await?)
            }
        })
    }
}

/// The verifier's actions, spelled as the state machines send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VerifierAction {
    #[serde(rename = "write-sentinel")]
    WriteSentinel,
    #[serde(rename = "verify-restore")]
    VerifyRestore,
    /// The ingestion pods' own database user (see [`app_user`]).
    #[serde(rename = "ensure-app-user")]
    EnsureAppUser,
}

impl step::Action for VerifierAction {
    fn as_str(self) -> &'static str {
        match self {
            VerifierAction::WriteSentinel => "write-sentinel",
            VerifierAction::VerifyRestore => "verify-restore",
            VerifierAction::EnsureAppUser => "ensure-app-user",
        }
    }
    /// The slot depends on the store in the options (`sentinel.<store>`): the step keeps
    /// it itself.
    fn slot(self) -> Option<&'static str> {
        None
    }
    fn mutates(self) -> bool {
        matches!(
            self,
            VerifierAction::WriteSentinel | VerifierAction::EnsureAppUser
        )
    }
}

/// The slot a store's newest sentinel is kept under.
pub fn sentinel_slot(store: StoreKind) -> String {
    format!("sentinel.{store}")
}

/// The slot the restore step keeps a scratch copy's coordinates under.
pub fn restore_slot(store: StoreKind) -> String {
    format!("restore-test.{store}")
}

/// What `write-sentinel` returns and keeps under `sentinel.<store>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentinelRecord {
    pub store: StoreKind,
    pub sentinel_id: Option<String>,
    pub written_at: Option<String>,
    pub written: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The execution that wrote it: a retry of the same step writes the same sentinel
    /// again instead of a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// The live store's facts when the sentinel was written, compared with a restore of
    /// the snapshot taken after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
}

/// The scratch copy, as the restore step keeps it under `restore-test.<store>` (other
/// fields it keeps are ignored here).
#[derive(Debug, Clone, Deserialize)]
pub struct RestoreCoordinates {
    pub endpoint: String,
    pub port: u16,
    pub secret_arn: String,
    #[serde(default)]
    pub sentinel_id: Option<String>,
}

/// What `verify-restore` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub store: StoreKind,
    /// `true`: the sentinel read back equal; `false`: see `mismatch`; `null`: no data
    /// check was possible (locally).
    pub verified: Option<bool>,
    /// What was checked, in order: `tls`, `login`, `sentinel`, `schema`, `counts`.
    pub checked: Vec<String>,
    pub sentinel_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The restored copy's facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
}

/// The step's output: one of the two actions' reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum VerifierOutput {
    Sentinel(SentinelRecord),
    Verification(Verification),
    AppUser(app_user::AppUserReport),
}

#[derive(Deserialize)]
struct StoreOption {
    store: StoreKind,
}

/// The store an action is about: `options.store`.
fn store_option(options: &Map<String, Value>) -> Result<StoreKind> {
    let value = options.get("store").cloned().ok_or_else(|| {
        Error::invalid_input(
            "step input field `options.store` is missing: name the store (postgres, redis or documentdb)",
        )
    })?;
    serde_json::from_value::<StoreOption>(serde_json::json!({ "store": value }))
        .map(|o| o.store)
        .map_err(|_| {
            Error::invalid_input(
                "step input field `options.store`: expected postgres, redis or documentdb",
            )
        })
}

pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    step::run(deps, event).await
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Databases;
    type Action = VerifierAction;
    type Output = VerifierOutput;

    async fn run(&self, step: &StepContext<'_, VerifierAction>) -> Result<Done<VerifierOutput>> {
        let store = store_option(&step.options)?;
        match step.action {
            VerifierAction::WriteSentinel => {
                let record = self.write_sentinel(step, store).await?;
                let value = serde_json::to_value(&record)
                    .map_err(|e| Error::fatal(format!("sentinel record: {e}")))?;
                self.recorder
                    .save_output(step.names.deployment(), &sentinel_slot(store), &value)
                    .await?;
                Ok(Done::ready(VerifierOutput::Sentinel(record)))
            }
            VerifierAction::VerifyRestore => {
                let verification = self.verify_restore(step, store).await?;
                let detail = match (&verification.verified, &verification.mismatch) {
                    (Some(true), _) => format!("{store}: sentinel read back from the restore"),
                    (Some(false), Some(mismatch)) => format!("{store}: NOT verified: {mismatch}"),
                    (None, _) if self.is_live() => format!(
                        "{store}: {}",
                        verification.note.as_deref().unwrap_or("not checked")
                    ),
                    _ => format!("{store}: {LOCAL_VERIFY_NOTE}"),
                };
                Ok(Done::ready(VerifierOutput::Verification(verification)).with_detail(detail))
            }
            VerifierAction::EnsureAppUser => {
                let report = self.ensure_app_user(step, store).await?;
                let detail = report.detail();
                Ok(Done::ready(VerifierOutput::AppUser(report)).with_detail(detail))
            }
        }
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }

    fn journal_step(&self, _options: &Map<String, Value>) -> String {
        "verifier".to_owned()
    }
}

impl Deps {
    async fn write_sentinel(
        &self,
        step: &StepContext<'_, VerifierAction>,
        store: StoreKind,
    ) -> Result<SentinelRecord> {
        let (secrets, connector) = match &self.mode {
            Mode::Local => {
                return Ok(SentinelRecord {
                    store,
                    sentinel_id: None,
                    written_at: None,
                    written: false,
                    note: Some(LOCAL_SENTINEL_NOTE.to_owned()),
                    execution_id: None,
                    facts: None,
                });
            }
            Mode::Live { secrets, connector } => (secrets, connector),
        };
        let Some(endpoint) = live_endpoint(step, store)? else {
            return Ok(SentinelRecord {
                store,
                sentinel_id: None,
                written_at: None,
                written: false,
                note: Some(format!(
                    "{store} has no endpoint: the spec turns it off or it was not built"
                )),
                execution_id: None,
                facts: None,
            });
        };
        let target = secrets::read_target(
            secrets,
            store,
            &endpoint.secret_arn,
            &endpoint.host,
            endpoint.port,
        )
        .await?;
        let db = connector
            .connect(store, &target)
            .await
            .map_err(|e| e.into_step_error(store, &target.host))?;
        let sentinel = self
            .written_by(step, store)
            .await?
            .unwrap_or_else(Sentinel::fresh);
        db.write_sentinel(&sentinel)
            .await
            .map_err(|e| e.into_step_error(store, &target.host))?;
        // Read back at once: a write the store acknowledged but does not return is no
        // sentinel to test a restore with.
        let back = db
            .read_sentinel(&sentinel.id)
            .await
            .map_err(|e| e.into_step_error(store, &target.host))?;
        if back.as_ref() != Some(&sentinel) {
            return Err(Error::fatal(format!(
                "{store} at {}: sentinel {} was written but does not read back",
                target.host, sentinel.id
            )));
        }
        let facts = db
            .facts()
            .await
            .map_err(|e| e.into_step_error(store, &target.host))?;
        tracing::info!(%store, sentinel_id = %sentinel.id, "sentinel written");
        Ok(SentinelRecord {
            store,
            sentinel_id: Some(sentinel.id),
            written_at: Some(sentinel.written_at),
            written: true,
            note: None,
            execution_id: Some(step.execution_id.clone()),
            facts: Some(facts),
        })
    }

    /// The sentinel this execution already wrote into `store` (a retried step), so that
    /// one backup has one sentinel however often its step runs.
    async fn written_by(
        &self,
        step: &StepContext<'_, VerifierAction>,
        store: StoreKind,
    ) -> Result<Option<Sentinel>> {
        let outputs = self.recorder.outputs(step.names.deployment()).await?;
        let record = outputs
            .get(&sentinel_slot(store))
            .and_then(|v| serde_json::from_value::<SentinelRecord>(v.clone()).ok());
        Ok(record.and_then(
            |r| match (r.written, r.execution_id, r.sentinel_id, r.written_at) {
                (true, Some(execution), Some(id), Some(written_at))
                    if execution == step.execution_id && step.execution_id != "manual" =>
                {
                    Some(Sentinel { id, written_at })
                }
                _ => None,
            },
        ))
    }

    async fn verify_restore(
        &self,
        step: &StepContext<'_, VerifierAction>,
        store: StoreKind,
    ) -> Result<Verification> {
        let outputs = self.recorder.outputs(step.names.deployment()).await?;
        let slot = restore_slot(store);
        let coordinates = outputs.get(&slot);
        let (secrets, connector) = match &self.mode {
            Mode::Local => {
                let sentinel_id = coordinates
                    .and_then(|c| c.get("sentinel_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                return Ok(Verification {
                    store,
                    verified: None,
                    checked: Vec::new(),
                    sentinel_id,
                    mismatch: None,
                    note: Some(LOCAL_VERIFY_NOTE.to_owned()),
                    facts: None,
                });
            }
            Mode::Live { secrets, connector } => (secrets, connector),
        };
        let value = coordinates.cloned().ok_or_else(|| {
            Error::invalid_input(format!(
                "the state table has no {slot}: the restore step keeps the scratch copy's \
                 coordinates there before verify-restore runs"
            ))
        })?;
        // The slot must be this execution's: an older run's copy is gone or stale.
        let kept_by = value.get("execution_id").and_then(Value::as_str);
        if kept_by != Some(step.execution_id.as_str()) {
            return Err(Error::invalid_input(format!(
                "the state table's {slot} was kept by execution {}, not this one ({}): \
                 the restore step of this execution has not kept its copy there",
                kept_by.unwrap_or("(none)"),
                step.execution_id
            )));
        }
        // A store the restore skipped (off in the spec, not in this run): nothing to check.
        if let Some(reason) = value.get("skipped") {
            let reason = reason
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| reason.to_string());
            return Ok(Verification {
                store,
                verified: None,
                checked: Vec::new(),
                sentinel_id: None,
                mismatch: None,
                note: Some(format!("skipped: {reason}")),
                facts: None,
            });
        }
        let coordinates: RestoreCoordinates = serde_json::from_value(value).map_err(|e| {
            Error::invalid_input(format!("the state table's {slot} does not read: {e}"))
        })?;
        if coordinates.endpoint.is_empty() || coordinates.secret_arn.is_empty() {
            return Err(Error::invalid_input(format!(
                "the state table's {slot} has an empty endpoint or secret_arn"
            )));
        }
        // What the live store held when the sentinel was written, when the newest
        // sentinel is the one this snapshot carries.
        let expected: Option<SentinelRecord> = outputs
            .get(&sentinel_slot(store))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .filter(|r: &SentinelRecord| {
                r.sentinel_id.is_some() && r.sentinel_id == coordinates.sentinel_id
            });

        let target = secrets::read_target(
            secrets,
            store,
            &coordinates.secret_arn,
            &coordinates.endpoint,
            coordinates.port,
        )
        .await?;
        let db = connector
            .connect(store, &target)
            .await
            .map_err(|e| e.into_step_error(store, &target.host))?;
        let mut checked = vec!["tls".to_owned(), "login".to_owned()];
        let facts = db
            .facts()
            .await
            .map_err(|e| e.into_step_error(store, &target.host))?;
        let Some(sentinel_id) = coordinates.sentinel_id.clone() else {
            return Ok(Verification {
                store,
                verified: Some(false),
                checked,
                sentinel_id: None,
                mismatch: Some(
                    "no sentinel was recorded for the restored snapshot: nothing to compare"
                        .to_owned(),
                ),
                note: None,
                facts: Some(facts),
            });
        };
        checked.push("sentinel".to_owned());
        let read = db
            .read_sentinel(&sentinel_id)
            .await
            .map_err(|e| e.into_step_error(store, &target.host))?;
        let mut mismatch = match (&read, &expected) {
            (None, _) => Some(format!(
                "sentinel {sentinel_id} is not in the restored copy"
            )),
            (Some(found), Some(expected))
                if Some(&found.written_at) != expected.written_at.as_ref() =>
            {
                Some(format!(
                    "sentinel {sentinel_id} reads back written at {}, expected {}",
                    found.written_at,
                    expected.written_at.as_deref().unwrap_or("?")
                ))
            }
            _ => None,
        };
        let expected_schema = expected
            .as_ref()
            .and_then(|e| e.facts.as_ref())
            .and_then(|f| f.schema_version.clone());
        if let (Some(want), Some(got)) = (&expected_schema, &facts.schema_version) {
            checked.push("schema".to_owned());
            if mismatch.is_none() && want != got {
                mismatch = Some(format!(
                    "the restored schema fingerprint {got} differs from the live one {want} \
                     recorded with the sentinel"
                ));
            }
        }
        let live_counts = expected
            .as_ref()
            .and_then(|e| e.facts.as_ref())
            .map(|f| &f.counts)
            .filter(|c| !c.is_empty());
        if let Some(live) = live_counts {
            checked.push("counts".to_owned());
            if mismatch.is_none() {
                mismatch = emptied(live, &facts.counts);
            }
        }
        Ok(Verification {
            store,
            verified: Some(mismatch.is_none()),
            checked,
            sentinel_id: Some(sentinel_id),
            mismatch,
            note: None,
            facts: Some(facts),
        })
    }
}

/// A count (tables, keys, sentinels) that had something when the sentinel was written and
/// has nothing in the restored copy: the data did not come back. (Counts may differ by
/// what was written or removed between the sentinel and the snapshot, so only emptiness
/// is a mismatch; both sides are in the report's facts.)
pub fn emptied(
    live: &std::collections::BTreeMap<String, i64>,
    restored: &std::collections::BTreeMap<String, i64>,
) -> Option<String> {
    let lost: Vec<String> = live
        .iter()
        .filter(|(_, n)| **n > 0)
        .filter(|(name, _)| restored.get(*name).copied().unwrap_or(0) <= 0)
        .map(|(name, n)| format!("{name} ({n} when the sentinel was written)"))
        .collect();
    (!lost.is_empty()).then(|| format!("the restored copy has none of: {}", lost.join(", ")))
}

/// The live store's endpoint from the databases layer, `None` when the store is off or
/// was not built.
pub(crate) fn live_endpoint(
    step: &StepContext<'_, VerifierAction>,
    store: StoreKind,
) -> Result<Option<DatastoreEndpoint>> {
    let databases = step.layers.databases()?;
    let endpoint = match store {
        StoreKind::Postgres => &databases.postgres,
        StoreKind::Redis => &databases.redis,
        StoreKind::DocumentDb => &databases.documentdb,
    };
    match endpoint {
        Some(e) if e.host.is_empty() || e.secret_arn.is_empty() => Err(Error::NotReady {
            resource: format!("layers.databases.{store}"),
            detail: "the store has no endpoint or secret yet".to_owned(),
        }),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests;
