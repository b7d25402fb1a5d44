use apiary_core::ErrorName;
use aws_sdk_elasticache::Client as ElastiCache;
use aws_sdk_elasticache::operation::create_cache_subnet_group::CreateCacheSubnetGroupOutput;
use aws_sdk_elasticache::operation::create_replication_group::{
    CreateReplicationGroupError, CreateReplicationGroupOutput,
};
use aws_sdk_elasticache::operation::describe_cache_subnet_groups::{
    DescribeCacheSubnetGroupsError, DescribeCacheSubnetGroupsOutput,
};
use aws_sdk_elasticache::operation::describe_replication_groups::{
    DescribeReplicationGroupsError, DescribeReplicationGroupsOutput,
};
use aws_sdk_elasticache::types::error::{
    CacheSubnetGroupNotFoundFault, ReplicationGroupNotFoundFault,
};
use aws_sdk_elasticache::types::{
    AutomaticFailoverStatus, CacheSubnetGroup, Endpoint, MultiAzStatus, NodeGroup, ReplicationGroup,
};
use aws_sdk_secretsmanager::Client as Secrets;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput;
use aws_sdk_secretsmanager::operation::describe_secret::{
    DescribeSecretError, DescribeSecretOutput,
};
use aws_sdk_secretsmanager::operation::get_random_password::GetRandomPasswordOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::types::error::ResourceNotFoundException;
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::*;

const GROUP: &str = "apiary-acme-redis";
const SECRET_NAME: &str = "apiary-acme-redis-auth";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-west-2:123456789012:secret:apiary-acme-redis-auth-AbCdEf";
const HOST: &str = "master.apiary-acme-redis.abc.usw2.cache.amazonaws.com";
const TOKEN: &str = "Zx9generatedTokenValueThatMustNeverBeLoggedOrReturned0123456789ab";

fn group(status: &str) -> ReplicationGroup {
    ReplicationGroup::builder()
        .replication_group_id(GROUP)
        .arn(format!(
            "arn:aws:elasticache:us-west-2:123456789012:replicationgroup:{GROUP}"
        ))
        .status(status)
        // As the spec of `acme` (small) says: one node, no failover, 7 days of snapshots.
        .member_clusters(format!("{GROUP}-001"))
        .automatic_failover(AutomaticFailoverStatus::Disabled)
        .multi_az(MultiAzStatus::Disabled)
        .snapshot_retention_limit(7)
        .node_groups(
            NodeGroup::builder()
                .node_group_id("0001")
                .primary_endpoint(Endpoint::builder().address(HOST).port(6379).build())
                .build(),
        )
        .build()
}

fn subnet_group_found() -> Rule {
    mock!(ElastiCache::describe_cache_subnet_groups).then_output(|| {
        DescribeCacheSubnetGroupsOutput::builder()
            .cache_subnet_groups(
                CacheSubnetGroup::builder()
                    .cache_subnet_group_name(GROUP)
                    .build(),
            )
            .build()
    })
}

fn describe_group(status: &'static str) -> Rule {
    mock!(ElastiCache::describe_replication_groups).then_output(move || {
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(group(status))
            .build()
    })
}

fn group_not_found() -> Rule {
    mock!(ElastiCache::describe_replication_groups).then_error(|| {
        DescribeReplicationGroupsError::ReplicationGroupNotFoundFault(
            ReplicationGroupNotFoundFault::builder()
                .meta(meta("ReplicationGroupNotFoundFault", "not found"))
                .build(),
        )
    })
}

fn secret_found() -> Rule {
    mock!(Secrets::describe_secret)
        .match_requests(|r| r.secret_id() == Some(SECRET_NAME))
        .then_output(|| {
            DescribeSecretOutput::builder()
                .arn(SECRET_ARN)
                .name(SECRET_NAME)
                .build()
        })
}

fn secret_not_found() -> Rule {
    mock!(Secrets::describe_secret).then_error(|| {
        DescribeSecretError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .meta(meta(
                    "ResourceNotFoundException",
                    "Secrets Manager can't find the specified secret.",
                ))
                .build(),
        )
    })
}

fn random_password() -> Rule {
    mock!(Secrets::get_random_password)
        .match_requests(|r| {
            r.password_length() == Some(64) && r.exclude_punctuation() == Some(true)
        })
        .then_output(|| {
            GetRandomPasswordOutput::builder()
                .random_password(TOKEN)
                .build()
        })
}

