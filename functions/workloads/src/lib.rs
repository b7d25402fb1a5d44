//! The workloads layer, the last provision step: the HoneyHive ingestion pods in EKS.
//!
//! `ensure` gives the pods an AWS identity (an IAM role bound to their service account
//! by an EKS Pod Identity association), then server-side applies every object (node
//! class and pool, namespace, service account, endpoints, Deployment, Service,
//! autoscaler, disruption budget, network policy, ingress) or, with no cluster to reach,
//! renders and validates them. `status` reports the rollout for the state machine's poll
//! loop and fails clearly when it cannot progress.
//!
//! Both run through the step kit (`apiary_core::step`): the spec and the earlier layers'
//! outputs, from which the role's permissions are built, come from the state table and
//! never from the event, so whoever can invoke the function cannot make it grant access
//! to resources of their choosing.

pub mod apply;
pub mod connect;
#[cfg(test)]
mod fake_api;
pub mod manifests;
pub mod output;
pub mod pod_identity;
pub mod pods_credentials;
pub mod render;
pub mod restart;
pub mod rollout;
pub mod scale;
pub mod serving;
pub mod sync;
pub mod teardown;
#[cfg(test)]
mod test_support;
pub mod token;
pub mod usage;

use std::path::PathBuf;
use std::sync::Arc;

use apiary_core::inputs::upgrade::{self, UpgradeInput};
use apiary_core::naming::Layer;
use apiary_core::step::{Action, Done, Recorder, Step, StepContext};
use apiary_core::{Error, Result};
use async_trait::async_trait;
use aws_sdk_eks::config::SharedCredentialsProvider;
use serde::Deserialize;
use serde_json::Value;

use crate::manifests::{Context, Manifest, connector, monitoring};
use crate::output::{EnsureOutput, Ensured, Output, Skipped, StatusOutput};

/// The actions the state machine sends, spelt as it spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum WorkloadsAction {
    /// Give the pods their identity and apply (or render) every object.
    #[serde(rename = "ensure")]
    Ensure,
    /// Report the rollout; read-only.
    #[serde(rename = "status")]
    Status,
    /// Restart the ingestion pods so they read rotated credentials (rotate-keys).
    #[serde(rename = "restart")]
    Restart,
    /// rotate-keys, before the restart: every pod's mount holds the rotated secrets'
    /// current versions (see `sync`); read-only, polled.
    #[serde(rename = "credentials-synced")]
    CredentialsSynced,
    /// rotate-keys, before it changes the pods' database users: whether every pod runs
    /// on the credentials' current versions (see `pods_credentials`); read-only.
    #[serde(rename = "pods-credentials")]
    PodsCredentials,
    /// scale-pools: the ingestion NodePool applied as rendered from the record and read
    /// back until it shows the recorded limits; its own poll.
    #[serde(rename = "scale-nodepool")]
    ScaleNodepool,
    /// upgrade: every object applied as rendered from the record, which the workflow's
    /// record step just gave the new image; the rollout then followed by
    /// `upgrade-image-status`. Skipped for a Kubernetes version upgrade.
    #[serde(rename = "upgrade-image")]
    UpgradeImage,
    /// upgrade: the rollout of the new image and its load balancer's targets; read-only.
    #[serde(rename = "upgrade-image-status")]
    UpgradeImageStatus,
    /// upgrade, after a failed rollout: the same apply, the record's previous image put
    /// back by the workflow's revert step.
    #[serde(rename = "rollback-image")]
    RollbackImage,
    /// upgrade: the rollback's rollout; read-only.
    #[serde(rename = "rollback-image-status")]
    RollbackImageStatus,
    /// The ingestion NodePool's use of its limits, put as a CloudWatch metric (see
    /// `usage`); read-only, called by the stack's schedule every few minutes.
    #[serde(rename = "pool-usage")]
    PoolUsage,
    /// The teardown's Kubernetes side: freeze, then delete Ingresses and LoadBalancer
    /// Services, PVCs, NodePools and node classes, a phase per call (see `teardown`).
    #[serde(rename = "teardown-kubernetes")]
    TeardownKubernetes,
    /// What of that is still in the cluster; read-only.
    #[serde(rename = "teardown-kubernetes-status")]
    TeardownKubernetesStatus,
}

