//! `credentials-synced`: rotate-keys waits here, between rotating the stores' secrets and
//! restarting the ingestion pods, until the Secrets Store CSI driver has brought the new
//! versions into every pod's mount (and from there into the synced Secret the pods'
//! environment reads). A restart before that would start the pods with the old values:
//! for Redis, a token the rotation's second phase (SET) then removes.
//!
//! The proof is the driver's own record. For each pod that mounts the class, the driver
//! keeps a `SecretProviderClassPodStatus` whose `status.objects` lists every mounted file
//! with the Secrets Manager `VersionId` it came from (the AWS provider reports the
//! version it fetched, per file). The step reads each store secret's `AWSCURRENT`
//! version with `DescribeSecret` (metadata only, never the value) and is ready when
//! every mounted pod reports those versions. The driver writes the synced Secret from a
//! pod's files right after updating that pod's status, so once every status is current
//! the Secret is too (a write already under way when the last status changed can trail
//! it by moments; the rollout that follows the restart takes far longer).
//!
//! Only the records of live pods count: the driver never clears `mounted` when a pod's
//! volume is unmounted, and a record goes only with its pod, so an evicted or failed
//! pod still listed would hold old versions forever. The step reads the ingestion pods
//! and counts the records of those running and not being deleted.
//!
//! Read-only. Skipped when the input rotates no secret; not verified locally (rendered
//! manifests, no pods) and ready at once when no pod mounts the class (a pod mounting it
//! later fetches the current versions) or the cluster does not serve the driver's types.

use apiary_core::inputs::rotate_keys::{self, RotateKeysInput};
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use kube::core::params::ListParams;
use serde::Serialize;
use serde_json::Value;

use crate::apply::kube_error;
use crate::manifests::credentials::{self, Credential, GROUP};
use crate::manifests::{Context, NAMESPACE};
use crate::{Deps, Target, WorkloadsAction};

#[derive(Debug, Clone, Serialize)]
pub struct SyncOutput {
    /// Every mounted pod reports the current version of every credential file.
    pub synced: bool,
    /// Whether there was a cluster to look at (false when only rendered).
    pub verified: bool,
    /// Pods whose mount still holds an older version, with the file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<String>,
    pub detail: String,
}

