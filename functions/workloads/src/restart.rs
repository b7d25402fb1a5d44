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
use crate::manifests::Context;
use crate::manifests::credentials;
use crate::manifests::{APP, NAMESPACE};
use crate::pods_credentials::{self, CREDENTIALS_ANNOTATION, template_annotation};
use crate::rollout::deployment_name;
use crate::{Deps, Target, WorkloadsAction};

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
    deps: &Deps,
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
            // What the restarted pods read: the versions every mount holds now (the
            // workflow waited for that), recorded for the next rotation to check.
            let ctx = Context::new(&step.spec, &step.layers)?;
            let (versions, _) =
                pods_credentials::current(deps, &credentials::credentials(&ctx)).await?;
            let record = pods_credentials::record(&versions);
            let restarted = restart_deployment(&client, &step.execution_id, Some(&record)).await?;
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

/// The ingestion Deployment; `None` when it does not exist.
pub async fn read_deployment(client: &kube::Client) -> Result<Option<Value>> {
    let what = deployment_name();
    let request =
        kube::core::Request::new(format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"));
    let read = request
        .get(APP, &GetParams::default())
        .map_err(|e| Error::fatal(format!("cannot build the read of {what}: {e}")))?;
    match client.request::<Value>(read).await {
        Ok(found) => Ok(Some(found)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(err) => Err(kube_error(&what, "read", err, false)),
    }
}

/// Sets the restart annotation to `execution` and, when given, the record of the
/// credential versions the restarted pods read ([`CREDENTIALS_ANNOTATION`]); false when
/// the template already had both.
pub async fn restart_deployment(
    client: &kube::Client,
    execution: &str,
    credentials: Option<&str>,
) -> Result<bool> {
    let what = deployment_name();
    let request =
        kube::core::Request::new(format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"));
    let Some(current) = read_deployment(client).await? else {
        return Err(Error::fatal(format!(
            "{what} does not exist: there are no pods to restart; run provision"
        )));
    };
    let has = |name: &str, value: &str| {
        current
            .pointer(&template_annotation(name))
            .and_then(Value::as_str)
            == Some(value)
    };
    if has(RESTART_ANNOTATION, execution)
        && credentials.is_none_or(|c| has(CREDENTIALS_ANNOTATION, c))
    {
        return Ok(false);
    }
    let mut annotations = json!({RESTART_ANNOTATION: execution});
    if let Some(credentials) = credentials {
        annotations[CREDENTIALS_ANNOTATION] = json!(credentials);
    }
    let body = json!({"spec": {"template": {"metadata": {"annotations": annotations}}}});
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
                let annotations =
                    request.body.as_ref().unwrap()["spec"]["template"]["metadata"]["annotations"]
                        .as_object()
                        .unwrap()
                        .clone();
                for (name, value) in annotations {
                    object.lock().unwrap()["spec"]["template"]["metadata"]["annotations"][name] =
                        value;
                }
                Reply::Json(200, object.lock().unwrap().clone())
            }
            _ => Reply::Json(405, json!({})),
        });
        assert!(restart_deployment(&client, "exec-1", None).await.unwrap());
        assert!(
            !restart_deployment(&client, "exec-1", None).await.unwrap(),
            "the same execution does not restart twice"
        );
        assert!(restart_deployment(&client, "exec-2", None).await.unwrap());
        // The record of what the pods read: written with the restart, and a restart for
        // other versions is one even within the same execution.
        assert!(
            restart_deployment(&client, "exec-2", Some("postgres=p1"))
                .await
                .unwrap()
        );
        assert!(
            !restart_deployment(&client, "exec-2", Some("postgres=p1"))
                .await
                .unwrap()
        );
        assert!(
            restart_deployment(&client, "exec-2", Some("postgres=p2"))
                .await
                .unwrap()
        );
        assert_eq!(
            stored.lock().unwrap()["spec"]["template"]["metadata"]["annotations"]
                [CREDENTIALS_ANNOTATION],
            "postgres=p2"
        );
        drop(client);
        let requests = server.await.unwrap();
        let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
        assert_eq!(patches.len(), 4);
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
        let err = restart_deployment(&client, "exec-1", None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&deployment_name()), "{err}");
    }
}