impl Action for WorkloadsAction {
    fn as_str(self) -> &'static str {
        match self {
            WorkloadsAction::Ensure => "ensure",
            WorkloadsAction::Status => "status",
            WorkloadsAction::Restart => "restart",
            WorkloadsAction::CredentialsSynced => "credentials-synced",
            WorkloadsAction::PodsCredentials => "pods-credentials",
            WorkloadsAction::ScaleNodepool => "scale-nodepool",
            WorkloadsAction::PoolUsage => "pool-usage",
            WorkloadsAction::UpgradeImage => "upgrade-image",
            WorkloadsAction::UpgradeImageStatus => "upgrade-image-status",
            WorkloadsAction::RollbackImage => "rollback-image",
            WorkloadsAction::RollbackImageStatus => "rollback-image-status",
            WorkloadsAction::TeardownKubernetes => "teardown-kubernetes",
            WorkloadsAction::TeardownKubernetesStatus => "teardown-kubernetes-status",
        }
    }

    /// Kept for the workflow's result and `apiary status` (where the objects went, the
    /// rollout), not for a later layer: shards, so the rollout adds to what ensure said.
    fn slot(self) -> Option<&'static str> {
        Some(match self {
            WorkloadsAction::Ensure => "workloads#ensure",
            WorkloadsAction::Status => apiary_core::outputs::ROLLOUT_SLOT,
            // The upgrade's result carries what its steps saw; a skipped step must not
            // overwrite provision's rollout (the load balancer the alias names).
            WorkloadsAction::Restart
            | WorkloadsAction::CredentialsSynced
            | WorkloadsAction::PodsCredentials
            | WorkloadsAction::ScaleNodepool
            | WorkloadsAction::PoolUsage
            | WorkloadsAction::UpgradeImage
            | WorkloadsAction::UpgradeImageStatus
            | WorkloadsAction::RollbackImage
            | WorkloadsAction::RollbackImageStatus
            | WorkloadsAction::TeardownKubernetes
            | WorkloadsAction::TeardownKubernetesStatus => return None,
        })
    }

    fn mutates(self) -> bool {
        !matches!(
            self,
            WorkloadsAction::Status
                | WorkloadsAction::CredentialsSynced
                | WorkloadsAction::PodsCredentials
                | WorkloadsAction::PoolUsage
                | WorkloadsAction::TeardownKubernetesStatus
                | WorkloadsAction::UpgradeImageStatus
                | WorkloadsAction::RollbackImageStatus
        )
    }

    /// The schedule's probe runs every five minutes: its successes are not journaled.
    fn journals_success(self) -> bool {
        self != WorkloadsAction::PoolUsage
    }
}

