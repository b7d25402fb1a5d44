//! `scale-nodegroup` (scale-pools): the system node group's scaling configuration made
//! equal to the record's (`cluster.pools.system` over the size preset, which the
//! workflow's record step wrote just before).
//!
//! The step is its own poll: a group that is ACTIVE with other sizes gets one
//! `UpdateNodegroupConfig` and the step reports pending; a group UPDATING (this update or
//! another one) is pending; `ResourceInUseException` (EKS refuses an update while another
//! is in progress) is pending, never fatal; ready once the group is ACTIVE with the
//! recorded sizes. A run for the ingestion pool skips it.

use apiary_core::inputs::scale_pools::{self, Pool, ScalePoolsInput};
use apiary_core::step::StepContext;
use apiary_core::{Error, Result};
use aws_sdk_eks::types::{NodegroupScalingConfig, NodegroupStatus};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{Action, View, Work, nodegroup};

/// What `scale-nodegroup` saw and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scaling {
    /// The input named the other pool: nothing was looked at.
    pub skipped: bool,
    /// The scaling configuration the record asks for.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub target: Value,
    /// The node group's scaling configuration as found.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub found: Value,
    /// The id of the update this call started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_id: Option<String>,
    pub detail: String,
}

fn sizes(min: Option<i32>, max: Option<i32>, desired: Option<i32>) -> Value {
    json!({"min": min, "max": max, "desired": desired})
}

pub(crate) async fn ensure(
    work: &Work<'_>,
    view: &mut View,
    step: &StepContext<'_, Action>,
) -> Result<()> {
    let input: ScalePoolsInput =
        apiary_core::inputs::from_options(scale_pools::WORKFLOW, &step.options)?;
    if input.pool != Pool::System {
        view.scaling = Some(Scaling {
            skipped: true,
            target: Value::Null,
            found: Value::Null,
            update_id: None,
            detail: "skipped: the input scales the ingestion NodePool".to_owned(),
        });
        return Ok(());
    }
    let sizing = work.spec.sizing();
    let target = sizes(
        Some(sizing.nodes_min),
        Some(sizing.nodes_max),
        Some(sizing.nodes_desired),
    );
    let (cluster, name) = (&work.resources.cluster, &work.resources.nodegroup);
    let Some(group) = nodegroup::describe(work).await? else {
        return Err(Error::Conflict(format!(
            "EKS node group {name} does not exist: provision the deployment; it creates the \
             group with the recorded sizes"
        )));
    };
    work.log
        .resource("eks:nodegroup", name, group.nodegroup_arn())
        .await?;
    let status = group.status().cloned();
    view.nodegroup_status = status.as_ref().map(|s| s.as_str().to_owned());
    let current = group.scaling_config();
    let found = sizes(
        current.and_then(NodegroupScalingConfig::min_size),
        current.and_then(NodegroupScalingConfig::max_size),
        current.and_then(NodegroupScalingConfig::desired_size),
    );
    let mut report = Scaling {
        skipped: false,
        target: target.clone(),
        found: found.clone(),
        update_id: None,
        detail: String::new(),
    };
    let status_word = view.nodegroup_status.clone().unwrap_or_default();
    match status {
        Some(NodegroupStatus::Active) if found == target => {
            report.detail = format!("node group {name} is ACTIVE with {target}");
        }
        Some(NodegroupStatus::Active) => {
            let update = work
                .deps
                .eks
                .update_nodegroup_config()
                .cluster_name(cluster)
                .nodegroup_name(name)
                .scaling_config(
                    NodegroupScalingConfig::builder()
                        .min_size(sizing.nodes_min)
                        .max_size(sizing.nodes_max)
                        .desired_size(sizing.nodes_desired)
                        .build(),
                )
                .send()
                .await;
            match update {
                Ok(out) => {
                    work.log.created(&format!("{name}:scaling"));
                    report.update_id = out.update().and_then(|u| u.id()).map(str::to_owned);
                    report.detail = format!("node group {name}: {found} -> {target} requested");
                }
                // Another update (a version, a label, a scaling change) is in progress:
                // EKS takes one at a time. The next poll tries again.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_in_use_exception()) =>
                {
                    report.detail = format!(
                        "node group {name} has another update in progress; {target} is sent \
                         when it ends"
                    );
                }
                Err(err) => {
                    return Err(Error::aws(
                        format!("UpdateNodegroupConfig {cluster} {name}"),
                        err,
                    ));
                }
            }
            view.pending.push(report.detail.clone());
        }
        Some(NodegroupStatus::Updating) | Some(NodegroupStatus::Creating) => {
            report.detail = format!("node group {name} is {status_word}, now {found}");
            view.pending.push(report.detail.clone());
        }
        Some(NodegroupStatus::Deleting) => {
            return Err(Error::Conflict(format!(
                "EKS node group {name} is DELETING: a teardown is removing it"
            )));
        }
        _ => {
            return Err(Error::fatal(format!(
                "EKS node group {name} is {status_word}: it cannot be scaled until it is \
                 repaired (see its health issues in the EKS console)"
            )));
        }
    }
    view.detail = Some(format!(
        "scale-pools system: before {found} after {target}: {}",
        report.detail
    ));
    view.scaling = Some(report);
    Ok(())
}
