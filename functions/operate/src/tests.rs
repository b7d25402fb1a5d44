//! Unit tests with mocked clients: what the emulator cannot show (the stored rotation
//! period, the on-demand rotation quota, a rotation in progress, a group that is still
//! modifying) and the order of the Redis token's two phases.

use std::sync::{Arc, Mutex};

use apiary_core::ErrorName;
use apiary_core::fixtures::{Fixture, KEY_SCOPES};
use apiary_core::step::MemoryRecorder;
use aws_sdk_elasticache::Client as ElastiCache;
use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
use aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput;
use aws_sdk_elasticache::types::{AuthTokenUpdateStrategyType, ReplicationGroup};
use aws_sdk_kms::Client as Kms;
use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
use aws_sdk_kms::operation::enable_key_rotation::EnableKeyRotationOutput;
use aws_sdk_kms::operation::get_key_rotation_status::GetKeyRotationStatusOutput;
use aws_sdk_kms::operation::list_key_rotations::ListKeyRotationsOutput;
use aws_sdk_kms::operation::rotate_key_on_demand::{
    RotateKeyOnDemandError, RotateKeyOnDemandOutput,
};
use aws_sdk_kms::types::error::LimitExceededException;
use aws_sdk_kms::types::{KeyMetadata, KeyState, RotationType, RotationsListEntry};
use aws_sdk_secretsmanager::Client as Secrets;
use aws_sdk_secretsmanager::operation::get_random_password::GetRandomPasswordOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput;
use aws_sdk_secretsmanager::operation::rotate_secret::{RotateSecretError, RotateSecretOutput};
use aws_sdk_secretsmanager::types::error::InvalidRequestException;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::{Value, json};

use super::*;

const STARTED: &str = "2026-12-06T02:00:00Z";

fn fixture() -> Fixture {
    Fixture::test()
}

fn event(action: &str, input: Value) -> Value {
    let mut event = fixture().event(action);
    event["options"] = json!({"input": input, "started_at": STARTED});
    event
}

fn deps(kms: &[&Rule], secrets: &[&Rule], cache: &[&Rule]) -> (Deps, MemoryRecorder) {
    deps_with(fixture().state(), kms, secrets, cache)
}

fn deps_with(
    recorder: MemoryRecorder,
    kms: &[&Rule],
    secrets: &[&Rule],
    cache: &[&Rule],
) -> (Deps, MemoryRecorder) {
    (
        Deps {
            kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, kms.iter().copied()),
            secrets: mock_client!(
                aws_sdk_secretsmanager,
                RuleMode::MatchAny,
                secrets.iter().copied()
            ),
            elasticache: mock_client!(
                aws_sdk_elasticache,
                RuleMode::MatchAny,
                cache.iter().copied()
            ),
            recorder: Arc::new(recorder.clone()),
        },
        recorder,
    )
}

fn described(state: impl Fn(&str) -> KeyState + Send + Sync + 'static) -> Rule {
    mock!(Kms::describe_key).then_compute_output(move |request| {
        let id = request.key_id().unwrap_or_default().to_owned();
        DescribeKeyOutput::builder()
            .key_metadata(
                KeyMetadata::builder()
                    .key_id(&id)
                    .key_state(state(&id))
                    .build()
                    .unwrap(),
            )
            .build()
    })
}

fn rotation_status(period: i32) -> Rule {
    mock!(Kms::get_key_rotation_status).then_output(move || {
        GetKeyRotationStatusOutput::builder()
            .key_rotation_enabled(true)
            .rotation_period_in_days(period)
            .build()
    })
}

fn enable_rotation(days: i32) -> Rule {
    mock!(Kms::enable_key_rotation)
        .match_requests(move |r| r.rotation_period_in_days() == Some(days))
        .then_output(|| EnableKeyRotationOutput::builder().build())
}

fn rotations(on_demand_at: &[i64]) -> Rule {
    let dates = on_demand_at.to_vec();
    mock!(Kms::list_key_rotations).then_compute_output(move |request| {
        let mut out = ListKeyRotationsOutput::builder().truncated(false);
        for at in &dates {
            out = out.rotations(
                RotationsListEntry::builder()
                    .key_id(request.key_id().unwrap_or_default())
                    .rotation_type(RotationType::OnDemand)
                    .rotation_date(aws_smithy_types::DateTime::from_secs(*at))
                    .build(),
            );
        }
        out.build()
    })
}

