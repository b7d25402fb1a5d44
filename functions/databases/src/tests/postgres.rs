use apiary_core::ErrorName;
use aws_sdk_rds::Client as Rds;
use aws_sdk_rds::operation::create_db_instance::{CreateDBInstanceError, CreateDbInstanceOutput};
use aws_sdk_rds::operation::create_db_parameter_group::CreateDbParameterGroupOutput;
use aws_sdk_rds::operation::create_db_subnet_group::CreateDbSubnetGroupOutput;
use aws_sdk_rds::operation::describe_db_instances::{
    DescribeDBInstancesError, DescribeDbInstancesOutput,
};
use aws_sdk_rds::operation::describe_db_parameter_groups::{
    DescribeDBParameterGroupsError, DescribeDbParameterGroupsOutput,
};
use aws_sdk_rds::operation::describe_db_parameters::DescribeDbParametersOutput;
use aws_sdk_rds::operation::describe_db_subnet_groups::{
    DescribeDBSubnetGroupsError, DescribeDbSubnetGroupsOutput,
};
use aws_sdk_rds::operation::modify_db_instance::ModifyDbInstanceOutput;
use aws_sdk_rds::operation::modify_db_parameter_group::ModifyDbParameterGroupOutput;
use aws_sdk_rds::operation::start_db_instance::StartDbInstanceOutput;
use aws_sdk_rds::types::error::{
    DbInstanceNotFoundFault, DbParameterGroupNotFoundFault, DbSubnetGroupNotFoundFault,
};
use aws_sdk_rds::types::{
    DbInstance, DbParameterGroup, DbSubnetGroup, Endpoint, MasterUserSecret, Parameter,
};
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::*;

const ID: &str = "apiary-acme-postgres";
const SECRET: &str = "arn:aws:secretsmanager:us-west-2:123456789012:secret:rds!db-1";

fn instance(status: &str) -> DbInstance {
    DbInstance::builder()
        .db_instance_identifier(ID)
        .db_instance_arn(format!("arn:aws:rds:us-west-2:123456789012:db:{ID}"))
        .db_instance_status(status)
        .endpoint(
            Endpoint::builder()
                .address(format!("{ID}.abc.us-west-2.rds.amazonaws.com"))
                .port(5432)
                .build(),
        )
        .master_user_secret(MasterUserSecret::builder().secret_arn(SECRET).build())
        // As the acme fixture's spec asks: nothing to bring in line.
        .multi_az(false)
        .backup_retention_period(7)
        .max_allocated_storage(1000)
        .deletion_protection(true)
        .db_instance_class("db.t3.medium")
        .build()
}

fn spec_of(overrides: serde_json::Value) -> apiary_core::DeploymentSpec {
    let mut spec = acme().spec;
    for (section, fields) in overrides.as_object().unwrap() {
        for (field, value) in fields.as_object().unwrap() {
            spec[section][field] = value.clone();
        }
    }
    apiary_core::DeploymentSpec::parse(&spec).unwrap()
}

#[test]
fn an_instance_in_line_with_the_spec_needs_no_modification() {
    assert_eq!(
        crate::postgres::modification(&spec_of(json!({})), &instance("available")).unwrap(),
        None
    );
}

#[test]
fn spec_changes_become_one_modification_and_pending_ones_are_not_asked_again() {
    let spec = spec_of(json!({"databases": {"multi_az": true}, "backup": {"retention_days": 14}}));
    let change = crate::postgres::modification(&spec, &instance("available"))
        .unwrap()
        .expect("a change");
    assert_eq!(change.multi_az, Some(true));
    assert_eq!(change.backup_retention, Some(14));
    assert_eq!(change.instance_class, None);

    let mut pending = instance("available");
    pending.pending_modified_values = Some(
        aws_sdk_rds::types::PendingModifiedValues::builder()
            .multi_az(true)
            .backup_retention_period(14)
            .build(),
    );
    assert_eq!(
        crate::postgres::modification(&spec, &pending).unwrap(),
        None,
        "RDS has both pending already"
    );
}

