//! The step kit: the one way every function runs a step.
//!
//! A Task state sends `{"action": "ensure", "deployment": "acme", "execution_id": "..."}`
//! (plus `options` that grant nothing). [`run`] then, for every function alike:
//!
//! 1. parses the event, naming the bad field (the action is a typed enum, so an unknown
//!    action is refused with the list of known ones);
//! 2. loads the deployment's spec and the outputs of the layers built so far from the
//!    state table: the event never carries them, so whoever can invoke a function cannot
//!    make it act on a spec or resources of their choosing (the trust boundary);
//! 3. opens the step's journal entry and runs the step's logic ([`Step::run`]);
//! 4. on success saves the step's output for later layers (when its action has an
//!    [`Action::slot`] and the step is ready) and journals the outcome; on failure
//!    journals the failure. A journal or output write that fails is logged and never
//!    replaces the step's own error or its error name;
//! 5. returns a typed [`StepOutput`]: `ready`, `created`, `pending` and the layer's own
//!    fields, flattened.
//!
//! The one exception to (2) is the control function's `lock`, which accepts a new spec,
//! checks it and stores it: the only way a spec enters the table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::naming::{Layer, Names};
use crate::outputs::Layers;
use crate::spec::DeploymentSpec;
use crate::store::{JournalEntry, Resource, Store};

/// The event a Task state sends to a function.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepEvent<A> {
    pub action: A,
    /// The deployment's name: which record of the table the step works on. May be left
    /// out only when the event carries a spec, whose name it then is.
    #[serde(default)]
    pub deployment: Option<String>,
    #[serde(default)]
    pub execution_id: Option<String>,
    /// A new spec: accepted only by actions whose [`Action::accepts_spec`] says so (the
    /// control function's `validate` and `lock`); refused by every other step.
    #[serde(default)]
    pub spec: Option<Value>,
    /// Step options (e.g. `{"dry_run": true}`): switches, never resources, ARNs or grants.
    #[serde(default)]
    pub options: Map<String, Value>,
}

impl<A: DeserializeOwned> StepEvent<A> {
    /// Parses an event, naming what is wrong with it.
    pub fn parse(event: Value) -> Result<Self> {
        crate::inputs::read_named("step input", event)
    }
}

/// The event `{"action": ..., "deployment": ..., "execution_id": ...}` as a Task state
/// sends it, for tests and local callers.
pub fn event(action: &str, deployment: &str) -> Value {
    serde_json::json!({"action": action, "deployment": deployment, "execution_id": "exec-1"})
}

/// The actions of one function: a serde enum whose variant names are the exact strings
/// the state machines send (`#[serde(rename = "ensure-postgres")]`), so searching the
/// code for an action taken from a state's input lands on its variant.
pub trait Action: Copy + Send + Sync + DeserializeOwned + 'static {
    /// The action as the state machines spell it.
    fn as_str(self) -> &'static str;
    /// Where a ready output of this action is kept for later steps, as a dotted path
    /// into [`Layers`] (`"network"`, `"databases.postgres"`); `None` keeps nothing.
    fn slot(self) -> Option<&'static str> {
        None
    }
    /// Whether this action creates or changes resources (`ensure`), or only reads.
    fn mutates(self) -> bool {
        true
    }
    /// Whether this action takes a new spec from its event instead of the stored one.
    fn accepts_spec(self) -> bool {
        false
    }
    /// Whether a successful run is journaled. A frequent read-only probe (a schedule's
    /// every few minutes) says no: its failures and what it still waits for are
    /// journaled, its routine successes would bury everything else.
    fn journals_success(self) -> bool {
        true
    }
}

/// The action enum of a layer whose only action is `ensure` (its own status check),
/// keeping a ready output under `slot`:
/// `apiary_core::ensure_action!(NetworkAction, "network");`. The crate needs `serde`.
#[macro_export]
macro_rules! ensure_action {
    ($(#[$meta:meta])* $name:ident, $slot:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
        pub enum $name {
            #[serde(rename = "ensure")]
            Ensure,
        }

        impl $crate::step::Action for $name {
            fn as_str(self) -> &'static str {
                "ensure"
            }
            fn slot(self) -> Option<&'static str> {
                Some($slot)
            }
        }
    };
}

