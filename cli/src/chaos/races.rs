//! Two workflows at once on one deployment, through the proxy with a seed's faults and
//! AWS's timing: the deployment's lock must keep them apart (the run that finds it held
//! fails at once with `Apiary.Conflict`, or waits when its input asks to queue, as the
//! launch resource's do), and the account must end as if they had run one after the
//! other: nothing leaked, nothing made twice, nothing missing.
//!
//! The second run starts once the first holds the lock, so each race meets the lock the
//! same way on every seed; the faults and the timing are what vary.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use apiary_asl::{ExecutionResult, ExecutionStatus};
use serde_json::Value;

use super::{Account, Judged, Options, WorkflowRuns, first_line, input, run_until_done};
use crate::local::LocalEnv;

/// One way two workflows meet on a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    /// Two provisions at once, neither queued: one runs, the other is refused with
    /// `Apiary.Conflict`.
    TwoProvisions,
    /// Two provisions at once, the second queued (as the launch resource's update is):
    /// it waits for the first, then finds everything made.
    QueuedProvision,
    /// The stack deleted while it provisions: a teardown queued behind the provision (as
    /// the launch resource's delete is), which then removes everything.
    TeardownWhileProvisioning,
    /// A provisioned deployment: a teardown and a provision at once, neither queued;
    /// the provision is refused and the teardown removes everything.
    ProvisionWhileTearingDown,
}

/// Every race, in the order `apiary chaos --races` runs them.
pub const RACES: [Race; 4] = [
    Race::TwoProvisions,
    Race::QueuedProvision,
    Race::TeardownWhileProvisioning,
    Race::ProvisionWhileTearingDown,
];

impl Race {
    pub fn as_str(self) -> &'static str {
        match self {
            Race::TwoProvisions => "two-provisions",
            Race::QueuedProvision => "queued-provision",
            Race::TeardownWhileProvisioning => "teardown-while-provisioning",
            Race::ProvisionWhileTearingDown => "provision-while-tearing-down",
        }
    }

    /// The first workflow, the second, and whether the second queues.
    fn runs(self) -> (&'static str, &'static str, bool) {
        match self {
            Race::TwoProvisions => ("provision", "provision", false),
            Race::QueuedProvision => ("provision", "provision", true),
            Race::TeardownWhileProvisioning => ("provision", "teardown", true),
            Race::ProvisionWhileTearingDown => ("teardown", "provision", false),
        }
    }

    /// The workflow whose end state the account must reach.
    fn ends_with(self) -> &'static str {
        match self {
            Race::TwoProvisions | Race::QueuedProvision => "provision",
            Race::TeardownWhileProvisioning | Race::ProvisionWhileTearingDown => "teardown",
        }
    }
}

impl std::str::FromStr for Race {
    type Err = String;

    fn from_str(text: &str) -> Result<Race, String> {
        RACES
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown race {text:?}; one of {}",
                    RACES.map(Race::as_str).join(", ")
                )
            })
    }
}

/// What a fault-free provision and teardown leave: the counts each race's end is
/// compared with.
#[derive(Debug, Clone)]
pub struct Expected {
    pub provisioned: BTreeMap<&'static str, usize>,
    pub torn_down: BTreeMap<&'static str, usize>,
}

/// What one race found.
#[derive(Debug, Clone)]
pub struct RaceResult {
    pub race: Race,
    pub seed: u64,
    /// How the first and the second run ended.
    pub first: String,
    pub second: String,
    /// What the lock should have made of the two runs and did not.
    pub problems: Vec<String>,
    /// The operator's runs afterwards, until the account reached the race's end.
    pub after: Option<WorkflowRuns>,
    pub judged: Judged,
    pub seconds: f64,
}

impl RaceResult {
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
            && self.after.as_ref().is_none_or(|a| a.succeeded)
            && self.judged.clean()
    }

    pub fn render(&self) -> String {
        format!(
            "race {:<29} seed {:<3} first {}; second {}{}{}  {}  {:.1} s",
            self.race.as_str(),
            self.seed,
            self.first,
            self.second,
            self.after
                .as_ref()
                .map(|a| format!(
                    "; then {} {} in {} run(s)",
                    a.workflow,
                    if a.succeeded { "succeeded" } else { "FAILED" },
                    a.runs
                ))
                .unwrap_or_default(),
            if self.problems.is_empty() {
                String::new()
            } else {
                format!("  PROBLEMS: {}", self.problems.join("; "))
            },
            self.judged.render(),
            self.seconds,
        )
    }
}