fn started() -> i64 {
    chrono::DateTime::parse_from_rfc3339(STARTED)
        .unwrap()
        .timestamp()
}

#[tokio::test]
async fn keys_get_the_spec_period_and_an_on_demand_rotation_each() {
    let describe = described(|_| KeyState::Enabled);
    let status = rotation_status(730);
    let enable = enable_rotation(365);
    let listed = rotations(&[started() - 86_400]);
    let rotate =
        mock!(Kms::rotate_key_on_demand).then_output(|| RotateKeyOnDemandOutput::builder().build());
    let (deps, recorder) = deps(&[&describe, &status, &enable, &listed, &rotate], &[], &[]);

    let out = handle(
        &deps,
        event("keys", json!({"scope": "all", "on_demand": true})),
    )
    .await
    .expect("keys");
    assert_eq!(
        enable.num_calls(),
        KEY_SCOPES.len(),
        "730 days became the spec's 365"
    );
    assert_eq!(
        rotate.num_calls(),
        KEY_SCOPES.len(),
        "every key rotated on demand"
    );
    let keys = out["keys"].as_array().unwrap();
    assert_eq!(keys.len(), KEY_SCOPES.len());
    assert!(keys.iter().all(|k| k["rotation_period_days"] == json!(365)));
    assert!(keys.iter().all(|k| k["rotated_on_demand_at"].is_string()));
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(entries[0].step, "rotate-keys");
    assert_eq!(entries[0].outcome, "created");
}

#[tokio::test]
async fn a_rerun_after_a_crash_does_not_rotate_twice() {
    let describe = described(|_| KeyState::Enabled);
    let status = rotation_status(365);
    let enable = enable_rotation(365);
    // KMS lists an on-demand rotation made after this execution started: the first try's.
    let listed = rotations(&[started() - 86_400, started() + 30]);
    let rotate =
        mock!(Kms::rotate_key_on_demand).then_output(|| RotateKeyOnDemandOutput::builder().build());
    let (deps, recorder) = deps(&[&describe, &status, &enable, &listed, &rotate], &[], &[]);
    handle(&deps, event("keys", json!({"on_demand": true})))
        .await
        .expect("keys");
    assert_eq!(rotate.num_calls(), 0);
    assert_eq!(enable.num_calls(), 0, "the period is already the spec's");
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
}

#[tokio::test]
async fn the_on_demand_quota_is_refused_naming_the_key_and_its_count() {
    let describe = described(|_| KeyState::Enabled);
    let status = rotation_status(365);
    let listed = rotations(&[1, 2, 3]);
    let rotate = mock!(Kms::rotate_key_on_demand).then_error(|| {
        RotateKeyOnDemandError::LimitExceededException(
            LimitExceededException::builder()
                .message("The request was rejected because a quota was exceeded.")
                .meta(
                    ErrorMetadata::builder()
                        .code("LimitExceededException")
                        .build(),
                )
                .build(),
        )
    });
    let (deps, recorder) = deps(&[&describe, &status, &listed, &rotate], &[], &[]);
    let err = handle(&deps, event("keys", json!({"on_demand": true})))
        .await
        .unwrap_err();
    assert_eq!(
        err.name(),
        ErrorName::Fatal,
        "a quota never clears on retry"
    );
    let message = err.to_string();
    assert!(message.contains("app-key"), "names the key: {message}");
    assert!(message.contains("alias/apiary/acme-prod/app"), "{message}");
    assert!(message.contains("shows 3 on-demand rotations"), "{message}");
    assert_eq!(rotate.num_calls(), 1, "stops at the first refusal");
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "failed");
}

#[tokio::test]
async fn a_disabled_key_is_refused_and_the_others_still_checked() {
    let describe = described(|id| {
        if id == "rds-key" {
            KeyState::Disabled
        } else {
            KeyState::Enabled
        }
    });
    let status = rotation_status(365);
    let enable_key = mock!(Kms::enable_key)
        .then_output(|| aws_sdk_kms::operation::enable_key::EnableKeyOutput::builder().build());
    let (deps, _) = deps(&[&describe, &status, &enable_key], &[], &[]);
    let err = handle(&deps, event("keys", json!({"scope": "keys-check"})))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    assert!(err.to_string().contains("rds-key"), "{err}");
    assert!(!err.to_string().contains("app-key"), "{err}");
    assert_eq!(enable_key.num_calls(), 0, "never re-enabled");
    assert_eq!(
        status.num_calls(),
        KEY_SCOPES.len() - 1,
        "the others are checked"
    );
}