/// What a step's logic hands back to the kit.
#[derive(Debug, Clone, PartialEq)]
pub struct Done<T> {
    pub output: T,
    /// What the step still waits for; empty when ready.
    pub pending: Vec<String>,
    /// Resources a read-only action found missing.
    pub missing: Vec<String>,
    /// A note for the journal entry of a successful step (what changed, what a person
    /// must still do).
    pub detail: Option<String>,
}

impl<T> Done<T> {
    pub fn ready(output: T) -> Self {
        Done {
            output,
            pending: Vec::new(),
            missing: Vec::new(),
            detail: None,
        }
    }
    pub fn pending(output: T, pending: Vec<String>) -> Self {
        Done {
            output,
            pending,
            missing: Vec::new(),
            detail: None,
        }
    }
    pub fn missing(output: T, missing: Vec<String>) -> Self {
        Done {
            output,
            pending: Vec::new(),
            missing,
            detail: None,
        }
    }
    /// Adds a note for the journal entry.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    /// The same outcome with another output.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Done<U> {
        Done {
            output: f(self.output),
            pending: self.pending,
            missing: self.missing,
            detail: self.detail,
        }
    }
    pub fn is_ready(&self) -> bool {
        self.pending.is_empty() && self.missing.is_empty()
    }
}

/// What every step returns to the state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutput<T> {
    pub ready: bool,
    /// Ids this run created (empty: it found everything).
    #[serde(default)]
    pub created: Vec<String>,
    /// What is not ready yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// What a read-only action found missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    #[serde(flatten)]
    pub output: T,
}

/// Everything a step's logic receives.
pub struct StepContext<'a, A> {
    pub action: A,
    pub spec: DeploymentSpec,
    pub names: Names,
    /// The outputs of the layers built so far, as the table holds them.
    pub layers: Layers,
    pub options: Map<String, Value>,
    pub execution_id: String,
    pub log: StepLog<'a>,
}

impl<A> StepContext<'_, A> {
    /// A boolean option, `false` when absent.
    pub fn flag(&self, name: &str) -> bool {
        self.options.get(name).and_then(Value::as_bool) == Some(true)
    }
}

/// One layer's (or one function's) logic, run by [`run`].
#[async_trait]
pub trait Step: Send + Sync {
    /// The layer the journal and inventory file this step's work under.
    const LAYER: Layer;
    type Action: Action;
    type Output: Serialize + Send;

