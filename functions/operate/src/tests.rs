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

/// A pods' users step's event: the input, and what pods-credentials found.
fn users_event(action: &str, input: Value, pods_current: bool) -> Value {
    let mut event = event(action, input);
    event["options"]["pods"] = json!({"current": pods_current, "verified": true,
        "detail": if pods_current { "on the current versions" } else { "pods read p1, current p2" }});
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

/// A secret's versions as Secrets Manager keeps them: id -> (value, labels).
type Versions = Arc<Mutex<Vec<(String, String, Vec<String>)>>>;

/// Secrets Manager over `versions`, for the pods' users' secret: reads by id or label,
/// describes the labels, stages a version (refusing a second value under one id), moves
/// labels as UpdateSecretVersionStage does, and hands out numbered passwords.
fn secret_store(versions: &Versions) -> Vec<Rule> {
    use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
    use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;
    use aws_sdk_secretsmanager::operation::update_secret_version_stage::UpdateSecretVersionStageOutput;
    use aws_sdk_secretsmanager::types::error::ResourceExistsException;

    let v = versions.clone();
    let get = mock!(Secrets::get_secret_value).then_compute_output(move |r| {
        let versions = v.lock().unwrap();
        let found = versions
            .iter()
            .find(
                |(id, _, stages)| match (r.version_id(), r.version_stage()) {
                    (Some(want), _) => id == want,
                    (None, stage) => stages.iter().any(|s| s == stage.unwrap_or("AWSCURRENT")),
                },
            )
            .expect("the version asked for");
        GetSecretValueOutput::builder()
            .version_id(&found.0)
            .secret_string(&found.1)
            .build()
    });
    let v = versions.clone();
    let describe = mock!(Secrets::describe_secret).then_compute_output(move |_| {
        let versions = v.lock().unwrap();
        DescribeSecretOutput::builder()
            .set_version_ids_to_stages(Some(
                versions
                    .iter()
                    .map(|(id, _, stages)| (id.clone(), stages.clone()))
                    .collect(),
            ))
            .build()
    });
    let v = versions.clone();
    let put = mock!(Secrets::put_secret_value).then_compute_response(move |r| {
        let mut versions = v.lock().unwrap();
        let token = r.client_request_token().unwrap().to_owned();
        if versions.iter().any(|(id, _, _)| *id == token) {
            return aws_smithy_mocks::MockResponse::Error(
                PutSecretValueError::ResourceExistsException(
                    ResourceExistsException::builder().build(),
                ),
            );
        }
        for (_, _, stages) in versions.iter_mut() {
            stages.retain(|s| s != "AWSPENDING");
        }
        versions.push((
            token.clone(),
            r.secret_string().unwrap().to_owned(),
            r.version_stages().to_vec(),
        ));
        aws_smithy_mocks::MockResponse::Output(
            PutSecretValueOutput::builder().version_id(token).build(),
        )
    });
    let v = versions.clone();
    let update = mock!(Secrets::update_secret_version_stage).then_compute_output(move |r| {
        let mut versions = v.lock().unwrap();
        let stage = r.version_stage().unwrap().to_owned();
        for (id, _, stages) in versions.iter_mut() {
            if Some(id.as_str()) == r.remove_from_version_id() {
                stages.retain(|s| *s != stage);
                if stage == "AWSCURRENT" {
                    stages.push("AWSPREVIOUS".into());
                }
            }
            if Some(id.as_str()) == r.move_to_version_id() {
                stages.push(stage.clone());
            }
        }
        UpdateSecretVersionStageOutput::builder().build()
    });
    let count = Arc::new(Mutex::new(0));
    let password = mock!(Secrets::get_random_password).then_compute_output(move |_| {
        let mut n = count.lock().unwrap();
        *n += 1;
        GetRandomPasswordOutput::builder()
            .random_password(format!("generated-{n}"))
            .build()
    });
    vec![get, describe, put, update, password]
}

fn current(versions: &Versions) -> Value {
    let versions = versions.lock().unwrap();
    let (_, value, _) = versions
        .iter()
        .find(|(_, _, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .unwrap();
    serde_json::from_str(value).unwrap()
}

/// The alternating-users rotation, step by step as a retried execution runs it: staging
/// twice stages one version for the other user; a promote that crashed between its two
/// calls finishes the second, and running it again changes nothing; another execution
/// that staged nothing has nothing to promote and says so. (The whole rotation runs
/// end to end in tests/operate.rs.)
#[tokio::test]
async fn the_pods_users_alternate_and_each_step_runs_twice_safely() {
    let versions: Versions = Arc::new(Mutex::new(vec![(
        "v-initial".into(),
        json!({"engine": "postgres", "username": "honeyhive_app_a", "password": "first",
               "dbname": "honeyhive"})
        .to_string(),
        vec!["AWSCURRENT".into()],
    )]));
    let rules = secret_store(&versions);
    let rules: Vec<&Rule> = rules.iter().collect();
    let (deps, _) = deps(&[], &rules, &[]);
    let input = json!({"scope": "secrets"});

    let staged = handle(&deps, users_event("app-users-stage", input.clone(), true))
        .await
        .unwrap();
    assert_eq!(staged["users"][0]["to_user"], "honeyhive_app_b", "{staged}");
    let again = handle(&deps, users_event("app-users-stage", input.clone(), true))
        .await
        .unwrap();
    assert_eq!(again["users"][0]["to_user"], "honeyhive_app_b", "{again}");
    assert_eq!(versions.lock().unwrap().len(), 2, "one staged version");
    assert_eq!(
        current(&versions)["username"],
        "honeyhive_app_a",
        "not yet current"
    );

    // A promote that crashed after its first call (AWSCURRENT moved, AWSPENDING not yet
    // dropped): the retry only drops AWSPENDING, and one more run changes nothing.
    let token = staged["users"][0]["version_id"]
        .as_str()
        .unwrap()
        .to_owned();
    {
        let mut versions = versions.lock().unwrap();
        versions[0].2 = vec!["AWSPREVIOUS".into()];
        versions[1].2 = vec!["AWSPENDING".into(), "AWSCURRENT".into()];
    }
    handle(&deps, users_event("app-users-promote", input.clone(), true))
        .await
        .unwrap();
    handle(&deps, users_event("app-users-promote", input.clone(), true))
        .await
        .unwrap();
    let now = current(&versions);
    assert_eq!(now["username"], "honeyhive_app_b");
    assert_eq!(now["password"], "generated-1");
    assert_eq!(now["dbname"], "honeyhive", "the other fields stay");
    let labels: Vec<(String, Vec<String>)> = versions
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _, stages)| (id.clone(), stages.clone()))
        .collect();
    assert_eq!(
        labels,
        [
            ("v-initial".to_owned(), vec!["AWSPREVIOUS".to_owned()]),
            (token, vec!["AWSCURRENT".to_owned()])
        ]
    );

    let mut other = users_event("app-users-promote", input.clone(), true);
    other["execution_id"] = json!("another-execution");
    let err = handle(&deps, other).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(err.to_string().contains("did not stage"), "{err}");
    assert_eq!(current(&versions)["username"], "honeyhive_app_b");

    // The keys-only scope touches none of it.
    let skipped = handle(
        &deps,
        users_event("app-users-stage", json!({"scope": "keys-check"}), true),
    )
    .await
    .unwrap();
    assert!(skipped["skipped"].is_string(), "{skipped}");
    assert_eq!(versions.lock().unwrap().len(), 2);

    // The pods do not all read the current versions (an earlier run stopped before its
    // restart): both steps leave the users alone and say why.
    for action in ["app-users-stage", "app-users-promote"] {
        let mut held = users_event(action, input.clone(), false);
        held["execution_id"] = json!("a-run-after-a-stopped-one");
        let held = handle(&deps, held).await.unwrap();
        assert!(
            held["skipped"]
                .as_str()
                .is_some_and(|s| s.contains("pods read p1, current p2")),
            "{action}: {held}"
        );
    }
    assert_eq!(versions.lock().unwrap().len(), 2, "nothing staged");
    assert_eq!(current(&versions)["username"], "honeyhive_app_b");
    // Never without the check.
    let err = handle(&deps, event("app-users-stage", input.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("options.pods"), "{err}");
}
