//! `apiary local …`: run workflows on this machine against the AWS emulator.
//!
//! Exit codes (every local run, `local provision` included): 0 the execution SUCCEEDED;
//! 1 it ended any other way (a workflow's own refusal included); 2 refused before any
//! execution started (unreadable or invalid file, JSON, spec, unknown workflow); 3 the
//! environment is not usable (the emulator or the endpoint cannot be reached).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use apiary::local::{LocalEnv, Progress, run_status, summarize};
use apiary_asl::{ExecutionResult, ExecutionStatus};
use apiary_core::aws::{AwsSettings, Env, ProcessEnv};
use apiary_core::local::{Emulator, project_root};
use apiary_core::spec::{DeploymentSpec, SizePreset};
use apiary_core::store::{DEFAULT_TABLE, Store};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_REFUSED: u8 = 2;
pub const EXIT_ENVIRONMENT: u8 = 3;

#[derive(Subcommand)]
pub enum LocalCommand {
    /// Build a whole data plane against the local AWS emulator, with live progress and a
    /// summary of what exists (the friendly form of `local run provision`)
    Provision {
        #[command(flatten)]
        common: RunArgs,
        /// Apply the workloads to this cluster instead of only rendering them
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Run any workflow (`statemachines/WORKFLOW.asl.json`) with every function
    /// in-process, against the local AWS emulator
    Run {
        /// The workflow: provision, or any other file in statemachines/
        workflow: String,
        #[command(flatten)]
        common: RunArgs,
        /// Execution input: JSON text, or @FILE; merged over what the workflow needs from
        /// the spec (`{"spec": ...}` for provision, `{"deployment": NAME}` otherwise)
        #[arg(long)]
        input: Option<String>,
        /// Print exactly one JSON document on stdout (status, output or error and cause,
        /// execution_arn); progress goes to stderr
        #[arg(long)]
        json: bool,
        /// Apply the workloads to this cluster instead of only rendering them
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Deliver an EventBridge event (FILE, or - for standard input) through the bootstrap
    /// stack's rules, as EventBridge would, and run the workflow each matching rule
    /// starts (handle-alert) against the local AWS emulator
    Event {
        /// The event: a JSON file in EventBridge's shape (examples/events/ has one of each
        /// kind the rules route), or - to read it from standard input
        file: String,
        #[command(flatten)]
        common: RunArgs,
        /// Print exactly one JSON document on stdout: {"rules": [names], "executions":
        /// [{"rule", "status", "execution_arn", "output"}]}; progress goes to stderr
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// Deployment spec (JSON or parameters map); default: the small example, named `demo`
    #[arg(long)]
    spec: Option<PathBuf>,
    /// AWS endpoint to use instead of starting an emulator (also AWS_ENDPOINT_URL)
    #[arg(long)]
    endpoint: Option<String>,
    /// Folder for local state (rendered manifests)
    #[arg(long, default_value = ".apiary")]
    state_dir: PathBuf,
    /// Write the execution and its full history (GetExecutionHistory shape) to this file
    #[arg(long)]
    history: Option<PathBuf>,
}

pub async fn run(command: LocalCommand) -> anyhow::Result<ExitCode> {
    let (workflow, common, input, json, kubeconfig) = match command {
        LocalCommand::Event { file, common, json } => {
            return Ok(ExitCode::from(event(&file, common, json).await));
        }
        LocalCommand::Provision { common, kubeconfig } => {
            ("provision".to_owned(), common, None, false, kubeconfig)
        }
        LocalCommand::Run {
            workflow,
            common,
            input,
            json,
            kubeconfig,
        } => (workflow, common, input, json, kubeconfig),
    };
    let code = match prepare(&workflow, &common, input.as_deref(), kubeconfig.as_deref()) {
        Ok(prepared) => execute(prepared, common, kubeconfig, json).await,
        Err(refusal) => {
            eprintln!("{refusal}; nothing was started");
            EXIT_REFUSED
        }
    };
    Ok(ExitCode::from(code))
}

/// What is checked before anything starts or changes.
struct Prepared {
    workflow: String,
    spec: DeploymentSpec,
    input: Value,
    root: PathBuf,
}

fn prepare(
    workflow: &str,
    common: &RunArgs,
    input: Option<&str>,
    kubeconfig: Option<&Path>,
) -> Result<Prepared, String> {
    let root = project_root(&ProcessEnv).ok_or_else(|| {
        "cannot find the project (a folder with scripts/emulator): run from the clone, or \
         set APIARY_ROOT"
            .to_owned()
    })?;
    if workflow == apiary_workflows::stack_delete::NAME {
        return Err(format!(
            "{workflow} is not run by hand: the launch function starts it when the bootstrap \
             stack is deleted with OnStackDelete=Teardown, to answer CloudFormation once the \
             teardown has ended. Locally, run the teardown itself: apiary local run teardown \
             --input '{{\"confirm\": \"<name>\"}}'"
        ));
    }
    let file = root
        .join("statemachines")
        .join(format!("{workflow}.asl.json"));
    if !file.is_file() {
        return Err(format!(
            "unknown workflow {workflow:?}: there is no {}; the workflows are: {}",
            file.display(),
            workflows(&root).join(", ")
        ));
    }
    let spec = match &common.spec {
        None => demo_spec(),
        Some(path) => read_spec(path)?,
    };
    if let Some(path) = kubeconfig
        && !path.is_file()
    {
        return Err(format!("--kubeconfig {}: no such file", path.display()));
    }
    let mut document = apiary::local::base_input(workflow, &spec);
    if let Some(given) = input {
        let given = parse_input(given)?;
        let Value::Object(fields) = given else {
            return Err("--input must be a JSON object".to_owned());
        };
        document
            .as_object_mut()
            .expect("the base input is an object")
            .extend(fields);
    }
    Ok(Prepared {
        workflow: workflow.to_owned(),
        spec,
        input: document,
        root,
    })
}

fn parse_input(input: &str) -> Result<Value, String> {
    let (text, source) = match input.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
            path.to_owned(),
        ),
        None => (input.to_owned(), "--input".to_owned()),
    };
    serde_json::from_str(&text).map_err(|e| format!("{source} is not valid JSON: {e}"))
}

fn workflows(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("statemachines"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".asl.json"))
                        .filter(|n| *n != apiary_workflows::stack_delete::NAME)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn read_spec(path: &Path) -> Result<DeploymentSpec, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    DeploymentSpec::parse_str(&text).map_err(|errors| {
        let mut message = format!("{}: invalid deployment spec:", path.display());
        for problem in &errors.problems {
            message.push_str(&format!("\n  - {problem}"));
        }
        message
    })
}