/// The environment variable naming the permissions boundary of the roles this function
/// creates (see [`Deps::permissions_boundary`]).
pub const PERMISSIONS_BOUNDARY_ENV: &str = "APIARY_PERMISSIONS_BOUNDARY_ARN";
/// The environment variable naming the Twingate connector's role (the stack's
/// `TwingateConnectorRole`, set when the stack has a connector secret).
pub const TWINGATE_ROLE_ENV: &str = "APIARY_TWINGATE_ROLE_ARN";
/// The environment variable naming Prometheus's role (the stack's `MetricsWriterRole`).
pub const METRICS_ROLE_ENV: &str = "APIARY_METRICS_ROLE_ARN";
/// The environment variable naming Alertmanager's role (the stack's `AlertRouterRole`).
pub const ALERT_ROUTER_ROLE_ENV: &str = "APIARY_ALERT_ROUTER_ROLE_ARN";
/// The environment variable naming the alerts topic Alertmanager publishes to.
pub const ALERT_TOPIC_ENV: &str = "APIARY_ALERT_TOPIC_ARN";

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
    /// The load balancer and its targets' health (`serving`).
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// The stores' secrets' current versions (metadata only: `sync`).
    pub secrets: aws_sdk_secretsmanager::Client,
    /// The pool-usage metric (`usage`).
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// Signs the EKS bearer token.
    pub credentials: Option<SharedCredentialsProvider>,
    /// The SDK's region (the deployment's region when unset).
    pub region: Option<String>,
    pub recorder: Arc<dyn Recorder>,
    pub kube: KubeAccess,
    /// The AWS endpoint is the local emulator: an AWS API it does not implement (EKS Pod
    /// Identity) is reported in the output instead of failing the step.
    pub emulator: bool,
    /// The managed policy every role this function creates carries as its permissions
    /// boundary (the stack's `IngestionBoundary`, passed as
    /// `APIARY_PERMISSIONS_BOUNDARY_ARN`). The function's own role may only create or
    /// change the ingestion role with exactly this boundary attached. `None` only
    /// against the emulator, where the local runner has no such policy.
    pub permissions_boundary: Option<String>,
    /// The role Pod Identity gives the Twingate connector (`TWINGATE_ROLE_ENV`). None
    /// locally, and when the stack has no connector secret.
    pub twingate_role: Option<String>,
    /// The role Pod Identity gives Prometheus (`METRICS_ROLE_ENV`). None locally.
    pub metrics_role: Option<String>,
    /// The role Pod Identity gives Alertmanager (`ALERT_ROUTER_ROLE_ENV`). None locally.
    pub alert_router_role: Option<String>,
    /// The alerts topic (`ALERT_TOPIC_ENV`; locally the one the runner makes).
    pub alert_topic: Option<String>,
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
            elb: apiary_core::client!(aws_sdk_elasticloadbalancingv2, sdk_config),
            secrets: apiary_core::client!(aws_sdk_secretsmanager, sdk_config),
            cloudwatch: apiary_core::client!(aws_sdk_cloudwatch, sdk_config),
            credentials: sdk_config.credentials_provider(),
            region: sdk_config.region().map(|r| r.to_string()),
            recorder,
            kube,
            emulator: sdk_config.endpoint_url().is_some(),
            permissions_boundary: None,
            twingate_role: None,
            metrics_role: None,
            alert_router_role: None,
            alert_topic: None,
        }
    }

    /// The permissions boundary for the roles this function creates.
    pub fn with_permissions_boundary(mut self, policy_arn: impl Into<String>) -> Self {
        self.permissions_boundary = Some(policy_arn.into());
        self
    }

    /// The alerts topic Alertmanager publishes to.
    pub fn with_alert_topic(mut self, topic_arn: impl Into<String>) -> Self {
        self.alert_topic = Some(topic_arn.into());
        self
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

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Workloads;
    type Action = WorkloadsAction;
    type Output = Output;

    async fn run(&self, step: &StepContext<'_, WorkloadsAction>) -> Result<Done<Output>> {
        // Boxed: the Kubernetes client's futures nest deeply, and callers (the Lambda
        // runtime, the CLI) should not need a raised recursion limit to hold this one.
        if let Some(done) = teardown::without_cluster(self, step).await? {
            return Ok(done.map(Output::Teardown));
        }
        if let Some(skipped) = upgrade_skipped(step)? {
            let detail = skipped.detail.clone();
            return Ok(Done::ready(Output::Skipped(skipped)).with_detail(detail));
        }
        if let Some(skipped) = usage::nothing_to_measure(self, step).await? {
            let detail = skipped.detail.clone();
            return Ok(Done::ready(Output::Usage(skipped)).with_detail(detail));
        }
        let target = Box::pin(target(self, step)).await?;
        Box::pin(run_on(self, step, target)).await
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }
}

/// The function's entry point: the step kit, over these dependencies.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}