pub async fn synced(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<SyncOutput>> {
    let client = match credentials_cluster(step, target, "no pod mounts the credentials")? {
        Ok(client) => client,
        Err((verified, detail)) => return Ok(ready(verified, detail)),
    };
    let ctx = Context::new(&step.spec, &step.layers)?;
    let credentials = credentials::credentials(&ctx);
    credentials::require_secrets(&credentials)?;
    let wanted = current_versions(deps, &credentials).await?;
    let statuses = match pod_statuses(&client).await? {
        Some(statuses) => statuses,
        None => {
            return Ok(ready(
                true,
                "the cluster does not serve SecretProviderClassPodStatus: no driver to wait for"
                    .to_owned(),
            ));
        }
    };
    let live = live_pods(&client).await?;
    let (mounted, behind) = compare(&statuses, &wanted, &live);
    if behind.is_empty() {
        let detail = if mounted == 0 {
            "no pod mounts the credentials: a pod that starts now fetches the current versions"
                .to_owned()
        } else {
            format!(
                "all {mounted} pods mounting {} hold the current versions",
                credentials::CLASS
            )
        };
        return Ok(ready(true, detail));
    }
    let detail = format!(
        "{} of {mounted} pods still hold an older secret version (the driver re-reads every {})",
        behind.len(),
        apiary_core::naming::SECRET_ROTATION_POLL
    );
    Ok(Done::pending(
        SyncOutput {
            synced: false,
            verified: true,
            behind: behind.clone(),
            detail: detail.clone(),
        },
        behind,
    )
    .with_detail(detail))
}

/// The cluster whose ingestion pods read the credentials, for a rotate-keys step; or,
/// with whether anything was verified, why there is nothing to look at: the input
/// rotates no secret, the manifests were only rendered (`locally` says what that
/// leaves out), or the cluster runs no Secrets Store CSI driver (no pod reads a
/// secret).
pub fn credentials_cluster(
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
    locally: &str,
) -> Result<std::result::Result<kube::Client, (bool, String)>> {
    let input: RotateKeysInput =
        apiary_core::inputs::from_options(rotate_keys::WORKFLOW, &step.options)?;
    if !input.secrets() {
        return Ok(Err((
            true,
            "skipped: the input's scope rotates no secret".to_owned(),
        )));
    }
    Ok(match target {
        Target::Render(folder) => Err((
            false,
            format!(
                "not verified locally: the manifests were rendered to {}, {locally}",
                folder.display()
            ),
        )),
        Target::Apply {
            auto_mode: false, ..
        } => Err((
            true,
            "the cluster does not run the Secrets Store CSI driver: no pod reads a secret"
                .to_owned(),
        )),
        Target::Apply { client, .. } => Ok(client),
    })
}

fn ready(verified: bool, detail: String) -> Done<SyncOutput> {
    Done::ready(SyncOutput {
        synced: verified,
        verified,
        behind: Vec::new(),
        detail: detail.clone(),
    })
    .with_detail(detail)
}

/// Each credential file (the object's alias and its `jmesPath` aliases) with the
/// `AWSCURRENT` version of its secret.
pub async fn current_versions(
    deps: &Deps,
    credentials: &[Credential],
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for credential in credentials {
        let version = match seen.iter().find(|(arn, _)| *arn == credential.secret_arn) {
            Some((_, version)) => version.clone(),
            None => {
                let version = current_version(deps, &credential.secret_arn).await?;
                seen.push((credential.secret_arn.clone(), version.clone()));
                out.push((credential.store.to_owned(), version.clone()));
                version
            }
        };
        out.push((credential.file(), version));
    }
    Ok(out)
}

async fn current_version(deps: &Deps, secret_arn: &str) -> Result<String> {
    current_of(secret_arn, &version_stages(deps, secret_arn).await?)
}

/// Each version of the secret with its staging labels (`DescribeSecret`: metadata only,
/// never the value).
pub async fn version_stages(deps: &Deps, secret_arn: &str) -> Result<Vec<(String, Vec<String>)>> {
    let described = deps
        .secrets
        .describe_secret()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeSecret {secret_arn}"), e))?;
    Ok(described
        .version_ids_to_stages()
        .into_iter()
        .flatten()
        .map(|(version, stages)| (version.clone(), stages.clone()))
        .collect())
}

/// The version labelled `AWSCURRENT` among `stages`.
pub fn current_of(secret_arn: &str, stages: &[(String, Vec<String>)]) -> Result<String> {
    stages
        .iter()
        .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .map(|(version, _)| version.clone())
        .ok_or_else(|| {
            Error::fatal(format!(
                "secret {secret_arn} has no AWSCURRENT version; a rotation left it without one"
            ))
        })
}

/// The driver's records of the pods mounting the class; `None` when the cluster does
/// not serve the type (no driver).
async fn pod_statuses(client: &kube::Client) -> Result<Option<Vec<Value>>> {
    let what = format!("SecretProviderClassPodStatus in {NAMESPACE}");
    let request = kube::core::Request::new(format!(
        "/apis/{GROUP}/v1/namespaces/{NAMESPACE}/secretproviderclasspodstatuses"
    ));
    let list = request
        .list(&ListParams::default())
        .map_err(|e| Error::fatal(format!("cannot build the list of {what}: {e}")))?;
    match client.request::<Value>(list).await {
        Ok(found) => Ok(Some(found["items"].as_array().cloned().unwrap_or_default())),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(err) => Err(kube_error(&what, "list", err, true)),
    }
}

/// The ingestion pods that are running and not being deleted.
async fn live_pods(client: &kube::Client) -> Result<Vec<String>> {
    let what = format!("the ingestion pods in {NAMESPACE}");
    let request = kube::core::Request::new(format!("/api/v1/namespaces/{NAMESPACE}/pods"));
    let list = request
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            crate::manifests::LABEL_NAME,
            crate::manifests::APP
        )))
        .map_err(|e| Error::fatal(format!("cannot build the list of {what}: {e}")))?;
    let found: Value = client
        .request(list)
        .await
        .map_err(|err| kube_error(&what, "list", err, false))?;
    Ok(found["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| {
            pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null()
        })
        .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_owned))
        .collect())
}