/// Phone home for local runs, from the environment: reports go to
/// `APIARY_PHONE_HOME_URL` (https only), trusting the CAs in `APIARY_PHONE_HOME_CA_FILE`
/// when set; with no URL phone home is off, as with an empty `PhoneHomeUrl` on AWS.
fn phone_home(env: LocalEnv, vars: &dyn Env) -> anyhow::Result<LocalEnv> {
    use apiary::local::{PHONE_HOME_CA_ENV, PHONE_HOME_URL_ENV};
    let Some(url) = vars.var(PHONE_HOME_URL_ENV) else {
        return Ok(env);
    };
    let ca = match vars.var(PHONE_HOME_CA_ENV) {
        Some(path) => Some(
            std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("{PHONE_HOME_CA_ENV}: cannot read {path}: {e}"))?,
        ),
        None => None,
    };
    env.with_phone_home(&url, ca.as_deref())
}

pub fn demo_spec() -> DeploymentSpec {
    let mut spec = DeploymentSpec::example(SizePreset::Small);
    spec.name = "demo".into();
    spec.dns.domain = "honeyhive.demo.example.com".into();
    spec.network.vpc_cidr = None;
    DeploymentSpec::parse(&serde_json::to_value(spec).expect("spec serialises"))
        .expect("the demo spec is valid")
}