fn create_group_any() -> Rule {
    mock!(ElastiCache::create_replication_group).then_output(|| {
        CreateReplicationGroupOutput::builder()
            .replication_group(group("creating"))
            .build()
    })
}

#[tokio::test]
async fn an_existing_group_is_reported_and_nothing_is_created() {
    let (subnets, describe) = (subnet_group_found(), describe_group("available"));
    let create = create_group_any();
    let create_subnets = mock!(ElastiCache::create_cache_subnet_group)
        .then_output(|| CreateCacheSubnetGroupOutput::builder().build());
    let secret = secret_found();
    let password = random_password();
    let create_secret =
        mock!(Secrets::create_secret).then_output(|| CreateSecretOutput::builder().build());
    let mocks = Mocks {
        elasticache: vec![&subnets, &describe, &create, &create_subnets],
        secrets: vec![&secret, &password, &create_secret],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-redis")).await.expect("ensure");
    assert_eq!(
        out,
        json!({
            "identifier": GROUP,
            "host": HOST,
            "port": 6379,
            "secret_arn": SECRET_ARN,
            "ready": true,
            "enabled": true,
            "status": "available",
            "created": [],
        })
    );
    for rule in [&create, &create_subnets, &password, &create_secret] {
        assert_eq!(rule.num_calls(), 0);
    }
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
}

#[tokio::test]
async fn a_new_group_is_encrypted_with_a_stored_auth_token() {
    let subnets_missing = mock!(ElastiCache::describe_cache_subnet_groups).then_error(|| {
        DescribeCacheSubnetGroupsError::CacheSubnetGroupNotFoundFault(
            CacheSubnetGroupNotFoundFault::builder()
                .meta(meta("CacheSubnetGroupNotFoundFault", "no"))
                .build(),
        )
    });
    let create_subnets = mock!(ElastiCache::create_cache_subnet_group)
        .match_requests(|r| {
            r.cache_subnet_group_name() == Some(GROUP)
                && r.subnet_ids() == fixtures::PRIVATE_SUBNETS
        })
        .then_output(|| CreateCacheSubnetGroupOutput::builder().build());
    let missing = group_not_found();
    let redis_key = fixtures::key_arn("redis");
    let create = mock!(ElastiCache::create_replication_group)
        .match_requests(move |r| {
            r.replication_group_id() == Some(GROUP)
                && r.engine() == Some("redis")
                && r.cache_node_type() == Some("cache.t3.medium")
                && r.at_rest_encryption_enabled() == Some(true)
                && r.kms_key_id() == Some(redis_key.as_str())
                && r.transit_encryption_enabled() == Some(true)
                && r.auth_token() == Some(TOKEN)
                && r.num_cache_clusters() == Some(1)
                && r.automatic_failover_enabled() == Some(false)
                && r.security_group_ids() == [fixtures::DATABASES_SG]
                && r.cache_subnet_group_name() == Some(GROUP)
                && r.snapshot_retention_limit() == Some(7)
                && has_tag(
                    r.tags().iter().map(|t| (t.key(), t.value())),
                    "apiary:deployment",
                    "acme",
                )
        })
        .then_output(|| {
            CreateReplicationGroupOutput::builder()
                .replication_group(group("creating"))
                .build()
        });
    let no_secret = secret_not_found();
    let password = random_password();
    let app_key = fixtures::key_arn("app");
    let create_secret = mock!(Secrets::create_secret)
        .match_requests(move |r| {
            let value: Value = serde_json::from_str(r.secret_string().unwrap_or("{}")).unwrap();
            r.name() == Some(SECRET_NAME)
                && r.kms_key_id() == Some(app_key.as_str())
                && value["auth_token"] == json!(TOKEN)
                && value["replication_group_id"] == json!(GROUP)
        })
        .then_output(|| {
            CreateSecretOutput::builder()
                .arn(SECRET_ARN)
                .name(SECRET_NAME)
                .build()
        });
    let mocks = Mocks {
        elasticache: vec![&subnets_missing, &create_subnets, &missing, &create],
        secrets: vec![&no_secret, &password, &create_secret],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-redis")).await.expect("ensure");
    assert_eq!(create.num_calls(), 1, "the request carries every setting");
    assert_eq!(
        create_secret.num_calls(),
        1,
        "the token is stored before it is used"
    );
    assert_eq!(out["ready"], json!(false));
    assert_eq!(out["secret_arn"], json!(SECRET_ARN));
    assert_eq!(out["created"], json!([GROUP, SECRET_NAME, GROUP]));
    assert!(
        !out.to_string().contains(TOKEN),
        "the token never leaves the secret"
    );
    let entries = recorder.entries.lock().unwrap();
    assert!(!format!("{entries:?}").contains(TOKEN));
}

#[tokio::test]
async fn multi_az_gets_two_nodes_with_failover() {
    let (subnets, missing, secret) = (subnet_group_found(), group_not_found(), secret_found());
    let stored = mock!(Secrets::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .arn(SECRET_ARN)
            .secret_string(json!({"auth_token": TOKEN}).to_string())
            .build()
    });
    let create = mock!(ElastiCache::create_replication_group)
        .match_requests(|r| {
            r.num_cache_clusters() == Some(2)
                && r.automatic_failover_enabled() == Some(true)
                && r.multi_az_enabled() == Some(true)
        })
        .then_output(|| {
            CreateReplicationGroupOutput::builder()
                .replication_group(group("creating"))
                .build()
        });
    let mocks = Mocks {
        elasticache: vec![&subnets, &missing, &create],
        secrets: vec![&secret, &stored],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&acme().with_size("large"));
    handle(&deps, event("ensure-redis")).await.expect("ensure");
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn a_token_stored_by_an_interrupted_run_is_reused() {
    let (subnets, missing, secret) = (subnet_group_found(), group_not_found(), secret_found());
    let stored = mock!(Secrets::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .arn(SECRET_ARN)
            .secret_string(json!({"auth_token": TOKEN}).to_string())
            .build()
    });
    let password = random_password();
    let create_secret =
        mock!(Secrets::create_secret).then_output(|| CreateSecretOutput::builder().build());
    let create = mock!(ElastiCache::create_replication_group)
        .match_requests(|r| r.auth_token() == Some(TOKEN))
        .then_output(|| {
            CreateReplicationGroupOutput::builder()
                .replication_group(group("creating"))
                .build()
        });
    let mocks = Mocks {
        elasticache: vec![&subnets, &missing, &create],
        secrets: vec![&secret, &stored, &password, &create_secret],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-redis")).await.expect("ensure");
    assert_eq!(create.num_calls(), 1);
    assert_eq!(password.num_calls(), 0, "no second token");
    assert_eq!(create_secret.num_calls(), 0);
    assert_eq!(out["created"], json!([GROUP]));
}

/// Secrets Manager is eventually consistent: a secret made just before the group may not
/// show yet, so this is retried (not fatal), and the error says what to do should it
/// really be gone.
#[tokio::test]
async fn a_group_without_its_secret_is_retried_naming_both() {
    let (subnets, describe, no_secret) = (
        subnet_group_found(),
        describe_group("available"),
        secret_not_found(),
    );
    let mocks = Mocks {
        elasticache: vec![&subnets, &describe],
        secrets: vec![&no_secret],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-redis")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady);
    let text = err.to_string();
    assert!(text.contains(GROUP) && text.contains(SECRET_NAME), "{text}");
    assert!(text.contains("AuthTokenUpdateStrategy=SET"), "{text}");
}

#[tokio::test]
async fn status_polls_and_failed_groups_fail_fast() {
    let (describe, secret) = (describe_group("creating"), secret_found());
    let create = create_group_any();
    let mocks = Mocks {
        elasticache: vec![&describe, &create],
        secrets: vec![&secret],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("status-redis")).await.expect("status");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(out["status"], json!("creating"));
    assert_eq!(create.num_calls(), 0);

    let (failed, secret) = (describe_group("create-failed"), secret_found());
    let mocks = Mocks {
        elasticache: vec![&failed],
        secrets: vec![&secret],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-redis")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(err.to_string().contains(GROUP), "{err}");
}

#[tokio::test]
async fn access_denied_is_fatal_and_throttling_is_retryable() {
    let (subnets, missing, secret) = (subnet_group_found(), group_not_found(), secret_found());
    let stored = mock!(Secrets::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .secret_string(json!({"auth_token": TOKEN}).to_string())
            .build()
    });
    let denied = mock!(ElastiCache::create_replication_group).then_error(|| {
        CreateReplicationGroupError::generic(meta(
            "AccessDenied",
            "not authorized to perform: elasticache:CreateReplicationGroup",
        ))
    });
    let mocks = Mocks {
        elasticache: vec![&subnets, &missing, &denied],
        secrets: vec![&secret, &stored],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-redis")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(!err.to_string().contains(TOKEN));

    let throttled = mock!(ElastiCache::describe_replication_groups).then_error(|| {
        DescribeReplicationGroupsError::generic(meta("Throttling", "Rate exceeded"))
    });
    let mocks = Mocks {
        elasticache: vec![&throttled],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-redis")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable);
}

fn spec_of(fixture: Fixture) -> apiary_core::DeploymentSpec {
    apiary_core::DeploymentSpec::parse(&fixture.spec).expect("a valid spec")
}

#[test]
fn each_difference_is_changed_in_the_order_elasticache_allows() {
    use crate::redis::{Change, next_change};
    let small = spec_of(acme());
    let multi_az = spec_of(acme().with_size("large"));
    let longer = spec_of(acme().with_spec(|s| s["backup"]["retention_days"] = json!(14)));
    let with = |nodes: usize, failover: bool| group_of("available", nodes, failover);
    assert_eq!(next_change(&small, &with(1, false)), None, "in line");
    assert_eq!(
        next_change(&longer, &with(1, false)),
        Some(Change::Modify {
            retention: Some(14),
            failover: None
        })
    );
    // Multi-AZ on: a replica first, then failover.
    assert_eq!(
        next_change(&multi_az, &with(1, false)),
        Some(Change::Replicas(1))
    );
    assert_eq!(
        next_change(&multi_az, &with(2, false)),
        Some(Change::Modify {
            retention: None,
            failover: Some(true)
        })
    );
    assert_eq!(next_change(&multi_az, &with(2, true)), None);
    // Multi-AZ off: failover off first, then the replica goes.
    assert_eq!(
        next_change(&small, &with(2, true)),
        Some(Change::Modify {
            retention: None,
            failover: Some(false)
        })
    );
    assert_eq!(
        next_change(&small, &with(2, false)),
        Some(Change::Replicas(0))
    );
}

#[tokio::test]
async fn multi_az_turned_on_adds_a_replica_first() {
    let (subnets, describe, secret) = (
        subnet_group_found(),
        describe_group("available"),
        secret_found(),
    );
    let increase = mock!(ElastiCache::increase_replica_count)
        .match_requests(|r| {
            r.replication_group_id() == Some(GROUP)
                && r.new_replica_count() == Some(1)
                && r.apply_immediately() == Some(true)
        })
        .then_output(|| {
            aws_sdk_elasticache::operation::increase_replica_count::IncreaseReplicaCountOutput::builder()
                .build()
        });
    let modify = mock!(ElastiCache::modify_replication_group).then_output(|| {
        aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput::builder()
            .build()
    });
    let mocks = Mocks {
        elasticache: vec![&subnets, &describe, &increase, &modify],
        secrets: vec![&secret],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&acme().with_size("large"));
    let out = handle(&deps, event("ensure-redis")).await.expect("ensure");
    assert_eq!(increase.num_calls(), 1);
    assert_eq!(modify.num_calls(), 0, "failover waits for the replica");
    assert_eq!(
        out["created"],
        json!([format!("{GROUP}:modified")]),
        "{out}"
    );
    assert_eq!(out["ready"], json!(false), "the rest follows: {out}");
}

#[tokio::test]
async fn a_busy_group_is_changed_on_a_later_round() {
    let (subnets, describe, secret) = (
        subnet_group_found(),
        describe_group("snapshotting"),
        secret_found(),
    );
    let modify = mock!(ElastiCache::modify_replication_group).then_output(|| {
        aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput::builder()
            .build()
    });
    let mocks = Mocks {
        elasticache: vec![&subnets, &describe, &modify],
        secrets: vec![&secret],
        ..Default::default()
    };
    let longer = acme().with_spec(|s| s["backup"]["retention_days"] = json!(14));
    let (deps, recorder) = mocks.deps_with(&longer);
    let out = handle(&deps, event("ensure-redis")).await.expect("ensure");
    assert_eq!(modify.num_calls(), 0, "not while it snapshots");
    assert_eq!(out["ready"], json!(false));
    let entries = recorder.entries.lock().unwrap();
    let detail = entries
        .last()
        .and_then(|e| e.detail.clone())
        .unwrap_or_default();
    assert!(
        detail.contains("snapshot retention 14 days wait"),
        "{detail}"
    );
}

/// A group in `status` with `nodes` members, failover and Multi-AZ on or off.
fn group_of(status: &str, nodes: usize, failover: bool) -> ReplicationGroup {
    let mut g = group(status);
    g.member_clusters = Some((1..=nodes).map(|i| format!("{GROUP}-00{i}")).collect());
    let (f, m) = if failover {
        (AutomaticFailoverStatus::Enabled, MultiAzStatus::Enabled)
    } else {
        (AutomaticFailoverStatus::Disabled, MultiAzStatus::Disabled)
    };
    g.automatic_failover = Some(f);
    g.multi_az = Some(m);
    g
}

/// DescribeReplicationGroups finding [`group_of`].
fn group_with(status: &'static str, nodes: usize, failover: bool) -> Rule {
    let g = group_of(status, nodes, failover);
    mock!(ElastiCache::describe_replication_groups).then_output(move || {
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(g.clone())
            .build()
    })
}

#[tokio::test]
async fn multi_az_turned_off_turns_failover_off_then_removes_the_replica() {
    use aws_sdk_elasticache::operation::decrease_replica_count::DecreaseReplicaCountOutput;
    use aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput;
    let (subnets, secret) = (subnet_group_found(), secret_found());
    let modify = mock!(ElastiCache::modify_replication_group)
        .match_requests(|r| {
            r.replication_group_id() == Some(GROUP)
                && r.automatic_failover_enabled() == Some(false)
                && r.multi_az_enabled() == Some(false)
                && r.apply_immediately() == Some(true)
                && r.snapshot_retention_limit().is_none()
        })
        .then_output(|| ModifyReplicationGroupOutput::builder().build());
    let decrease = mock!(ElastiCache::decrease_replica_count)
        .match_requests(|r| {
            r.replication_group_id() == Some(GROUP)
                && r.new_replica_count() == Some(0)
                && r.apply_immediately() == Some(true)
        })
        .then_output(|| DecreaseReplicaCountOutput::builder().build());

    // Round one: two nodes, failover on.
    let failing_over = group_with("available", 2, true);
    let mocks = Mocks {
        elasticache: vec![&subnets, &failing_over, &modify, &decrease],
        secrets: vec![&secret],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-redis")).await.expect("ensure");
    assert_eq!((modify.num_calls(), decrease.num_calls()), (1, 0), "{out}");
    assert_eq!(out["ready"], json!(false), "the replica goes next: {out}");

    // Round two: failover off, the replica still there.
    let one_too_many = group_with("available", 2, false);
    let mocks = Mocks {
        elasticache: vec![&subnets, &one_too_many, &modify, &decrease],
        secrets: vec![&secret],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    handle(&deps, event("ensure-redis")).await.expect("ensure");
    assert_eq!((modify.num_calls(), decrease.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_change_waiting_for_a_busy_group_is_made_on_the_next_round() {
    use aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput;
    let (subnets, secret) = (subnet_group_found(), secret_found());
    let modify = mock!(ElastiCache::modify_replication_group)
        .match_requests(|r| {
            r.snapshot_retention_limit() == Some(14) && r.automatic_failover_enabled().is_none()
        })
        .then_output(|| ModifyReplicationGroupOutput::builder().build());
    let longer = acme().with_spec(|s| s["backup"]["retention_days"] = json!(14));
    for (status, calls) in [("snapshotting", 0), ("available", 1)] {
        let described = describe_group(status);
        let mocks = Mocks {
            elasticache: vec![&subnets, &described, &modify],
            secrets: vec![&secret],
            ..Default::default()
        };
        let (deps, _) = mocks.deps_with(&longer);
        handle(&deps, event("ensure-redis")).await.expect("ensure");
        assert_eq!(modify.num_calls(), calls, "{status}");
    }
}