/// Runs `race` on an emptied emulator with `seed`'s faults at `rate`.
pub async fn run_race(
    options: &Options,
    race: Race,
    seed: u64,
    rate: f64,
    expected: &Expected,
) -> anyhow::Result<RaceResult> {
    let started = Instant::now();
    let label = format!("{}-seed{seed}", race.as_str());
    let account = Account::fresh(options, &label).await?;
    let (proxy, env) = super::through_proxy(options, &account, seed, rate).await?;
    let mut problems = Vec::new();

    if race == Race::ProvisionWhileTearingDown {
        let before = run_until_done(&env, options, "provision", &format!("{label}-before")).await?;
        if !before.succeeded {
            problems.push(format!(
                "the provision before the race did not converge: {}",
                before.failures.join(" | ")
            ));
        }
    }
    let (first_workflow, second_workflow, queue) = race.runs();
    let name = options.spec.name.clone();
    let (first_label, second_label) = (format!("{label}-1"), format!("{label}-2"));
    let first = one_run(&env, options, first_workflow, false, &first_label);
    let second = async {
        held(&account, &name).await;
        one_run(&env, options, second_workflow, queue, &second_label).await
    };
    let (first, second) = tokio::join!(first, second);
    let (first, second) = (first?, second?);

    // What the lock must have made of them.
    let refused = |r: &ExecutionResult| {
        r.status == ExecutionStatus::Failed && r.error.as_deref() == Some("Apiary.Conflict")
    };
    if queue {
        if !waited(&second) {
            problems.push(format!(
                "the queued {second_workflow} never waited for the lock the {first_workflow} held"
            ));
        }
        if refused(&second) {
            problems.push(format!(
                "the queued {second_workflow} was refused instead of waiting"
            ));
        }
    } else if !refused(&second) {
        problems.push(format!(
            "the {second_workflow} started while the {first_workflow} held the lock was not \
             refused with Apiary.Conflict ({})",
            outcome(&second)
        ));
    }

    // The operator then takes the deployment to the race's end: the last run of the
    // workflow meant to win decides; when it failed, that workflow runs again until it
    // succeeds.
    let goal = race.ends_with();
    let deciding = if second_workflow == goal && !refused(&second) {
        &second
    } else {
        &first
    };
    let after = if succeeded(deciding) {
        None
    } else {
        Some(run_until_done(&env, options, goal, &format!("{label}-after")).await?)
    };
    proxy.stop(Duration::from_secs(30)).await;

    let want = if goal == "provision" {
        &expected.provisioned
    } else {
        &expected.torn_down
    };
    Ok(RaceResult {
        race,
        seed,
        first: format!("{first_workflow} {}", outcome(&first)),
        second: format!(
            "{second_workflow}{} {}",
            if queue { " (queued)" } else { "" },
            outcome(&second)
        ),
        problems,
        after,
        judged: account.judge(want, goal).await?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One run of `workflow`, queued behind the lock's holder or not.
async fn one_run(
    env: &LocalEnv,
    options: &Options,
    workflow: &str,
    queue: bool,
    label: &str,
) -> anyhow::Result<ExecutionResult> {
    let machine = env.load(&options.root, workflow)?;
    let mut input = input(workflow, &options.spec, &options.root)?;
    if queue {
        input["queue"] = Value::Bool(true);
    }
    let name = &options.spec.name;
    Ok(env
        .run(
            &machine,
            workflow,
            name,
            input,
            format!("{workflow}-{name}-{label}"),
            None,
        )
        .await)
}

/// Returns once the deployment's lock is held (or after a minute of wall time, when the
/// first run ended before it took it: the second then meets no lock, which the checks
/// report).
async fn held(account: &Account, deployment: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = account.store.current_lock(deployment).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the run waited for the lock at least once (its `LockSleep` state).
fn waited(result: &ExecutionResult) -> bool {
    result
        .history
        .iter()
        .any(|e| e.event_type == "WaitStateEntered" && e.state_name() == Some("LockSleep"))
}

fn succeeded(result: &ExecutionResult) -> bool {
    result.status == ExecutionStatus::Succeeded
}

fn outcome(result: &ExecutionResult) -> String {
    if succeeded(result) {
        "succeeded".to_owned()
    } else {
        format!(
            "{}: {}",
            result.error.as_deref().unwrap_or(result.status.as_str()),
            first_line(result.cause.as_deref().unwrap_or(""))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_race_reads_back_from_its_name() {
        for race in RACES {
            assert_eq!(race.as_str().parse::<Race>(), Ok(race));
        }
        let err = "both".parse::<Race>().unwrap_err();
        assert!(err.contains("two-provisions"), "{err}");
    }
}