async fn execute(
    prepared: Prepared,
    common: RunArgs,
    kubeconfig: Option<PathBuf>,
    json: bool,
) -> u8 {
    let Prepared {
        workflow,
        spec,
        input,
        root,
    } = prepared;
    let Connected {
        endpoint,
        _emulator,
        config,
        store,
    } = match connect(&common, &spec, &root).await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let env = LocalEnv::new(config, store.clone(), common.state_dir.clone(), kubeconfig);
    let env = match phone_home(env, &ProcessEnv) {
        Ok(env) => env,
        Err(err) => {
            eprintln!("error: {err:#}; nothing was started");
            return EXIT_REFUSED;
        }
    };
    let machine = match env.load(&root, &workflow) {
        Ok(machine) => machine,
        Err(err) => {
            eprintln!("error: {err:#}; nothing was started");
            return EXIT_REFUSED;
        }
    };

    eprintln!(
        "{workflow}: {} ({} preset, {}, VPC {}) against {endpoint}",
        spec.name,
        spec.size,
        spec.region,
        spec.network.vpc_cidr.as_deref().unwrap_or("?")
    );
    let progress = Progress::new(&workflow);
    let execution_name = format!(
        "{workflow}-{}-{}",
        spec.name,
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    );
    let result = env
        .run(
            &machine,
            &workflow,
            &spec.name,
            input,
            execution_name,
            Some(progress.listener()),
        )
        .await;
    let succeeded = result.status == ExecutionStatus::Succeeded;
    progress.finish(if succeeded { "done" } else { "stopped" });

    if let Some(path) = &common.history
        && let Err(err) = apiary::local::write_history(&result, path)
    {
        eprintln!("warning: the history: {err:#}");
    }
    if json {
        println!("{}", document(&result));
    } else {
        report(&store, &workflow, &spec.name, &result).await;
    }
    if succeeded { 0 } else { EXIT_FAILED }
}

/// `apiary local event`: the event through the stack's rules (EventBridge itself decides
/// what matches, see `apiary::local::rules::deliver`), then each matched rule's workflow with the
/// input its transformer builds. An event no rule matches would never reach a workflow
/// on AWS: it is journaled as `unmatched` and the command succeeds.
async fn event(file: &str, common: RunArgs, json: bool) -> u8 {
    let prepared = match prepare_event(file, &common) {
        Ok(prepared) => prepared,
        Err(refusal) => {
            eprintln!("{refusal}; nothing was started");
            return EXIT_REFUSED;
        }
    };
    let PreparedEvent { event, spec, root } = prepared;
    let Connected {
        endpoint,
        _emulator,
        config,
        store,
    } = match connect(&common, &spec, &root).await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let template = match std::fs::read_to_string(root.join("infra-bootstrap/bootstrap.yaml")) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("error: reading infra-bootstrap/bootstrap.yaml: {err}; nothing was started");
            return EXIT_REFUSED;
        }
    };
    let env = LocalEnv::new(config, store, common.state_dir.clone(), None);
    let delivered =
        match apiary::local::rules::handle_event(&env, &root, &template, &spec.name, &event, true)
            .await
        {
            Ok(delivered) => delivered,
            Err(err) => {
                eprintln!("error: delivering the event at {endpoint}: {err:#}");
                return EXIT_ENVIRONMENT;
            }
        };
    let names: Vec<&str> = delivered.rules.iter().map(|r| r.name.as_str()).collect();
    eprintln!(
        "event {} ({} / {}) for {}: {}",
        event["id"].as_str().unwrap_or("without an id"),
        event["source"].as_str().unwrap_or_default(),
        event["detail-type"].as_str().unwrap_or_default(),
        spec.name,
        if names.is_empty() {
            "no rule of the stack matches; journaled as unmatched".to_owned()
        } else {
            format!("matched {}", names.join(", "))
        }
    );
    let mut all_succeeded = true;
    let executions: Vec<Value> = delivered
        .executions
        .iter()
        .map(|(rule, result)| {
            all_succeeded &= result.status == ExecutionStatus::Succeeded;
            let mut entry = document(result);
            entry["rule"] = json!(rule);
            entry
        })
        .collect();
    let mut output = json!({"rules": names, "executions": executions});
    if !delivered.skipped.is_empty() {
        output["skipped"] = delivered
            .skipped
            .iter()
            .map(|(rule, target)| {
                json!({"rule": rule, "target": target, "why": "only rules that start a workflow run locally"})
            })
            .collect();
    }
    if json {
        println!("{output}");
    } else {
        for execution in &executions {
            println!(
                "{}: {} {}",
                execution["rule"].as_str().unwrap_or_default(),
                execution["status"].as_str().unwrap_or_default(),
                execution["execution_arn"].as_str().unwrap_or_default()
            );
            match execution.get("output") {
                Some(out) => println!(
                    "  {}",
                    serde_json::to_string_pretty(out).unwrap_or_default()
                ),
                None => println!(
                    "  {}: {}",
                    execution["error"].as_str().unwrap_or_default(),
                    execution["cause"].as_str().unwrap_or_default()
                ),
            }
        }
        for (rule, target) in &delivered.skipped {
            println!("{rule}: targets {target}, which runs only on AWS");
        }
    }
    if all_succeeded { 0 } else { EXIT_FAILED }
}

