//! Local runs: the repository's state machines in the embedded Step Functions engine,
//! every function's handler in-process, AWS calls against the emulator (or any endpoint).

mod progress;
pub mod rules;
mod stand_ins;
mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use apiary_asl::{
    Clock, ExecutionOptions, ExecutionResult, ExecutionStatus, HandlerRegistry, StateMachine,
    TaskError,
};
use apiary_core::step::Recorder;
use apiary_core::store::Store;
use aws_config::SdkConfig;
use serde_json::Value;

pub use progress::Progress;
pub use stand_ins::in_vpc_functions;
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
    /// The executions this process runs: a lock held by one of them is live, a lock
    /// held by a process that is gone is taken over by the next run.
    pub runs: Arc<control::LocalRuns>,
    /// Where phone-home sends reports, and how; `None`: phone home is off.
    pub phone_home: Option<PhoneHome>,
    /// The clock every run of this environment shares; `None`: each run has its own
    /// virtual clock (waits take no time).
    pub clock: Option<Clock>,
}

/// The endpoint phone-home sends to in local runs, and the sender that trusts it.
#[derive(Clone)]
pub struct PhoneHome {
    pub url: String,
    pub sender: Arc<dyn report::Sender>,
}

/// Where `apiary local run phone-home` sends reports (an https:// URL); unset: off.
pub const PHONE_HOME_URL_ENV: &str = report::ENDPOINT_ENV;
/// A PEM file of the CAs a local endpoint's certificate chains to (a test server's);
/// unset: the system's roots. Read by local runs only, never by the Lambda.
pub const PHONE_HOME_CA_ENV: &str = "APIARY_PHONE_HOME_CA_FILE";

impl LocalEnv {
    pub fn new(
        config: SdkConfig,
        store: Store,
        state_dir: PathBuf,
        kubeconfig: Option<PathBuf>,
    ) -> Self {
        LocalEnv {
            config,
            store,
            state_dir,
            kubeconfig,
            runs: Arc::new(control::LocalRuns::new()),
            phone_home: None,
            clock: None,
        }
    }

    /// Runs every workflow on `clock`: one virtual clock for a series of runs (so that
    /// the time AWS takes to create something carries from one run to the next), or a
    /// scaled real-time clock for a benchmark.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sends phone-home reports to `url` (checked: https only), trusting only the CAs of
    /// `ca_pem` when given, else the system's roots.
    pub fn with_phone_home(mut self, url: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let url = apiary_core::phone_home::endpoint(url, PHONE_HOME_URL_ENV)?;
        let sender = Arc::new(report::HttpsSender::new(ca_pem)?);
        self.phone_home = Some(PhoneHome { url, sender });
        Ok(self)
    }

    /// The secret that keeps the deployment's report signing key, as the bootstrap stack's
    /// `SigningKeySecret` does on AWS (where CloudFormation names it).
    pub fn signing_key_secret(deployment: &str) -> String {
        format!("apiary-{deployment}-report-signing-key")
    }