#[tokio::test]
async fn a_key_pending_deletion_is_cancelled_and_reported() {
    let describe = described(|id| {
        if id == "s3-key" {
            KeyState::PendingDeletion
        } else {
            KeyState::Enabled
        }
    });
    let status = rotation_status(365);
    let cancel = mock!(Kms::cancel_key_deletion)
        .match_requests(|r| r.key_id() == Some("s3-key"))
        .then_output(|| {
            aws_sdk_kms::operation::cancel_key_deletion::CancelKeyDeletionOutput::builder().build()
        });
    let (deps, _) = deps(&[&describe, &status, &cancel], &[], &[]);
    let err = handle(&deps, event("keys", json!({}))).await.unwrap_err();
    assert_eq!(cancel.num_calls(), 1);
    assert_eq!(err.name(), ErrorName::Conflict);
    assert!(err.to_string().contains("s3-key"), "{err}");
}

#[tokio::test]
async fn scopes_skip_what_they_leave_out() {
    let describe = described(|_| KeyState::Enabled);
    let rotate =
        mock!(Secrets::rotate_secret).then_output(|| RotateSecretOutput::builder().build());
    let (deps, _) = deps(&[&describe], &[&rotate], &[]);
    let out = handle(&deps, event("keys", json!({"scope": "secrets"})))
        .await
        .unwrap();
    assert!(out["skipped"].is_string());
    assert_eq!(out["keys"], json!([]));
    let out = handle(
        &deps,
        event("database-secrets", json!({"scope": "keys-check"})),
    )
    .await
    .unwrap();
    assert!(out["skipped"].is_string());
    let out = handle(&deps, event("redis-rotate", json!({"scope": "keys-check"})))
        .await
        .unwrap();
    assert_eq!(out["phase"], json!("skipped"));
    assert_eq!(describe.num_calls(), 0);
    assert_eq!(rotate.num_calls(), 0);
    let err = handle(
        &deps,
        event("keys", json!({"scope": "secrets", "on_demand": true})),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
}

#[tokio::test]
async fn master_passwords_rotate_with_an_explicit_schedule_and_a_stable_token() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let seen = tokens.clone();
    let rotate = mock!(Secrets::rotate_secret)
        .match_requests(move |r| {
            seen.lock()
                .unwrap()
                .push(r.client_request_token().unwrap_or_default().to_owned());
            r.rotate_immediately() == Some(true)
                && r.rotation_rules()
                    .and_then(|rules| rules.schedule_expression())
                    == Some(secrets::MANAGED_ROTATION_SCHEDULE)
        })
        .then_output(|| RotateSecretOutput::builder().version_id("v2").build());
    let (deps, _) = deps(&[], &[&rotate], &[]);
    let out = handle(&deps, event("database-secrets", json!({})))
        .await
        .unwrap();
    // The fixture has PostgreSQL and no DocumentDB.
    assert_eq!(rotate.num_calls(), 1);
    assert_eq!(out["secrets"][0]["rotated"], json!(true));
    assert_eq!(out["secrets"][1]["rotated"], json!(false));
    handle(&deps, event("database-secrets", json!({})))
        .await
        .unwrap();
    let tokens = tokens.lock().unwrap();
    assert_eq!(
        tokens[0], tokens[1],
        "a rerun of the execution asks for the same rotation"
    );
}

