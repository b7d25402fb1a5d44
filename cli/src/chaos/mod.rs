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

pub mod bench;
pub mod census;
pub mod races;

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
    /// AWS durations divided by this; `None`: everything ready at once.
    pub time_scale: Option<f64>,
    /// Runs of one workflow before it counts as not converging.
    pub max_runs: u32,
    /// The workflows, in order (by default [`WORKFLOWS`]).
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
            time_scale: Some(1.0),
            max_runs: 5,
            workflows: WORKFLOWS.iter().map(|w| (*w).to_owned()).collect(),
            attempt_timeout: Duration::from_secs(1),
            strip_tokens: Vec::new(),
            forced: Vec::new(),
            history: None,
        }
    }

    /// The same runs with nothing forced or stripped and the SDK's own attempt timeout:
    /// the fault-free run every seed compares with.
    pub fn fault_free(&self) -> Options {
        Options {
            forced: Vec::new(),
            strip_tokens: Vec::new(),
            attempt_timeout: apiary_core::aws::DEFAULT_ATTEMPT_TIMEOUT,
            ..self.clone()
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

/// The input each workflow gets in a chaos run: what it needs from the spec, and for
/// some of them what an operator would ask for.
pub fn input(workflow: &str, spec: &DeploymentSpec, root: &Path) -> anyhow::Result<Value> {
    let name = &spec.name;
    Ok(match workflow {
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
        _ => crate::local::base_input(workflow, spec),
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
    /// Leaked, duplicates (`kind +n after w`) and missing (`kind -n after w`, after a
    /// workflow that succeeded) after each workflow.
    pub judged: Judged,
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
        self.converged() && self.judged.clean()
    }

    /// The seed's table: one line per workflow, then what it left.
    pub fn render(&self) -> String {
        let mut out = format!(
            "seed {:<4} {:>6.1} s  {} calls ({} given up by the caller), {} faults ({}), {} answers held creating, {} token repeats answered\n",
            self.seed,
            self.seconds,
            self.proxy.calls,
            self.proxy.abandoned,
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
        out.push_str(&format!("  {}\n", self.judged.render()));
        out
    }
}

/// What an account holds against what it should.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judged {
    /// Resources in the account that the inventory does not record and no teardown kept
    /// on purpose (`kind id`).
    pub leaked: Vec<String>,
    /// Kinds with more resources than the fault-free run made (`kind +n`; a seed adds
    /// `after <workflow>`).
    pub duplicates: Vec<String>,
    /// Kinds with fewer resources than the fault-free run made (`kind -n after w`).
    pub missing: Vec<String>,
}

impl Judged {
    pub fn clean(&self) -> bool {
        self.leaked.is_empty() && self.duplicates.is_empty() && self.missing.is_empty()
    }

    /// `leaked N (…)  duplicates N (…)  missing N (…)`.
    pub fn render(&self) -> String {
        format!(
            "leaked {}{}  duplicates {}{}  missing {}{}",
            self.leaked.len(),
            list(&self.leaked),
            self.duplicates.len(),
            list(&self.duplicates),
            self.missing.len(),
            list(&self.missing),
        )
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({})", items.join(", "))
    }
}

/// An emptied account, as the bootstrap stack leaves it, read directly (never through
/// the proxy): what the runs start from and are judged against.
struct Account {
    direct: aws_config::SdkConfig,
    store: Store,
    baseline: BTreeSet<census::Found>,
    state_dir: PathBuf,
    name: String,
}

impl Account {
    async fn fresh(options: &Options, label: &str) -> anyhow::Result<Account> {
        let name = options.spec.name.clone();
        apiary_proxy::reset_emulator(&options.endpoint)
            .await
            .map_err(|e| anyhow::anyhow!("emptying the emulator at {}: {e}", options.endpoint))?;
        let direct =
            apiary_core::aws::load(&AwsSettings::local(&options.endpoint, &options.spec.region))
                .await;
        let store = Store::new(
            apiary_core::client!(aws_sdk_dynamodb, &direct),
            DEFAULT_TABLE,
        );
        store
            .ensure_table()
            .await
            .context("creating the state table")?;
        let state_dir =
            std::env::temp_dir().join(format!("apiary-chaos-{}-{label}", std::process::id()));
        let setup = LocalEnv::new(direct.clone(), store.clone(), state_dir.clone(), None);
        for workflow in &options.workflows {
            setup.prepare(workflow, &name).await;
        }
        let baseline = census::take(&direct)
            .await
            .context("reading the account before the runs")?;
        Ok(Account {
            direct,
            store,
            baseline,
            state_dir,
            name,
        })
    }

    /// How many of each kind the runs made.
    async fn counts(&self) -> anyhow::Result<BTreeMap<&'static str, usize>> {
        let found = census::take(&self.direct)
            .await
            .context("reading the account")?;
        Ok(census::counts(
            &found.difference(&self.baseline).cloned().collect(),
        ))
    }

    /// What the runs made that is neither in the inventory nor kept on purpose by a
    /// teardown (its receipt says why).
    async fn leaked(&self) -> anyhow::Result<Vec<String>> {
        let found = census::take(&self.direct)
            .await
            .context("reading the account")?;
        let mut recorded: BTreeSet<String> = self
            .store
            .inventory(&self.name)
            .await
            .context("reading the inventory")?
            .into_iter()
            .flat_map(|r| [Some(r.id), r.arn].into_iter().flatten())
            .collect();
        for kept in teardown::kept(&self.store, &self.name)
            .await
            .context("reading the teardown's reports")?
        {
            recorded.extend(kept.resource.split_once(' ').map(|(_, id)| id.to_owned()));
            recorded.extend(kept.arn);
        }
        Ok(found
            .difference(&self.baseline)
            .filter(|f| !f.names.iter().any(|n| recorded.contains(n)))
            .map(|f| format!("{} {}", f.kind, f.id()))
            .collect())
    }
}

impl Account {
    /// The account now against `expected`, the counts of a fault-free `workflow`.
    async fn judge(
        &self,
        expected: &BTreeMap<&'static str, usize>,
        workflow: &str,
    ) -> anyhow::Result<Judged> {
        let count = self.counts().await?;
        let (more, missing) = compare(&count, expected, workflow);
        Ok(Judged {
            leaked: self.leaked().await?,
            duplicates: more
                .into_iter()
                .map(|(kind, n)| format!("{kind} +{n}"))
                .collect(),
            missing,
        })
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// How a count differs from `expected`: kinds with more (`kind +n after <workflow>`)
/// and kinds with fewer (`kind -n after <workflow>`).
fn compare(
    count: &BTreeMap<&'static str, usize>,
    expected: &BTreeMap<&'static str, usize>,
    workflow: &str,
) -> (BTreeMap<&'static str, usize>, Vec<String>) {
    let mut more = BTreeMap::new();
    let mut fewer = Vec::new();
    for kind in count.keys().chain(expected.keys()) {
        let (n, want) = (
            count.get(kind).copied().unwrap_or(0),
            expected.get(kind).copied().unwrap_or(0),
        );
        if n > want {
            more.insert(*kind, n - want);
        } else if n < want
            && !fewer
                .iter()
                .any(|f: &String| f.starts_with(&format!("{kind} ")))
        {
            fewer.push(format!("{kind} -{} after {workflow}", want - n));
        }
    }
    (more, fewer)
}

/// Runs `workflow` until it succeeds or `max_runs` ran; each failure is kept (and its
/// history written when asked).
async fn run_until_done(
    env: &LocalEnv,
    options: &Options,
    workflow: &str,
    label: &str,
) -> anyhow::Result<WorkflowRuns> {
    let name = &options.spec.name;
    let machine = env.load(&options.root, workflow)?;
    let input = input(workflow, &options.spec, &options.root)?;
    let mut runs = WorkflowRuns {
        workflow: workflow.to_owned(),
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
                name,
                input.clone(),
                format!("{workflow}-{name}-{label}-{}", runs.runs),
                None,
            )
            .await;
        if result.status == ExecutionStatus::Succeeded {
            runs.succeeded = true;
            continue;
        }
        if let Some(dir) = &options.history {
            let path = dir.join(format!("{label}-{workflow}-{}.json", runs.runs));
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
    Ok(runs)
}

/// A proxy in front of the emulator with this seed's faults and AWS's timing on a new
/// virtual clock, and the local runner that goes through it on that clock.
async fn through_proxy(
    options: &Options,
    account: &Account,
    seed: u64,
    rate: f64,
) -> anyhow::Result<(Proxy, LocalEnv)> {
    let clock = Clock::virtual_now();
    let now = {
        let clock = clock.clone();
        Arc::new(move || clock.now())
    };
    let proxy = Proxy::start(Config {
        seed,
        read_rate: rate,
        write_rate: rate,
        lag_rate: rate,
        late_by: options.attempt_timeout + Duration::from_millis(250),
        time_scale: options.time_scale,
        now,
        strip_tokens: options.strip_tokens.clone(),
        forced: options.forced.clone(),
        ..Config::passthrough(&options.endpoint)
    })
    .await?;
    let mut settings = AwsSettings::local(&proxy.url(), &options.spec.region);
    settings.attempt_timeout = options.attempt_timeout;
    let config = apiary_core::aws::load(&settings).await;
    let store = Store::new(
        apiary_core::client!(aws_sdk_dynamodb, &config),
        DEFAULT_TABLE,
    );
    let env = LocalEnv::new(config, store, account.state_dir.clone(), None).with_clock(clock);
    Ok((proxy, env))
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
    let label = format!("seed{seed}");
    let account = Account::fresh(options, &label).await?;
    let (proxy, env) = through_proxy(options, &account, seed, rate).await?;

    let mut workflows = Vec::new();
    let mut counts = Vec::new();
    let mut duplicates = Vec::new();
    let mut missing = Vec::new();
    // The excess already reported per kind: a duplicate is named once, after the
    // workflow that made it.
    let mut reported: BTreeMap<&'static str, usize> = BTreeMap::new();
    // Judged after every workflow: a teardown's sweep by tag would hide a gap in the
    // inventory that a later workflow cleans up.
    let mut leaked = BTreeSet::new();
    for (index, workflow) in options.workflows.iter().enumerate() {
        let runs = run_until_done(&env, options, workflow, &label).await?;
        let count = account.counts().await?;
        if let Some(expected) = expected.and_then(|e| e.get(index)) {
            let (more, fewer) = compare(&count, expected, workflow);
            for (kind, n) in more {
                let before = reported.insert(kind, n).unwrap_or(0);
                if n > before {
                    duplicates.push(format!("{kind} +{} after {workflow}", n - before));
                }
            }
            if runs.succeeded {
                missing.extend(fewer);
            }
        }
        leaked.extend(account.leaked().await?);
        counts.push(count);
        let converged = runs.succeeded;
        workflows.push(runs);
        if !converged {
            break;
        }
    }
    let report = proxy.report();
    proxy.stop(Duration::from_secs(30)).await;
    Ok(SeedResult {
        seed,
        workflows,
        judged: Judged {
            leaked: leaked.into_iter().collect(),
            duplicates,
            missing,
        },
        proxy: report,
        seconds: started.elapsed().as_secs_f64(),
        counts,
    })
}

/// One crash point: the local run was killed right after its `write`-th write took
/// effect (`operation`), then run again.
#[derive(Debug, Clone)]
pub struct CrashResult {
    pub write: u64,
    pub operation: String,
    /// The killed run ended by itself before reaching that write.
    pub ended_before: bool,
    pub rerun: WorkflowRuns,
    /// With `ended_before`: how that run ended (it must have succeeded).
    pub ended: Option<String>,
    pub judged: Judged,
    pub seconds: f64,
}

impl CrashResult {
    pub fn clean(&self) -> bool {
        self.rerun.succeeded
            && self.judged.clean()
            && (!self.ended_before || self.ended.as_deref() == Some("succeeded"))
    }

    pub fn render(&self) -> String {
        format!(
            "killed after write {:<4} {:<36} re-run {} in {} run(s){}  {}  {:.1} s",
            self.write,
            if self.ended_before {
                format!(
                    "(the run ended before it: {})",
                    self.ended.as_deref().unwrap_or("?")
                )
            } else {
                self.operation.clone()
            },
            if self.rerun.succeeded {
                "succeeded"
            } else {
                "FAILED"
            },
            self.rerun.runs,
            if self.rerun.failures.is_empty() {
                String::new()
            } else {
                format!(" [{}]", self.rerun.failures.join(" | "))
            },
            self.judged.render(),
            self.seconds,
        )
    }
}

/// Kills `binary local run <workflow>` (a separate process, as an operator's would be)
/// right after its `write`-th write took effect in the emulator, then runs the workflow
/// again in this process and judges the account: the dead run's lock must not block
/// the new one, and nothing may be leaked or made twice. `expected`: the counts of a
/// fault-free run of `workflow`.
pub async fn crash_at(
    options: &Options,
    binary: &Path,
    workflow: &str,
    write: u64,
    expected: &BTreeMap<&'static str, usize>,
) -> anyhow::Result<CrashResult> {
    let started = Instant::now();
    let label = format!("crash{write}");
    let account = Account::fresh(options, &label).await?;
    let proxy = Proxy::start(Config {
        crash_after_writes: Some(write),
        ..Config::passthrough(&options.endpoint)
    })
    .await?;
    std::fs::create_dir_all(&account.state_dir)?;
    let spec_file = account.state_dir.join("spec.json");
    std::fs::write(&spec_file, serde_json::to_vec(&options.spec)?)?;
    let log = account.state_dir.join("killed-run.log");
    let mut child = tokio::process::Command::new(binary)
        .args(["local", "run", workflow, "--json", "--endpoint"])
        .arg(proxy.url())
        .arg("--spec")
        .arg(&spec_file)
        .arg("--state-dir")
        .arg(&account.state_dir)
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let exit = tokio::select! {
        _ = proxy.crashed() => None,
        status = child.wait() => Some(status),
    };
    let ended_before = exit.is_some();
    let ended = match exit {
        None => {
            // SIGKILL: nothing of the run's own cleanup happens.
            child.kill().await.context("killing the run")?;
            None
        }
        Some(Ok(status)) if status.success() => Some("succeeded".to_owned()),
        Some(status) => Some(format!(
            "{status:?}; its output: {}",
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .last()
                .unwrap_or("")
        )),
    };
    let operation = proxy.report().crashed_after.unwrap_or_default();
    // The killed run's calls still with the emulator land before the re-run starts.
    proxy.stop(Duration::from_secs(30)).await;

    // The operator runs it again: directly against the account, a new process's view.
    let env = LocalEnv::new(
        account.direct.clone(),
        account.store.clone(),
        account.state_dir.clone(),
        None,
    );
    let rerun = run_until_done(&env, options, workflow, &label).await?;
    Ok(CrashResult {
        write,
        operation,
        ended_before,
        ended,
        judged: account.judge(expected, workflow).await?,
        rerun,
        seconds: started.elapsed().as_secs_f64(),
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
