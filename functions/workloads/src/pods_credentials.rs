//! `pods-credentials`: rotate-keys asks, before it changes the pods' database users,
//! whether every ingestion pod runs on the credentials' current versions. Read-only.
//!
//! Why: the pods read their credentials into their environment when they start. A
//! rotation makes the other user of a pair current, then restarts the pods onto it. A run
//! that stopped between the two (the Redis step failed, the rollout timed out) leaves the
//! pods logging in as the previous user while the secret names the new one; nothing else
//! restarts them (handle-alert leaves secret changes to a rotation that is running). The
//! next rotation would give a new password to the previous user, the one the running pods
//! still use, and lock them out. So when the pods are not on the current versions, that
//! next rotation leaves the users alone (`current: false`: its users steps skip) and only
//! restarts the pods, which puts them on the current versions; the rotation after it
//! changes the users again.
//!
//! The record: every restart made for credentials ([`crate::restart`]) writes on the pod
//! template the current version of each of the pods' secrets
//! ([`CREDENTIALS_ANNOTATION`]); the pods of that template read those versions. The pods
//! are on the current credentials when that record names every secret's `AWSCURRENT`
//! version and the rollout is complete, or, before the first rotation, when no record
//! exists and no secret was ever rotated (no version is `AWSPREVIOUS`: the pods started
//! on the only version there is).
//!
//! Skipped when the input rotates no secret; not verified locally (rendered manifests, no
//! pods: `verified: false`, and the users steps go on); current without the CSI driver
//! (no pod reads a secret) or a Deployment.

use apiary_core::Result;
use apiary_core::outputs::app_users;
use apiary_core::step::{Done, StepContext};
use serde::Serialize;

use crate::manifests::Context;
use crate::manifests::credentials::{self, Credential};
use crate::restart::read_deployment;
use crate::{Deps, Target, WorkloadsAction, rollout, sync};

/// The pod template annotation naming the version of each of the pods' secrets the pods
/// of that template read: `documentdb=<version>,postgres=<version>,redis=<version>`.
pub const CREDENTIALS_ANNOTATION: &str = "apiary.io/credential-versions";

const PREVIOUS: &str = "AWSPREVIOUS";

#[derive(Debug, Clone, Serialize)]
pub struct PodsCredentialsOutput {
    /// Every pod runs on the current versions: the users may change. True also when
    /// nothing could be checked (`verified: false`, locally).
    pub current: bool,
    /// Whether there was a cluster to look at (false when only rendered).
    pub verified: bool,
    pub detail: String,
}

