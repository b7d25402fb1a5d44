//! The chaos suite: provision and every day-2 workflow, then teardown, run through the
//! fault-injecting proxy (`apiary-proxy`) once per seed, re-running a failed workflow
//! as an operator would, and checked for what real AWS would have left behind: leaked
//! resources (present in the account, absent from the inventory and not kept by a
//! teardown on purpose) and duplicates (more of a kind than a fault-free run makes).
//!
//! Each seed starts from an empty emulator (moto's reset), runs on one virtual clock
//! shared by the proxy (resources stay creating for their AWS duration divided by the
//! time scale, which costs no wall time), and reads the account directly, past the
//! proxy, to judge it.

pub mod census;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use apiary_asl::{Clock, ExecutionStatus};
use apiary_core::aws::AwsSettings;
use apiary_core::spec::DeploymentSpec;
use apiary_core::store::{DEFAULT_TABLE, Store};
use apiary_proxy::{Config, Proxy, Report};
use serde_json::{Value, json};

use crate::local::LocalEnv;

/// How a chaos run is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The emulator (never the proxy).
    pub endpoint: String,
    pub root: PathBuf,
    pub spec: DeploymentSpec,
    /// The share of calls that meet a fault.
    pub rate: f64,
    /// AWS durations divided by this; `None`: everything ready at once.
    pub time_scale: Option<f64>,
    /// Runs of one workflow before it counts as not converging.
    pub max_runs: u32,
    /// The workflows, in order (see [`sequence`]).
    pub workflows: Vec<String>,
    /// The SDK's attempt timeout under chaos: a late answer costs this much.
    pub attempt_timeout: Duration,
    /// Operations whose idempotency token the proxy removes (the canary).
    pub strip_tokens: Vec<String>,
    /// Faults forced at given calls (operation, n-th call, fault), for tests.
    pub forced: Vec<(String, u64, apiary_proxy::Fault)>,
    /// Where each failed run's history is written (`seed<N>-<workflow>-<run>.json`).
    pub history: Option<PathBuf>,
}

impl Options {
    pub fn new(endpoint: &str, root: &Path, spec: DeploymentSpec) -> Options {
        Options {
            endpoint: endpoint.to_owned(),
            root: root.to_owned(),
            spec,
            rate: 0.10,
            time_scale: Some(1.0),
            max_runs: 5,
            workflows: WORKFLOWS.iter().map(|w| (*w).to_owned()).collect(),
            attempt_timeout: Duration::from_secs(1),
            strip_tokens: Vec::new(),
            forced: Vec::new(),
            history: None,
        }
    }
}

/// Provision, each day-2 workflow, teardown.
pub const WORKFLOWS: &[&str] = &[
    "provision",
    "backup",
    "restore-test",
    "rotate-keys",
    "scale-pools",
    "upgrade",
    "drift",
    "handle-alert",
    "teardown",
];