#[test]
fn the_storage_ceiling_is_raised_but_never_lowered() {
    let spec = spec_of(json!({}));
    let mut raised = instance("available");
    raised.max_allocated_storage = Some(4000);
    assert_eq!(crate::postgres::modification(&spec, &raised).unwrap(), None);
    let mut low = instance("available");
    low.max_allocated_storage = Some(500);
    let change = crate::postgres::modification(&spec, &low).unwrap().unwrap();
    assert_eq!(change.max_allocated_storage, Some(1000));
    let mut unprotected = instance("available");
    unprotected.deletion_protection = Some(false);
    assert!(
        crate::postgres::modification(&spec, &unprotected)
            .unwrap()
            .unwrap()
            .deletion_protection
    );
}

fn describe_instance(status: &'static str) -> Rule {
    mock!(Rds::describe_db_instances).then_output(move || {
        DescribeDbInstancesOutput::builder()
            .db_instances(instance(status))
            .build()
    })
}

fn instance_not_found() -> Rule {
    mock!(Rds::describe_db_instances).then_error(|| {
        DescribeDBInstancesError::DbInstanceNotFoundFault(
            DbInstanceNotFoundFault::builder()
                .message("DBInstance apiary-acme-postgres not found.")
                .meta(meta("DBInstanceNotFound", "not found"))
                .build(),
        )
    })
}

fn subnet_group_found() -> Rule {
    mock!(Rds::describe_db_subnet_groups).then_output(|| {
        DescribeDbSubnetGroupsOutput::builder()
            .db_subnet_groups(DbSubnetGroup::builder().db_subnet_group_name(ID).build())
            .build()
    })
}

fn parameter_group_found() -> Rule {
    mock!(Rds::describe_db_parameter_groups).then_output(|| {
        DescribeDbParameterGroupsOutput::builder()
            .db_parameter_groups(
                DbParameterGroup::builder()
                    .db_parameter_group_name("apiary-acme-postgres16")
                    .build(),
            )
            .build()
    })
}

fn parameters(force_ssl: &'static str) -> Rule {
    mock!(Rds::describe_db_parameters).then_output(move || {
        DescribeDbParametersOutput::builder()
            .parameters(
                Parameter::builder()
                    .parameter_name("rds.force_ssl")
                    .parameter_value(force_ssl)
                    .build(),
            )
            .build()
    })
}

fn modify() -> Rule {
    mock!(Rds::modify_db_parameter_group).then_output(|| {
        ModifyDbParameterGroupOutput::builder()
            .db_parameter_group_name("apiary-acme-postgres16")
            .build()
    })
}

fn create_instance_any() -> Rule {
    mock!(Rds::create_db_instance).then_output(|| {
        CreateDbInstanceOutput::builder()
            .db_instance(instance("creating"))
            .build()
    })
}

#[tokio::test]
async fn an_existing_instance_is_reported_and_nothing_is_created() {
    let (subnets, groups, params, describe) = (
        subnet_group_found(),
        parameter_group_found(),
        parameters("1"),
        describe_instance("available"),
    );
    let (create, modify) = (create_instance_any(), modify());
    let create_group = mock!(Rds::create_db_parameter_group)
        .then_output(|| CreateDbParameterGroupOutput::builder().build());
    let create_subnets = mock!(Rds::create_db_subnet_group)
        .then_output(|| CreateDbSubnetGroupOutput::builder().build());
    let mocks = Mocks {
        rds: vec![
            &subnets,
            &groups,
            &params,
            &describe,
            &create,
            &modify,
            &create_group,
            &create_subnets,
        ],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();

    let out = handle(&deps, event("ensure-postgres"))
        .await
        .expect("ensure");
    assert_eq!(
        out,
        json!({
            "identifier": ID,
            "host": "apiary-acme-postgres.abc.us-west-2.rds.amazonaws.com",
            "port": 5432,
            "secret_arn": SECRET,
            "app_secret_arn": app_secret_arn("postgres"),
            "ready": true,
            "enabled": true,
            "status": "available",
            "created": [],
        })
    );
    for rule in [&create, &modify, &create_group, &create_subnets] {
        assert_eq!(
            rule.num_calls(),
            0,
            "an unchanged deployment makes no change"
        );
    }
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(entries[0].outcome, "unchanged");
    assert_eq!(entries[0].step, "databases");
    let kinds: Vec<_> = recorder
        .resources
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.kind.clone())
        .collect();
    for kind in [
        "rds:db-subnet-group",
        "rds:db-parameter-group",
        "rds:db-instance",
        "rds:master-user-secret",
    ] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "{kind} recorded: {kinds:?}"
        );
    }
}

