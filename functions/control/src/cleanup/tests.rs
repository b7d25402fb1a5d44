use serde_json::json;

use super::*;

const EXECUTION: &str =
    "arn:aws:states:us-east-1:012345678912:execution:state-machine-name:execution-name";

/// The "Execution Timed Out" example of the Step Functions developer guide (EventBridge
/// for Step Functions execution status changes), with the input a provision starts with.
fn timed_out_event() -> Value {
    json!({
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "012345678912",
        "time": "2019-02-26T19:42:21Z",
        "region": "us-east-1",
        "resources": [EXECUTION],
        "detail": {
            "executionArn": EXECUTION,
            "stateMachineArn": "arn:aws:states:us-east-1:012345678912:stateMachine:state-machine",
            "name": "execution-name",
            "status": "TIMED_OUT",
            "startDate": 1551224926156_u64,
            "stopDate": 1551224927157_u64,
            "input": "{\"spec\": {\"name\": \"acme\", \"dns\": {\"domain\": \"hh.example.com\"}}}",
            "inputDetails": {"included": true},
            "output": null,
            "outputDetails": null
        }
    })
}

#[test]
fn a_timed_out_execution_event_names_the_execution_and_its_input() {
    let ended = parse_event(timed_out_event()).unwrap();
    assert_eq!(ended.execution_arn, EXECUTION);
    assert_eq!(ended.end, RunEnd::TimedOut);
    let input = ended.input.expect("the event carried the input");
    assert_eq!(deployment_of(&input).as_deref(), Some("acme"));
}

#[test]
fn aborted_and_failed_ends_are_recognised() {
    for (status, end) in [("ABORTED", RunEnd::Aborted), ("FAILED", RunEnd::Failed)] {
        let mut event = timed_out_event();
        event["detail"]["status"] = json!(status);
        assert_eq!(parse_event(event).unwrap().end, end);
    }
}

#[test]
fn an_input_left_out_of_the_event_is_none() {
    // Input and output over the event size quota: the input is excluded.
    let mut event = timed_out_event();
    event["detail"]["input"] = Value::Null;
    event["detail"]["inputDetails"] = json!({"included": false});
    assert_eq!(parse_event(event).unwrap().input, None);

    // The older shape: no inputDetails at all.
    let mut event = timed_out_event();
    event["detail"]
        .as_object_mut()
        .unwrap()
        .remove("inputDetails");
    assert!(parse_event(event).unwrap().input.is_some());
}

#[test]
fn other_events_are_refused_by_name() {
    let mut event = timed_out_event();
    event["detail-type"] = json!("EC2 Instance State-change Notification");
    event["source"] = json!("aws.ec2");
    let err = parse_event(event).unwrap_err();
    assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput);
    let text = err.to_string();
    assert!(
        text.contains("aws.ec2") && text.contains("EC2 Instance State-change Notification"),
        "{text}"
    );

    for status in ["RUNNING", "SUCCEEDED"] {
        let mut event = timed_out_event();
        event["detail"]["status"] = json!(status);
        let err = parse_event(event).unwrap_err();
        assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput);
        assert!(err.to_string().contains(status), "{err}");
    }

    let mut event = timed_out_event();
    event["detail"] = json!({"status": "TIMED_OUT"});
    let err = parse_event(event).unwrap_err();
    assert!(err.to_string().contains("executionArn"), "{err}");
}

#[test]
fn the_deployment_comes_from_the_spec_or_the_deployment_field() {
    assert_eq!(
        deployment_of(&json!({"spec": {"name": "acme"}})).as_deref(),
        Some("acme")
    );
    assert_eq!(
        deployment_of(&json!({"spec": {"DeploymentName": "acme", "Size": "small"}})).as_deref(),
        Some("acme"),
        "the bootstrap stack starts provision with a parameters map"
    );
    assert_eq!(
        deployment_of(&json!({"deployment": "acme", "options": {}})).as_deref(),
        Some("acme")
    );
    assert_eq!(deployment_of(&json!({"spec": {"name": ""}})), None);
    assert_eq!(deployment_of(&Value::Null), None);
}

#[test]
fn the_workflow_is_the_state_machines_last_word() {
    assert_eq!(
        workflow_of("arn:aws:states:us-west-2:1:execution:apiary-acme-provision:launch-1"),
        "provision"
    );
    assert_eq!(
        workflow_of("arn:aws:states:us-west-2:123456789012:execution:apiary-teardown:local-1"),
        "teardown"
    );
    assert_eq!(workflow_of(EXECUTION), "name");
    assert_eq!(workflow_of("manual"), "workflow");
}

#[test]
fn run_ends_parse_from_their_status() {
    assert_eq!("TIMED_OUT".parse::<RunEnd>().unwrap(), RunEnd::TimedOut);
    assert_eq!("ABORTED".parse::<RunEnd>().unwrap(), RunEnd::Aborted);
    assert!("SUCCEEDED".parse::<RunEnd>().is_err());
}
