//! The Redis AUTH token, rotated in two phases with no downtime.
//!
//! 1. `redis-rotate`: a new token is generated and kept in the secret as
//!    `pending_auth_token` (so a step run again after a crash reuses it), then
//!    `ModifyReplicationGroup` with `AuthTokenUpdateStrategy=ROTATE` starts making the
//!    group accept both the old and the new token (`rotation: "rotate-requested"`).
//! 2. `redis-status` polls until the group is `available` again; only then, with both
//!    tokens accepted, does the secret's current value become the new token
//!    (`rotation: "rotated"`, the old one kept as `previous_auth_token`), so a pod that
//!    starts at any moment reads a token the group accepts.
//! 3. The workloads function's `restart` restarts the ingestion pods, which read the
//!    secret when they start, and waits for the rollout: from then on every client uses
//!    the new token.
//! 4. `redis-set`: `AuthTokenUpdateStrategy=SET` with the new token drops the old one,
//!    and the secret forgets it; `redis-status` polls again.
//!
//! `ROTATE` is never the first token: a group without AUTH is refused
//! (`Apiary.Conflict`), since `ROTATE` on it would add a token while leaving
//! passwordless access open. The token values never reach a log or an output.

use apiary_core::naming::client_token;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use aws_sdk_elasticache::types::{AuthTokenUpdateStrategyType, ReplicationGroup};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{Deps, OperateAction};

/// ElastiCache accepts 16-128 printable characters; letters and digits only, as the
/// databases layer generates them.
const TOKEN_LENGTH: i64 = 64;

/// The phases the secret records: ROTATE asked for, then applied (before SET).
pub const ROTATE_REQUESTED: &str = "rotate-requested";
pub const ROTATED: &str = "rotated";

#[derive(Debug, Clone, Serialize)]
pub struct RedisReport {
    pub replication_group: Option<String>,
    /// `rotate-requested`, `rotated`, `set-requested`, `available`, `modifying` (or the
    /// group's other status), `not-built`, `nothing-to-set`, `already-rotated`, `skipped`.
    pub phase: String,
}

impl RedisReport {
    /// The input's scope rotates no secret.
    pub fn skipped() -> Self {
        report(None, "skipped")
    }
}

fn report(group: Option<&str>, phase: &str) -> RedisReport {
    RedisReport {
        replication_group: group.map(str::to_owned),
        phase: phase.to_owned(),
    }
}

/// The group and its secret, when the deployment has Redis.
struct Target {
    group_id: String,
    secret_arn: String,
}

fn target(step: &StepContext<'_, OperateAction>) -> Result<Option<Target>> {
    Ok(step.layers.databases()?.redis.as_ref().map(|redis| Target {
        group_id: redis.identifier.clone(),
        secret_arn: redis.secret_arn.clone(),
    }))
}

async fn describe(deps: &Deps, group_id: &str) -> Result<Option<ReplicationGroup>> {
    Ok(apiary_core::aws::answer_or_none(
        format!("DescribeReplicationGroups {group_id}"),
        deps.elasticache
            .describe_replication_groups()
            .replication_group_id(group_id)
            .send(),
        |e| e.is_replication_group_not_found_fault(),
    )
    .await?
    .and_then(|out| out.replication_groups.and_then(|g| g.into_iter().next())))
}

fn is_available(group: &ReplicationGroup) -> bool {
    group.status() == Some("available")
}

/// The secret's current value (JSON), never logged.
async fn read(deps: &Deps, secret: &str) -> Result<Value> {
    let value = deps
        .secrets
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetSecretValue {secret}"), e))?;
    value
        .secret_string()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .filter(|v| v.get("auth_token").and_then(Value::as_str).is_some())
        .ok_or_else(|| {
            Error::fatal(format!(
                "secret {secret} holds no auth_token field: restore its value before rotating"
            ))
        })
}