    /// The work itself. Errors are returned, never journaled here: the kit does that.
    async fn run(&self, step: &StepContext<'_, Self::Action>) -> Result<Done<Self::Output>>;

    /// The state table (or a memory fake in unit tests).
    fn state(&self) -> &dyn Recorder;

    /// The `step` the journal files this step under: the layer, unless the step says
    /// otherwise (the control steps file under their workflow).
    fn journal_step(&self, _options: &Map<String, Value>) -> String {
        Self::LAYER.as_str().to_owned()
    }
}

/// Runs one step of `S` for a Lambda event: the one entry point of every function.
pub async fn run<S: Step>(step: &S, event: Value) -> Result<Value> {
    let event = StepEvent::<S::Action>::parse(event)?;
    let state = step.state();
    let (deployment, spec, layers) = resolve(state, &event).await?;
    let execution_id = event.execution_id.as_deref().unwrap_or("manual").to_owned();
    let span = tracing::info_span!(
        "step",
        layer = S::LAYER.as_str(),
        action = event.action.as_str(),
        deployment = deployment.as_str(),
        execution_id = execution_id.as_str(),
    );
    let journal_step = step.journal_step(&event.options);
    let context = StepContext {
        action: event.action,
        names: Names::new(&spec.name),
        spec,
        layers,
        options: event.options,
        log: StepLog::new(
            state,
            &deployment,
            S::LAYER,
            &journal_step,
            &execution_id,
            event.action.as_str(),
        ),
        execution_id,
    };
    // Boxed: a layer's logic is one deep future, too deep to sit on the stack.
    let result = tracing::Instrument::instrument(Box::pin(step.run(&context)), span.clone()).await;
    tracing::Instrument::instrument(finish(&context, result), span).await
}

/// The deployment, spec and layers a step works on: the stored ones, or for an action
/// that accepts a spec, the event's (validated here) with whatever the table holds.
async fn resolve<A: Action>(
    state: &dyn Recorder,
    event: &StepEvent<A>,
) -> Result<(String, DeploymentSpec, Layers)> {
    let action = event.action.as_str();
    match (&event.spec, event.action.accepts_spec()) {
        (Some(_), false) => Err(Error::invalid_input(format!(
            "step input field `spec`: the {action} action reads the deployment's spec from \
             the state table and accepts none in its event"
        ))),
        (Some(value), true) => {
            let spec = DeploymentSpec::parse(value)?;
            if let Some(named) = &event.deployment
                && named != &spec.name
            {
                return Err(Error::invalid_input(format!(
                    "step input field `deployment`: {named} is not the spec's name {}",
                    spec.name
                )));
            }
            let layers = assemble(state.outputs(&spec.name).await?)?;
            Ok((spec.name.clone(), spec, layers))
        }
        (None, _) => {
            let deployment = event
                .deployment
                .clone()
                .filter(|d| !d.is_empty())
                .ok_or_else(|| {
                    Error::invalid_input(format!(
                        "step input field `deployment` is missing: the {action} action needs the \
                     deployment's name"
                    ))
                })?;
            let (spec, layers) = load(state, &deployment).await?;
            Ok((deployment, spec, layers))
        }
    }
}

/// Loads what a step works on. A deployment with no record has never been validated.
pub async fn load(state: &dyn Recorder, deployment: &str) -> Result<(DeploymentSpec, Layers)> {
    let Some(spec) = state.spec(deployment).await? else {
        return Err(Error::invalid_input(format!(
            "deployment {deployment} has no record in the state table: start a provision \
             with its spec first (only provision's lock step stores a spec)"
        )));
    };
    let outputs = state.outputs(deployment).await?;
    let layers = assemble(outputs)?;
    Ok((spec, layers))
}

/// Builds [`Layers`] from the saved outputs. A slot is a dotted path into [`Layers`]
/// (`"databases.postgres"`); a slot with a `#shard` suffix (`"cluster#nodegroup"`) is
/// one of several steps' parts of one output, whose fields are merged in slot order.
pub fn assemble(outputs: BTreeMap<String, Value>) -> Result<Layers> {
    serde_json::from_value(assemble_value(outputs)?).map_err(|e| {
        Error::fatal(format!(
            "the saved layer outputs no longer match what this version reads: {e}"
        ))
    })
}

/// The saved outputs as one JSON object, every field kept (also those [`Layers`] does
/// not read, such as a store's `emulated: false` or the workloads' rendered folder):
/// what a workflow reports as its result.
pub fn assemble_value(outputs: BTreeMap<String, Value>) -> Result<Value> {
    let mut root = Map::new();
    for (slot, value) in outputs {
        let path = slot.split('#').next().unwrap_or_default();
        let sharded = path.len() != slot.len();
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut node = &mut root;
        for part in parts {
            node = node
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .ok_or_else(|| Error::fatal(format!("saved output {slot} overlaps another")))?;
        }
        match (sharded, value) {
            (true, Value::Object(fields)) => {
                let target = node
                    .entry(last.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .ok_or_else(|| Error::fatal(format!("saved output {slot} overlaps another")))?;
                target.extend(fields);
            }
            (true, _) => {
                return Err(Error::fatal(format!(
                    "saved output {slot} is a shard but not an object"
                )));
            }
            (false, value) => {
                node.insert(last.to_owned(), value);
            }
        }
    }
    Ok(Value::Object(root))
}

async fn finish<A: Action, T: Serialize>(
    context: &StepContext<'_, A>,
    result: Result<Done<T>>,
) -> Result<Value> {
    let log = &context.log;
    match result {
        Ok(done) => {
            let ready = done.is_ready();
            let note = done.detail;
            let output = StepOutput {
                ready,
                created: log.created_ids(),
                pending: done.pending,
                missing: done.missing,
                output: done.output,
            };
            let value = serde_json::to_value(&output)
                .map_err(|e| Error::fatal(format!("step output does not serialise: {e}")))?;
            if ready && let Some(slot) = context.action.slot() {
                // The layer's fields only: ready/created/pending describe this run.
                let saved = serde_json::to_value(&output.output)
                    .map_err(|e| Error::fatal(format!("step output does not serialise: {e}")))?;
                // Later steps read this output: failing to keep it is the step's failure.
                log.recorder
                    .save_output(&log.deployment, slot, &saved)
                    .await?;
            }
            let (outcome, detail) = if !output.pending.is_empty() {
                ("not-ready", Some(output.pending.join("; ")))
            } else if !output.missing.is_empty() {
                (
                    "missing",
                    Some(format!("missing: {}", output.missing.join(", "))),
                )
            } else if !context.action.mutates() {
                ("ready", None)
            } else if output.created.is_empty() {
                ("unchanged", None)
            } else {
                ("created", None)
            };
            let detail = match (detail, note) {
                (Some(detail), Some(note)) => Some(format!("{detail}; {note}")),
                (detail, note) => detail.or(note),
            };
            if outcome != "ready" || context.action.journals_success() {
                log.finish(outcome, detail).await;
            }
            Ok(value)
        }
        Err(err) => {
            log.finish("failed", Some(err.to_string())).await;
            Err(err)
        }
    }
}

/// Where steps read the deployment and write their inventory, outputs and journal. The
/// store in production; [`MemoryRecorder`] in unit tests.
#[async_trait]
pub trait Recorder: Send + Sync {
    /// The deployment's stored spec, `None` when it has no record.
    async fn spec(&self, deployment: &str) -> Result<Option<DeploymentSpec>>;
    /// The deployment's status, `None` when it has no record or the recorder keeps none
    /// (the in-memory recorder of unit tests).
    async fn status(&self, _deployment: &str) -> Result<Option<crate::store::DeploymentStatus>> {
        Ok(None)
    }
    /// Saved step outputs by slot.
    async fn outputs(&self, deployment: &str) -> Result<BTreeMap<String, Value>>;
    async fn save_output(&self, deployment: &str, slot: &str, output: &Value) -> Result<()>;
    async fn resource(&self, deployment: &str, resource: &Resource) -> Result<()>;
    /// Every resource the steps recorded for `deployment`.
    async fn inventory(&self, deployment: &str) -> Result<Vec<Resource>>;
    async fn journal(&self, entry: &JournalEntry) -> Result<()>;
}

#[async_trait]
impl Recorder for Store {
    async fn spec(&self, deployment: &str) -> Result<Option<DeploymentSpec>> {
        Ok(self.get_deployment(deployment).await?.map(|r| r.spec))
    }
    async fn status(&self, deployment: &str) -> Result<Option<crate::store::DeploymentStatus>> {
        Ok(self.get_deployment(deployment).await?.map(|r| r.status))
    }
    async fn outputs(&self, deployment: &str) -> Result<BTreeMap<String, Value>> {
        self.layer_outputs(deployment).await
    }
    async fn save_output(&self, deployment: &str, slot: &str, output: &Value) -> Result<()> {
        self.put_output(deployment, slot, output).await
    }
    async fn resource(&self, deployment: &str, resource: &Resource) -> Result<()> {
        self.record_resource(deployment, resource).await
    }
    async fn inventory(&self, deployment: &str) -> Result<Vec<Resource>> {
        Store::inventory(self, deployment).await
    }
    async fn journal(&self, entry: &JournalEntry) -> Result<()> {
        self.append_journal(entry).await
    }
}

/// An in-memory state for unit tests: seed it with a spec and layer outputs, then read
/// what the step recorded.
#[derive(Default, Clone)]
pub struct MemoryRecorder {
    pub specs: Arc<Mutex<BTreeMap<String, DeploymentSpec>>>,
    pub saved: Arc<Mutex<BTreeMap<String, BTreeMap<String, Value>>>>,
    pub resources: Arc<Mutex<Vec<Resource>>>,
    pub entries: Arc<Mutex<Vec<JournalEntry>>>,
    /// When set, every journal write fails with this message (to test that a journal
    /// failure never replaces a step's own outcome).
    pub failing_journal: Arc<Mutex<Option<String>>>,
}

impl MemoryRecorder {
    /// A state holding `spec` (parsed and validated as the lock step would) and the
    /// given layer outputs (`{"keys": {...}, "network": {...}}`).
    pub fn with(spec: &Value, layers: &Value) -> Self {
        let recorder = MemoryRecorder::default();
        recorder.put_spec(spec);
        recorder.put_layers(spec_name(spec), layers);
        recorder
    }

    /// Stores a spec (which must be valid) as the lock step would.
    pub fn put_spec(&self, spec: &Value) {
        let parsed = DeploymentSpec::parse(spec).expect("a test spec must be valid");
        self.specs
            .lock()
            .expect("recorder lock")
            .insert(parsed.name.clone(), parsed);
    }

    /// Replaces the saved outputs of `deployment` with `layers`, one slot per top-level key.
    pub fn put_layers(&self, deployment: &str, layers: &Value) {
        let slots = layers
            .as_object()
            .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        self.saved
            .lock()
            .expect("recorder lock")
            .insert(deployment.to_owned(), slots);
    }

    /// The output a step saved under `slot`.
    pub fn saved(&self, deployment: &str, slot: &str) -> Option<Value> {
        self.saved
            .lock()
            .expect("recorder lock")
            .get(deployment)
            .and_then(|slots| slots.get(slot).cloned())
    }
}

fn spec_name(spec: &Value) -> &str {
    spec.get("name").and_then(Value::as_str).unwrap_or_default()
}

#[async_trait]
impl Recorder for MemoryRecorder {
    async fn spec(&self, deployment: &str) -> Result<Option<DeploymentSpec>> {
        Ok(self
            .specs
            .lock()
            .expect("recorder lock")
            .get(deployment)
            .cloned())
    }
    async fn outputs(&self, deployment: &str) -> Result<BTreeMap<String, Value>> {
        Ok(self
            .saved
            .lock()
            .expect("recorder lock")
            .get(deployment)
            .cloned()
            .unwrap_or_default())
    }
    async fn save_output(&self, deployment: &str, slot: &str, output: &Value) -> Result<()> {
        self.saved
            .lock()
            .expect("recorder lock")
            .entry(deployment.to_owned())
            .or_default()
            .insert(slot.to_owned(), output.clone());
        Ok(())
    }
    async fn resource(&self, _deployment: &str, resource: &Resource) -> Result<()> {
        let mut resources = self.resources.lock().expect("recorder lock");
        if !resources.contains(resource) {
            resources.push(resource.clone());
        }
        Ok(())
    }
    async fn inventory(&self, _deployment: &str) -> Result<Vec<Resource>> {
        Ok(self.resources.lock().expect("recorder lock").clone())
    }
    async fn journal(&self, entry: &JournalEntry) -> Result<()> {
        if let Some(message) = self.failing_journal.lock().expect("recorder lock").clone() {
            return Err(Error::fatal(message));
        }
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
    step: String,
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
        step: &str,
        execution_id: &str,
        action: &str,
    ) -> Self {
        StepLog {
            recorder,
            deployment: deployment.to_owned(),
            layer,
            step: step.to_owned(),
            execution_id: execution_id.to_owned(),
            action: action.to_owned(),
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

    /// Appends the journal entry for this step with its outcome. A failed write is
    /// logged, never returned: the step's own outcome is what the workflow must see.
    pub async fn finish(&self, outcome: &str, detail: Option<String>) {
        let entry = JournalEntry {
            deployment: self.deployment.clone(),
            execution_id: self.execution_id.clone(),
            step: self.step.clone(),
            action: self.action.clone(),
            outcome: outcome.to_owned(),
            resource_ids: self.ids.lock().expect("step log").clone(),
            detail,
            at: Utc::now(),
        };
        if let Err(err) = self.recorder.journal(&entry).await {
            tracing::warn!(
                error = %err,
                outcome,
                "could not write the journal entry; the step's outcome stands"
            );
        }
    }
}

#[cfg(test)]
mod tests;
