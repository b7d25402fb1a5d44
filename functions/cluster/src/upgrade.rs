//! The upgrade workflow's Kubernetes version steps, in the order it runs them:
//!
//! - `upgrade-insights`: EKS's upgrade insights for the target version; any in `ERROR`
//!   refuses the upgrade (`Apiary.Conflict`, naming each) before anything changes. EKS
//!   itself blocks an upgrade on some of them; this says why in the run's own words.
//! - `upgrade-control-plane` (its own poll): `UpdateClusterVersion` once the cluster is
//!   ACTIVE one minor version below the target and its node group is level with it, then
//!   pending until the cluster is ACTIVE at the target. The request carries a token from
//!   the cluster's incarnation, the target and the execution, so a poll or a retry that
//!   sends it again gets the same update back (an update that failed is reported with
//!   EKS's errors), while a new run after the cause is fixed asks EKS again.
//! - `upgrade-nodegroup` (its own poll): `UpdateNodegroupVersion` the same way; EKS
//!   drains the old nodes, honouring disruption budgets, and a drain that cannot finish
//!   fails the update with `PodEvictionFailure`, reported by name.
//! - `upgrade-addons` (its own poll): each add-on provision installs, when its version is
//!   not compatible with the target, moved to the target's default version.
//!
//! EKS Auto Mode replaces the nodes it manages (the ingestion NodePool's) with the new
//! version by itself, within the NodePool's disruption budget: nothing here drives it.
//! Each step skips an image upgrade. The emulator implements none of these APIs; there
//! each step says so and is ready, and the flow is tested with mocked clients.

use apiary_core::inputs::upgrade::{self, UpgradeInput};
use apiary_core::naming::client_token;
use apiary_core::step::StepContext;
use apiary_core::{Error, Result};
use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eks::types::{
    AddonStatus, Category, ClusterStatus, InsightStatusValue, InsightsFilter, NodegroupStatus,
    ResolveConflicts, Update, UpdateStatus,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde::Serialize;
use serde_json::{Value, json};

use crate::nodegroup::{CLUSTER_ADDONS, NODEGROUP_ADDONS};
use crate::{Action, View, Work, control_plane, is_not_implemented, nodegroup};

/// What an upgrade step saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Upgrading {
    /// The input upgrades the image: nothing was looked at.
    pub skipped: bool,
    /// The Kubernetes version the run moves to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The version found (the cluster's or the node group's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// The EKS update this call started or found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_id: Option<String>,
    /// The add-ons and what each needs (`upgrade-addons`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addons: Vec<AddonUpgrade>,
    /// Why nothing could be asked (the emulator implements no EKS update API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_emulated: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddonUpgrade {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub detail: String,
}

const NOT_EMULATED: &str = "not emulated: the local emulator implements no EKS upgrade API \
     (upgrade insights, UpdateClusterVersion, UpdateNodegroupVersion, add-on versions); the \
     flow is tested with mocked clients, and on AWS this step upgrades";

/// The version the input asks for; `None` for an image upgrade (the step is skipped).
fn target(step: &StepContext<'_, Action>) -> Result<Option<String>> {
    let input: UpgradeInput = apiary_core::inputs::from_options(upgrade::WORKFLOW, &step.options)?;
    Ok(input.version().map(str::to_owned))
}

fn minor(version: &str) -> Option<u32> {
    version.split_once('.').and_then(|(_, m)| m.parse().ok())
}

/// The failure EKS reports for a finished update, with its errors.
fn failed_update(what: &str, update: &Update) -> Option<Error> {
    let status = update.status()?;
    if !matches!(status, UpdateStatus::Failed | UpdateStatus::Cancelled) {
        return None;
    }
    let errors: Vec<String> = update
        .errors()
        .iter()
        .map(|e| {
            format!(
                "{}: {}{}",
                e.error_code().map(|c| c.as_str()).unwrap_or("error"),
                e.error_message().unwrap_or("no message"),
                if e.resource_ids().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.resource_ids().join(", "))
                }
            )
        })
        .collect();
    Some(Error::fatal(format!(
        "the EKS update {} of {what} is {}: {}; fix the cause and run upgrade again (a new run \
         asks EKS again)",
        update.id().unwrap_or("without an id"),
        status.as_str(),
        if errors.is_empty() {
            "EKS gives no error detail".to_owned()
        } else {
            errors.join("; ")
        }
    )))
}