/// Writes the secret's new current value. The request token follows the execution and
/// the phase, so a repeat of the same write is the same version.
async fn write(deps: &Deps, secret: &str, value: &Value, token: &str) -> Result<()> {
    deps.secrets
        .put_secret_value()
        .secret_id(secret)
        .client_request_token(token)
        .secret_string(value.to_string())
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutSecretValue {secret}"), e))?;
    Ok(())
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

/// Phase 1: ROTATE to a new token, then make it the secret's current value.
pub(crate) async fn rotate(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
) -> Result<Done<RedisReport>> {
    let Some(target) = target(step)? else {
        return Ok(Done::ready(report(None, "not-built")));
    };
    let id = target.group_id.as_str();
    let Some(group) = describe(deps, id).await? else {
        return Ok(Done::ready(report(Some(id), "not-built")));
    };
    let mut value = read(deps, &target.secret_arn).await?;
    if matches!(field(&value, "rotation"), Some(ROTATE_REQUESTED | ROTATED)) {
        // ROTATE already went through for this rotation: the poll and SET remain.
        return Ok(Done::ready(report(Some(id), "already-rotated")));
    }
    if group.auth_token_enabled() != Some(true) {
        return Err(Error::Conflict(format!(
            "Redis replication group {id} has no AUTH token: ROTATE would add one while \
             leaving passwordless access open. Set a token first (ModifyReplicationGroup \
             with AuthTokenUpdateStrategy=SET and the token in secret {})",
            target.secret_arn
        )));
    }
    if !is_available(&group) {
        return Err(Error::NotReady {
            resource: format!("Redis replication group {id}"),
            detail: format!(
                "status {}; a token can be changed only while it is available",
                group.status().unwrap_or("unknown")
            ),
        });
    }
    let new_token = match field(&value, "pending_auth_token") {
        Some(token) => token.to_owned(),
        None => {
            let token = generate(deps).await?;
            value["pending_auth_token"] = json!(token);
            let request = client_token(&[&step.execution_id, id, "pending"]);
            write(deps, &target.secret_arn, &value, &request).await?;
            token
        }
    };
    deps.elasticache
        .modify_replication_group()
        .replication_group_id(id)
        .auth_token(&new_token)
        .auth_token_update_strategy(AuthTokenUpdateStrategyType::Rotate)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| modify_error(id, "ROTATE", e))?;
    step.log.created(&format!("{id}:auth-token-rotate"));
    value["rotation"] = json!(ROTATE_REQUESTED);
    let request = client_token(&[&step.execution_id, id, ROTATE_REQUESTED]);
    write(deps, &target.secret_arn, &value, &request).await?;
    Ok(Done::ready(report(Some(id), ROTATE_REQUESTED))
        .with_detail("ROTATE requested: once applied, the group accepts the old and the new token"))
}

/// A group busy with another change is not ready; anything else is the call's error.
fn modify_error(
    id: &str,
    strategy: &str,
    err: aws_sdk_elasticache::error::SdkError<
        aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupError,
        aws_sdk_elasticache::config::http::HttpResponse,
    >,
) -> Error {
    if err
        .as_service_error()
        .is_some_and(|e| e.is_invalid_replication_group_state_fault())
    {
        return Error::NotReady {
            resource: format!("Redis replication group {id}"),
            detail: format!("another change is being applied; {strategy} waits for it"),
        };
    }
    Error::aws(format!("ModifyReplicationGroup {id} ({strategy})"), err)
}