/// The input each workflow gets in a chaos run.
pub fn input(workflow: &str, spec: &DeploymentSpec, root: &Path) -> anyhow::Result<Value> {
    let name = &spec.name;
    Ok(match workflow {
        "provision" => json!({"spec": spec}),
        "rotate-keys" => json!({"deployment": name, "on_demand": true}),
        "scale-pools" => {
            json!({"deployment": name, "pool": "system", "min": 2, "max": 6, "desired": 3})
        }
        "upgrade" => {
            json!({"deployment": name, "image": "public.ecr.aws/honeyhive/ingestion:1.1.0"})
        }
        "handle-alert" => {
            let path = root.join("examples/events/rds-low-storage.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let event: Value =
                serde_json::from_str(&text.replace("apiary-demo-", &format!("apiary-{name}-")))
                    .with_context(|| format!("{} is not JSON", path.display()))?;
            json!({"deployment": name, "event": event})
        }
        "teardown" => json!({"deployment": name, "confirm": name}),
        _ => json!({"deployment": name}),
    })
}

/// One workflow of a seed: how many runs it took and how the last ended.
#[derive(Debug, Clone)]
pub struct WorkflowRuns {
    pub workflow: String,
    pub runs: u32,
    pub succeeded: bool,
    /// The error and cause of each failed run, in order.
    pub failures: Vec<String>,
}

/// What one seed found.
#[derive(Debug, Clone)]
pub struct SeedResult {
    pub seed: u64,
    pub workflows: Vec<WorkflowRuns>,
    /// Resources in the account the inventory does not record (`kind id`).
    pub leaked: Vec<String>,
    /// Kinds with more resources than the fault-free run made (`kind +n`).
    pub duplicates: Vec<String>,
    pub proxy: Report,
    pub seconds: f64,
    /// How many of each kind exist after each workflow (the fault-free run's figures
    /// are what later seeds compare with).
    pub counts: Vec<BTreeMap<&'static str, usize>>,
}

impl SeedResult {
    pub fn converged(&self) -> bool {
        self.workflows.iter().all(|w| w.succeeded)
    }

    pub fn clean(&self) -> bool {
        self.converged() && self.leaked.is_empty() && self.duplicates.is_empty()
    }

    /// The seed's table: one line per workflow, then what it left.
    pub fn render(&self) -> String {
        let mut out = format!(
            "seed {:<4} {:>6.1} s  {} calls, {} faults ({}), {} answers held creating, {} token repeats answered\n",
            self.seed,
            self.seconds,
            self.proxy.calls,
            self.proxy.faults_total(),
            self.proxy
                .faults
                .iter()
                .map(|(f, n)| format!("{} {n}", f.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            self.proxy.held_creating,
            self.proxy.replayed,
        );
        out.push_str(&format!(
            "  {:<14} {:<11} {:>4}  {}\n",
            "workflow", "outcome", "runs", "failed runs"
        ));
        for w in &self.workflows {
            out.push_str(&format!(
                "  {:<14} {:<11} {:>4}  {}\n",
                w.workflow,
                if w.succeeded { "succeeded" } else { "FAILED" },
                w.runs,
                w.failures.join(" | ")
            ));
        }
        out.push_str(&format!(
            "  leaked {}{}  duplicates {}{}\n",
            self.leaked.len(),
            list(&self.leaked),
            self.duplicates.len(),
            list(&self.duplicates),
        ));
        out
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({})", items.join(", "))
    }
}

/// Runs one seed on an emptied emulator. `expected`: the per-workflow counts of a
/// fault-free run (`None` for that run itself).
pub async fn run_seed(
    options: &Options,
    seed: u64,
    rate: f64,
    expected: Option<&[BTreeMap<&'static str, usize>]>,
) -> anyhow::Result<SeedResult> {
    let started = Instant::now();
    let name = options.spec.name.clone();
    let region = options.spec.region.clone();
    apiary_proxy::reset_emulator(&options.endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("resetting the emulator at {}: {e}", options.endpoint))?;

    // The account as the bootstrap stack leaves it, read directly.
    let direct = apiary_core::aws::load(&AwsSettings::local(&options.endpoint, &region)).await;
    let direct_store = Store::new(
        apiary_core::client!(aws_sdk_dynamodb, &direct),
        DEFAULT_TABLE,
    );
    direct_store
        .ensure_table()
        .await
        .context("creating the state table")?;
    let state_dir =
        std::env::temp_dir().join(format!("apiary-chaos-{}-{seed}", std::process::id()));
    let setup = LocalEnv::new(
        direct.clone(),
        direct_store.clone(),
        state_dir.clone(),
        None,
    );
    for workflow in &options.workflows {
        setup.prepare(workflow, &name).await;
    }
    let baseline = census::take(&direct)
        .await
        .context("reading the account before the runs")?;

    let clock = Clock::virtual_now();
    let now = {
        let clock = clock.clone();
        Arc::new(move || clock.now())
    };
    let proxy = Proxy::start(Config {
        upstream: options.endpoint.clone(),
        seed,
        read_rate: rate,
        write_rate: rate,
        lag_rate: rate,
        late_by: options.attempt_timeout + Duration::from_millis(250),
        time_scale: options.time_scale,
        now,
        strip_tokens: options.strip_tokens.clone(),
        forced: options.forced.clone(),
        crash_after_writes: None,
    })
    .await?;
    let mut settings = AwsSettings::local(&proxy.url(), &region);
    settings.attempt_timeout = options.attempt_timeout;
    let config = apiary_core::aws::load(&settings).await;
    let store = Store::new(
        apiary_core::client!(aws_sdk_dynamodb, &config),
        DEFAULT_TABLE,
    );
    let env = LocalEnv::new(config, store, state_dir.clone(), None).with_clock(clock);

    let mut workflows = Vec::new();
    let mut counts = Vec::new();
    let mut duplicates = Vec::new();
    for (index, workflow) in options.workflows.iter().enumerate() {
        let machine = env.load(&options.root, workflow)?;
        let input = input(workflow, &options.spec, &options.root)?;
        let mut runs = WorkflowRuns {
            workflow: workflow.clone(),
            runs: 0,
            succeeded: false,
            failures: Vec::new(),
        };
        while runs.runs < options.max_runs && !runs.succeeded {
            runs.runs += 1;
            let result = env
                .run(
                    &machine,
                    workflow,
                    &name,
                    input.clone(),
                    format!("{workflow}-{name}-seed{seed}-{}", runs.runs),
                    None,
                )
                .await;
            if result.status == ExecutionStatus::Succeeded {
                runs.succeeded = true;
            } else {
                if let Some(dir) = &options.history {
                    let path = dir.join(format!("seed{seed}-{workflow}-{}.json", runs.runs));
                    if let Err(err) = crate::local::write_history(&result, &path) {
                        eprintln!("warning: the history of a failed run: {err:#}");
                    }
                }
                runs.failures.push(format!(
                    "{}: {}",
                    result.error.as_deref().unwrap_or("?"),
                    first_line(result.cause.as_deref().unwrap_or(""))
                ));
            }
        }
        let found = census::take(&direct).await.context("reading the account")?;
        let now: BTreeSet<_> = found.difference(&baseline).cloned().collect();
        let count = census::counts(&now);
        if let Some(expected) = expected.and_then(|e| e.get(index)) {
            for (kind, n) in &count {
                let want = expected.get(kind).copied().unwrap_or(0);
                if *n > want {
                    duplicates.push(format!("{kind} +{} after {workflow}", n - want));
                }
            }
        }
        counts.push(count);
        let converged = runs.succeeded;
        workflows.push(runs);
        if !converged {
            break;
        }
    }

    let found = census::take(&direct).await.context("reading the account")?;
    // Recorded: in the inventory, or kept on purpose by a teardown (its receipt says why).
    let mut recorded: BTreeSet<String> = direct_store
        .inventory(&name)
        .await
        .context("reading the inventory")?
        .into_iter()
        .flat_map(|r| [Some(r.id), r.arn].into_iter().flatten())
        .collect();
    for kept in teardown::kept(&direct_store, &name)
        .await
        .context("reading the teardown's reports")?
    {
        recorded.extend(kept.resource.split_once(' ').map(|(_, id)| id.to_owned()));
        recorded.extend(kept.arn);
    }
    let leaked = found
        .difference(&baseline)
        .filter(|f| !f.names.iter().any(|n| recorded.contains(n)))
        .map(|f| format!("{} {}", f.kind, f.id()))
        .collect();
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(SeedResult {
        seed,
        workflows,
        leaked,
        duplicates,
        proxy: proxy.report(),
        seconds: started.elapsed().as_secs_f64(),
        counts,
    })
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut short: String = line.chars().take(160).collect();
    if line.chars().count() > 160 {
        short.push('…');
    }
    short
}