struct PreparedEvent {
    event: Value,
    spec: DeploymentSpec,
    root: PathBuf,
}

/// The event file read and checked, and the spec, before anything starts.
fn prepare_event(file: &str, common: &RunArgs) -> Result<PreparedEvent, String> {
    let root = project_root(&ProcessEnv).ok_or_else(|| {
        "cannot find the project (a folder with scripts/emulator): run from the clone, or \
         set APIARY_ROOT"
            .to_owned()
    })?;
    let (text, origin) = if file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("cannot read the event from standard input: {e}"))?;
        (text, "standard input".to_owned())
    } else {
        (
            std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?,
            file.to_owned(),
        )
    };
    let event: Value =
        serde_json::from_str(&text).map_err(|e| format!("{origin} is not valid JSON: {e}"))?;
    let parsed: Result<aws_lambda_events::event::eventbridge::EventBridgeEvent<Value>, _> =
        serde_json::from_value(event.clone());
    if let Err(err) = parsed {
        return Err(format!(
            "{origin} is not an EventBridge event ({err}): it needs id, source, detail-type, \
             account, time, region, resources and detail"
        ));
    }
    for field in ["id", "source", "detail-type", "account", "time", "region"] {
        if !event.get(field).is_some_and(Value::is_string) {
            return Err(format!(
                "{origin} is not an EventBridge event: field `{field}` is missing or not a string"
            ));
        }
    }
    let spec = match &common.spec {
        None => demo_spec(),
        Some(path) => read_spec(path)?,
    };
    Ok(PreparedEvent { event, spec, root })
}

/// The emulator `--endpoint` names for a command that EMPTIES it (chaos, bench): only
/// one on this machine, never the environment's `AWS_ENDPOINT_URL` (a kept emulator
/// would be wiped unasked) and never a remote endpoint (real credentials would be
/// used); the refusal printed and its exit code otherwise.
pub(crate) fn emulator_to_empty(endpoint: Option<&str>) -> Result<Option<String>, u8> {
    match endpoint {
        Some(url) if !apiary_core::aws::is_loopback_url(url) => {
            eprintln!(
                "error: --endpoint {url} is not on this machine: this command empties the \
                 emulator it talks to and runs only against a local one; nothing was started"
            );
            Err(EXIT_REFUSED)
        }
        other => Ok(other.map(str::to_owned)),
    }
}

/// `endpoint`, or an emulator started for this command (stopped when dropped); the exit
/// code when it cannot start.
pub(crate) fn endpoint_or_emulator(
    endpoint: Option<String>,
    root: &Path,
) -> Result<(String, Option<Emulator>), u8> {
    if let Some(endpoint) = endpoint {
        return Ok((endpoint, None));
    }
    eprintln!("starting the local AWS emulator (first run installs it into .venv)…");
    match Emulator::start(root) {
        Ok(emulator) => {
            let url = emulator.endpoint().to_owned();
            eprintln!(
                "emulator at {url}; it stops when this command ends (run `scripts/emulator start` to keep one)"
            );
            Ok((url, Some(emulator)))
        }
        Err(err) => {
            eprintln!("error: the local AWS emulator could not start: {err:#}");
            Err(EXIT_ENVIRONMENT)
        }
    }
}