/// The poll between the phases: ready when the group is available again. A ROTATE that
/// has been applied makes the new token the secret's current value here.
pub(crate) async fn status(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
) -> Result<Done<RedisReport>> {
    let Some(target) = target(step)? else {
        return Ok(Done::ready(report(None, "not-built")));
    };
    let id = target.group_id.as_str();
    match describe(deps, id).await? {
        None => Ok(Done::ready(report(Some(id), "not-built"))),
        Some(group) if is_available(&group) => {
            let value = read(deps, &target.secret_arn).await?;
            if field(&value, "rotation") != Some(ROTATE_REQUESTED) {
                return Ok(Done::ready(report(Some(id), "available")));
            }
            let (Some(old), Some(new)) = (
                field(&value, "auth_token"),
                field(&value, "pending_auth_token"),
            ) else {
                return Err(Error::fatal(format!(
                    "secret {} records a ROTATE without its pending token: restore its \
                     previous version",
                    target.secret_arn
                )));
            };
            let rotated = json!({
                "auth_token": new,
                "previous_auth_token": old,
                "rotation": ROTATED,
            });
            let mut promoted = value.clone();
            if let (Some(object), Some(fields)) = (promoted.as_object_mut(), rotated.as_object()) {
                object.remove("pending_auth_token");
                object.extend(fields.clone());
            }
            let request = client_token(&[&step.execution_id, id, ROTATED]);
            write(deps, &target.secret_arn, &promoted, &request).await?;
            step.log.created(&format!("{id}:auth-token-current"));
            Ok(Done::ready(report(Some(id), ROTATED))
                .with_detail("ROTATE applied: the secret now holds the new token"))
        }
        Some(group) => {
            let status = group.status().unwrap_or("unknown").to_owned();
            Ok(Done::pending(
                report(Some(id), &status),
                vec![format!("Redis replication group {id} is {status}")],
            ))
        }
    }
}

/// Phase 2: SET the new token, which drops the old one; the secret forgets the old one.
pub(crate) async fn set(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
) -> Result<Done<RedisReport>> {
    let Some(target) = target(step)? else {
        return Ok(Done::ready(report(None, "not-built")));
    };
    let id = target.group_id.as_str();
    let Some(group) = describe(deps, id).await? else {
        return Ok(Done::ready(report(Some(id), "not-built")));
    };
    let value = read(deps, &target.secret_arn).await?;
    match field(&value, "rotation") {
        Some(ROTATED) => {}
        Some(ROTATE_REQUESTED) => {
            return Err(Error::NotReady {
                resource: format!("Redis replication group {id}"),
                detail: "its ROTATE is not applied yet; SET comes after it".to_owned(),
            });
        }
        _ => return Ok(Done::ready(report(Some(id), "nothing-to-set"))),
    }
    if !is_available(&group) {
        return Err(Error::NotReady {
            resource: format!("Redis replication group {id}"),
            detail: format!(
                "status {}; SET waits until the ROTATE is applied",
                group.status().unwrap_or("unknown")
            ),
        });
    }
    let token = field(&value, "auth_token").unwrap_or_default().to_owned();
    deps.elasticache
        .modify_replication_group()
        .replication_group_id(id)
        .auth_token(&token)
        .auth_token_update_strategy(AuthTokenUpdateStrategyType::Set)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| modify_error(id, "SET", e))?;
    step.log.created(&format!("{id}:auth-token-set"));
    let mut done = value.clone();
    if let Some(object) = done.as_object_mut() {
        object.remove("previous_auth_token");
        object.remove("rotation");
    }
    let request = client_token(&[&step.execution_id, id, "set"]);
    write(deps, &target.secret_arn, &done, &request).await?;
    Ok(Done::ready(report(Some(id), "set-requested"))
        .with_detail("SET requested: only the new token is accepted once it applies"))
}

/// A new password or token: letters and digits only, so any client's connection string
/// takes it (ElastiCache accepts 16-128 printable characters without `@`, `"`, `/`).
pub(crate) async fn generate(deps: &Deps) -> Result<String> {
    deps.secrets
        .get_random_password()
        .password_length(TOKEN_LENGTH)
        .exclude_punctuation(true)
        .send()
        .await
        .map_err(|e| Error::aws("GetRandomPassword", e))?
        .random_password
        .ok_or_else(|| Error::fatal("GetRandomPassword returned no password"))
}