#[tokio::test]
async fn a_new_instance_gets_every_security_setting() {
    let subnets_missing = mock!(Rds::describe_db_subnet_groups).then_error(|| {
        DescribeDBSubnetGroupsError::DbSubnetGroupNotFoundFault(
            DbSubnetGroupNotFoundFault::builder()
                .meta(meta("DBSubnetGroupNotFoundFault", "no"))
                .build(),
        )
    });
    let create_subnets = mock!(Rds::create_db_subnet_group)
        .match_requests(|r| {
            r.db_subnet_group_name() == Some(ID)
                && r.subnet_ids() == fixtures::PRIVATE_SUBNETS
                && has_tag(
                    r.tags().iter().map(|t| (t.key(), t.value())),
                    "apiary:layer",
                    "databases",
                )
        })
        .then_output(|| CreateDbSubnetGroupOutput::builder().build());
    let groups_missing = mock!(Rds::describe_db_parameter_groups).then_error(|| {
        DescribeDBParameterGroupsError::DbParameterGroupNotFoundFault(
            DbParameterGroupNotFoundFault::builder()
                .meta(meta("DBParameterGroupNotFound", "no"))
                .build(),
        )
    });
    let create_group = mock!(Rds::create_db_parameter_group)
        .match_requests(|r| {
            r.db_parameter_group_name() == Some("apiary-acme-postgres16")
                && r.db_parameter_group_family() == Some("postgres16")
        })
        .then_output(|| CreateDbParameterGroupOutput::builder().build());
    let force_ssl = mock!(Rds::modify_db_parameter_group)
        .match_requests(|r| {
            r.parameters().iter().any(|p| {
                p.parameter_name() == Some("rds.force_ssl") && p.parameter_value() == Some("1")
            })
        })
        .then_output(|| ModifyDbParameterGroupOutput::builder().build());
    let missing = instance_not_found();
    let rds_key = fixtures::key_arn("rds");
    let create = mock!(Rds::create_db_instance)
        .match_requests(move |r| {
            r.db_instance_identifier() == Some(ID)
                && r.engine() == Some("postgres")
                && r.engine_version() == Some("16")
                && r.db_instance_class() == Some("db.t3.medium")
                && r.allocated_storage() == Some(100)
                && r.max_allocated_storage() == Some(1000)
                && r.storage_encrypted() == Some(true)
                && r.kms_key_id() == Some(rds_key.as_str())
                && r.manage_master_user_password() == Some(true)
                && r.master_user_secret_kms_key_id() == Some(fixtures::key_arn("app").as_str())
                && r.master_user_password().is_none()
                && r.backup_retention_period() == Some(7)
                && r.multi_az() == Some(false)
                && r.deletion_protection() == Some(true)
                && r.publicly_accessible() == Some(false)
                && r.copy_tags_to_snapshot() == Some(true)
                && r.vpc_security_group_ids() == [fixtures::DATABASES_SG]
                && r.db_subnet_group_name() == Some(ID)
                && r.db_parameter_group_name() == Some("apiary-acme-postgres16")
                && has_tag(
                    r.tags().iter().map(|t| (t.key(), t.value())),
                    "apiary:deployment",
                    "acme",
                )
        })
        .then_output(|| {
            CreateDbInstanceOutput::builder()
                .db_instance(instance("creating"))
                .build()
        });
    let mocks = Mocks {
        rds: vec![
            &subnets_missing,
            &create_subnets,
            &groups_missing,
            &create_group,
            &force_ssl,
            &missing,
            &create,
        ],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();

    let out = handle(&deps, event("ensure-postgres"))
        .await
        .expect("ensure");
    assert_eq!(create.num_calls(), 1, "the request carries every setting");
    assert_eq!(create_subnets.num_calls(), 1);
    assert_eq!(force_ssl.num_calls(), 1);
    assert_eq!(
        out["ready"],
        json!(false),
        "a creating instance is not ready"
    );
    assert_eq!(out["status"], json!("creating"));
    assert_eq!(
        out["created"],
        json!([ID, "apiary-acme-postgres16", ID]),
        "subnet group, parameter group, instance"
    );
    // Created, but not ready: the kit journals what the step still waits for.
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(entries[0].outcome, "not-ready");
    assert_eq!(
        entries[0].detail.as_deref(),
        Some("RDS instance apiary-acme-postgres is creating")
    );
}

#[tokio::test]
async fn medium_deployments_are_multi_az() {
    let (subnets, groups, params, missing) = (
        subnet_group_found(),
        parameter_group_found(),
        parameters("1"),
        instance_not_found(),
    );
    let create = mock!(Rds::create_db_instance)
        .match_requests(|r| r.multi_az() == Some(true))
        .then_output(|| {
            CreateDbInstanceOutput::builder()
                .db_instance(instance("creating"))
                .build()
        });
    let mocks = Mocks {
        rds: vec![&subnets, &groups, &params, &missing, &create],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&acme().with_size("medium"));
    handle(&deps, event("ensure-postgres"))
        .await
        .expect("ensure");
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn a_parameter_group_without_force_ssl_is_corrected() {
    let (subnets, groups, params, describe, modify) = (
        subnet_group_found(),
        parameter_group_found(),
        parameters("0"),
        describe_instance("available"),
        modify(),
    );
    let mocks = Mocks {
        rds: vec![&subnets, &groups, &params, &describe, &modify],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-postgres"))
        .await
        .expect("ensure");
    assert_eq!(modify.num_calls(), 1);
    assert_eq!(
        out["created"],
        json!([]),
        "a corrected setting is not a new resource"
    );
}

#[tokio::test]
async fn status_polls_without_creating() {
    let describe = describe_instance("creating");
    let create = create_instance_any();
    let mocks = Mocks {
        rds: vec![&describe, &create],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("status-postgres"))
        .await
        .expect("status");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(out["status"], json!("creating"));
    assert_eq!(out["identifier"], json!(ID));
    assert_eq!(create.num_calls(), 0);
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "not-ready");

    let missing = instance_not_found();
    let mocks = Mocks {
        rds: vec![&missing, &create],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("status-postgres"))
        .await
        .expect("status");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(out["missing"], json!([ID]));
    assert_eq!(create.num_calls(), 0, "status never creates");
}

#[tokio::test]
async fn the_poll_that_sees_the_instance_ready_keeps_its_endpoint() {
    let creating = describe_instance("creating");
    let mocks = Mocks {
        rds: vec![&creating],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    handle(&deps, event("status-postgres"))
        .await
        .expect("status");
    assert_eq!(recorder.saved("acme", "databases.postgres"), None);

    let available = describe_instance("available");
    let mocks = Mocks {
        rds: vec![&available],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    handle(&deps, event("status-postgres"))
        .await
        .expect("status");
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "ready");
    let saved = recorder.saved("acme", "databases.postgres").expect("kept");
    let layers =
        apiary_core::step::assemble([("databases.postgres".to_owned(), saved)].into()).unwrap();
    let postgres = layers.databases().unwrap().postgres.clone().unwrap();
    assert_eq!(postgres.identifier, ID);
    assert_eq!(postgres.secret_arn, SECRET);
    assert_eq!(postgres.port, 5432);
}

#[tokio::test]
async fn failed_states_fail_fast_naming_the_instance() {
    for status in [
        "failed",
        "incompatible-parameters",
        "inaccessible-encryption-credentials",
    ] {
        let describe = describe_instance(status);
        let mocks = Mocks {
            rds: vec![&describe],
            ..Default::default()
        };
        let (deps, _) = mocks.deps();
        let err = handle(&deps, event("status-postgres")).await.unwrap_err();
        assert_eq!(err.name(), ErrorName::Fatal, "{status}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains(ID) && text.contains(status), "{text}");
    }
}

#[tokio::test]
async fn an_instance_being_deleted_is_a_conflict() {
    let describe = describe_instance("deleting");
    let mocks = Mocks {
        rds: vec![&describe],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-postgres")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
}

#[tokio::test]
async fn ensure_starts_a_stopped_instance() {
    let (subnets, groups, params, describe) = (
        subnet_group_found(),
        parameter_group_found(),
        parameters("1"),
        describe_instance("stopped"),
    );
    let start = mock!(Rds::start_db_instance)
        .match_requests(|r| r.db_instance_identifier() == Some(ID))
        .then_output(|| StartDbInstanceOutput::builder().build());
    let mocks = Mocks {
        rds: vec![&subnets, &groups, &params, &describe, &start],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-postgres"))
        .await
        .expect("ensure");
    assert_eq!(start.num_calls(), 1);
    assert_eq!(out["ready"], json!(false));
}

#[tokio::test]
async fn access_denied_is_fatal_and_throttling_is_retryable() {
    let (subnets, groups, params, missing) = (
        subnet_group_found(),
        parameter_group_found(),
        parameters("1"),
        instance_not_found(),
    );
    let denied = mock!(Rds::create_db_instance).then_error(|| {
        CreateDBInstanceError::generic(meta(
            "AccessDenied",
            "User is not authorized to perform: rds:CreateDBInstance",
        ))
    });
    let mocks = Mocks {
        rds: vec![&subnets, &groups, &params, &missing, &denied],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-postgres")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string()
            .contains("CreateDBInstance apiary-acme-postgres"),
        "{err}"
    );
    assert_eq!(denied.num_calls(), 1);

    let throttled = mock!(Rds::describe_db_instances)
        .then_error(|| DescribeDBInstancesError::generic(meta("Throttling", "Rate exceeded")));
    let mocks = Mocks {
        rds: vec![&throttled],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-postgres")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable);
}

#[test]
fn instance_states() {
    use crate::readiness::{Readiness as InstanceState, instance_readiness as instance_state};
    assert_eq!(instance_state("available"), InstanceState::Ready);
    for pending in [
        "creating",
        "modifying",
        "backing-up",
        "configuring-enhanced-monitoring",
    ] {
        assert_eq!(instance_state(pending), InstanceState::Pending, "{pending}");
    }
    for failed in [
        "failed",
        "incompatible-network",
        "incompatible-option-group",
        "restore-error",
    ] {
        assert_eq!(instance_state(failed), InstanceState::Failed, "{failed}");
    }
    assert_eq!(instance_state("deleting"), InstanceState::Deleting);
    assert_eq!(instance_state("stopped"), InstanceState::Stopped);
}

/// The ensure rounds of provision's poll against an instance whose settings differ from
/// the spec: `instances` are what DescribeDBInstances answers, in order.
async fn converge_round(
    spec: &serde_json::Value,
    instances: Vec<DbInstance>,
) -> (
    serde_json::Value,
    Vec<aws_sdk_rds::operation::modify_db_instance::ModifyDbInstanceInput>,
) {
    let (subnets, groups, params) = (
        subnet_group_found(),
        parameter_group_found(),
        parameters("1"),
    );
    let answers = std::sync::Arc::new(std::sync::Mutex::new(instances));
    let next = answers.clone();
    let describe = mock!(Rds::describe_db_instances).then_output(move || {
        let mut left = next.lock().unwrap();
        let instance = if left.len() > 1 {
            left.remove(0)
        } else {
            left[0].clone()
        };
        DescribeDbInstancesOutput::builder()
            .db_instances(instance)
            .build()
    });
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    let modify = mock!(Rds::modify_db_instance)
        .match_requests(move |r| {
            seen.lock().unwrap().push(r.clone());
            true
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    let mocks = Mocks {
        rds: vec![&subnets, &groups, &params, &describe, &modify],
        ..Default::default()
    };
    let fixture = acme().with_spec(|doc| {
        for (section, fields) in spec.as_object().unwrap() {
            for (field, value) in fields.as_object().unwrap() {
                doc[section][field] = value.clone();
            }
        }
    });
    let (deps, _) = mocks.deps_with(&fixture);
    let out = handle(&deps, event("ensure-postgres"))
        .await
        .expect("ensure");
    let calls = calls.lock().unwrap().clone();
    (out, calls)
}

fn with_class(status: &str, class: &str) -> DbInstance {
    let mut instance = instance(status);
    instance.db_instance_class = Some(class.to_owned());
    instance
}

#[tokio::test]
async fn online_settings_and_a_class_change_are_two_rounds_never_two_calls_at_once() {
    let spec = json!({"databases": {"multi_az": true}});
    // Round 1: Multi-AZ (online, now) and a class change are both needed; one call, the
    // online part only, and the step is not ready.
    let mut after = with_class("modifying", "db.t3.small");
    after.pending_modified_values = Some(
        aws_sdk_rds::types::PendingModifiedValues::builder()
            .multi_az(true)
            .build(),
    );
    let (out, calls) = converge_round(
        &spec,
        vec![with_class("available", "db.t3.small"), after.clone()],
    )
    .await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].apply_immediately(), Some(true));
    assert_eq!(calls[0].multi_az(), Some(true));
    assert_eq!(
        calls[0].db_instance_class(),
        None,
        "the class waits for its own call"
    );
    assert_eq!(out["ready"], json!(false), "{out}");
    assert!(
        out["pending"].to_string().contains("instance class"),
        "{out}"
    );

    // Round 2: still modifying: nothing is asked (RDS would refuse), and it says why.
    let (out, calls) = converge_round(&spec, vec![after]).await;
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(out["ready"], json!(false));
    assert!(
        out["pending"]
            .to_string()
            .contains("wait for it to be available"),
        "{out}"
    );

    // Round 3: available and Multi-AZ: the class change for the maintenance window.
    let mut converted = with_class("available", "db.t3.small");
    converted.multi_az = Some(true);
    let mut scheduled = converted.clone();
    scheduled.pending_modified_values = Some(
        aws_sdk_rds::types::PendingModifiedValues::builder()
            .db_instance_class("db.t3.medium")
            .build(),
    );
    let (out, calls) = converge_round(&spec, vec![converted, scheduled]).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].db_instance_class(), Some("db.t3.medium"));
    assert_eq!(calls[0].apply_immediately(), Some(false));
    assert_eq!(out["ready"], json!(true), "{out}");
}

#[tokio::test]
async fn online_settings_join_a_pending_class_change_in_the_window() {
    // ApplyImmediately would also apply the pending class change: a restart now.
    let mut instance = with_class("available", "db.t3.small");
    instance.pending_modified_values = Some(
        aws_sdk_rds::types::PendingModifiedValues::builder()
            .db_instance_class("db.t3.medium")
            .build(),
    );
    let (_, calls) =
        converge_round(&json!({"backup": {"retention_days": 14}}), vec![instance]).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].backup_retention_period(), Some(14));
    assert_eq!(calls[0].apply_immediately(), Some(false));
}

#[tokio::test]
async fn an_instance_busy_but_serving_is_ready_once_nothing_is_left_to_ask() {
    // A Multi-AZ conversion in progress (pending in RDS): the database serves meanwhile.
    let mut converting = instance("modifying");
    converting.pending_modified_values = Some(
        aws_sdk_rds::types::PendingModifiedValues::builder()
            .multi_az(true)
            .build(),
    );
    let (out, calls) =
        converge_round(&json!({"databases": {"multi_az": true}}), vec![converting]).await;
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(out["ready"], json!(true), "{out}");
    // Rebooting is no serving state.
    let (out, _) = converge_round(&json!({}), vec![instance("rebooting")]).await;
    assert_eq!(out["ready"], json!(false), "{out}");
}

#[test]
fn low_storage_raises_a_quarter_within_the_ceiling_and_never_under_ten_percent() {
    use crate::postgres::raised_storage;
    assert_eq!(raised_storage(100, 1000), Some(125));
    // Capped by the ceiling, still at least 10 % more.
    assert_eq!(raised_storage(100, 115), Some(115));
    // Within 10 % of the ceiling: RDS would refuse any increase.
    assert_eq!(raised_storage(100, 109), None);
    assert_eq!(raised_storage(1000, 1000), None);
    // Small volumes still move by RDS's minimum.
    assert_eq!(raised_storage(20, 1000), Some(25));
    assert_eq!(raised_storage(21, 23), None);
    assert_eq!(raised_storage(21, 24), Some(24));
}

/// The low-storage runbook as real RDS answers it: a full disk is raised, a raise
/// pending or a storage change being optimized is reported and not asked again, and an
/// instance busy otherwise is retried.
#[tokio::test]
async fn the_storage_runbook_raises_a_full_disk_and_never_asks_twice() {
    let with = |status: &'static str, pending: Option<i32>| {
        mock!(Rds::describe_db_instances).then_output(move || {
            let mut instance = instance(status);
            instance.allocated_storage = Some(100);
            if let Some(size) = pending {
                instance.pending_modified_values = Some(
                    aws_sdk_rds::types::PendingModifiedValues::builder()
                        .allocated_storage(size)
                        .build(),
                );
            }
            DescribeDbInstancesOutput::builder()
                .db_instances(instance)
                .build()
        })
    };
    let raise = mock!(Rds::modify_db_instance)
        .match_requests(|r| {
            r.db_instance_identifier() == Some(ID)
                && r.allocated_storage() == Some(125)
                && r.apply_immediately() == Some(true)
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());

    // Out of space (RDS-EVENT-0007 leaves the instance storage-full): raised.
    let full = with("storage-full", None);
    let mocks = Mocks {
        rds: vec![&full, &raise],
        ..Mocks::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("raise-storage")).await.unwrap();
    assert_eq!(out["after_gib"], json!(125), "{out}");
    assert_eq!(raise.num_calls(), 1);

    // Asked already (a retried step): reported, not asked again.
    let pending = with("modifying", Some(125));
    let mocks = Mocks {
        rds: vec![&pending, &raise],
        ..Mocks::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("raise-storage")).await.unwrap();
    assert_eq!(out["already"], json!(true), "{out}");
    assert_eq!(raise.num_calls(), 1, "no second ModifyDBInstance");

    // Storage autoscaling (or an earlier raise) just changed it: nothing is asked.
    let optimizing = with("storage-optimization", None);
    let mocks = Mocks {
        rds: vec![&optimizing, &raise],
        ..Mocks::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("raise-storage")).await.unwrap();
    assert!(out["detail"].as_str().unwrap().contains("6 hours"), "{out}");
    assert_eq!(raise.num_calls(), 1);

    // Busy with something else: retried by the workflow.
    let busy = with("backing-up", None);
    let mocks = Mocks {
        rds: vec![&busy, &raise],
        ..Mocks::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("raise-storage")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady, "{err}");
    assert_eq!(raise.num_calls(), 1);
}

/// The pods' own user's secret: made with the first user, a generated password, the app
/// key and the deployment's tags when missing; a status that does not see it yet (Secrets
/// Manager is eventually consistent) keeps the store waiting rather than keeping an
/// output without it.
#[tokio::test]
async fn the_pods_user_secret_is_made_encrypted_and_waited_for() {
    use aws_sdk_secretsmanager::Client as Secrets;
    use aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput;
    use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError;
    use aws_sdk_secretsmanager::operation::get_random_password::GetRandomPasswordOutput;
    use aws_sdk_secretsmanager::types::error::ResourceNotFoundException;

    let describe = describe_instance("available");
    let (subnets, params) = (subnet_group_found(), parameter_group_found());
    let forced = parameters("1");
    let absent = mock!(Secrets::describe_secret)
        .match_requests(|r| r.secret_id() == Some("apiary-acme-postgres-app"))
        .then_error(|| {
            DescribeSecretError::ResourceNotFoundException(
                ResourceNotFoundException::builder().build(),
            )
        });
    let password = mock!(Secrets::get_random_password).then_output(|| {
        GetRandomPasswordOutput::builder()
            .random_password("Generated0123456789")
            .build()
    });
    let create = mock!(Secrets::create_secret)
        .match_requests(|r| {
            let value: serde_json::Value =
                serde_json::from_str(r.secret_string().unwrap_or_default()).unwrap();
            r.name() == Some("apiary-acme-postgres-app")
                && r.kms_key_id() == Some(fixtures::key_arn("app").as_str())
                && value
                    == json!({"engine": "postgres", "username": "honeyhive_app_a",
                              "dbname": "honeyhive", "password": "Generated0123456789"})
                && has_tag(
                    r.tags().iter().map(|t| (t.key(), t.value())),
                    "apiary:deployment",
                    "acme",
                )
        })
        .then_output(|| {
            CreateSecretOutput::builder()
                .arn(app_secret_arn("postgres"))
                .build()
        });
    let mocks = Mocks {
        rds: vec![&describe, &subnets, &params, &forced],
        secrets: vec![&absent, &password, &create],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-postgres"))
        .await
        .expect("ensure");
    assert_eq!(create.num_calls(), 1, "{out}");
    assert_eq!(out["app_secret_arn"], app_secret_arn("postgres"));
    assert_eq!(out["ready"], true, "{out}");

    let mocks = Mocks {
        rds: vec![&describe],
        secrets: vec![&absent],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("status-postgres"))
        .await
        .expect("status");
    assert_eq!(out["ready"], false, "{out}");
    assert!(
        out["pending"]
            .to_string()
            .contains("apiary-acme-postgres-app does not show yet"),
        "{out}"
    );
}
