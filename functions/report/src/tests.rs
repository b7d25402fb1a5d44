use super::*;

#[test]
fn only_the_host_of_the_endpoint_is_ever_shown() {
    assert_eq!(
        host_of("https://vendor.example:8443/v1/reports?token=s3cr3t"),
        "vendor.example:8443"
    );
    assert_eq!(host_of("https://vendor.example"), "vendor.example");
}

#[test]
fn the_lease_outlives_the_function_and_the_window_leaves_room_for_the_last_post() {
    assert!(LEASE.to_std().unwrap() > LAMBDA_TIMEOUT);
    assert!(SEND_WINDOW + REQUEST_TIMEOUT < LAMBDA_TIMEOUT);
}

#[test]
fn an_unknown_action_is_refused_by_name() {
    let err = apiary_core::step::StepEvent::<ReportAction>::parse(
        serde_json::json!({"action": "send", "deployment": "acme"}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("action"), "{err}");
}