/// The spec in `path`, or the demo spec; the refusal printed and its exit code when the
/// file is unreadable or invalid.
pub(crate) fn spec_or_demo(path: Option<&Path>) -> Result<DeploymentSpec, u8> {
    match path {
        None => Ok(demo_spec()),
        Some(path) => read_spec(path).map_err(|refusal| {
            eprintln!("error: {refusal}; nothing was started");
            EXIT_REFUSED
        }),
    }
}

/// The AWS endpoint a local command talks to, with the state table made.
struct Connected {
    endpoint: String,
    /// The emulator this command started, stopped when dropped.
    _emulator: Option<Emulator>,
    config: aws_config::SdkConfig,
    store: Store,
}

/// `--endpoint`, `AWS_ENDPOINT_URL`, or an emulator started for this command; the exit
/// code when none is usable.
async fn connect(common: &RunArgs, spec: &DeploymentSpec, root: &Path) -> Result<Connected, u8> {
    let endpoint = common
        .endpoint
        .clone()
        .or_else(|| ProcessEnv.var("AWS_ENDPOINT_URL"));
    let (endpoint, emulator) = endpoint_or_emulator(endpoint, root)?;
    let config = apiary_core::aws::load(&AwsSettings::local(&endpoint, &spec.region)).await;
    let store = Store::new(
        apiary_core::client!(aws_sdk_dynamodb, &config),
        DEFAULT_TABLE,
    );
    if let Err(err) = store.ensure_table().await {
        eprintln!(
            "error: the AWS endpoint {endpoint} is not usable: creating the state table: {err}"
        );
        return Err(EXIT_ENVIRONMENT);
    }
    Ok(Connected {
        endpoint,
        _emulator: emulator,
        config,
        store,
    })
}

/// The `--json` document: AWS's status strings, the output or the error and cause.
pub fn document(result: &ExecutionResult) -> Value {
    let status = run_status(result);
    if result.status == ExecutionStatus::Succeeded {
        json!({
            "status": status,
            "execution_arn": result.execution_arn,
            "output": result.output.clone().unwrap_or(Value::Null),
        })
    } else {
        let (error, cause) = error_and_cause(result);
        json!({
            "status": status,
            "execution_arn": result.execution_arn,
            "error": error,
            "cause": cause,
        })
    }
}

/// The error and cause of an execution that did not succeed. AWS gives a timed-out
/// execution neither; what people read always has both.
fn error_and_cause(result: &ExecutionResult) -> (&str, &str) {
    match (result.error.as_deref(), result.status) {
        (Some(error), _) => (error, result.cause.as_deref().unwrap_or("")),
        (None, ExecutionStatus::TimedOut) => (
            "States.Timeout",
            "the execution ran longer than its TimeoutSeconds",
        ),
        (None, _) => ("States.Runtime", result.cause.as_deref().unwrap_or("")),
    }
}

