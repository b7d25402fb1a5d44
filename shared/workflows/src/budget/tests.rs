use serde_json::json;

use super::*;

fn poll_loop(bound: u64) -> Value {
    json!({
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Parameters": {"polls": {"X": {"n": 0}}}, "Next": "X"},
            "X": {"Type": "Task", "Resource": "arn", "TimeoutSeconds": 10, "ResultPath": "$.x", "Next": "Ready?"},
            "Ready?": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.x.ready", "BooleanEquals": true, "Next": "Done"},
                    {"Variable": "$.polls.X.n", "NumericGreaterThanEquals": bound, "Next": "Done"}
                ],
                "Default": "XWait"
            },
            "XWait": {
                "Type": "Pass",
                "Parameters": {
                    "n.$": "States.MathAdd($.polls.X.n, 1)",
                    "seconds.$": "States.ArrayGetItem(States.Array(5, 10, 20), $.polls.X.n)"
                },
                "ResultPath": "$.polls.X",
                "Next": "XSleep"
            },
            "XSleep": {"Type": "Wait", "SecondsPath": "$.polls.X.seconds", "Next": "X"},
            "Done": {"Type": "Succeed"}
        }
    })
}

#[test]
fn a_loop_runs_to_its_bound_with_its_schedule() {
    let once = Model {
        retries: false,
        attempt_time: true,
    };
    let budget = analyze(&poll_loop(3), once).unwrap();
    // 4 tasks of 10 s, waits 5 + 10 + 20.
    assert_eq!(budget.seconds, 75.0);
    // execution 2, Init 2, 4 x (Task 5 + Choice 2), 3 x (Pass 2 + Wait 2), Succeed 2.
    assert_eq!(budget.events, 2 + 2 + 4 * 7 + 3 * 4 + 2);
}

#[test]
fn a_schedule_shorter_than_the_bound_is_reported() {
    let err = analyze(&poll_loop(4), Model::WORST).unwrap_err();
    assert!(
        err.contains("/States/XSleep: cannot tell how long"),
        "{err}"
    );
}

#[test]
fn a_loop_without_a_counter_is_reported() {
    let definition = json!({
        "StartAt": "X",
        "States": {
            "X": {"Type": "Task", "Resource": "arn", "TimeoutSeconds": 10, "ResultPath": "$.x", "Next": "Ready?"},
            "Ready?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x.ready", "BooleanEquals": true, "Next": "Done"}],
                "Default": "Sleep"
            },
            "Sleep": {"Type": "Wait", "Seconds": 60, "Next": "X"},
            "Done": {"Type": "Succeed"}
        }
    });
    let err = worst_case(&definition).unwrap_err();
    assert!(err.contains("no bound"), "{err}");
}

#[test]
fn retries_back_off_to_their_cap_and_every_attempt_lasts_its_timeout() {
    let definition = json!({
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn",
                "TimeoutSeconds": 100,
                "Retry": [
                    {"ErrorEquals": ["A"], "IntervalSeconds": 5, "MaxAttempts": 4, "BackoffRate": 2.0, "MaxDelaySeconds": 30},
                    {"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 5, "MaxAttempts": 1}
                ],
                "End": true
            }
        }
    });
    let budget = worst_case(&definition).unwrap();
    // 6 attempts; waits 5, 10, 20, 30 (capped) and 5.
    assert_eq!(budget.seconds, 600.0 + 70.0);
    assert_eq!(budget.events, 2 + 2 + 6 * 3);
}

#[test]
fn parallel_branches_take_the_slowest_time_and_all_their_events() {
    let branch = |seconds: u64| json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": seconds, "End": true}}});
    let definition = json!({
        "StartAt": "P",
        "States": {"P": {"Type": "Parallel", "Branches": [branch(10), branch(30)], "End": true}}
    });
    let budget = worst_case(&definition).unwrap();
    assert_eq!(budget.seconds, 30.0);
    assert_eq!(budget.events, 2 + 4 + 2 + 2);
}

#[test]
fn a_task_without_a_timeout_has_no_bound() {
    let definition = json!({
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn", "End": true}}
    });
    assert!(
        worst_case(&definition)
            .unwrap_err()
            .contains("TimeoutSeconds")
    );
}