/// The secrets the record covers: the pods' own database users' (one per store, the
/// stores of [`app_users::STORES`]). Not the Redis token's: its rotation is safe on its
/// own when a run stops (ROTATE keeps the old token valid until SET), and SET writes
/// the secret again after the restart, so a record of it would never match.
pub fn recorded_secrets(credentials: &[Credential]) -> Result<Vec<(&'static str, &str)>> {
    credentials::require_secrets(credentials)?;
    let mut secrets: Vec<(&'static str, &str)> = Vec::new();
    for credential in credentials {
        if !app_users::STORES.contains(&credential.store)
            || secrets.iter().any(|(store, _)| *store == credential.store)
        {
            continue;
        }
        secrets.push((credential.store, &credential.secret_arn));
    }
    Ok(secrets)
}

/// Each recorded store ([`recorded_secrets`]) with its secret's `AWSCURRENT` version, and
/// whether any of them was ever rotated (has an `AWSPREVIOUS` version).
pub async fn current(
    deps: &Deps,
    credentials: &[Credential],
) -> Result<(Vec<(String, String)>, bool)> {
    let mut versions: Vec<(String, String)> = Vec::new();
    let mut rotated = false;
    for (store, arn) in recorded_secrets(credentials)? {
        let stages = sync::version_stages(deps, arn).await?;
        rotated |= stages
            .iter()
            .any(|(_, stages)| stages.iter().any(|s| s == PREVIOUS));
        versions.push((store.to_owned(), sync::current_of(arn, &stages)?));
    }
    Ok((versions, rotated))
}

/// The annotation's value for these versions: sorted by store, so equal sets compare
/// equal.
pub fn record(versions: &[(String, String)]) -> String {
    let mut pairs: Vec<String> = versions
        .iter()
        .map(|(store, version)| format!("{store}={version}"))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Whether the pods of a template recording `recorded` read the current credentials.
pub fn on_current(recorded: Option<&str>, expected: &str, rotated: bool) -> bool {
    match recorded {
        Some(recorded) => recorded == expected,
        None => !rotated,
    }
}

pub async fn pods_credentials(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<PodsCredentialsOutput>> {
    let client = match sync::credentials_cluster(
        step,
        target,
        "there are no pods; on AWS the users change only when every pod reads the current \
         credentials",
    )? {
        Ok(client) => client,
        Err((verified, detail)) => return Ok(ready(verified, detail)),
    };
    let ctx = Context::new(&step.spec, &step.layers)?;
    let credentials = credentials::credentials(&ctx);
    let (versions, rotated) = current(deps, &credentials).await?;
    let expected = record(&versions);
    let Some(deployment) = read_deployment(&client).await? else {
        return Ok(ready(
            true,
            "no ingestion Deployment: pods that start read the current versions".to_owned(),
        ));
    };
    let recorded = deployment
        .pointer(&template_annotation(CREDENTIALS_ANNOTATION))
        .and_then(serde_json::Value::as_str);
    if !on_current(recorded, &expected, rotated) {
        return Ok(stale(format!(
            "the ingestion pods read older credentials ({}) than the current ones ({expected}): \
             an earlier rotation stopped between making a user current and restarting the \
             pods. This run leaves the users alone and restarts the pods onto the current \
             ones; the next rotation changes the users",
            recorded.unwrap_or("none recorded, and a secret was rotated")
        )));
    }
    // A rollout not complete, or stuck (an error here): pods of an older template may
    // still run. Held back rather than failed, so that the run's own restart can still
    // put them right.
    let rollout = match rollout::status(&client, step.spec.sizing().ingestion_replicas_min).await {
        Ok(rollout) if rollout.ready => None,
        Ok(rollout) => Some(rollout.detail),
        Err(err) => Some(err.to_string()),
    };
    if let Some(why) = rollout {
        return Ok(stale(format!(
            "the ingestion pods' template reads the current credentials but its rollout is not \
             complete ({why}): pods of an older template may still run. This run leaves the \
             users alone and restarts the pods; the next rotation changes the users"
        )));
    }
    Ok(ready(
        true,
        format!("the ingestion pods run on the current credentials ({expected})"),
    ))
}

/// The JSON pointer of a pod template annotation in a Deployment.
pub fn template_annotation(name: &str) -> String {
    format!(
        "/spec/template/metadata/annotations/{}",
        name.replace('~', "~0").replace('/', "~1")
    )
}

fn ready(verified: bool, detail: String) -> Done<PodsCredentialsOutput> {
    Done::ready(PodsCredentialsOutput {
        current: true,
        verified,
        detail: detail.clone(),
    })
    .with_detail(detail)
}

/// Not on the current versions: an answer, not a wait (the run's own restart fixes it).
fn stale(detail: String) -> Done<PodsCredentialsOutput> {
    Done::ready(PodsCredentialsOutput {
        current: false,
        verified: true,
        detail: detail.clone(),
    })
    .with_detail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(store: &'static str, field: &'static str, arn: &str) -> Credential {
        Credential {
            env: format!("{store}_{field}").to_uppercase(),
            store,
            field,
            secret_arn: arn.to_owned(),
        }
    }

    /// The Redis token's secret is written again by SET after the restart: in the
    /// record, it would never match and every later rotation would hold the users back.
    #[test]
    fn the_record_covers_the_users_secrets_only() {
        let credentials = [
            credential("postgres", "username", "arn:pg-app"),
            credential("postgres", "password", "arn:pg-app"),
            credential("documentdb", "password", "arn:docdb-app"),
            credential("redis", "auth_token", "arn:redis-auth"),
        ];
        assert_eq!(
            recorded_secrets(&credentials).unwrap(),
            [("postgres", "arn:pg-app"), ("documentdb", "arn:docdb-app")]
        );
        let err = recorded_secrets(&[credential("postgres", "password", "")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("layers.databases.postgres.app_secret_arn"),
            "{err}"
        );
    }

    #[test]
    fn the_record_is_the_same_for_the_same_versions_in_any_order() {
        let a = record(&[
            ("redis".into(), "r1".into()),
            ("postgres".into(), "p1".into()),
        ]);
        let b = record(&[
            ("postgres".into(), "p1".into()),
            ("redis".into(), "r1".into()),
        ]);
        assert_eq!(a, b);
        assert_eq!(a, "postgres=p1,redis=r1");
    }

    /// The decision rotate-keys' users step depends on: the pods are on the current
    /// credentials only when their template records exactly the current versions, or
    /// when nothing was ever rotated and nothing is recorded.
    #[test]
    fn only_a_template_recording_the_current_versions_is_current() {
        let expected = "postgres=p2,redis=r1";
        assert!(on_current(Some(expected), expected, true));
        assert!(
            !on_current(Some("postgres=p1,redis=r1"), expected, true),
            "a rotation made p2 current and stopped before the restart"
        );
        assert!(
            on_current(None, expected, false),
            "never rotated: provision's pods"
        );
        assert!(
            !on_current(None, expected, true),
            "rotated, but no restart ever recorded what the pods read"
        );
    }
}
