//! Placing the in-VPC functions: Lambda's answers as recorded from the API reference.

use std::collections::HashMap;

use apiary_core::fixtures::{CONTROL_PLANE_SG, Fixture, PRIVATE_SUBNETS};
use aws_sdk_lambda::Client as Lambda;
use aws_sdk_lambda::operation::get_function_configuration::{
    GetFunctionConfigurationError, GetFunctionConfigurationOutput,
};
use aws_sdk_lambda::operation::update_function_configuration::{
    UpdateFunctionConfigurationError, UpdateFunctionConfigurationOutput,
};
use aws_sdk_lambda::types::error::{ResourceConflictException, ResourceNotFoundException};
use aws_sdk_lambda::types::{
    LastUpdateStatus, LastUpdateStatusReasonCode, State, VpcConfigResponse,
};

use super::*;

const FUNCTION: &str = "apiary-acme-workloads";

fn deps_with(rules: &[&Rule]) -> Deps {
    Deps {
        ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &[]),
        lambda: mock_client!(aws_sdk_lambda, RuleMode::MatchAny, rules),
        recorder: Arc::new(Fixture::named("acme").state()),
        in_vpc_functions: vec![FUNCTION.to_owned()],
    }
}

fn configuration(
    subnets: &[&str],
    groups: &[&str],
    status: LastUpdateStatus,
) -> GetFunctionConfigurationOutput {
    let vpc = VpcConfigResponse::builder()
        .set_subnet_ids(Some(subnets.iter().map(|s| (*s).to_owned()).collect()))
        .set_security_group_ids(Some(groups.iter().map(|s| (*s).to_owned()).collect()))
        .build();
    GetFunctionConfigurationOutput::builder()
        .function_name(FUNCTION)
        .state(State::Active)
        .last_update_status(status)
        .vpc_config(vpc)
        .build()
}

/// A function outside any VPC, as GetFunctionConfiguration describes it.
fn detached() -> GetFunctionConfigurationOutput {
    configuration(&[], &[], LastUpdateStatus::Successful)
}

fn attached(status: LastUpdateStatus) -> GetFunctionConfigurationOutput {
    // Lambda lists the subnets in its own order.
    configuration(
        &[PRIVATE_SUBNETS[1], PRIVATE_SUBNETS[0]],
        &[CONTROL_PLANE_SG],
        status,
    )
}

fn update_answering(status: LastUpdateStatus) -> Rule {
    mock!(Lambda::update_function_configuration)
        .match_requests(|r| {
            let vpc = r.vpc_config().expect("a VpcConfig");
            let mut subnets = vpc.subnet_ids().to_vec();
            subnets.sort();
            subnets == PRIVATE_SUBNETS && vpc.security_group_ids() == [CONTROL_PLANE_SG]
        })
        .then_output(move || {
            UpdateFunctionConfigurationOutput::builder()
                .function_name(FUNCTION)
                .last_update_status(status.clone())
                .build()
        })
}

async fn run(deps: &Deps, action: &str) -> apiary_core::Result<Value> {
    handle(deps, apiary_core::step::event(action, "acme")).await
}

#[tokio::test]
async fn an_attached_function_is_left_alone() {
    let get = mock!(Lambda::get_function_configuration)
        .then_output(|| attached(LastUpdateStatus::Successful));
    let update = update_answering(LastUpdateStatus::Successful);
    let deps = deps_with(&[&get, &update]);
    let out = run(&deps, "ensure-in-vpc").await.expect("ensure-in-vpc");
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(out["created"], json!([]), "{out}");
    assert_eq!(update.num_calls(), 0, "no update of an attached function");
    assert_eq!(
        out["functions"][0]["security_group_ids"],
        json!([CONTROL_PLANE_SG])
    );
}

#[tokio::test]
async fn a_detached_function_is_attached_and_polled_until_lambda_is_done() {
    let get = mock!(Lambda::get_function_configuration).then_output(detached);
    let update = update_answering(LastUpdateStatus::InProgress);
    let deps = deps_with(&[&get, &update]);
    let out = run(&deps, "ensure-in-vpc").await.expect("ensure-in-vpc");
    assert_eq!(update.num_calls(), 1);
    assert_eq!(out["ready"], json!(false), "{out}");
    assert_eq!(out["created"], json!([format!("{FUNCTION}:vpc-config")]));
    assert!(
        out["pending"][0].as_str().unwrap().contains("attaching"),
        "{out}"
    );

    // The poll: Lambda is still creating the network interfaces, then done.
    let get = mock!(Lambda::get_function_configuration)
        .sequence()
        .output(|| attached(LastUpdateStatus::InProgress))
        .output(|| attached(LastUpdateStatus::Successful))
        .build();
    let update = update_answering(LastUpdateStatus::Successful);
    let deps = deps_with(&[&get, &update]);
    let first = run(&deps, "status-in-vpc").await.expect("status");
    assert_eq!(first["ready"], json!(false), "{first}");
    let second = run(&deps, "status-in-vpc").await.expect("status");
    assert_eq!(second["ready"], json!(true), "{second}");
    assert_eq!(update.num_calls(), 0, "the status action only looks");
}

