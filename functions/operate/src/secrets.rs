//! The database master passwords RDS and DocumentDB manage in Secrets Manager: rotated
//! now with `RotateSecret`, with their schedule set explicitly in the same call (a
//! managed secret also rotates on its own schedule; RDS's default is every 7 days).
//!
//! The rotation's `ClientRequestToken` comes from the execution and the secret, so the
//! step run again after a crash asks for the same rotation rather than a second one. A
//! rotation still running (Secrets Manager: "A previous rotation isn't complete") is
//! `Apiary.NotReady`, retried by the workflow.

use apiary_core::naming::client_token;
use apiary_core::outputs::DatastoreEndpoint;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use aws_sdk_secretsmanager::operation::rotate_secret::RotateSecretError;
use aws_sdk_secretsmanager::types::RotationRulesType;
use serde::Serialize;

use crate::{Deps, OperateAction};

/// The schedule every managed master password gets: monthly, besides the quarterly run
/// of this workflow, so a password never lives longer than a month.
pub const MANAGED_ROTATION_SCHEDULE: &str = "rate(30 days)";

#[derive(Debug, Clone, Default, Serialize)]
pub struct SecretsReport {
    pub secrets: Vec<SecretReport>,
    /// Why the step did nothing (`null` when it ran).
    pub skipped: Option<String>,
}

impl SecretsReport {
    pub fn skipped(reason: &str) -> Self {
        SecretsReport {
            secrets: Vec::new(),
            skipped: Some(reason.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecretReport {
    /// `postgres` or `documentdb`.
    pub store: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_arn: Option<String>,
    pub rotated: bool,
    /// The new version's id (the request token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    pub schedule: Option<String>,
    /// What this run did not do, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

pub(crate) async fn run(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
) -> Result<Done<SecretsReport>> {
    let databases = step.layers.databases()?;
    let mut report = SecretsReport::default();
    for (store, endpoint) in [
        ("postgres", &databases.postgres),
        ("documentdb", &databases.documentdb),
    ] {
        let Some(endpoint) = endpoint else {
            report.secrets.push(SecretReport {
                store: store.to_owned(),
                secret_arn: None,
                rotated: false,
                version_id: None,
                schedule: None,
                note: Some(format!(
                    "no {store} endpoint: the spec leaves it out or the emulator cannot build it"
                )),
            });
            continue;
        };
        report
            .secrets
            .push(rotate(deps, step, store, endpoint).await?);
    }
    let notes = format!(
        "rotated {}; the verifier's check with the new credentials needs the data plane's \
         network: not verified locally",
        report
            .secrets
            .iter()
            .filter(|s| s.rotated)
            .map(|s| s.store.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Done::ready(report).with_detail(notes))
}

/// `database-secrets-status`: each password this execution rotated has finished
/// rotating, its new version (the request token) labelled `AWSCURRENT`. `RotateSecret`
/// only starts a rotation; the ingestion pods restart right after this step, and a pod
/// started before the new password is current would read the old one, which stops
/// working when the rotation ends.
pub(crate) async fn status(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
) -> Result<Done<SecretsReport>> {
    let databases = step.layers.databases()?;
    let mut report = SecretsReport::default();
    let mut pending = Vec::new();
    for (store, endpoint) in [
        ("postgres", &databases.postgres),
        ("documentdb", &databases.documentdb),
    ] {
        let Some(endpoint) = endpoint else {
            continue;
        };
        let secret = &endpoint.secret_arn;
        let token = client_token(&[&step.execution_id, secret]);
        let described = deps
            .secrets
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| Error::aws(format!("DescribeSecret {store} {secret}"), e))?;
        let stages = described
            .version_ids_to_stages()
            .and_then(|versions| versions.get(&token));
        let current = stages.is_some_and(|s| s.iter().any(|s| s == "AWSCURRENT"));
        if !current {
            pending.push(match stages {
                Some(stages) => format!(
                    "the {store} master password's new version {token} is {}, not yet AWSCURRENT",
                    stages.join(", ")
                ),
                None => format!(
                    "the {store} master password has no version {token} yet: its rotation has \
                     not started"
                ),
            });
        }
        report.secrets.push(SecretReport {
            store: store.to_owned(),
            secret_arn: Some(secret.clone()),
            rotated: current,
            version_id: Some(token),
            schedule: None,
            note: None,
        });
    }
    Ok(Done::pending(report, pending))
}

async fn rotate(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
    store: &str,
    endpoint: &DatastoreEndpoint,
) -> Result<SecretReport> {
    let secret = &endpoint.secret_arn;
    let token = client_token(&[&step.execution_id, secret]);
    let answer = deps
        .secrets
        .rotate_secret()
        .secret_id(secret)
        .client_request_token(&token)
        .rotation_rules(
            RotationRulesType::builder()
                .schedule_expression(MANAGED_ROTATION_SCHEDULE)
                .build(),
        )
        .rotate_immediately(true)
        .send()
        .await;
    match answer {
        Ok(out) => {
            step.log.created(&format!("{secret}:{token}"));
            step.log
                .resource("secretsmanager:secret", secret, Some(secret))
                .await?;
            Ok(SecretReport {
                store: store.to_owned(),
                secret_arn: Some(secret.clone()),
                rotated: true,
                version_id: out.version_id.or(Some(token)),
                schedule: Some(MANAGED_ROTATION_SCHEDULE.to_owned()),
                note: None,
            })
        }
        Err(err)
            if err.as_service_error().is_some_and(|e| match e {
                RotateSecretError::InvalidRequestException(e) => {
                    e.message().is_some_and(|m| m.contains("previous rotation"))
                }
                _ => false,
            }) =>
        {
            Err(Error::NotReady {
                resource: format!("the {store} master password secret {secret}"),
                detail: "a rotation is still in progress".to_owned(),
            })
        }
        Err(err) => Err(Error::aws(format!("RotateSecret {store} {secret}"), err)),
    }
}
