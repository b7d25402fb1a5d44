//! Server-side apply of the manifests, reporting for each object whether it changed.
//!
//! Each object is read first (its `resourceVersion`, or that it is missing) and then
//! applied with field manager `apiary` and `force`, so fields the control plane owns are
//! taken back from whoever changed them by hand. An apply that changes nothing leaves
//! the `resourceVersion` as it was: that is how an unchanged object is told apart.

use apiary_core::{Error, Result};
use kube::core::params::{GetParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::Value;

use crate::manifests::Manifest;

pub const FIELD_MANAGER: &str = "apiary";

/// The outcome of applying one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The object did not exist before.
    pub created: bool,
    /// The apply changed the stored object (created counts as changed).
    pub changed: bool,
    pub resource_version: String,
}

/// Applies every manifest in order and stops at the first failure.
pub async fn apply_all(client: &kube::Client, manifests: &[Manifest]) -> Result<Vec<Applied>> {
    let mut applied = Vec::with_capacity(manifests.len());
    for manifest in manifests {
        applied.push(apply(client, manifest).await?);
    }
    Ok(applied)
}

pub async fn apply(client: &kube::Client, manifest: &Manifest) -> Result<Applied> {
    let what = manifest.display();
    let request = kube::core::Request::new(manifest.collection_path());
    let read = request
        .get(&manifest.name, &GetParams::default())
        .map_err(|e| Error::fatal(format!("cannot build the read of {what}: {e}")))?;
    let before = match client.request::<Value>(read).await {
        Ok(current) => Some(resource_version(&current)),
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(err) => return Err(kube_error(&what, "read", err, manifest.auto_mode_only)),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = request
        .patch(&manifest.name, &params, &Patch::Apply(&manifest.body))
        .map_err(|e| Error::fatal(format!("cannot build the apply of {what}: {e}")))?;
    let stored: Value = client
        .request(patch)
        .await
        .map_err(|err| kube_error(&what, "apply", err, manifest.auto_mode_only))?;
    let after = resource_version(&stored);
    let changed = before.as_deref() != Some(after.as_str());
    tracing::info!(object = %what, created = before.is_none(), changed, "applied");
    Ok(Applied {
        kind: manifest.kind.clone(),
        namespace: manifest.namespace.clone(),
        name: manifest.name.clone(),
        created: before.is_none(),
        changed,
        resource_version: after,
    })
}

fn resource_version(object: &Value) -> String {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Turns a Kubernetes API failure into the shared error model. Throttling (429), server
/// errors (5xx), optimistic-concurrency conflicts (409) and transport failures may pass
/// on retry; a refusal (401, 403), an invalid object (400, 422) or a missing resource
/// type (404) will not, and fails the step naming the object.
pub fn kube_error(what: &str, verb: &str, err: kube::Error, custom_resource: bool) -> Error {
    match err {
        kube::Error::Api(status) => {
            let code = status.code;
            let reason = if status.reason.is_empty() {
                "Failure".to_owned()
            } else {
                status.reason.clone()
            };
            let message = status.message.clone();
            if code == 429 || code == 409 || code >= 500 {
                return Error::Aws {
                    operation: format!("Kubernetes {verb} of {what}"),
                    code: Some(format!("HTTP {code} {reason}")),
                    message,
                    retryable: true,
                };
            }
            let hint = match code {
                401 => {
                    " (the control plane's token was not accepted: check the cluster's access entry for the control plane role)"
                }
                403 => {
                    " (the control plane's identity may not do this: check its access policy on the cluster)"
                }
                404 if custom_resource => {
                    " (the cluster does not serve this resource type: is EKS Auto Mode enabled?)"
                }
                _ => "",
            };
            Error::Fatal(format!(
                "Kubernetes {verb} of {what} failed (HTTP {code} {reason}): {message}{hint}"
            ))
        }
        kube::Error::SerdeError(e) => Error::Fatal(format!(
            "Kubernetes {verb} of {what}: unreadable response: {e}"
        )),
        kube::Error::BuildRequest(e) => {
            Error::Fatal(format!("Kubernetes {verb} of {what}: bad request: {e}"))
        }
        other => Error::Aws {
            operation: format!("Kubernetes {verb} of {what}"),
            code: None,
            message: other.to_string(),
            retryable: true,
        },
    }
}

#[cfg(test)]
mod tests;