    /// Makes the signing key's secret and key, as the stack's `SigningKey` resource does
    /// at install; a key already there is kept.
    pub async fn ensure_signing_key(&self, deployment: &str) -> anyhow::Result<String> {
        let secrets = apiary_core::client!(aws_sdk_secretsmanager, &self.config);
        let name = Self::signing_key_secret(deployment);
        match secrets.create_secret().name(&name).send().await {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_exists_exception()) => {}
            Err(err) => {
                return Err(anyhow!(
                    "CreateSecret {name}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&err)
                ));
            }
        }
        let key = report::ensure_signing_key(&secrets, &name, &format!("local/{name}")).await?;
        Ok(key.key_id())
    }

    fn region(&self) -> String {
        self.config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-west-2".into())
    }

    /// The deployment's alerts topic, as the bootstrap stack names it.
    pub fn alert_topic_arn(&self, deployment: &str) -> String {
        let region = self.region();
        apiary_core::aws::arn(
            apiary_core::aws::partition(&region),
            "sns",
            &region,
            LOCAL_ACCOUNT,
            &format!("apiary-{deployment}-alerts"),
        )
    }

    /// Makes the alerts topic the bootstrap stack makes on AWS (CreateTopic returns the
    /// existing one), so that handle-alert's notifications are published somewhere a test
    /// or a person can read them.
    pub async fn ensure_alert_topic(&self, deployment: &str) -> anyhow::Result<String> {
        let sns = apiary_core::client!(aws_sdk_sns, &self.config);
        let created = sns
            .create_topic()
            .name(format!("apiary-{deployment}-alerts"))
            .send()
            .await
            .with_context(|| format!("CreateTopic apiary-{deployment}-alerts"))?;
        Ok(created
            .topic_arn
            .unwrap_or_else(|| self.alert_topic_arn(deployment)))
    }

    /// The ingestion pods' permissions boundary, named as the stack names its
    /// `IngestionBoundary` policy.
    pub fn ingestion_boundary_arn(&self, deployment: &str) -> String {
        apiary_core::aws::arn(
            apiary_core::aws::partition(&self.region()),
            "iam",
            "",
            LOCAL_ACCOUNT,
            &format!("policy/apiary-{deployment}-ingestion-boundary"),
        )
    }

    /// Makes a stand-in for the stack's `IngestionBoundary` policy, so that the workloads
    /// step makes the ingestion role with its boundary, as on AWS (where its role is denied
    /// making the role without it). What the stand-in allows does not matter: the
    /// emulator enforces no policy.
    pub async fn ensure_ingestion_boundary(&self, deployment: &str) -> anyhow::Result<()> {
        let iam = apiary_core::client!(aws_sdk_iam, &self.config);
        let name = format!("apiary-{deployment}-ingestion-boundary");
        let document = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Sid": "LocalStandIn", "Effect": "Allow", "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::apiary-{deployment}-*/*")}]
        });
        match iam
            .create_policy()
            .policy_name(&name)
            .description("Local stand-in for the stack's ingestion permissions boundary")
            .policy_document(document.to_string())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_entity_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("CreatePolicy {name}"))),
        }
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
                let deployment: Arc<str> = Arc::from(deployment);
                registry.register_fn($name, move |input| {
                    let deps = deps.clone();
                    let deployment = deployment.clone();
                    // Each function's AWS calls, the state store's included, are
                    // attributed to it and its deployment (apiary_core::calls).
                    async move {
                        apiary_core::calls::attributed_for($name, &deployment, async move {
                            $handle(&deps, input).await.map_err(task_error)
                        })
                        .await
                    }
                });
            }};
        }
        register!(
            "control",
            control::Deps::new(self.store.clone(), self.runs.clone()).with_notifier(
                control::Notifier {
                    sns: apiary_core::client!(aws_sdk_sns, config),
                    topic_arn: self.alert_topic_arn(deployment),
                }
            ),
            control::handle
        );
        register!(
            "keys",
            keys::Deps::new(config, recorder.clone()),
            keys::handle
        );
        register!(
            "backup",
            backup::Deps::new(config, recorder.clone()),
            backup::handle
        );
        register!(
            "network",
            network::Deps::new(config, recorder.clone())
                .with_in_vpc_functions(stand_ins::in_vpc_functions(deployment)),
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
            databases::Deps::new(config, recorder.clone())
                .with_alert_topic(self.alert_topic_arn(deployment)),
            databases::handle
        );
        register!(
            "cluster",
            cluster::Deps::new(config, recorder.clone()),
            cluster::handle
        );
        register!(
            "workloads",
            workloads::Deps::new(config, recorder.clone(), kube)
                .with_permissions_boundary(self.ingestion_boundary_arn(deployment))
                .with_alert_topic(self.alert_topic_arn(deployment)),
            workloads::handle
        );
        // Locally the emulated databases have no server behind them: the verifier
        // reports that a sentinel was not written and a restore not checked.
        register!(
            "verifier",
            verifier::Deps::local(recorder.clone()),
            verifier::handle
        );
        register!(
            "teardown",
            teardown::Deps::new(config, recorder.clone())
                .with_in_vpc_functions(stand_ins::in_vpc_functions(deployment)),
            teardown::handle
        );
        register!(
            "operate",
            operate::Deps::new(config, recorder.clone()),
            operate::handle
        );
        register!(
            "drift",
            drift::Deps::new(config, recorder.clone()),
            drift::handle
        );
        let mut reporter = report::Deps::new(
            self.store.clone(),
            config,
            match &self.phone_home {
                Some(home) => home.sender.clone(),
                None => Arc::new(report::Unreachable),
            },
        );
        if let Some(home) = &self.phone_home {
            reporter = reporter.with_endpoint(&home.url, Self::signing_key_secret(deployment));
        }
        register!("report", reporter, report::handle);
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
        self.load_definition(&text, &path.display().to_string())
    }

    /// A definition given as text (`origin` names it in errors), with the same local
    /// function ARNs as [`LocalEnv::load`].
    pub fn load_definition(&self, text: &str, origin: &str) -> anyhow::Result<StateMachine> {
        let region = self.region();
        let partition = apiary_core::aws::partition(&region);
        let mut substitutions = HashMap::new();
        for name in apiary_asl::placeholders(text)? {
            let function = apiary_core::aws::function_for_placeholder(&name).ok_or_else(|| {
                anyhow!("{origin}: placeholder ${{{name}}} is not a function ARN")
            })?;
            let arn = apiary_core::aws::arn(
                partition,
                "lambda",
                &region,
                LOCAL_ACCOUNT,
                &format!("function:{function}"),
            );
            substitutions.insert(name, arn);
        }
        StateMachine::load(text, &substitutions).map_err(|e| anyhow!("{origin}: {e}"))
    }

    /// What the bootstrap stack makes on AWS and a run needs, made if missing: the
    /// in-VPC functions (the network step places them in the VPC; should this fail, that
    /// step names the missing function), the alerts topic, the ingestion permissions
    /// boundary and, for phone-home, the signing key. A failure is only a warning: the
    /// step that needs the missing thing names it.
    pub async fn prepare(&self, workflow: &str, deployment: &str) {
        if let Err(err) = Box::pin(stand_ins::ensure(&self.config, deployment)).await {
            eprintln!("warning: the in-VPC functions' stand-ins: {err:#}");
        }
        if let Err(err) = Box::pin(self.ensure_alert_topic(deployment)).await {
            eprintln!("warning: the alerts topic: {err:#}");
        }
        if let Err(err) = Box::pin(self.ensure_ingestion_boundary(deployment)).await {
            eprintln!("warning: the ingestion permissions boundary: {err:#}");
        }
        if workflow == apiary_core::phone_home::WORKFLOW
            && let Err(err) = Box::pin(self.ensure_signing_key(deployment)).await
        {
            eprintln!("warning: the report signing key: {err:#}");
        }
    }

    /// Runs a workflow to its end on the environment's clock, by default a virtual one
    /// (waits take no time). A run that does not succeed, or that Ctrl-C stops, is
    /// cleaned up as the bootstrap stack's execution-status rule does on AWS: its lock
    /// is released and its end recorded.
    pub async fn run(
        &self,
        machine: &StateMachine,
        workflow: &str,
        deployment: &str,
        input: Value,
        execution_name: String,
        listener: Option<apiary_asl::EventListener>,
    ) -> ExecutionResult {
        let region = self.region();
        let state_machine = format!("apiary-{workflow}");
        // Boxed, as every SDK call in this future: the teardown a test drives through
        // it runs close to a test thread's 2 MiB stack in debug builds.
        Box::pin(self.prepare(workflow, deployment)).await;
        let execution_arn =
            apiary_asl::execution_arn(&region, LOCAL_ACCOUNT, &state_machine, &execution_name);
        let options = ExecutionOptions {
            execution_name: Some(execution_name.clone()),
            state_machine_name: state_machine.clone(),
            region: region.clone(),
            account: LOCAL_ACCOUNT.to_owned(),
            clock: self.clock.clone().unwrap_or_else(Clock::virtual_now),
            handlers: self.registry(deployment),
            listener,
            ..ExecutionOptions::default()
        };
        self.runs.started(&execution_arn);
        let started = chrono::Utc::now();
        let result = tokio::select! {
            result = Box::pin(machine.execute(input.clone(), options)) => result,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\nstopped (Ctrl-C): releasing the lock and recording the end");
                aborted(&region, &state_machine, &execution_name, &execution_arn, input, started)
            }
        };
        self.runs.finished(&execution_arn);
        if result.status != ExecutionStatus::Succeeded {
            let deps = control::Deps::new(self.store.clone(), self.runs.clone());
            if let Err(err) = Box::pin(control::cleanup(
                &deps,
                &result.execution_arn,
                run_status(&result),
                &result.input,
            ))
            .await
            {
                eprintln!("warning: cleaning up after {}: {err}", result.execution_arn);
            }
        }
        result
    }
}

/// What a workflow needs from the spec: provision takes the whole spec (the only way a
/// spec enters the state table); every other workflow works on a stored deployment by
/// name.
pub fn base_input(workflow: &str, spec: &apiary_core::spec::DeploymentSpec) -> Value {
    if workflow == "provision" {
        serde_json::json!({"spec": spec})
    } else {
        serde_json::json!({"deployment": spec.name})
    }
}

/// Writes an execution and its whole history (GetExecutionHistory's shape) to `path`.
pub fn write_history(result: &ExecutionResult, path: &Path) -> anyhow::Result<()> {
    let mut document = result.describe();
    document["events"] = result.history_json()["events"].clone();
    let text = serde_json::to_string_pretty(&document)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The status string AWS gives the execution (`ABORTED` for a run Ctrl-C stopped).
pub fn run_status(result: &ExecutionResult) -> &'static str {
    if result.error.as_deref() == Some(ABORTED) {
        "ABORTED"
    } else {
        result.status.as_str()
    }
}

const ABORTED: &str = "Apiary.Aborted";

fn aborted(
    region: &str,
    state_machine: &str,
    name: &str,
    arn: &str,
    input: Value,
    started: chrono::DateTime<chrono::Utc>,
) -> ExecutionResult {
    ExecutionResult {
        status: ExecutionStatus::Failed,
        output: None,
        error: Some(ABORTED.to_owned()),
        cause: Some("the run was stopped with Ctrl-C".to_owned()),
        name: name.to_owned(),
        execution_arn: arn.to_owned(),
        state_machine_arn: apiary_asl::state_machine_arn(region, LOCAL_ACCOUNT, state_machine),
        input,
        start_date: started,
        stop_date: chrono::Utc::now(),
        history: Vec::new(),
    }
}

/// A function's error as the state machine sees it: its stable name and message.
fn task_error(err: apiary_core::Error) -> TaskError {
    TaskError::new(err.name().as_str(), err.to_string())
}
