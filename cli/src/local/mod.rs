//! Local runs: the repository's state machines in the embedded Step Functions engine,
//! every function's handler in-process, AWS calls against the emulator (or any endpoint).

mod progress;
mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use apiary_asl::{
    Clock, ExecutionOptions, ExecutionResult, HandlerRegistry, StateMachine, TaskError,
};
use apiary_core::step::Recorder;
use apiary_core::store::Store;
use aws_config::SdkConfig;
use serde_json::Value;

pub use progress::Progress;
pub use summary::{Summary, summarize};

pub const LOCAL_ACCOUNT: &str = "123456789012";

/// What a local run talks to.
pub struct LocalEnv {
    pub config: SdkConfig,
    pub store: Store,
    /// Where local state lives (rendered manifests): `<state_dir>/<deployment>/...`.
    pub state_dir: PathBuf,
    /// A kubeconfig to apply the workloads to a real cluster; None renders them.
    pub kubeconfig: Option<PathBuf>,
}

impl LocalEnv {
    fn region(&self) -> String {
        self.config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-west-2".into())
    }

    /// Every function, registered under the name the state machines use for it.
    pub fn registry(&self, deployment: &str) -> HandlerRegistry {
        let recorder: Arc<dyn Recorder> = Arc::new(self.store.clone());
        let config = &self.config;
        let kube = match &self.kubeconfig {
            Some(path) => workloads::KubeAccess::Kubeconfig(path.clone()),
            None => {
                workloads::KubeAccess::Render(self.state_dir.join(deployment).join("manifests"))
            }
        };
        let mut registry = HandlerRegistry::new();
        macro_rules! register {
            ($name:literal, $deps:expr, $handle:path) => {{
                let deps = Arc::new($deps);
                registry.register_fn($name, move |input| {
                    let deps = deps.clone();
                    // Each function's AWS calls, the state store's included, are
                    // attributed to it (apiary_core::calls).
                    apiary_core::calls::attributed($name, async move {
                        $handle(&deps, input).await.map_err(task_error)
                    })
                });
            }};
        }
        register!(
            "deployment",
            deployment::Deps::new(self.store.clone()),
            deployment::handle
        );
        register!(
            "keys",
            keys::Deps::new(config, recorder.clone()),
            keys::handle
        );
        register!(
            "network",
            network::Deps::new(config, recorder.clone()),
            network::handle
        );
        register!("dns", dns::Deps::new(config, recorder.clone()), dns::handle);
        register!(
            "storage",
            storage::Deps::new(config, recorder.clone()),
            storage::handle
        );
        register!(
            "databases",
            databases::Deps::new(config, recorder.clone()),
            databases::handle
        );
        register!(
            "cluster",
            cluster::Deps::new(config, recorder.clone()),
            cluster::handle
        );
        register!(
            "workloads",
            workloads::Deps::new(config, recorder.clone(), kube),
            workloads::handle
        );
        registry
    }

    /// Loads `statemachines/<workflow>.asl.json` with every `${XFunctionArn}` pointing at
    /// the in-process function `x`.
    pub fn load(&self, root: &Path, workflow: &str) -> anyhow::Result<StateMachine> {
        let path = root
            .join("statemachines")
            .join(format!("{workflow}.asl.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let region = self.region();
        let substitutions: HashMap<String, String> = apiary_asl::placeholders(&text)?
            .into_iter()
            .map(|name| {
                let function = name.trim_end_matches("FunctionArn").to_ascii_lowercase();
                let arn = format!("arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{function}");
                (name, arn)
            })
            .collect();
        StateMachine::load(&text, &substitutions).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    /// Runs a workflow to its end on the virtual clock (waits take no time).
    pub async fn run(
        &self,
        machine: &StateMachine,
        workflow: &str,
        deployment: &str,
        input: Value,
        execution_name: String,
        listener: Option<apiary_asl::EventListener>,
    ) -> ExecutionResult {
        let options = ExecutionOptions {
            execution_name: Some(execution_name),
            state_machine_name: format!("apiary-{workflow}"),
            region: self.region(),
            account: LOCAL_ACCOUNT.to_owned(),
            clock: Clock::virtual_now(),
            handlers: self.registry(deployment),
            listener,
            ..ExecutionOptions::default()
        };
        machine.execute(input, options).await
    }
}

/// A function's error as the state machine sees it: its stable name and message.
fn task_error(err: apiary_core::Error) -> TaskError {
    TaskError::new(err.name().as_str(), err.to_string())
}
