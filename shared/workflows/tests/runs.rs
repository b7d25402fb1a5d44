//! The generated provision workflow behaves as the step kit and the control function
//! expect: the event shape, the output, the lock wait and the failure path.

use crate::common;

use apiary_asl::ExecutionStatus;
use common::{Calls, Script};
use serde_json::{Value, json};

fn input(queue: bool) -> Value {
    json!({"spec": {"name": "acme", "Size": "small"}, "queue": queue})
}

fn sent(calls: &Calls, function: &str, action: &str) -> Vec<Value> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(f, e)| f == function && e["action"] == action)
        .map(|(_, e)| e.clone())
        .collect()
}

#[tokio::test]
async fn a_run_sends_the_kit_its_events_and_returns_the_layers() {
    let (result, calls) = common::run(
        &common::provision(),
        json!({"spec": {"name": "acme"}}),
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
        result.output,
        Some(
            json!({"deployment": "acme", "status": "READY", "layers": {"keys": {"key_arn": "arn:key"}}})
        )
    );
    let execution_id = json!(result.execution_arn);
    for (function, event) in calls.lock().unwrap().iter() {
        let keys: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let action = event["action"].as_str().unwrap();
        let expected: &[&str] = match (function.as_str(), action) {
            ("control", "validate") => &["action", "spec", "execution_id"],
            ("control", "lock") => &["action", "spec", "deployment", "execution_id", "options"],
            ("control", "ready" | "unlock") => &["action", "deployment", "execution_id", "options"],
            // The store, a switch: never a resource.
            ("verifier", "ensure-app-user") => &["action", "deployment", "execution_id", "options"],
            _ => &["action", "deployment", "execution_id"],
        };
        assert_eq!(keys, expected, "{function} {action}: {event}");
        assert_eq!(event["execution_id"], execution_id);
        if action != "validate" {
            assert_eq!(event["deployment"], "acme", "{function} {action}");
        }
    }
    // The run's start, so that a provision that waited for a teardown's lock does not
    // re-create what it removed.
    let options = &sent(&calls, "control", "lock")[0]["options"];
    assert_eq!(options["workflow"], "provision");
    let started = options["started_at"].as_str().expect("started_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "{started}"
    );
    assert_eq!(options.as_object().unwrap().len(), 2, "{options}");
    assert_eq!(sent(&calls, "control", "unlock").len(), 1);
    assert!(sent(&calls, "control", "fail").is_empty());
    let actions = |function: &str| -> Vec<String> {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, _)| f == function)
            .map(|(_, e)| e["action"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        actions("cluster"),
        ["ensure-cluster", "ensure-nodegroup", "ensure-karpenter"]
    );
    let mut databases = actions("databases");
    databases.sort();
    assert_eq!(
        databases,
        [
            "ensure-alarms",
            "ensure-alarms",
            "ensure-documentdb",
            "ensure-postgres",
            "ensure-redis"
        ]
    );
}

#[tokio::test]
async fn a_busy_lock_fails_at_once_unless_the_input_queues() {
    let script = Script {
        lock_conflicts: 1,
        ..Script::default()
    };
    let (result, calls) = common::run(&common::provision(), input(false), script.clone()).await;
    assert_eq!(
        result.error.as_deref(),
        Some("Apiary.Conflict"),
        "{}",
        result.describe()
    );
    assert!(
        sent(&calls, "control", "unlock").is_empty(),
        "nothing to unlock"
    );
    assert!(sent(&calls, "keys", "ensure").is_empty());

    let (result, calls) = common::run(&common::provision(), input(true), script).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{}",
        result.describe()
    );
    assert_eq!(sent(&calls, "control", "lock").len(), 2);
}

#[tokio::test]
async fn a_queued_run_gives_up_after_its_bounded_wait() {
    let script = Script {
        lock_conflicts: usize::MAX,
        ..Script::default()
    };
    let (result, calls) = common::run(&common::provision(), input(true), script).await;
    assert_eq!(
        result.error.as_deref(),
        Some("Apiary.Timeout"),
        "{}",
        result.describe()
    );
    let cause = result.cause.unwrap_or_default();
    assert!(
        cause.starts_with("waited 2 hours for the deployment lock"),
        "{cause}"
    );
    let tries = apiary_workflows::provision::LOCK_WAIT.len() + 1;
    assert_eq!(sent(&calls, "control", "lock").len(), tries);
    assert!(sent(&calls, "control", "unlock").is_empty());
}

#[tokio::test]
async fn a_resource_that_never_becomes_ready_fails_through_the_failure_path() {
    for (name, what) in [
        ("Network", "the network (NAT gateways)"),
        ("Dns", "the certificate's DNS validation records"),
        ("Redis", "ElastiCache Redis"),
    ] {
        let script = Script {
            polls_until_ready: [(name, usize::MAX)].into(),
            ..Script::default()
        };
        let (result, calls) = common::run(&common::provision(), input(false), script).await;
        assert_eq!(
            result.error.as_deref(),
            Some("Apiary.Timeout"),
            "{}",
            result.describe()
        );
        let cause = result.cause.unwrap_or_default();
        assert!(
            cause.starts_with(&format!("{what} did not become ready after")),
            "{cause}"
        );
        let recorded = sent(&calls, "control", "fail");
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0]["options"]["workflow"], "provision");
        assert_eq!(recorded[0]["options"]["failure"]["Error"], "Apiary.Timeout");
        assert_eq!(recorded[0]["options"]["failure"]["Cause"], json!(cause));
        assert_eq!(sent(&calls, "control", "unlock").len(), 1);
        assert!(sent(&calls, "control", "ready").is_empty());
    }
}

#[tokio::test]
async fn a_failing_step_is_recorded_and_the_lock_released() {
    let script = Script {
        failing: Some(("dns", "ensure", "Apiary.Fatal")),
        ..Script::default()
    };
    let (result, calls) = common::run(&common::provision(), input(false), script).await;
    assert_eq!(
        result.error.as_deref(),
        Some("Apiary.Fatal"),
        "{}",
        result.describe()
    );
    assert_eq!(result.cause.as_deref(), Some("scripted dns ensure"));
    assert_eq!(
        sent(&calls, "control", "fail")[0]["options"]["failure"]["Error"],
        "Apiary.Fatal"
    );
    assert_eq!(sent(&calls, "control", "unlock").len(), 1);
    // Not retried: a fatal error cannot succeed by running again.
    assert_eq!(sent(&calls, "dns", "ensure").len(), 1);
}

#[tokio::test]
async fn dns_is_polled_until_acm_publishes_its_records() {
    let script = Script {
        polls_until_ready: [("Dns", 2)].into(),
        ..Script::default()
    };
    let (result, calls) = common::run(&common::provision(), input(false), script).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{}",
        result.describe()
    );
    assert_eq!(
        sent(&calls, "dns", "ensure").len(),
        3,
        "the first call and two polls"
    );
}

#[tokio::test]
async fn a_run_waiting_for_dns_validation_succeeds_and_says_so() {
    let script = Script {
        ready_status: Some("WAITING_FOR_DNS_VALIDATION"),
        ..Script::default()
    };
    let (result, calls) = common::run(&common::provision(), input(false), script).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{}",
        result.describe()
    );
    assert_eq!(
        result.output.as_ref().map(|o| o["status"].clone()),
        Some(json!("WAITING_FOR_DNS_VALIDATION")),
        "the status MarkReady recorded, not a constant"
    );
    assert_eq!(sent(&calls, "control", "unlock").len(), 1);
}