/// Where a step keeps the EKS update this execution started (`upgrade.eks.<what>`):
/// EKS reports a cluster or node group ACTIVE at its old version for a while after an
/// update is accepted (eventually consistent), and again once the update failed; the
/// update itself, not the resource's status, says which.
fn update_slot(what: &str) -> String {
    format!("upgrade.eks.{what}")
}

/// The update this execution started for `target`, if it started one.
async fn started_update(
    work: &Work<'_>,
    step: &StepContext<'_, Action>,
    what: &str,
    target: &str,
) -> Result<Option<String>> {
    let outputs = work.deps.recorder.outputs(work.names.deployment()).await?;
    Ok(outputs.get(&update_slot(what)).and_then(|slot| {
        let mine = slot.get("execution_id").and_then(Value::as_str)
            == Some(step.execution_id.as_str())
            && slot.get("target").and_then(Value::as_str) == Some(target);
        mine.then(|| {
            slot.get("update_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .flatten()
    }))
}

async fn remember_update(
    work: &Work<'_>,
    step: &StepContext<'_, Action>,
    what: &str,
    target: &str,
    update_id: &str,
) -> Result<()> {
    work.deps
        .recorder
        .save_output(
            work.names.deployment(),
            &update_slot(what),
            &json!({"execution_id": step.execution_id, "target": target, "update_id": update_id}),
        )
        .await
}

/// What EKS says of an update this execution started: `Ok(None)` in progress or done
/// (the resource's status will follow), an error when it failed or was cancelled.
async fn follow_update(
    work: &Work<'_>,
    update_id: &str,
    nodegroup: Option<&str>,
    what: &str,
) -> Result<String> {
    let cluster = &work.resources.cluster;
    let out = work
        .deps
        .eks
        .describe_update()
        .name(cluster)
        .update_id(update_id)
        .set_nodegroup_name(nodegroup.map(str::to_owned))
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeUpdate {cluster} {update_id}"), e))?;
    let Some(update) = out.update() else {
        return Ok(format!(
            "EKS update {update_id} of {what} is not reported yet"
        ));
    };
    if let Some(err) = failed_update(what, update) {
        return Err(err);
    }
    Ok(format!(
        "EKS update {update_id} of {what} is {}",
        update
            .status()
            .map(|s| s.as_str())
            .unwrap_or("of unknown status")
    ))
}

/// What asking EKS for a version update came to.
enum Asked {
    /// Accepted (and remembered, to be followed by the next polls).
    Sent,
    /// Another update of the resource is in progress; the next poll asks again.
    Busy,
    /// The emulator implements no such API.
    NotEmulated,
}

/// Reads the answer to an `UpdateClusterVersion` or `UpdateNodegroupVersion`: an update
/// EKS already reports failed fails the step with its errors; an accepted one is kept
/// for this execution (`slot`, with `label` and `resource` naming it in messages and the
/// journal) so the polls follow it instead of asking again.
async fn asked<E>(
    work: &Work<'_>,
    step: &StepContext<'_, Action>,
    report: &mut Upgrading,
    (slot, label, resource): (&str, &str, &str),
    target: &str,
    operation: String,
    sent: std::result::Result<Option<Update>, SdkError<E, HttpResponse>>,
) -> Result<Asked>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match sent {
        Ok(update) => {
            if let Some(update) = &update {
                if let Some(err) = failed_update(&format!("{label} to {target}"), update) {
                    return Err(err);
                }
                report.update_id = update.id().map(str::to_owned);
                if let Some(id) = update.id() {
                    remember_update(work, step, slot, target, id).await?;
                }
            }
            work.log.created(&format!("{resource}:version:{target}"));
            Ok(Asked::Sent)
        }
        Err(err) if work.deps.emulator && is_not_implemented(&err) => Ok(Asked::NotEmulated),
        Err(err) if err.code() == Some("ResourceInUseException") => Ok(Asked::Busy),
        Err(err) => Err(Error::aws(operation, err)),
    }
}

fn skip(view: &mut View) {
    view.upgrade = Some(Upgrading {
        skipped: true,
        detail: "skipped: the input upgrades the ingestion image".to_owned(),
        ..Upgrading::default()
    });
}

fn not_emulated(view: &mut View, target: String) {
    view.upgrade = Some(Upgrading {
        target: Some(target),
        not_emulated: Some(NOT_EMULATED.to_owned()),
        detail: NOT_EMULATED.to_owned(),
        ..Upgrading::default()
    });
}

/// `upgrade-insights`.
pub(crate) async fn insights(
    work: &Work<'_>,
    view: &mut View,
    step: &StepContext<'_, Action>,
) -> Result<()> {
    let Some(target) = target(step)? else {
        skip(view);
        return Ok(());
    };
    let cluster = &work.resources.cluster;
    // A rerun that finishes the node group and the add-ons: the control plane already
    // runs the target, so what insights say of it no longer gates anything.
    if let Some(found) = control_plane::describe(work).await?
        && found.version() == Some(target.as_str())
    {
        let detail = format!(
            "EKS cluster {cluster} already runs Kubernetes {target}: insights not consulted"
        );
        view.detail = Some(detail.clone());
        view.upgrade = Some(Upgrading {
            target: Some(target),
            found: found.version().map(str::to_owned),
            detail,
            ..Upgrading::default()
        });
        return Ok(());
    }
    let filter = InsightsFilter::builder()
        .categories(Category::UpgradeReadiness)
        .kubernetes_versions(&target)
        .statuses(InsightStatusValue::Error)
        .build();
    let mut errors = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = work
            .deps
            .eks
            .list_insights()
            .cluster_name(cluster)
            .filter(filter.clone())
            .set_next_token(next.take())
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(err) if work.deps.emulator && is_not_implemented(&err) => {
                not_emulated(view, target);
                return Ok(());
            }
            Err(err) => return Err(Error::aws(format!("ListInsights {cluster}"), err)),
        };
        for insight in page.insights() {
            // The filter asks for ERROR only; checked again so a filter EKS ignored
            // never blocks on a passing insight.
            let status = insight.insight_status().and_then(|s| s.status());
            if status == Some(&InsightStatusValue::Error) {
                errors.push(format!(
                    "{} ({})",
                    insight.name().unwrap_or("unnamed insight"),
                    insight
                        .insight_status()
                        .and_then(|s| s.reason())
                        .unwrap_or("no reason given")
                ));
            }
        }
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    if !errors.is_empty() {
        return Err(Error::Conflict(format!(
            "EKS reports {} upgrade insight(s) in ERROR for Kubernetes {target} on cluster \
             {cluster}: {}; fix them (the EKS console's Upgrade insights tab lists the \
             affected resources; EKS refreshes insights about once a day), then run upgrade \
             again",
            errors.len(),
            errors.join("; ")
        )));
    }
    let detail = format!("no upgrade insight in ERROR for Kubernetes {target}");
    view.detail = Some(detail.clone());
    view.upgrade = Some(Upgrading {
        target: Some(target),
        detail,
        ..Upgrading::default()
    });
    Ok(())
}

/// `upgrade-control-plane`.
pub(crate) async fn control_plane(
    work: &Work<'_>,
    view: &mut View,
    step: &StepContext<'_, Action>,
) -> Result<()> {
    let Some(target) = target(step)? else {
        skip(view);
        return Ok(());
    };
    let name = &work.resources.cluster;
    let Some(cluster) = control_plane::describe(work).await? else {
        return Err(Error::Conflict(format!(
            "EKS cluster {name} does not exist: provision the deployment first"
        )));
    };
    let found = cluster.version().unwrap_or_default().to_owned();
    let status = cluster.status().cloned();
    view.cluster_status = status.as_ref().map(|s| s.as_str().to_owned());
    let mut report = Upgrading {
        target: Some(target.clone()),
        found: Some(found.clone()),
        ..Upgrading::default()
    };
    let status_word = view.cluster_status.clone().unwrap_or_default();
    if found == target {
        if status == Some(ClusterStatus::Active) {
            report.detail = format!("EKS cluster {name} is ACTIVE at Kubernetes {target}");
        } else {
            report.detail = format!("EKS cluster {name} is {status_word} at Kubernetes {target}");
            view.pending.push(report.detail.clone());
        }
        view.detail = Some(report.detail.clone());
        view.upgrade = Some(report);
        return Ok(());
    }
    if minor(&found).map(|m| m + 1) != minor(&target) {
        return Err(Error::Conflict(format!(
            "EKS cluster {name} runs Kubernetes {found}, so {target} is not the next minor \
             version; the record and the cluster disagree: run upgrade with the version after \
             {found}"
        )));
    }
    match status {
        Some(ClusterStatus::Active) => {}
        Some(ClusterStatus::Updating) | Some(ClusterStatus::Creating) => {
            report.detail = format!(
                "EKS cluster {name} is {status_word} at {found}; {target} is asked once it is ACTIVE"
            );
            view.pending.push(report.detail.clone());
            view.upgrade = Some(report);
            return Ok(());
        }
        _ => {
            return Err(Error::fatal(format!(
                "EKS cluster {name} is {status_word}: it cannot be upgraded in that state"
            )));
        }
    }
    // EKS refuses a control-plane upgrade while a managed node group is on another
    // version: a node group left behind by an earlier run is brought level first.
    if let Some(group) = nodegroup::describe(work).await?
        && let Some(version) = group.version()
        && version != found
    {
        return Err(Error::Conflict(format!(
            "EKS node group {} runs Kubernetes {version} while the control plane runs {found}; \
             EKS upgrades the control plane only when its node groups are level with it: run \
             upgrade with {{\"kubernetes_version\": \"{found}\"}} first, which finishes the node \
             group and the add-ons",
            work.resources.nodegroup
        )));
    }
    if let Some(update_id) = started_update(work, step, "control-plane", &target).await? {
        report.update_id = Some(update_id.clone());
        report.detail = follow_update(
            work,
            &update_id,
            None,
            &format!("cluster {name} to {target}"),
        )
        .await?;
        view.pending.push(report.detail.clone());
        view.detail = Some(report.detail.clone());
        view.upgrade = Some(report);
        return Ok(());
    }
    let created = cluster
        .created_at()
        .map(|t| t.secs().to_string())
        .unwrap_or_default();
    let token = client_token(&[
        work.names.deployment(),
        cluster.arn().unwrap_or(name),
        &created,
        "version",
        &target,
        &step.execution_id,
    ]);
    let sent = work
        .deps
        .eks
        .update_cluster_version()
        .name(name)
        .version(&target)
        .client_request_token(token)
        .send()
        .await
        .map(|out| out.update().cloned());
    let operation = format!("UpdateClusterVersion {name} {target}");
    let label = format!("cluster {name}");
    match asked(
        work,
        step,
        &mut report,
        ("control-plane", &label, name),
        &target,
        operation,
        sent,
    )
    .await?
    {
        Asked::Sent => {
            report.detail = format!("EKS cluster {name}: Kubernetes {found} -> {target} requested");
        }
        Asked::Busy => {
            report.detail = format!(
                "EKS cluster {name} has another update in progress; {target} is asked when it ends"
            );
        }
        Asked::NotEmulated => {
            not_emulated(view, target);
            return Ok(());
        }
    }
    view.pending.push(report.detail.clone());
    view.detail = Some(report.detail.clone());
    view.upgrade = Some(report);
    Ok(())
}

/// `upgrade-nodegroup`.
pub(crate) async fn node_group(
    work: &Work<'_>,
    view: &mut View,
    step: &StepContext<'_, Action>,
) -> Result<()> {
    let Some(target) = target(step)? else {
        skip(view);
        return Ok(());
    };
    let (cluster, name) = (&work.resources.cluster, &work.resources.nodegroup);
    let Some(group) = nodegroup::describe(work).await? else {
        // Fatal, not a refusal: the control plane has already moved.
        return Err(Error::fatal(format!(
            "EKS node group {name} does not exist: provision the deployment; it creates the \
             group at the recorded version"
        )));
    };
    let found = group.version().unwrap_or_default().to_owned();
    let status = group.status().cloned();
    view.nodegroup_status = status.as_ref().map(|s| s.as_str().to_owned());
    let status_word = view.nodegroup_status.clone().unwrap_or_default();
    let mut report = Upgrading {
        target: Some(target.clone()),
        found: Some(found.clone()),
        ..Upgrading::default()
    };
    match status {
        Some(NodegroupStatus::Active) if found == target => {
            report.detail = format!("node group {name} is ACTIVE at Kubernetes {target}");
            view.detail = Some(report.detail.clone());
            view.upgrade = Some(report);
            return Ok(());
        }
        Some(NodegroupStatus::Active) => {}
        Some(NodegroupStatus::Updating) | Some(NodegroupStatus::Creating) => {
            report.detail = format!("node group {name} is {status_word} at {found}");
            view.pending.push(report.detail.clone());
            view.upgrade = Some(report);
            return Ok(());
        }
        _ => {
            return Err(Error::fatal(format!(
                "EKS node group {name} is {status_word}: it cannot be upgraded until it is \
                 repaired (see its health issues in the EKS console)"
            )));
        }
    }
    if let Some(update_id) = started_update(work, step, "nodegroup", &target).await? {
        report.update_id = Some(update_id.clone());
        report.detail = follow_update(
            work,
            &update_id,
            Some(name),
            &format!("node group {name} to {target}"),
        )
        .await?;
        view.pending.push(report.detail.clone());
        view.detail = Some(report.detail.clone());
        view.upgrade = Some(report);
        return Ok(());
    }
    let token = client_token(&[
        work.names.deployment(),
        group.nodegroup_arn().unwrap_or(name),
        "version",
        &target,
        &step.execution_id,
    ]);
    let sent = work
        .deps
        .eks
        .update_nodegroup_version()
        .cluster_name(cluster)
        .nodegroup_name(name)
        .version(&target)
        .client_request_token(token)
        .send()
        .await
        .map(|out| out.update().cloned());
    let operation = format!("UpdateNodegroupVersion {cluster} {name} {target}");
    let label = format!("node group {name}");
    match asked(
        work,
        step,
        &mut report,
        ("nodegroup", &label, name),
        &target,
        operation,
        sent,
    )
    .await?
    {
        Asked::Sent => {
            report.detail = format!(
                "node group {name}: Kubernetes {found} -> {target} requested (EKS replaces its \
                 nodes, draining each within the pods' disruption budgets)"
            );
        }
        Asked::Busy => {
            report.detail = format!(
                "node group {name} has another update in progress; {target} is asked when it ends"
            );
        }
        Asked::NotEmulated => {
            not_emulated(view, target);
            return Ok(());
        }
    }
    view.pending.push(report.detail.clone());
    view.detail = Some(report.detail.clone());
    view.upgrade = Some(report);
    Ok(())
}

/// The versions of `addon` EKS lists as compatible with `target`, and its default one.
async fn compatible_versions(
    work: &Work<'_>,
    addon: &str,
    target: &str,
) -> Result<(Vec<String>, Option<String>)> {
    let mut compatible = Vec::new();
    let mut default = None;
    let mut next: Option<String> = None;
    loop {
        let page = work
            .deps
            .eks
            .describe_addon_versions()
            .addon_name(addon)
            .kubernetes_version(target)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| Error::aws(format!("DescribeAddonVersions {addon} {target}"), e))?;
        for info in page.addons() {
            for version in info.addon_versions() {
                let Some(v) = version.addon_version() else {
                    continue;
                };
                for c in version.compatibilities() {
                    if c.cluster_version() == Some(target) {
                        compatible.push(v.to_owned());
                        if c.default_version() {
                            default = Some(v.to_owned());
                        }
                    }
                }
            }
        }
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    Ok((compatible, default))
}

/// `upgrade-addons`.
pub(crate) async fn addons(
    work: &Work<'_>,
    view: &mut View,
    step: &StepContext<'_, Action>,
) -> Result<()> {
    let Some(target) = target(step)? else {
        skip(view);
        return Ok(());
    };
    let cluster = &work.resources.cluster;
    let eks = &work.deps.eks;
    let mut report = Upgrading {
        target: Some(target.clone()),
        ..Upgrading::default()
    };
    for addon in NODEGROUP_ADDONS.into_iter().chain(CLUSTER_ADDONS) {
        let found = match eks
            .describe_addon()
            .cluster_name(cluster)
            .addon_name(addon)
            .send()
            .await
        {
            Ok(out) => out.addon,
            Err(err) if work.deps.emulator && is_not_implemented(&err) => {
                not_emulated(view, target);
                return Ok(());
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(err) => return Err(Error::aws(format!("DescribeAddon {cluster} {addon}"), err)),
        };
        let Some(found) = found else {
            report.addons.push(AddonUpgrade {
                name: addon.to_owned(),
                found: None,
                target: None,
                detail: "not installed: the next provision installs it at the cluster's version"
                    .to_owned(),
            });
            continue;
        };
        let version = found.addon_version().map(str::to_owned);
        let status = found.status().cloned();
        let status_word = status.as_ref().map(|s| s.as_str()).unwrap_or("unknown");
        let mut entry = AddonUpgrade {
            name: addon.to_owned(),
            found: version.clone(),
            target: None,
            detail: String::new(),
        };
        match status {
            Some(AddonStatus::Active) => {}
            Some(AddonStatus::Updating)
            | Some(AddonStatus::Creating)
            | Some(AddonStatus::Degraded) => {
                let issues: Vec<String> = found
                    .health()
                    .map(|h| {
                        h.issues()
                            .iter()
                            .map(|i| i.message().unwrap_or("no message").to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                entry.detail = if issues.is_empty() {
                    status_word.to_string()
                } else {
                    format!("{status_word}: {}", issues.join("; "))
                };
                // DEGRADED after this run's update may pass as the new pods start; one
                // this run did not cause will not, so it fails now rather than at the
                // loop's bound.
                let ours = started_update(work, step, &format!("addon-{addon}"), &target)
                    .await?
                    .is_some();
                if status == Some(AddonStatus::Degraded) && !ours {
                    return Err(Error::fatal(format!(
                        "EKS add-on {addon} of cluster {cluster} was already {}: fix it \
                         (its health issues are in the EKS console), then run upgrade again",
                        entry.detail
                    )));
                }
                view.pending
                    .push(format!("add-on {addon} is {}", entry.detail));
                report.addons.push(entry);
                continue;
            }
            _ => {
                return Err(Error::fatal(format!(
                    "EKS add-on {addon} of cluster {cluster} is {status_word}: see its health \
                     issues in the EKS console, fix them, and run upgrade again"
                )));
            }
        }
        let (compatible, default) = compatible_versions(work, addon, &target).await?;
        if version.as_ref().is_some_and(|v| compatible.contains(v)) {
            entry.detail = format!("compatible with Kubernetes {target}; left as it is");
            report.addons.push(entry);
            continue;
        }
        let Some(default) = default.or_else(|| compatible.first().cloned()) else {
            return Err(Error::fatal(format!(
                "EKS lists no version of add-on {addon} compatible with Kubernetes {target}"
            )));
        };
        entry.target = Some(default.clone());
        let token = client_token(&[
            work.names.deployment(),
            cluster,
            addon,
            &default,
            &step.execution_id,
        ]);
        let sent = eks
            .update_addon()
            .cluster_name(cluster)
            .addon_name(addon)
            .addon_version(&default)
            .resolve_conflicts(ResolveConflicts::Overwrite)
            .client_request_token(token)
            .send()
            .await;
        match sent {
            Ok(out) => {
                if let Some(update) = out.update() {
                    if let Some(err) =
                        failed_update(&format!("add-on {addon} to {default}"), update)
                    {
                        return Err(err);
                    }
                    if let Some(id) = update.id() {
                        remember_update(work, step, &format!("addon-{addon}"), &target, id).await?;
                    }
                }
                work.log.created(&format!("{cluster}/{addon}:{default}"));
                entry.detail = format!(
                    "{} -> {default} requested",
                    version.as_deref().unwrap_or("unknown")
                );
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                entry.detail =
                    format!("another update in progress; {default} is asked when it ends");
            }
            Err(err) => {
                return Err(Error::aws(
                    format!("UpdateAddon {cluster} {addon} {default}"),
                    err,
                ));
            }
        }
        view.pending
            .push(format!("add-on {addon}: {}", entry.detail));
        report.addons.push(entry);
    }
    report.detail = format!(
        "add-ons for Kubernetes {target}: {}",
        report
            .addons
            .iter()
            .map(|a| format!("{} {}", a.name, a.detail))
            .collect::<Vec<_>>()
            .join("; ")
    );
    view.detail = Some(report.detail.clone());
    view.upgrade = Some(report);
    Ok(())
}
