//! `restart`: the ingestion pods restarted so that they read rotated credentials.
//!
//! The pods read their credentials from Secrets Manager when they start (their
//! environment names the secrets, never the values), so a restart is what makes them use
//! a rotated Redis token. The restart is the one `kubectl rollout restart` makes: an
//! annotation on the pod template, here with the execution's id as its value, so the
//! step run again for the same execution changes nothing and starts no second rollout.
//! The workflow then polls the rollout with the `status` action.
//!
//! It runs only when the rotate-keys input's scope rotates secrets. Without a cluster
//! (the manifests only rendered) there are no pods: the output says the restart was not
//! verified locally.

use std::path::PathBuf;

use apiary_core::inputs::rotate_keys::{self, RotateKeysInput};
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use kube::core::params::{GetParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::apply::{FIELD_MANAGER, kube_error};
use crate::manifests::{APP, NAMESPACE};
use crate::rollout::deployment_name;
use crate::{Target, WorkloadsAction};

/// The pod template annotation that restarts the pods (value: the execution's id).
pub const RESTART_ANNOTATION: &str = "apiary.io/restarted-for";

#[derive(Debug, Clone, Serialize)]
pub struct RestartOutput {
    pub restarted: bool,
    /// Whether the pods exist to be restarted (false when only rendered).
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<PathBuf>,
    pub detail: String,
}

pub async fn restart(
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<RestartOutput>> {
    let input: RotateKeysInput =
        apiary_core::inputs::from_options(rotate_keys::WORKFLOW, &step.options)?;
    if !input.secrets() {
        let detail = "skipped: the input's scope rotates no secret".to_owned();
        return Ok(Done::ready(RestartOutput {
            restarted: false,
            verified: true,
            folder: None,
            detail: detail.clone(),
        })
        .with_detail(detail));
    }
    match target {
        Target::Render(folder) => {
            let detail = format!(
                "not verified locally: the manifests were rendered to {}, there are no pods to \
                 restart; on AWS the ingestion pods restart here and the rollout is awaited",
                folder.display()
            );
            Ok(Done::ready(RestartOutput {
                restarted: false,
                verified: false,
                folder: Some(folder),
                detail: detail.clone(),
            })
            .with_detail(detail))
        }
        Target::Apply { client, .. } => {
            let restarted = restart_deployment(&client, &step.execution_id).await?;
            if restarted {
                step.log.created(&format!("{NAMESPACE}/{APP}:restart"));
            }
            let detail = if restarted {
                format!("{} restarted; its rollout follows", deployment_name())
            } else {
                format!(
                    "{} was already restarted by this execution",
                    deployment_name()
                )
            };
            Ok(Done::ready(RestartOutput {
                restarted,
                verified: true,
                folder: None,
                detail: detail.clone(),
            })
            .with_detail(detail))
        }
    }
}

/// Sets the restart annotation to `execution`; false when it already had that value.
pub async fn restart_deployment(client: &kube::Client, execution: &str) -> Result<bool> {
    let what = deployment_name();
    let request =
        kube::core::Request::new(format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"));
    let read = request
        .get(APP, &GetParams::default())
        .map_err(|e| Error::fatal(format!("cannot build the read of {what}: {e}")))?;
    let current: Value = client
        .request(read)
        .await
        .map_err(|err| kube_error(&what, "read", err, false))?;
    let annotation = format!(
        "/spec/template/metadata/annotations/{}",
        RESTART_ANNOTATION.replace('/', "~1")
    );
    if current.pointer(&annotation).and_then(Value::as_str) == Some(execution) {
        return Ok(false);
    }
    let body = json!({"spec": {"template": {"metadata": {"annotations": {
        RESTART_ANNOTATION: execution
    }}}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let patch = request
        .patch(APP, &params, &Patch::Merge(&body))
        .map_err(|e| Error::fatal(format!("cannot build the restart of {what}: {e}")))?;
    client
        .request::<Value>(patch)
        .await
        .map_err(|err| kube_error(&what, "restart", err, false))?;
    tracing::info!(object = %what, execution, "restarted");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fake_api::{self, Reply};

    #[tokio::test]
    async fn a_restart_patches_the_pod_template_once_per_execution() {
        let stored = std::sync::Arc::new(std::sync::Mutex::new(json!({
            "metadata": {"name": APP, "namespace": NAMESPACE},
            "spec": {"template": {"metadata": {"annotations": {}}}}
        })));
        let object = stored.clone();
        let (client, server) = fake_api::start(move |request| match request.method.as_str() {
            "GET" => Reply::Json(200, object.lock().unwrap().clone()),
            "PATCH" => {
                let annotation =
                    request.body.as_ref().unwrap()["spec"]["template"]["metadata"]["annotations"]
                        [RESTART_ANNOTATION]
                        .clone();
                object.lock().unwrap()["spec"]["template"]["metadata"]["annotations"]
                    [RESTART_ANNOTATION] = annotation;
                Reply::Json(200, object.lock().unwrap().clone())
            }
            _ => Reply::Json(405, json!({})),
        });
        assert!(restart_deployment(&client, "exec-1").await.unwrap());
        assert!(
            !restart_deployment(&client, "exec-1").await.unwrap(),
            "the same execution does not restart twice"
        );
        assert!(restart_deployment(&client, "exec-2").await.unwrap());
        drop(client);
        let requests = server.await.unwrap();
        let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
        assert_eq!(patches.len(), 2);
        assert_eq!(
            patches[0].content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert!(
            patches[0]
                .path
                .ends_with(&format!("/namespaces/{NAMESPACE}/deployments/{APP}")),
            "{}",
            patches[0].path
        );
    }

    #[tokio::test]
    async fn a_missing_deployment_fails_naming_it() {
        let (client, _server) = fake_api::start(|_| {
            Reply::Json(
                404,
                fake_api::status(404, "NotFound", "deployments not found"),
            )
        });
        let err = restart_deployment(&client, "exec-1").await.unwrap_err();
        assert!(err.to_string().contains(&deployment_name()), "{err}");
    }
}