#[tokio::test]
async fn a_rotation_in_progress_is_not_ready() {
    let rotate = mock!(Secrets::rotate_secret).then_error(|| {
        RotateSecretError::InvalidRequestException(
            InvalidRequestException::builder()
                .message("A previous rotation isn't complete. That rotation will be reattempted.")
                .meta(
                    ErrorMetadata::builder()
                        .code("InvalidRequestException")
                        .build(),
                )
                .build(),
        )
    });
    let (deps, _) = deps(&[], &[&rotate], &[]);
    let err = handle(&deps, event("database-secrets", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady);
}

/// DescribeSecret of a secret whose version `token` carries `stages`.
fn secret_versions(stages: &'static [&'static str]) -> Rule {
    mock!(Secrets::describe_secret).then_compute_output(move |request| {
        // The version this execution's RotateSecret asked for: the same token.
        let event = fixture().event("x");
        let execution = event["execution_id"].as_str().unwrap();
        let token = apiary_core::naming::client_token(&[execution, request.secret_id().unwrap()]);
        let mut versions = std::collections::HashMap::new();
        versions.insert("old".to_owned(), vec!["AWSPREVIOUS".to_owned()]);
        versions.insert(
            token,
            stages.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        );
        aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput::builder()
            .set_version_ids_to_stages(Some(versions))
            .build()
    })
}

#[tokio::test]
async fn the_pods_restart_only_once_the_new_password_is_current() {
    let pending = secret_versions(&["AWSPENDING"]);
    let (waiting, _) = deps(&[], &[&pending], &[]);
    let out = handle(&waiting, event("database-secrets-status", json!({})))
        .await
        .unwrap();
    assert_eq!(out["ready"], json!(false), "{out}");
    assert!(out["pending"].to_string().contains("AWSPENDING"), "{out}");

    let current = secret_versions(&["AWSCURRENT"]);
    let (done, _) = deps(&[], &[&current], &[]);
    let out = handle(&done, event("database-secrets-status", json!({})))
        .await
        .unwrap();
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(out["secrets"][0]["rotated"], json!(true), "{out}");

    // A keys-only run rotated nothing and waits for nothing.
    let untouched = secret_versions(&["AWSPENDING"]);
    let (keys_only, _) = deps(&[], &[&untouched], &[]);
    let out = handle(
        &keys_only,
        event("database-secrets-status", json!({"scope": "keys-check"})),
    )
    .await
    .unwrap();
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(untouched.num_calls(), 0);
}

/// A Redis group and its secret, with every call that changes them recorded in order.
struct RedisWorld {
    calls: Arc<Mutex<Vec<String>>>,
    secret: Arc<Mutex<Value>>,
    status: Arc<Mutex<&'static str>>,
}

impl RedisWorld {
    fn new(auth: bool) -> (Self, Vec<Rule>, Vec<Rule>) {
        let world = RedisWorld {
            calls: Arc::default(),
            secret: Arc::new(Mutex::new(json!({"auth_token": "old-token", "port": 6379}))),
            status: Arc::new(Mutex::new("available")),
        };
        let status = world.status.clone();
        let describe =
            mock!(ElastiCache::describe_replication_groups).then_compute_output(move |_| {
                DescribeReplicationGroupsOutput::builder()
                    .replication_groups(
                        ReplicationGroup::builder()
                            .replication_group_id("apiary-acme-prod-redis")
                            .status(*status.lock().unwrap())
                            .auth_token_enabled(auth)
                            .build(),
                    )
                    .build()
            });
        let (calls, status) = (world.calls.clone(), world.status.clone());
        let modify = mock!(ElastiCache::modify_replication_group)
            .match_requests(move |r| {
                let strategy = match r.auth_token_update_strategy() {
                    Some(AuthTokenUpdateStrategyType::Rotate) => "ROTATE",
                    Some(AuthTokenUpdateStrategyType::Set) => "SET",
                    _ => "other",
                };
                calls
                    .lock()
                    .unwrap()
                    .push(format!("{strategy} {}", r.auth_token().unwrap_or_default()));
                *status.lock().unwrap() = "modifying";
                true
            })
            .then_output(|| ModifyReplicationGroupOutput::builder().build());
        let secret = world.secret.clone();
        let get = mock!(Secrets::get_secret_value).then_compute_output(move |_| {
            GetSecretValueOutput::builder()
                .secret_string(secret.lock().unwrap().to_string())
                .build()
        });
        let (calls, secret) = (world.calls.clone(), world.secret.clone());
        let put = mock!(Secrets::put_secret_value)
            .match_requests(move |r| {
                let value: Value = serde_json::from_str(r.secret_string().unwrap()).unwrap();
                calls.lock().unwrap().push(format!(
                    "secret current={} rotation={}",
                    value["auth_token"].as_str().unwrap(),
                    value["rotation"].as_str().unwrap_or("-")
                ));
                *secret.lock().unwrap() = value;
                true
            })
            .then_output(|| PutSecretValueOutput::builder().build());
        let password = mock!(Secrets::get_random_password).then_output(|| {
            GetRandomPasswordOutput::builder()
                .random_password("new-token")
                .build()
        });
        (world, vec![describe, modify], vec![get, put, password])
    }

