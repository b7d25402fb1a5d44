//! Whether the ingestion Deployment has rolled out, for the state machine's poll loop.
//!
//! Not ready yet is an answer (`ready: false` with the counts); a rollout that cannot
//! progress is an error: a pod stuck on a reason that retrying will not fix (the image
//! cannot be pulled, the container keeps crashing, its configuration is invalid), a
//! ReplicaSet the API server refuses to fill, or the progress deadline passed.

use apiary_core::{Error, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodTemplateSpec};
use kube::core::params::{GetParams, ListParams};
use serde::Serialize;

use crate::apply::kube_error;
use crate::manifests::{APP, CONFIG_HASH_ANNOTATION, LABEL_NAME, NAMESPACE};

/// Container waiting reasons that do not clear by waiting.
pub const STUCK_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    /// Not serialised: the step kit reports readiness (from what the step still waits for).
    #[serde(skip)]
    pub ready: bool,
    /// Replicas the rollout must reach: the Deployment's, and at least the autoscaler's
    /// minimum (the autoscaler raises a new Deployment to it within seconds).
    pub desired: i32,
    pub updated: i32,
    pub available: i32,
    pub ready_replicas: i32,
    /// All pods of the Deployment, old revisions included.
    pub replicas: i32,
    pub detail: String,
    /// Why current pods are not ready yet (scheduling, starting, pulling).
    pub waiting: Vec<String>,
}

pub fn deployment_name() -> String {
    format!("Deployment {NAMESPACE}/{APP}")
}

/// Reads the Deployment and its pods and evaluates the rollout.
pub async fn status(client: &kube::Client, min_replicas: i32) -> Result<Rollout> {
    let what = deployment_name();
    let deployments =
        kube::core::Request::new(format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"));
    let read = deployments
        .get(APP, &GetParams::default())
        .map_err(|e| Error::fatal(format!("cannot build the read of {what}: {e}")))?;
    let deployment: Deployment = match client.request(read).await {
        Ok(deployment) => deployment,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Ok(Rollout {
                ready: false,
                desired: min_replicas,
                updated: 0,
                available: 0,
                ready_replicas: 0,
                replicas: 0,
                detail: format!("{what} does not exist yet"),
                waiting: Vec::new(),
            });
        }
        Err(err) => return Err(kube_error(&what, "read", err, false)),
    };
    let pods = kube::core::Request::new(format!("/api/v1/namespaces/{NAMESPACE}/pods"));
    let list = pods
        .list(&ListParams::default().labels(&format!("{LABEL_NAME}={APP}")))
        .map_err(|e| Error::fatal(format!("cannot build the pod listing: {e}")))?;
    let pods: k8s_openapi::List<Pod> = client
        .request(list)
        .await
        .map_err(|err| kube_error(&format!("pods of {what}"), "list", err, false))?;
    evaluate(&deployment, &pods.items, min_replicas)
}

/// The rollout state from a Deployment and its pods.
pub fn evaluate(deployment: &Deployment, pods: &[Pod], min_replicas: i32) -> Result<Rollout> {
    let what = deployment_name();
    let spec = &deployment.spec;
    let status = deployment.status.clone().unwrap_or_default();
    for condition in status.conditions.iter().flatten() {
        let message = condition.message.clone().unwrap_or_default();
        let reason = condition.reason.clone().unwrap_or_default();
        let kind = condition.type_.as_deref().unwrap_or_default();
        let state = condition.status.as_deref().unwrap_or_default();
        if kind == "Progressing" && state == "False" && reason == "ProgressDeadlineExceeded" {
            return Err(Error::Timeout {
                resource: what,
                detail: format!("ProgressDeadlineExceeded: {message}"),
            });
        }
        if kind == "ReplicaFailure" && state == "True" {
            return Err(Error::Fatal(format!(
                "{what} cannot create pods ({reason}): {message}"
            )));
        }
    }

    let template = &spec.template;
    let mut waiting = Vec::new();
    for pod in pods.iter().filter(|p| is_current(p, template)) {
        let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
        let pod_status = pod.status.as_ref();
        let containers = pod_status
            .into_iter()
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .chain(&s.container_statuses)
            })
            .flatten();
        for container in containers {
            if let Some(stuck) = stuck(container) {
                return Err(Error::Fatal(format!(
                    "{what} cannot roll out: pod {pod_name} container {} is {stuck}",
                    container.name
                )));
            }
            if let Some(w) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                waiting.push(format!(
                    "pod {pod_name} container {}: {}",
                    container.name,
                    w.reason.as_deref().unwrap_or("waiting")
                ));
            }
        }
        for condition in pod_status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
        {
            if condition.type_ == "PodScheduled" && condition.status == "False" {
                waiting.push(
                    format!(
                        "pod {pod_name}: {} {}",
                        condition.reason.as_deref().unwrap_or("not scheduled"),
                        condition.message.as_deref().unwrap_or("")
                    )
                    .trim_end()
                    .to_owned(),
                );
            }
        }
    }

    let generation = deployment.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0) >= generation;
    let desired = spec.replicas.unwrap_or(1).max(min_replicas);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let ready_replicas = status.ready_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let ready = observed && updated >= desired && replicas == updated && available >= desired;
    let detail = if ready {
        format!("{what}: {available} of {desired} replicas available on the current revision")
    } else if !observed {
        format!("{what}: the controller has not seen the latest change yet")
    } else {
        format!(
            "{what}: {updated} of {desired} replicas updated, {available} available, {} old replicas left",
            (replicas - updated).max(0)
        )
    };
    Ok(Rollout {
        ready,
        desired,
        updated,
        available,
        ready_replicas,
        replicas,
        detail,
        waiting,
    })
}

/// A pod belongs to the revision being rolled out when it runs the template's images
/// with the template's configuration.
fn is_current(pod: &Pod, template: &PodTemplateSpec) -> bool {
    let images = |containers: &[k8s_openapi::api::core::v1::Container]| -> Vec<Option<String>> {
        containers.iter().map(|c| c.image.clone()).collect()
    };
    let config_hash =
        |meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
            meta.and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
                .cloned()
        };
    let (Some(pod_spec), Some(template_spec)) = (pod.spec.as_ref(), template.spec.as_ref()) else {
        return false;
    };
    images(&pod_spec.containers) == images(&template_spec.containers)
        && config_hash(Some(&pod.metadata)) == config_hash(template.metadata.as_ref())
}

/// The reason a container is stuck, with what the kubelet says about it.
fn stuck(container: &ContainerStatus) -> Option<String> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    if !STUCK_REASONS.contains(&reason) {
        return None;
    }
    let mut text = reason.to_owned();
    if let Some(message) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(&format!(": {message}"));
    }
    if let Some(last) = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
    {
        text.push_str(&format!(
            " (last exit: {}, code {}, {} restarts)",
            last.reason.as_deref().unwrap_or("terminated"),
            last.exit_code,
            container.restart_count
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests;
