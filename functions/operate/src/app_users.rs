//! The pods' own database users' passwords, rotated by alternating users (see
//! [`apiary_core::outputs::app_users`]) with no moment when a running pod's login stops
//! working:
//!
//! 1. `app-users-stage`: for each store's app secret, a new version naming the other
//!    user with a generated password, labelled `AWSPENDING`. Its id is the execution's
//!    request token, so a retried step finds it rather than staging a second one.
//! 2. The verifier (`ensure-app-user` with `rotation`) sets that password on that user in
//!    the store and logs in with it.
//! 3. `app-users-promote`: the staged version becomes `AWSCURRENT` (Secrets Manager
//!    labels the one before `AWSPREVIOUS`); then the pods' mount syncs and they restart.
//!
//! The pods still running use the previous user, whose password is unchanged until the
//! next rotation gives that user a new one; by then every pod has restarted twice.

use apiary_core::naming::client_token;
use apiary_core::outputs::{DatastoreEndpoint, app_users};
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use serde::Serialize;
use serde_json::Value;

use crate::{Deps, OperateAction};

const PENDING: &str = "AWSPENDING";
const CURRENT: &str = "AWSCURRENT";

#[derive(Debug, Clone, Default, Serialize)]
pub struct AppUsersReport {
    pub users: Vec<AppUserRotation>,
    /// Why the step did nothing (`null` when it ran).
    pub skipped: Option<String>,
}