/// How many live pods mount the class, and each mounted file of theirs whose version is
/// not the wanted one (`pod: file at version, current version`). Records of pods not in
/// `live` are left out.
pub fn compare(
    statuses: &[Value],
    wanted: &[(String, String)],
    live: &[String],
) -> (usize, Vec<String>) {
    let mut mounted = 0;
    let mut behind = Vec::new();
    for status in statuses {
        let status = &status["status"];
        let live_pod = status["podName"]
            .as_str()
            .is_some_and(|pod| live.iter().any(|l| l == pod));
        if status["secretProviderClassName"] != credentials::CLASS
            || status["mounted"] != Value::Bool(true)
            || !live_pod
        {
            continue;
        }
        mounted += 1;
        let pod = status["podName"].as_str().unwrap_or("a pod");
        let objects = status["objects"].as_array().cloned().unwrap_or_default();
        for (file, version) in wanted {
            let held = objects
                .iter()
                .find(|o| o["id"] == file.as_str())
                .and_then(|o| o["version"].as_str());
            if held != Some(version.as_str()) {
                behind.push(format!(
                    "pod {pod}: {file} at {}, current {version}",
                    held.unwrap_or("no version")
                ));
            }
        }
    }
    (mounted, behind)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status(pod: &str, mounted: bool, objects: &[(&str, &str)]) -> Value {
        json!({"status": {
            "podName": pod,
            "secretProviderClassName": credentials::CLASS,
            "mounted": mounted,
            "objects": objects.iter().map(|(id, v)| json!({"id": id, "version": v})).collect::<Vec<_>>(),
        }})
    }

    fn wanted() -> Vec<(String, String)> {
        [("redis", "v2"), ("redis-auth-token", "v2")]
            .into_iter()
            .map(|(f, v)| (f.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn a_pod_at_an_older_version_is_named_and_current_pods_are_not() {
        let statuses = [
            status(
                "ingestion-a",
                true,
                &[("redis", "v2"), ("redis-auth-token", "v2")],
            ),
            status(
                "ingestion-b",
                true,
                &[("redis", "v1"), ("redis-auth-token", "v1")],
            ),
            status("ingestion-c", false, &[("redis", "v1")]),
            json!({"status": {"podName": "other", "secretProviderClassName": "another",
                              "mounted": true, "objects": []}}),
        ];
        let live = ["ingestion-a", "ingestion-b", "ingestion-c", "other"].map(str::to_owned);
        let (mounted, behind) = compare(&statuses, &wanted(), &live);
        assert_eq!(mounted, 2, "unmounted and other classes' pods do not count");
        assert_eq!(
            behind,
            [
                "pod ingestion-b: redis at v1, current v2",
                "pod ingestion-b: redis-auth-token at v1, current v2"
            ]
        );
    }

    #[test]
    fn every_pod_current_or_none_mounted_is_synced() {
        let live = ["ingestion-a".to_owned()];
        let current = [status(
            "ingestion-a",
            true,
            &[("redis", "v2"), ("redis-auth-token", "v2")],
        )];
        assert_eq!(compare(&current, &wanted(), &live), (1, Vec::new()));
        assert_eq!(compare(&[], &wanted(), &live), (0, Vec::new()));
        let missing_file = [status("ingestion-a", true, &[("redis", "v2")])];
        assert_eq!(
            compare(&missing_file, &wanted(), &live).1,
            ["pod ingestion-a: redis-auth-token at no version, current v2"]
        );
        // An evicted pod's record keeps its old versions and `mounted`: not waited on.
        let evicted = [
            status(
                "ingestion-a",
                true,
                &[("redis", "v2"), ("redis-auth-token", "v2")],
            ),
            status(
                "ingestion-old",
                true,
                &[("redis", "v1"), ("redis-auth-token", "v1")],
            ),
        ];
        assert_eq!(compare(&evicted, &wanted(), &live), (1, Vec::new()));
    }
}