#[tokio::test]
async fn an_update_in_progress_is_waited_for_not_repeated() {
    let get = mock!(Lambda::get_function_configuration)
        .then_output(|| configuration(&[], &[], LastUpdateStatus::InProgress));
    let update = update_answering(LastUpdateStatus::InProgress);
    let deps = deps_with(&[&get, &update]);
    let out = run(&deps, "ensure-in-vpc").await.expect("ensure-in-vpc");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert_eq!(update.num_calls(), 0);
}

#[tokio::test]
async fn a_concurrent_update_is_retryable() {
    let get = mock!(Lambda::get_function_configuration).then_output(detached);
    let update = mock!(Lambda::update_function_configuration).then_error(|| {
        UpdateFunctionConfigurationError::ResourceConflictException(
            ResourceConflictException::builder()
                .message("An update is in progress for resource")
                .build(),
        )
    });
    let deps = deps_with(&[&get, &update]);
    let err = run(&deps, "ensure-in-vpc").await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
}

#[tokio::test]
async fn a_failed_attachment_fails_the_poll_with_lambdas_reason_and_is_retried_by_ensure() {
    let failed = || {
        let mut config = attached(LastUpdateStatus::Failed);
        config.last_update_status_reason_code =
            Some(LastUpdateStatusReasonCode::InsufficientRolePermissions);
        config.last_update_status_reason = Some(
            "The function's execution role does not have permissions to call \
             CreateNetworkInterface on EC2"
                .to_owned(),
        );
        config
    };
    let get = mock!(Lambda::get_function_configuration).then_output(failed);
    let update = update_answering(LastUpdateStatus::InProgress);
    let deps = deps_with(&[&get, &update]);
    let err = run(&deps, "status-in-vpc").await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string().contains("InsufficientRolePermissions")
            && err.to_string().contains("CreateNetworkInterface"),
        "{err}"
    );
    assert_eq!(update.num_calls(), 0);

    let out = run(&deps, "ensure-in-vpc").await.expect("ensure-in-vpc");
    assert_eq!(update.num_calls(), 1, "the next provision tries again");
    assert_eq!(out["ready"], json!(false), "{out}");
}

#[tokio::test]
async fn a_missing_function_is_fatal() {
    let get = mock!(Lambda::get_function_configuration).then_error(|| {
        GetFunctionConfigurationError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Function not found")
                .build(),
        )
    });
    let deps = deps_with(&[&get]);
    let err = run(&deps, "ensure-in-vpc").await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(err.to_string().contains(IN_VPC_FUNCTIONS_ENV), "{err}");
}

#[tokio::test]
async fn a_network_saved_before_the_control_plane_group_is_refused() {
    let get = mock!(Lambda::get_function_configuration).then_output(detached);
    let mut deps = deps_with(&[&get]);
    let fixture = Fixture::named("acme")
        .with_layers(|l| l.network.as_mut().unwrap().security_groups.control_plane = String::new());
    deps.recorder = Arc::new(fixture.state());
    let err = run(&deps, "ensure-in-vpc").await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("control_plane"), "{err}");
    assert_eq!(get.num_calls(), 0);
}

#[tokio::test]
async fn the_in_vpc_actions_keep_nothing_for_later_layers() {
    let get = mock!(Lambda::get_function_configuration)
        .then_output(|| attached(LastUpdateStatus::Successful));
    let deps = deps_with(&[&get]);
    let state = Fixture::named("acme").state();
    let deps = Deps {
        recorder: Arc::new(state.clone()),
        ..deps
    };
    let before = state.saved("acme", "network");
    run(&deps, "ensure-in-vpc").await.expect("ensure-in-vpc");
    assert_eq!(state.saved("acme", "network"), before);
}

#[test]
fn the_function_list_is_read_from_the_environment() {
    let env: HashMap<&str, &str> = [(
        IN_VPC_FUNCTIONS_ENV,
        "apiary-acme-workloads, ,apiary-acme-verifier",
    )]
    .into();
    assert_eq!(
        in_vpc_functions(&env),
        ["apiary-acme-workloads", "apiary-acme-verifier"]
    );
    assert!(in_vpc_functions(&HashMap::<&str, &str>::new()).is_empty());
}
