//! The workloads layer, the last provision step: the HoneyHive ingestion pods in EKS.
//!
//! `ensure` gives the pods an AWS identity (an IAM role bound to their service account
//! by an EKS Pod Identity association), then server-side applies every object (node
//! class and pool, namespace, service account, endpoints, Deployment, Service,
//! autoscaler, disruption budget, network policy, ingress) or, with no cluster to reach,
//! renders and validates them. `status` reports the rollout for the state machine's poll
//! loop and fails clearly when it cannot progress.

pub mod apply;
pub mod connect;
#[cfg(test)]
mod fake_api;
pub mod manifests;
pub mod pod_identity;
pub mod render;
pub mod rollout;
#[cfg(test)]
mod test_support;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;

use apiary_core::naming::{Layer, Names};
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::{Recorder, StepInput, StepLog};
use apiary_core::{Error, Result};
use aws_sdk_eks::config::SharedCredentialsProvider;
use serde_json::{Value, json};

use crate::manifests::{Context, Manifest};

/// How the step reaches Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeAccess {
    /// The EKS cluster of the deployment: endpoint and CA from DescribeCluster, an EKS
    /// bearer token signed with the step's own credentials. What the Lambda uses.
    Eks,
    /// The current context of a kubeconfig file (e.g. a kind or k3d cluster).
    Kubeconfig(PathBuf),
    /// No cluster: render every object as YAML into this folder and validate it.
    Render(PathBuf),
}

pub struct Deps {
    pub eks: aws_sdk_eks::Client,
    pub iam: aws_sdk_iam::Client,
    /// Signs the EKS bearer token.
    pub credentials: Option<SharedCredentialsProvider>,
    /// The SDK's region (the deployment's region when unset).
    pub region: Option<String>,
    pub recorder: Arc<dyn Recorder>,
    pub kube: KubeAccess,
    /// The AWS endpoint is the local emulator: an AWS API it does not implement (EKS Pod
    /// Identity) is reported in the output instead of failing the step.
    pub emulator: bool,
}

impl Deps {
    pub fn new(
        sdk_config: &aws_config::SdkConfig,
        recorder: Arc<dyn Recorder>,
        kube: KubeAccess,
    ) -> Self {
        Deps {
            eks: apiary_core::client!(aws_sdk_eks, sdk_config),
            iam: apiary_core::client!(aws_sdk_iam, sdk_config),
            credentials: sdk_config.credentials_provider(),
            region: sdk_config.region().map(|r| r.to_string()),
            recorder,
            kube,
            emulator: sdk_config.endpoint_url().is_some(),
        }
    }
}

/// Where `ensure` puts the objects and `status` looks for them.
pub enum Target {
    Apply {
        client: kube::Client,
        /// `eks` or `kubeconfig`, for the output.
        via: &'static str,
        /// The cluster serves EKS Auto Mode's resources (always assumed for EKS).
        auto_mode: bool,
    },
    Render(PathBuf),
}

#[tracing::instrument(name = "workloads", skip_all, fields(deployment, action))]
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    let input = StepInput::from_event(event)?;
    if !matches!(input.action.as_str(), "ensure" | "status") {
        return Err(Error::invalid_input(format!(
            "workloads: unknown action {:?} (expected ensure or status)",
            input.action
        )));
    }
    let spec = input.spec()?;
    tracing::Span::current()
        .record("deployment", spec.name.as_str())
        .record("action", input.action.as_str());
    // Boxed: the Kubernetes client's futures nest deeply, and callers (the Lambda
    // runtime, the CLI) should not need a raised recursion limit to hold this one.
    let target = Box::pin(target(deps, &input, &spec)).await?;
    if input.action == "ensure" {
        Box::pin(ensure(deps, &input, &spec, target)).await
    } else {
        Box::pin(status(deps, &input, &spec, target)).await
    }
}

async fn target(deps: &Deps, input: &StepInput, spec: &DeploymentSpec) -> Result<Target> {
    match &deps.kube {
        KubeAccess::Render(folder) => Ok(Target::Render(folder.clone())),
        KubeAccess::Eks => {
            let cluster = &input.layers.cluster()?.cluster_name;
            let region = deps.region.clone().unwrap_or_else(|| spec.region.clone());
            Ok(Target::Apply {
                client: connect::eks_client(deps, cluster, &region).await?,
                via: "eks",
                auto_mode: true,
            })
        }
        KubeAccess::Kubeconfig(path) => {
            let client = connect::kubeconfig_client(path).await?;
            let auto_mode = connect::serves_auto_mode(&client).await?;
            Ok(Target::Apply {
                client,
                via: "kubeconfig",
                auto_mode,
            })
        }
    }
}

/// `ensure` against an already resolved target.
pub async fn ensure(
    deps: &Deps,
    input: &StepInput,
    spec: &DeploymentSpec,
    target: Target,
) -> Result<Value> {
    let log = StepLog::new(deps.recorder.as_ref(), &spec.name, Layer::Workloads, input);
    match ensure_logged(deps, input, spec, target, &log).await {
        Ok((output, detail)) => {
            let outcome = match log.ensure_outcome() {
                "unchanged" if output["changed"].as_u64().unwrap_or(0) > 0 => "updated",
                other => other,
            };
            log.finish(outcome, Some(detail)).await?;
            Ok(output)
        }
        Err(err) => {
            // The journal says what failed; the step's own error is what matters.
            if let Err(journal) = log.finish("failed", Some(err.to_string())).await {
                tracing::warn!(error = %journal, "could not journal the failure");
            }
            Err(err)
        }
    }
}

