//! The upgrade workflow's paths in the embedded engine with scripted functions: an
//! image rolls and is recorded; a failed rollout is rolled back and the run fails with
//! both what failed and what the rollback did; a failed rollback says so too; a version
//! upgrade never touches the pods.

use crate::common;

use apiary_asl::ExecutionStatus;
use apiary_workflows::Workflow;
use common::Script;
use serde_json::{Value, json};

fn upgrade() -> Workflow {
    apiary_workflows::all()
        .into_iter()
        .find(|w| w.name == "upgrade")
        .unwrap()
}

fn sent(calls: &common::Calls) -> Vec<(String, String)> {
    calls
        .lock()
        .unwrap()
        .iter()
        .map(|(f, e)| (f.clone(), e["action"].as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(f, a)| (f.to_string(), a.to_string()))
        .collect()
}

fn image() -> Value {
    json!({"deployment": "acme", "image": "public.ecr.aws/honeyhive/ingestion:1.1.0"})
}

#[tokio::test]
async fn an_image_is_recorded_then_rolled_out() {
    let (result, calls) = common::run(&upgrade(), image(), Script::default()).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{}",
        result.describe()
    );
    assert_eq!(
        sent(&calls),
        pairs(&[
            ("control", "validate-input"),
            ("control", "lock"),
            ("control", "upgrade-plan"),
            ("control", "upgrade-record"),
            ("workloads", "upgrade-image"),
            ("control", "finish"),
            ("control", "unlock"),
        ])
    );
    let output = result.output.unwrap();
    assert_eq!(output["result"]["plan"]["kind"], "image");
    assert_eq!(output["result"]["image"]["ready"], true);
}

#[tokio::test]
async fn a_failed_rollout_is_rolled_back_and_the_run_fails_with_both() {
    let script = Script {
        failing: Some(("workloads", "upgrade-image", "Apiary.Fatal")),
        ..Script::default()
    };
    let (result, calls) = common::run(&upgrade(), image(), script).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Failed,
        "{}",
        result.describe()
    );
    assert_eq!(result.error.as_deref(), Some("Apiary.Fatal"));
    let cause = result.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("scripted workloads upgrade-image")
            && cause.contains("It was rolled back: rolled back the record"),
        "{cause}"
    );
    assert_eq!(
        sent(&calls),
        pairs(&[
            ("control", "validate-input"),
            ("control", "lock"),
            ("control", "upgrade-plan"),
            ("control", "upgrade-record"),
            ("workloads", "upgrade-image"),
            ("control", "upgrade-revert"),
            ("workloads", "rollback-image"),
            ("control", "fail"),
            ("control", "unlock"),
        ])
    );
    let calls = calls.lock().unwrap();
    let failure = &calls[7].1["options"]["failure"];
    assert_eq!(failure["Error"], "Apiary.Fatal", "{failure}");
}

#[tokio::test]
async fn a_failed_rollback_is_named_beside_the_rollout() {
    let script = Script {
        failing: Some(("workloads", "upgrade-image", "Apiary.Fatal")),
        also_failing: Some(("workloads", "rollback-image", "Apiary.Conflict")),
        ..Script::default()
    };
    let (result, _) = common::run(&upgrade(), image(), script).await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("Apiary.Fatal"),
        "the rollout's error"
    );
    let cause = result.cause.unwrap_or_default();
    assert!(
        cause.contains("scripted workloads upgrade-image")
            && cause.contains("Rolling back failed too: scripted workloads rollback-image"),
        "{cause}"
    );
}

#[tokio::test]
async fn a_version_moves_the_cluster_and_never_the_pods() {
    let (result, calls) = common::run(
        &upgrade(),
        json!({"deployment": "acme", "kubernetes_version": "1.34"}),
        Script::default(),
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{}",
        result.describe()
    );
    assert_eq!(
        sent(&calls),
        pairs(&[
            ("control", "validate-input"),
            ("control", "lock"),
            ("control", "upgrade-plan"),
            ("cluster", "upgrade-insights"),
            ("cluster", "upgrade-control-plane"),
            ("control", "upgrade-record"),
            ("cluster", "upgrade-nodegroup"),
            ("cluster", "upgrade-addons"),
            ("control", "finish"),
            ("control", "unlock"),
        ])
    );
}

#[tokio::test]
async fn refused_insights_stop_before_the_control_plane() {
    let script = Script {
        failing: Some(("cluster", "upgrade-insights", "Apiary.Conflict")),
        ..Script::default()
    };
    let (result, calls) = common::run(
        &upgrade(),
        json!({"deployment": "acme", "kubernetes_version": "1.34"}),
        script,
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.Conflict"));
    let actions: Vec<String> = sent(&calls).into_iter().map(|(_, a)| a).collect();
    assert!(
        !actions
            .iter()
            .any(|a| a == "upgrade-control-plane" || a == "upgrade-record"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_rollout_that_never_completes_is_rolled_back_at_its_bound() {
    let script = Script {
        polls_until_ready: [("RollImage", 1000)].into_iter().collect(),
        ..Script::default()
    };
    let (result, calls) = common::run(&upgrade(), image(), script).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Failed,
        "{}",
        result.describe()
    );
    assert_eq!(result.error.as_deref(), Some("Apiary.Timeout"));
    let cause = result.cause.unwrap_or_default();
    assert!(
        cause.contains("did not become ready") && cause.contains("It was rolled back"),
        "{cause}"
    );
    let actions: Vec<String> = sent(&calls).into_iter().map(|(_, a)| a).collect();
    assert!(
        actions.contains(&"rollback-image".to_owned()),
        "{actions:?}"
    );
    assert_eq!(actions.last().unwrap(), "unlock", "{actions:?}");
}

#[tokio::test]
async fn a_rerun_that_changed_nothing_rolls_nothing_back_and_says_so() {
    let script = Script {
        failing: Some(("workloads", "upgrade-image", "Apiary.Fatal")),
        nothing_to_revert: true,
        ..Script::default()
    };
    let (result, calls) = common::run(&upgrade(), image(), script).await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.Fatal"));
    let cause = result.cause.unwrap_or_default();
    assert!(cause.contains("nothing to roll back"), "{cause}");
    let actions: Vec<String> = sent(&calls).into_iter().map(|(_, a)| a).collect();
    assert!(
        !actions.iter().any(|a| a.starts_with("rollback-")),
        "{actions:?}"
    );
    assert_eq!(actions.last().unwrap(), "unlock", "{actions:?}");
}