/// Runs the step's action against an already resolved target.
pub async fn run_on(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<Output>> {
    Ok(match step.action {
        WorkloadsAction::Ensure
        | WorkloadsAction::UpgradeImage
        | WorkloadsAction::RollbackImage => Box::pin(ensure(deps, step, target))
            .await?
            .map(Output::Ensure),
        WorkloadsAction::Status
        | WorkloadsAction::UpgradeImageStatus
        | WorkloadsAction::RollbackImageStatus => Box::pin(status(deps, step, target))
            .await?
            .map(Output::Status),
        WorkloadsAction::PodsCredentials => {
            Box::pin(pods_credentials::pods_credentials(deps, step, target))
                .await?
                .map(Output::PodsCredentials)
        }
        WorkloadsAction::Restart => Box::pin(restart::restart(deps, step, target))
            .await?
            .map(Output::Restart),
        WorkloadsAction::CredentialsSynced => Box::pin(sync::synced(deps, step, target))
            .await?
            .map(Output::Synced),
        WorkloadsAction::ScaleNodepool => Box::pin(scale::scale(step, target))
            .await?
            .map(Output::Scale),
        WorkloadsAction::PoolUsage => Box::pin(usage::usage(deps, step, target))
            .await?
            .map(Output::Usage),
        WorkloadsAction::TeardownKubernetes | WorkloadsAction::TeardownKubernetesStatus => {
            Box::pin(teardown::teardown(step, target))
                .await?
                .map(Output::Teardown)
        }
    })
}

async fn target(deps: &Deps, step: &StepContext<'_, WorkloadsAction>) -> Result<Target> {
    match &deps.kube {
        KubeAccess::Render(folder) => Ok(Target::Render(folder.clone())),
        KubeAccess::Eks => {
            let cluster = &step.layers.cluster()?.cluster_name;
            Ok(Target::Apply {
                client: connect::eks_client(deps, cluster, &region(deps, step)).await?,
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

/// The upgrade's image steps have nothing to do for a Kubernetes version upgrade.
fn upgrade_skipped(step: &StepContext<'_, WorkloadsAction>) -> Result<Option<output::StepSkipped>> {
    if !matches!(
        step.action,
        WorkloadsAction::UpgradeImage
            | WorkloadsAction::UpgradeImageStatus
            | WorkloadsAction::RollbackImage
            | WorkloadsAction::RollbackImageStatus
    ) {
        return Ok(None);
    }
    let input: UpgradeInput = apiary_core::inputs::from_options(upgrade::WORKFLOW, &step.options)?;
    Ok(
        (input.kind() != upgrade::Kind::Image).then(|| output::StepSkipped {
            skipped: true,
            detail: "skipped: the input upgrades the Kubernetes version, not the image".to_owned(),
        }),
    )
}

/// The SDK's region, else the deployment's.
fn region(deps: &Deps, step: &StepContext<'_, WorkloadsAction>) -> String {
    deps.region
        .clone()
        .unwrap_or_else(|| step.spec.region.clone())
}

/// `ensure` against an already resolved target. Rendered objects are done; applied ones
/// leave the rollout pending for `status` to follow.
pub async fn ensure(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<EnsureOutput>> {
    let log = &step.log;
    let mut ctx = Context::new(&step.spec, &step.layers)?;
    ctx.alert_topic_arn = deps.alert_topic.clone();
    let identity =
        pod_identity::ensure(deps, &step.names, &step.layers, &region(deps, step), log).await?;
    let connector = match &ctx.twingate_secret_arn {
        Some(_) => Some(
            stack_identity(
                deps,
                step,
                StackRole {
                    service_account: (connector::NAMESPACE, connector::SERVICE_ACCOUNT),
                    role: deps.twingate_role.as_deref(),
                    env: TWINGATE_ROLE_ENV,
                    stack_role: "TwingateConnectorRole",
                    without: "the connector cannot read its secret",
                },
            )
            .await?,
        ),
        None => None,
    };
    let monitoring = vec![
        stack_identity(
            deps,
            step,
            StackRole {
                service_account: (monitoring::NAMESPACE, monitoring::PROMETHEUS),
                role: deps.metrics_role.as_deref(),
                env: METRICS_ROLE_ENV,
                stack_role: "MetricsWriterRole",
                without: "Prometheus keeps its metrics but cannot ship them to the bucket",
            },
        )
        .await?,
        stack_identity(
            deps,
            step,
            StackRole {
                service_account: (monitoring::NAMESPACE, monitoring::ALERTMANAGER),
                role: deps.alert_router_role.as_deref(),
                env: ALERT_ROUTER_ROLE_ENV,
                stack_role: "AlertRouterRole",
                without: "Alertmanager cannot publish to the alerts topic",
            },
        )
        .await?,
    ];
    match target {
        Target::Render(folder) => {
            let manifests = manifests::build(&ctx)?;
            let until_issued = skipped_until_issued(&ctx)?;
            let files = render::render(&folder, &manifests)?;
            let changed = files.iter().filter(|f| f.changed).count();
            let detail = format!(
                "rendered {} objects to {} ({changed} changed){}; not applied",
                files.len(),
                folder.display(),
                skip_notes(&[], until_issued.as_ref()),
            );
            let skipped = until_issued.into_iter().collect();
            Ok(Done::ready(EnsureOutput {
                target: Ensured::Rendered {
                    applied: false,
                    folder,
                    validated: true,
                    objects: files,
                    skipped,
                },
                changed,
                pod_identity: identity.report(),
                connector,
                monitoring,
                removed: Vec::new(),
                detail: detail.clone(),
            })
            .with_detail(detail))
        }
        Target::Apply {
            client,
            via,
            auto_mode,
        } => {
            ctx.auto_mode = auto_mode;
            let manifests = manifests::build(&ctx)?;
            let without_auto_mode = skipped_without_auto_mode(&ctx)?;
            let until_issued = skipped_until_issued(&ctx)?;
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
            let mut removed = Vec::new();
            if ctx.auto_mode && ctx.twingate_secret_arn.is_none() {
                removed.extend(connector::remove_unlisted(&client, &ctx).await?);
            }
            let changed = applied.iter().filter(|a| a.changed).count();
            let detail = format!(
                "applied {} objects via {via} ({changed} changed){}{}",
                applied.len(),
                skip_notes(&without_auto_mode, until_issued.as_ref()),
                removed.iter().map(|r| format!("; {r}")).collect::<String>()
            );
            let mut skipped = without_auto_mode;
            skipped.extend(until_issued);
            let rollout = format!("the rollout of {}: {detail}", rollout::deployment_name());
            Ok(Done::pending(
                EnsureOutput {
                    target: Ensured::Applied {
                        applied: true,
                        via,
                        auto_mode,
                        objects: applied,
                        skipped,
                    },
                    changed,
                    pod_identity: identity.report(),
                    connector,
                    monitoring,
                    removed,
                    detail,
                },
                vec![rollout],
            ))
        }
    }
}

/// A platform component's service account and the stack role it gets.
struct StackRole<'a> {
    service_account: (&'static str, &'static str),
    role: Option<&'a str>,
    /// Where the function reads the role, and the stack resource that sets it.
    env: &'static str,
    stack_role: &'static str,
    /// What the component cannot do without it.
    without: &'static str,
}

/// Binds a platform component's service account to its stack role. Without the role (a
/// local run: no stack) the objects still render and the binding is reported as not
/// made, with what that costs.
async fn stack_identity(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
    wanted: StackRole<'_>,
) -> Result<output::StackIdentity> {
    let (namespace, name) = wanted.service_account;
    let service_account = format!("{namespace}/{name}");
    let Some(role) = wanted.role else {
        return Ok(output::StackIdentity {
            service_account,
            role_arn: None,
            association: "not-created".to_owned(),
            detail: Some(format!(
                "no role ({}: the stack's {}): {}",
                wanted.env, wanted.stack_role, wanted.without
            )),
        });
    };
    let cluster = &step.layers.cluster()?.cluster_name;
    let association = pod_identity::ensure_stack_role(
        deps,
        &step.names,
        cluster,
        wanted.service_account,
        role,
        &step.log,
    )
    .await?;
    // Recorded, as the ingestion role's association is: drift reports a tagged
    // association nothing recorded.
    if let pod_identity::Association::Bound { id, arn, .. } = &association {
        step.log
            .resource("eks:pod-identity-association", id, Some(arn))
            .await?;
    }
    let (association, detail) = match association {
        pod_identity::Association::Bound { change, .. } => (change.to_owned(), None),
        pod_identity::Association::Unsupported { detail } => {
            ("not-created".to_owned(), Some(detail))
        }
    };
    Ok(output::StackIdentity {
        service_account,
        role_arn: Some(role.to_owned()),
        association,
        detail,
    })
}

/// The objects a plain (non Auto Mode) cluster does not get, and why.
fn skipped_without_auto_mode(ctx: &Context) -> Result<Vec<Skipped>> {
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
        .map(|m| Skipped {
            api_version: m.api_version.clone(),
            kind: m.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            reason: format!(
                "the cluster does not serve EKS Auto Mode's resources (nor the add-ons Apiary installs on EKS, such as the secrets driver), so {} was not applied",
                m.display()
            ),
        })
        .collect())
}

/// The HTTPS Ingress, left out while ACM has not issued its certificate: its listener
/// cannot use one that is not issued, so applying it would only make a load balancer that
/// fails to serve (the deployment is WAITING_FOR_DNS_VALIDATION meanwhile). The provision
/// run after ACM issues the certificate applies it.
fn skipped_until_issued(ctx: &Context) -> Result<Option<Skipped>> {
    if ctx.certificate_issued {
        return Ok(None);
    }
    let ingress = manifests::https_ingress(ctx)?;
    Ok(Some(Skipped {
        reason: format!(
            "certificate {} is {}, not ISSUED: {} is applied by the provision run after ACM issues it (the dns layer's output lists the DNS validation records ACM waits for)",
            ctx.certificate_arn,
            ctx.certificate_status,
            ingress.display()
        ),
        api_version: ingress.api_version,
        kind: ingress.kind,
        namespace: ingress.namespace,
        name: ingress.name,
    }))
}

/// What the journal detail says about the objects left out (empty when none were).
fn skip_notes(without_auto_mode: &[Skipped], until_issued: Option<&Skipped>) -> String {
    let mut notes = String::new();
    if !without_auto_mode.is_empty() {
        notes.push_str(&format!(
            ", {} skipped: the cluster is not EKS Auto Mode",
            without_auto_mode.len()
        ));
    }
    if let Some(ingress) = until_issued {
        notes.push_str(&format!(
            ", {} {}/{} skipped: its certificate is not ISSUED",
            ingress.kind,
            ingress.namespace.as_deref().unwrap_or_default(),
            ingress.name
        ));
    }
    notes
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

/// `status` against an already resolved target: ready when the rollout is complete (or
/// there is none, the manifests having only been rendered).
pub async fn status(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<StatusOutput>> {
    match target {
        Target::Render(folder) => {
            let detail = format!(
                "the manifests were rendered to {}, not applied: there is no rollout to wait for, and the load balancer and its targets' health are not verified locally",
                folder.display()
            );
            Ok(Done::ready(StatusOutput::Rendered {
                applied: false,
                folder,
                desired: 0,
                updated: 0,
                available: 0,
                detail,
            }))
        }
        Target::Apply { client, via, .. } => {
            let min_replicas = step.spec.sizing().ingestion_replicas_min;
            let rollout = rollout::status(&client, min_replicas).await?;
            if !rollout.ready {
                let pending = std::iter::once(rollout.detail.clone())
                    .chain(rollout.waiting.iter().cloned())
                    .collect();
                return Ok(Done::pending(
                    StatusOutput::Applied {
                        via,
                        rollout,
                        serving: None,
                    },
                    pending,
                ));
            }
            let serving = serving_check(deps, step, &client).await?;
            let pending = match &serving {
                Some(s) if !s.ready => vec![s.detail.clone()],
                _ => Vec::new(),
            };
            Ok(Done::pending(
                StatusOutput::Applied {
                    via,
                    rollout,
                    serving,
                },
                pending,
            ))
        }
    }
}

/// After the rollout: whether the load balancer in front of the pods serves (see
/// [`serving`]). `None` while the certificate is not issued: the HTTPS Ingress is not
/// applied then, and the deployment is WAITING_FOR_DNS_VALIDATION, not READY. Through a
/// kubeconfig (a cluster outside AWS, where no load balancer controller makes an ELB)
/// only the rollout is checked.
async fn serving_check(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
    client: &kube::Client,
) -> Result<Option<serving::Serving>> {
    if !matches!(deps.kube, KubeAccess::Eks) {
        return Ok(None);
    }
    let ctx = Context::new(&step.spec, &step.layers)?;
    if !ctx.certificate_issued {
        return Ok(None);
    }
    match serving::ingress_address(client).await? {
        Some(address) => serving::check(&deps.elb, &address).await.map(Some),
        None => Ok(Some(serving::Serving::waiting(
            "the Ingress has no load balancer address yet (the load balancer controller \
             writes it once the load balancer exists)"
                .to_owned(),
        ))),
    }
}

#[cfg(test)]
mod tests;