impl AppUsersReport {
    pub fn skipped(reason: &str) -> Self {
        AppUsersReport {
            users: Vec::new(),
            skipped: Some(reason.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppUserRotation {
    /// `postgres` or `documentdb`.
    pub store: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_arn: Option<String>,
    /// The user the pods used, and the one they move to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_user: Option<String>,
    /// The new version's id (the request token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Its labels after this step.
    pub stages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl AppUserRotation {
    fn absent(store: &str) -> Self {
        AppUserRotation {
            store: store.to_owned(),
            secret_arn: None,
            from_user: None,
            to_user: None,
            version_id: None,
            stages: Vec::new(),
            note: Some(format!(
                "no {store} endpoint: the spec leaves it out or the emulator cannot build it"
            )),
        }
    }
}

/// Each store with an app user, with its secret's ARN; an endpoint kept without one is
/// refused, named, before anything changes.
fn stores(step: &StepContext<'_, OperateAction>) -> Result<Vec<(&'static str, Option<String>)>> {
    let databases = step.layers.databases()?;
    let endpoints: [(&'static str, &Option<DatastoreEndpoint>); 2] = [
        ("postgres", &databases.postgres),
        ("documentdb", &databases.documentdb),
    ];
    endpoints
        .into_iter()
        .map(|(store, endpoint)| match endpoint {
            None => Ok((store, None)),
            Some(e) => e
                .app_secret_arn
                .clone()
                .filter(|a| !a.is_empty())
                .map(|arn| (store, Some(arn)))
                .ok_or_else(|| {
                    Error::invalid_input(format!(
                        "layers.databases.{store}.app_secret_arn is missing: the pods' own \
                         {store} user has no secret to rotate; run provision to make it"
                    ))
                }),
        })
        .collect()
}

async fn describe(deps: &Deps, secret: &str) -> Result<DescribeSecretOutput> {
    deps.secrets
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeSecret {secret}"), e))
}

fn stages_of(described: &DescribeSecretOutput, version: &str) -> Option<Vec<String>> {
    described
        .version_ids_to_stages()
        .and_then(|versions| versions.get(version))
        .cloned()
}

/// `app-users-stage`.
pub(crate) async fn stage(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
) -> Result<Done<AppUsersReport>> {
    let mut report = AppUsersReport::default();
    for (store, secret) in stores(step)? {
        report.users.push(match secret {
            Some(secret) => stage_one(deps, step, store, &secret).await?,
            None => AppUserRotation::absent(store),
        });
    }
    let staged: Vec<String> = report
        .users
        .iter()
        .filter_map(|u| Some(format!("{} -> {}", u.store, u.to_user.as_deref()?)))
        .collect();
    Ok(Done::ready(report).with_detail(format!(
        "staged the pods' next database users: {}",
        if staged.is_empty() {
            "none".to_owned()
        } else {
            staged.join(", ")
        }
    )))
}

async fn stage_one(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
    store: &str,
    secret: &str,
) -> Result<AppUserRotation> {
    let token = client_token(&[&step.execution_id, secret]);
    // The label named, though it is the default: the local emulator keeps returning the
    // first version after a label moves.
    let current = deps
        .secrets
        .get_secret_value()
        .secret_id(secret)
        .version_stage(CURRENT)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetSecretValue {secret}"), e))?;
    let mut value: Value = current
        .secret_string()
        .and_then(|s| serde_json::from_str(s).ok())
        .filter(Value::is_object)
        .ok_or_else(|| {
            Error::fatal(format!(
                "secret {secret} is not a JSON object with the {store} user's credentials"
            ))
        })?;
    let described = describe(deps, secret).await?;
    if let Some(stages) = stages_of(&described, &token) {
        // Staged by an earlier attempt of this step (or already promoted): the same
        // rotation, not a second one.
        let staged = deps
            .secrets
            .get_secret_value()
            .secret_id(secret)
            .version_id(&token)
            .send()
            .await
            .map_err(|e| Error::aws(format!("GetSecretValue {secret} version {token}"), e))?;
        let to_user = staged
            .secret_string()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .and_then(|v| v.get("username").and_then(Value::as_str).map(str::to_owned));
        return Ok(AppUserRotation {
            store: store.to_owned(),
            secret_arn: Some(secret.to_owned()),
            from_user: None,
            to_user,
            version_id: Some(token),
            stages,
            note: Some("staged by an earlier attempt of this execution".to_owned()),
        });
    }
    let from = value
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let to = app_users::next(&from);
    let password = crate::redis::generate(deps).await?;
    value["username"] = Value::from(to);
    value["password"] = Value::from(password);
    match apiary_core::aws::answer_or_none(
        format!("PutSecretValue {secret}"),
        deps.secrets
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(&token)
            .secret_string(value.to_string())
            .version_stages(PENDING)
            .send(),
        // The version exists with another value: an earlier attempt's write landed
        // after the DescribeSecret above looked (Secrets Manager is eventually
        // consistent). That one is the rotation.
        |e| e.is_resource_exists_exception(),
    )
    .await?
    {
        Some(_) => step.log.created(&format!("{secret}:{token}")),
        None => tracing::info!(%secret, "the staged version already exists"),
    }
    Ok(AppUserRotation {
        store: store.to_owned(),
        secret_arn: Some(secret.to_owned()),
        from_user: Some(from),
        to_user: Some(to.to_owned()),
        version_id: Some(token),
        stages: vec![PENDING.to_owned()],
        note: None,
    })
}

/// `app-users-promote`: runs after the verifier has set each staged password in its
/// store, so the version it makes current already logs in.
pub(crate) async fn promote(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
) -> Result<Done<AppUsersReport>> {
    let mut report = AppUsersReport::default();
    for (store, secret) in stores(step)? {
        report.users.push(match secret {
            Some(secret) => promote_one(deps, step, store, &secret).await?,
            None => AppUserRotation::absent(store),
        });
    }
    Ok(Done::ready(report).with_detail(
        "the pods' new database users are current; the pods read them at their restart",
    ))
}

async fn promote_one(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
    store: &str,
    secret: &str,
) -> Result<AppUserRotation> {
    let token = client_token(&[&step.execution_id, secret]);
    let described = describe(deps, secret).await?;
    let Some(stages) = stages_of(&described, &token) else {
        return Err(Error::fatal(format!(
            "secret {secret} has no version {token}: this execution's app-users-stage step \
             did not stage the {store} user's new password, so there is nothing to make \
             current"
        )));
    };
    if !stages.iter().any(|s| s == CURRENT) {
        let current = described
            .version_ids_to_stages()
            .into_iter()
            .flatten()
            .find(|(_, stages)| stages.iter().any(|s| s == CURRENT))
            .map(|(id, _)| id.clone());
        deps.secrets
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(CURRENT)
            .move_to_version_id(&token)
            .set_remove_from_version_id(current)
            .send()
            .await
            .map_err(|e| Error::aws(format!("UpdateSecretVersionStage {secret} AWSCURRENT"), e))?;
    }
    if stages.iter().any(|s| s == PENDING) {
        deps.secrets
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(PENDING)
            .remove_from_version_id(&token)
            .send()
            .await
            .map_err(|e| Error::aws(format!("UpdateSecretVersionStage {secret} AWSPENDING"), e))?;
    }
    step.log
        .resource("secretsmanager:secret", secret, Some(secret))
        .await?;
    Ok(AppUserRotation {
        store: store.to_owned(),
        secret_arn: Some(secret.to_owned()),
        from_user: None,
        to_user: None,
        version_id: Some(token),
        stages: vec![CURRENT.to_owned()],
        note: None,
    })
}