    fn applied(&self) {
        *self.status.lock().unwrap() = "available";
    }
}

#[tokio::test]
async fn the_redis_token_rotates_then_restarts_then_sets() {
    let (world, cache, secrets) = RedisWorld::new(true);
    let cache: Vec<&Rule> = cache.iter().collect();
    let secrets: Vec<&Rule> = secrets.iter().collect();
    let (deps, _) = deps(&[], &secrets, &cache);
    let input = json!({"scope": "secrets"});

    let out = handle(&deps, event("redis-rotate", input.clone()))
        .await
        .unwrap();
    assert_eq!(out["phase"], json!("rotate-requested"));
    // While ROTATE applies the pods keep the old token.
    let out = handle(&deps, event("redis-status", json!({})))
        .await
        .unwrap();
    assert_eq!(out["ready"], json!(false));
    assert_eq!(
        world.secret.lock().unwrap()["auth_token"],
        json!("old-token")
    );
    world.applied();
    let out = handle(&deps, event("redis-status", json!({})))
        .await
        .unwrap();
    assert_eq!(out["phase"], json!("rotated"));
    // A second ROTATE is never sent for the same rotation.
    let out = handle(&deps, event("redis-rotate", input.clone()))
        .await
        .unwrap();
    assert_eq!(out["phase"], json!("already-rotated"));
    // (the workloads function restarts the pods here)
    let out = handle(&deps, event("redis-set", input.clone()))
        .await
        .unwrap();
    assert_eq!(out["phase"], json!("set-requested"));
    world.applied();
    let out = handle(&deps, event("redis-set", input)).await.unwrap();
    assert_eq!(out["phase"], json!("nothing-to-set"));

    let calls = world.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            "secret current=old-token rotation=-",
            "ROTATE new-token",
            "secret current=old-token rotation=rotate-requested",
            "secret current=new-token rotation=rotated",
            "SET new-token",
            "secret current=new-token rotation=-",
        ],
        "the new token is kept first, ROTATE before the pods see it, SET last"
    );
    let secret = world.secret.lock().unwrap().clone();
    assert_eq!(secret, json!({"auth_token": "new-token", "port": 6379}));
}

#[tokio::test]
async fn a_group_without_auth_is_never_rotated_first() {
    let (world, cache, secrets) = RedisWorld::new(false);
    let cache: Vec<&Rule> = cache.iter().collect();
    let secrets: Vec<&Rule> = secrets.iter().collect();
    let (deps, _) = deps(&[], &secrets, &cache);
    let err = handle(&deps, event("redis-rotate", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    assert!(err.to_string().contains("apiary-acme-prod-redis"), "{err}");
    assert!(world.calls.lock().unwrap().is_empty(), "nothing changed");
}

#[tokio::test]
async fn a_rotate_interrupted_before_the_call_reuses_its_token() {
    let (world, cache, secrets) = RedisWorld::new(true);
    *world.secret.lock().unwrap() =
        json!({"auth_token": "old-token", "pending_auth_token": "kept-token"});
    let cache: Vec<&Rule> = cache.iter().collect();
    let secrets: Vec<&Rule> = secrets.iter().collect();
    let (deps, _) = deps(&[], &secrets, &cache);
    handle(&deps, event("redis-rotate", json!({})))
        .await
        .unwrap();
    let calls = world.calls.lock().unwrap().clone();
    assert_eq!(calls[0], "ROTATE kept-token");
    let out = handle(&deps, event("redis-set", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        out.name(),
        ErrorName::NotReady,
        "SET waits for the ROTATE to apply"
    );
}

#[tokio::test]
async fn a_deployment_without_redis_has_nothing_to_rotate() {
    let fixture = fixture().with_layers(|layers| {
        layers.databases.as_mut().unwrap().redis = None;
    });
    let (deps, _) = deps_with(fixture.state(), &[], &[], &[]);
    let out = handle(&deps, event("redis-rotate", json!({})))
        .await
        .unwrap();
    assert_eq!(out["phase"], json!("not-built"));
}