/// What a person reads at the end of a run: the status, the summary of what exists, and
/// what to do about a failure.
async fn report(store: &Store, workflow: &str, deployment: &str, result: &ExecutionResult) {
    println!(
        "\nexecution {}: {}",
        result.execution_arn,
        run_status(result)
    );
    match summarize(store, deployment).await {
        Ok(summary) => print!("{}", summary.render()),
        Err(err) => eprintln!("warning: reading the inventory for the summary: {err:#}"),
    }
    if result.status == ExecutionStatus::Succeeded {
        let status = result
            .output
            .as_ref()
            .and_then(|o| o.get("status"))
            .and_then(Value::as_str);
        if let Some(status) = status {
            println!("deployment {deployment} is {status}");
        } else {
            println!("{workflow} of {deployment} SUCCEEDED");
        }
    } else {
        let (error, cause) = error_and_cause(result);
        println!("{workflow} {}: {error}: {cause}", run_status(result));
        println!(
            "fix the cause and run the same command again: finished steps are kept and not redone"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phone_home_reads_its_endpoint_and_ca_from_the_environment_or_refuses_by_name() {
        let env = || {
            let config = aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-west-2"))
                .build();
            let store = Store::new(apiary_core::client!(aws_sdk_dynamodb, &config), "t");
            LocalEnv::new(config, store, std::env::temp_dir(), None)
        };
        let vars = |pairs: &[(&'static str, &'static str)]| {
            pairs
                .iter()
                .copied()
                .collect::<std::collections::HashMap<&str, &str>>()
        };
        // Unset: off, as with an empty PhoneHomeUrl.
        assert!(phone_home(env(), &vars(&[])).unwrap().phone_home.is_none());
        let on = phone_home(
            env(),
            &vars(&[("APIARY_PHONE_HOME_URL", "https://vendor.example/v1")]),
        )
        .unwrap();
        assert_eq!(on.phone_home.unwrap().url, "https://vendor.example/v1");
        let plain = phone_home(
            env(),
            &vars(&[("APIARY_PHONE_HOME_URL", "http://vendor.example/v1")]),
        )
        .err()
        .expect("plain HTTP refused");
        assert!(
            plain.to_string().contains("APIARY_PHONE_HOME_URL"),
            "{plain}"
        );
        let no_ca = phone_home(
            env(),
            &vars(&[
                ("APIARY_PHONE_HOME_URL", "https://localhost:1/v1"),
                ("APIARY_PHONE_HOME_CA_FILE", "/nonexistent/ca.pem"),
            ]),
        )
        .err()
        .expect("an unreadable CA file refused");
        assert!(
            no_ca.to_string().contains("APIARY_PHONE_HOME_CA_FILE"),
            "{no_ca}"
        );
    }

    #[test]
    fn an_event_file_that_is_not_an_eventbridge_event_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("apiary-event-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let common = RunArgs {
            spec: None,
            endpoint: None,
            state_dir: dir.clone(),
            history: None,
        };
        let refused = |text: &str| {
            let file = dir.join("event.json");
            std::fs::write(&file, text).unwrap();
            match prepare_event(file.to_str().unwrap(), &common) {
                Ok(_) => panic!("{text} was accepted"),
                Err(refusal) => refusal,
            }
        };
        assert!(refused("{nope").contains("is not valid JSON"));
        let no_source = refused(
            r#"{"id": "1", "detail-type": "x", "account": "1", "time": "2026-12-01T00:00:00Z", "region": "us-west-2", "detail": {}}"#,
        );
        assert!(no_source.contains("`source`"), "{no_source}");
        let sample = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events/rds-low-storage.json"),
        )
        .unwrap();
        let file = dir.join("sample.json");
        std::fs::write(&file, sample).unwrap();
        // The project root is found from the current directory, inside the clone.
        let prepared = prepare_event(file.to_str().unwrap(), &common).unwrap();
        assert_eq!(prepared.event["source"], "aws.rds");
        assert!(refused("").contains("is not valid JSON"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_stack_delete_workflow_is_not_offered_or_run_by_hand() {
        let common = RunArgs {
            spec: None,
            endpoint: None,
            state_dir: std::env::temp_dir(),
            history: None,
        };
        let refused = match prepare("stack-delete", &common, None, None) {
            Ok(_) => panic!("stack-delete was accepted"),
            Err(refusal) => refusal,
        };
        assert!(refused.contains("not run by hand"), "{refused}");
        assert!(refused.contains("local run teardown"), "{refused}");
        // The project root is found from the current directory, inside the clone.
        let root = project_root(&ProcessEnv).unwrap();
        let offered = workflows(&root);
        assert!(offered.contains(&"teardown".to_owned()), "{offered:?}");
        assert!(!offered.contains(&"stack-delete".to_owned()), "{offered:?}");
    }

    #[test]
    fn inputs_merge_over_what_the_workflow_needs() {
        let spec = demo_spec();
        assert_eq!(
            apiary::local::base_input("provision", &spec)["spec"]["name"],
            "demo"
        );
        assert_eq!(
            apiary::local::base_input("teardown", &spec),
            json!({"deployment": "demo"})
        );
        assert_eq!(parse_input("{\"a\": 1}").unwrap(), json!({"a": 1}));
        let err = parse_input("{nope").unwrap_err();
        assert!(err.contains("--input is not valid JSON"), "{err}");
        let err = parse_input("@/nonexistent/input.json").unwrap_err();
        assert!(err.contains("cannot read /nonexistent/input.json"), "{err}");
    }
}