async fn ensure_logged(
    deps: &Deps,
    input: &StepInput,
    spec: &DeploymentSpec,
    target: Target,
    log: &StepLog<'_>,
) -> Result<(Value, String)> {
    let names = Names::new(&spec.name);
    let mut ctx = Context::new(spec, &input.layers)?;
    let region = deps.region.clone().unwrap_or_else(|| spec.region.clone());
    let identity = pod_identity::ensure(deps, &names, &input.layers, &region, log).await?;
    match target {
        Target::Render(folder) => {
            let manifests = manifests::build(&ctx)?;
            let files = render::render(&folder, &manifests)?;
            let changed = files.iter().filter(|f| f.changed).count();
            let detail = format!(
                "rendered {} objects to {} ({changed} changed); not applied",
                files.len(),
                folder.display()
            );
            let output = json!({
                "ready": true,
                "mode": "rendered",
                "applied": false,
                "folder": folder,
                "validated": true,
                "objects": files,
                "changed": changed,
                "pod_identity": identity.to_json(),
                "created": log.created_ids(),
                "detail": detail,
            });
            Ok((output, detail))
        }
        Target::Apply {
            client,
            via,
            auto_mode,
        } => {
            ctx.auto_mode = auto_mode;
            let manifests = manifests::build(&ctx)?;
            let skipped = skipped_without_auto_mode(&ctx)?;
            check_before_apply(&manifests)?;
            let applied = apply::apply_all(&client, &manifests).await?;
            for object in &applied {
                let id = match &object.namespace {
                    Some(ns) => format!("{ns}/{}", object.name),
                    None => object.name.clone(),
                };
                log.resource(
                    &format!("k8s:{}", object.kind.to_ascii_lowercase()),
                    &id,
                    None,
                )
                .await?;
                if object.created {
                    log.created(&format!("{} {id}", object.kind));
                }
            }
            let changed = applied.iter().filter(|a| a.changed).count();
            let detail = format!(
                "applied {} objects via {via} ({changed} changed){}",
                applied.len(),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} skipped: the cluster is not EKS Auto Mode",
                        skipped.len()
                    )
                }
            );
            let output = json!({
                "ready": false,
                "mode": "applied",
                "applied": true,
                "via": via,
                "auto_mode": auto_mode,
                "objects": applied,
                "changed": changed,
                "skipped": skipped,
                "pod_identity": identity.to_json(),
                "created": log.created_ids(),
                "detail": detail,
            });
            Ok((output, detail))
        }
    }
}

/// The objects a plain (non Auto Mode) cluster does not get, and why.
fn skipped_without_auto_mode(ctx: &Context) -> Result<Vec<Value>> {
    if ctx.auto_mode {
        return Ok(Vec::new());
    }
    let full = manifests::build(&Context {
        auto_mode: true,
        ..ctx.clone()
    })?;
    Ok(full
        .iter()
        .filter(|m| m.auto_mode_only)
        .map(|m| {
            let mut summary = m.summary();
            summary["reason"] = json!(format!(
                "the cluster does not serve EKS Auto Mode's resources, so {} was not applied",
                m.display()
            ));
            summary
        })
        .collect())
}

/// The same checks rendering makes, before anything reaches the cluster.
fn check_before_apply(manifests: &[Manifest]) -> Result<()> {
    let problems: Vec<String> = manifests
        .iter()
        .flat_map(|m| render::validate(m, &m.body))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Fatal(format!(
            "the workloads manifests are invalid:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

/// `status` against an already resolved target.
pub async fn status(
    deps: &Deps,
    input: &StepInput,
    spec: &DeploymentSpec,
    target: Target,
) -> Result<Value> {
    let log = StepLog::new(deps.recorder.as_ref(), &spec.name, Layer::Workloads, input);
    match target {
        Target::Render(folder) => {
            let detail = format!(
                "the manifests were rendered to {}, not applied: there is no rollout to wait for",
                folder.display()
            );
            Ok(json!({
                "ready": true,
                "mode": "rendered",
                "applied": false,
                "folder": folder,
                "desired": 0,
                "updated": 0,
                "available": 0,
                "detail": detail,
            }))
        }
        Target::Apply { client, via, .. } => {
            let min_replicas = spec.sizing().ingestion_replicas_min;
            match rollout::status(&client, min_replicas).await {
                Ok(rollout) => {
                    if rollout.ready {
                        log.finish("ready", Some(rollout.detail.clone())).await?;
                    }
                    let mut output =
                        serde_json::to_value(&rollout).map_err(|e| Error::fatal(e.to_string()))?;
                    output["mode"] = json!("applied");
                    output["via"] = json!(via);
                    Ok(output)
                }
                Err(err) => {
                    if !err.is_retryable()
                        && let Err(journal) = log.finish("failed", Some(err.to_string())).await
                    {
                        tracing::warn!(error = %journal, "could not journal the failure");
                    }
                    Err(err)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
