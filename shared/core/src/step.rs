//! What every step receives, and how it records what it did.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::naming::Layer;
use crate::outputs::Layers;
use crate::spec::DeploymentSpec;
use crate::store::{JournalEntry, Resource, Store};

/// The event a Task state sends to a function:
/// `{"action": "ensure", "spec": {...}, "layers": {...}, "execution_id": "..."}`.
#[derive(Debug, Clone, Deserialize)]
pub struct StepInput {
    pub action: String,
    pub spec: Value,
    #[serde(default)]
    pub layers: Layers,
    #[serde(default)]
    pub execution_id: Option<String>,
}

impl StepInput {
    /// Parses an event, naming what is wrong with it.
    pub fn from_event(event: Value) -> Result<StepInput> {
        serde_path_to_error::deserialize(event).map_err(|e| {
            Error::invalid_input(format!("step input field `{}`: {}", e.path(), e.inner()))
        })
    }

    /// The validated spec (re-validated here: a step never trusts its input).
    pub fn spec(&self) -> Result<DeploymentSpec> {
        Ok(DeploymentSpec::parse(&self.spec)?)
    }

    /// What every handler starts with: the event and its validated spec, with the
    /// deployment and action named in the current span (declare them with
    /// `#[tracing::instrument(skip_all, fields(deployment, action))]`).
    pub fn begin(event: Value) -> Result<(StepInput, DeploymentSpec)> {
        let input = StepInput::from_event(event)?;
        let spec = input.spec()?;
        tracing::Span::current()
            .record("deployment", spec.name.as_str())
            .record("action", input.action.as_str());
        Ok((input, spec))
    }

    /// For layers whose `ensure` is also their status check: any other action is refused.
    pub fn require_ensure(&self, layer: Layer) -> Result<()> {
        if self.action == "ensure" {
            return Ok(());
        }
        Err(Error::invalid_input(format!(
            "{layer}: unknown action {:?}; the {layer} layer has only `ensure`, which is its own status check",
            self.action
        )))
    }

    pub fn execution_id(&self) -> &str {
        self.execution_id.as_deref().unwrap_or("manual")
    }
}

/// Where steps write their inventory and journal. The store in production; a memory
/// fake in unit tests.
#[async_trait]
pub trait Recorder: Send + Sync {
    async fn resource(&self, deployment: &str, resource: &Resource) -> Result<()>;
    async fn journal(&self, entry: &JournalEntry) -> Result<()>;
}

#[async_trait]
impl Recorder for Store {
    async fn resource(&self, deployment: &str, resource: &Resource) -> Result<()> {
        self.record_resource(deployment, resource).await
    }
    async fn journal(&self, entry: &JournalEntry) -> Result<()> {
        self.append_journal(entry).await
    }
}

/// An in-memory recorder for unit tests.
#[derive(Default, Clone)]
pub struct MemoryRecorder {
    pub resources: Arc<Mutex<Vec<Resource>>>,
    pub entries: Arc<Mutex<Vec<JournalEntry>>>,
}

#[async_trait]
impl Recorder for MemoryRecorder {
    async fn resource(&self, _deployment: &str, resource: &Resource) -> Result<()> {
        let mut resources = self.resources.lock().expect("recorder lock");
        if !resources.contains(resource) {
            resources.push(resource.clone());
        }
        Ok(())
    }
    async fn journal(&self, entry: &JournalEntry) -> Result<()> {
        self.entries
            .lock()
            .expect("recorder lock")
            .push(entry.clone());
        Ok(())
    }
}

/// Records for one step of one deployment.
pub struct StepLog<'a> {
    recorder: &'a dyn Recorder,
    deployment: String,
    layer: Layer,
    execution_id: String,
    action: String,
    ids: Mutex<Vec<String>>,
    created: Mutex<Vec<String>>,
}

impl<'a> StepLog<'a> {
    pub fn new(
        recorder: &'a dyn Recorder,
        deployment: &str,
        layer: Layer,
        input: &StepInput,
    ) -> Self {
        StepLog {
            recorder,
            deployment: deployment.to_owned(),
            layer,
            execution_id: input.execution_id().to_owned(),
            action: input.action.clone(),
            ids: Mutex::new(Vec::new()),
            created: Mutex::new(Vec::new()),
        }
    }

    /// Records a resource in the inventory (found or created).
    pub async fn resource(&self, kind: &str, id: &str, arn: Option<&str>) -> Result<()> {
        self.ids.lock().expect("step log").push(id.to_owned());
        self.recorder
            .resource(
                &self.deployment,
                &Resource {
                    layer: self.layer.as_str().to_owned(),
                    kind: kind.to_owned(),
                    id: id.to_owned(),
                    arn: arn.map(str::to_owned),
                },
            )
            .await
    }

    /// Notes that this run created `id` (rather than finding it).
    pub fn created(&self, id: &str) {
        tracing::info!(layer = %self.layer, resource = id, "created");
        self.created.lock().expect("step log").push(id.to_owned());
    }

    /// What this run created.
    pub fn created_ids(&self) -> Vec<String> {
        self.created.lock().expect("step log").clone()
    }

    /// Appends the journal entry for this step with its outcome.
    pub async fn finish(&self, outcome: &str, detail: Option<String>) -> Result<()> {
        let entry = JournalEntry {
            deployment: self.deployment.clone(),
            execution_id: self.execution_id.clone(),
            step: self.layer.as_str().to_owned(),
            action: self.action.clone(),
            outcome: outcome.to_owned(),
            resource_ids: self.ids.lock().expect("step log").clone(),
            detail,
            at: Utc::now(),
        };
        self.recorder.journal(&entry).await
    }

    /// The outcome word for a finished `ensure`: `created` or `unchanged`.
    pub fn ensure_outcome(&self) -> &'static str {
        if self.created.lock().expect("step log").is_empty() {
            "unchanged"
        } else {
            "created"
        }
    }
}
