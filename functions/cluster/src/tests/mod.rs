//! Unit tests with mocked clients: the exact settings of each request, idempotency as an
//! assertion, polling, failed states and the error classes the emulator cannot produce.

mod access;
mod control_plane;
mod karpenter;
mod launch_template;
mod nodegroup;
mod real_aws;
mod scale;
mod upgrade;

use std::sync::Arc;

use apiary_core::ErrorName;
use apiary_core::fixtures::{self, Fixture};
use apiary_core::outputs::ClusterOutput;
use apiary_core::step::MemoryRecorder;
use aws_sdk_eks::Client as Eks;
use aws_sdk_eks::operation::describe_cluster::{DescribeClusterError, DescribeClusterOutput};
use aws_sdk_eks::types::{Certificate, Cluster, ClusterStatus};
use aws_sdk_iam::Client as Iam;
use aws_sdk_iam::operation::get_role::{GetRoleError, GetRoleOutput};
use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput;
use aws_sdk_iam::types::{AttachedPolicy, Role};
use aws_sdk_sts::Client as Sts;
use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::Value;

use super::*;

pub(crate) const CLUSTER: &str = "apiary-acme-eks";
pub(crate) const LOG_SHIPPER: &str = "arn:aws:iam::123456789012:role/apiary-acme-log-shipper";
pub(crate) const ENDPOINT: &str = "https://ABC.gr7.us-west-2.eks.amazonaws.com";

pub(crate) fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::123456789012:role/{name}")
}

/// Deployment `acme` as the cluster steps find it: the layers before the cluster built.
pub(crate) fn acme() -> Fixture {
    Fixture::named("acme").before(Layer::Cluster)
}

/// The event the state machine sends for `action` on deployment `acme`.
pub(crate) fn event(action: &str) -> Value {
    apiary_core::step::event(action, "acme")
}

pub(crate) fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// Mocked clients, one rule list per service.
#[derive(Default)]
pub(crate) struct Mocks<'a> {
    pub eks: Vec<&'a Rule>,
    /// Empty: the node group's launch template exists (see [`template_found`]).
    pub ec2: Vec<&'a Rule>,
    pub iam: Vec<&'a Rule>,
    pub sqs: Vec<&'a Rule>,
    pub events: Vec<&'a Rule>,
    pub sts: Vec<&'a Rule>,
    /// Empty: the control plane's log group is there already and its retention is set.
    pub logs: Vec<&'a Rule>,
}

impl Mocks<'_> {
    /// Clients over the state of [`acme`].
    pub(crate) fn deps(&self) -> (Deps, MemoryRecorder) {
        self.deps_with(&acme())
    }

    /// Clients over a state holding `fixture`'s spec and layer outputs.
    pub(crate) fn deps_with(&self, fixture: &Fixture) -> (Deps, MemoryRecorder) {
        let recorder = fixture.state();
        let found = template_found();
        let ec2 = if self.ec2.is_empty() {
            vec![&found]
        } else {
            self.ec2.clone()
        };
        let (there, described, kept) = log_group_there();
        let logs = if self.logs.is_empty() {
            vec![&there, &described, &kept]
        } else {
            self.logs.clone()
        };
        // Last, so that a test's own listing wins: the cluster holds no entry beyond the
        // ones the test describes.
        let none_listed = mock!(Eks::list_access_entries).then_output(|| {
            aws_sdk_eks::operation::list_access_entries::ListAccessEntriesOutput::builder().build()
        });
        let mut eks = self.eks.clone();
        eks.push(&none_listed);
        let deps = Deps {
            logs: mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, &logs),
            eks: mock_client!(aws_sdk_eks, RuleMode::MatchAny, &eks),
            ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &ec2),
            iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, &self.iam),
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &self.sqs),
            events: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, &self.events),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &self.sts),
            recorder: Arc::new(recorder.clone()),
            kubernetes_admins: Vec::new(),
            emulator: false,
            log_key: None,
            log_shipper_role: Some(LOG_SHIPPER.to_owned()),
        };
        (deps, recorder)
    }
}

/// CreateLogGroup finding the group there, DescribeLogGroups finding it without a
/// retention, and PutRetentionPolicy.
pub(crate) fn log_group_there() -> (Rule, Rule, Rule) {
    use aws_sdk_cloudwatchlogs::operation::create_log_group::CreateLogGroupError;
    use aws_sdk_cloudwatchlogs::types::error::ResourceAlreadyExistsException;
    (
        mock!(aws_sdk_cloudwatchlogs::Client::create_log_group).then_error(|| {
            CreateLogGroupError::ResourceAlreadyExistsException(
                ResourceAlreadyExistsException::builder().build(),
            )
        }),
        described_log_group(None),
        mock!(aws_sdk_cloudwatchlogs::Client::put_retention_policy).then_output(|| {
            aws_sdk_cloudwatchlogs::operation::put_retention_policy::PutRetentionPolicyOutput::builder()
                .build()
        }),
    )
}

/// DescribeLogGroups finding the control plane's group with `retention` days.
pub(crate) fn described_log_group(retention: Option<i32>) -> Rule {
    mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups).then_output(move || {
        aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsOutput::builder()
            .log_groups(
                aws_sdk_cloudwatchlogs::types::LogGroup::builder()
                    .log_group_name("/aws/eks/apiary-acme-eks/cluster")
                    .set_retention_in_days(retention)
                    .build(),
            )
            .build()
    })
}

pub(crate) const TEMPLATE: &str = "apiary-acme-system-nodes";
pub(crate) const TEMPLATE_ID: &str = "lt-0123456789abcdef0";

/// The node group's launch template as DescribeLaunchTemplates finds it, tagged for
/// `deployment`.
pub(crate) fn template_tagged(deployment: &'static str) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(move || {
        aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput::builder()
            .launch_templates(
                aws_sdk_ec2::types::LaunchTemplate::builder()
                    .launch_template_name(TEMPLATE)
                    .launch_template_id(TEMPLATE_ID)
                    .default_version_number(1)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("apiary:deployment")
                            .value(deployment)
                            .build(),
                    )
                    .build(),
            )
            .build()
    })
}

pub(crate) fn template_found() -> Rule {
    template_tagged("acme")
}

/// A role as GetRole returns it, tagged as the deployment's; the node role carries its
/// discovery tag.
pub(crate) fn role(name: &str) -> Role {
    let mut builder = Role::builder()
        .role_name(name)
        .path("/")
        .role_id("AROAEXAMPLE")
        .arn(role_arn(name))
        .create_date(aws_smithy_types::DateTime::from_secs(0))
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("apiary:deployment")
                .value("acme")
                .build()
                .unwrap(),
        );
    if name.ends_with("-eks-node") {
        builder = builder.tags(
            aws_sdk_iam::types::Tag::builder()
                .key("karpenter.sh/discovery")
                .value(CLUSTER)
                .build()
                .unwrap(),
        );
    }
    builder.build().unwrap()
}

/// Every role exists.
pub(crate) fn roles_found() -> Rule {
    mock!(Iam::get_role).then_compute_output(|r| {
        GetRoleOutput::builder()
            .role(role(r.role_name().unwrap()))
            .build()
    })
}

pub(crate) fn roles_missing() -> Rule {
    mock!(Iam::get_role).then_error(|| {
        GetRoleError::NoSuchEntityException(
            aws_sdk_iam::types::error::NoSuchEntityException::builder()
                .message("The role cannot be found.")
                .meta(meta("NoSuchEntity", "The role cannot be found."))
                .build(),
        )
    })
}

/// Each role already has exactly the policies it needs.
pub(crate) fn policies_attached() -> Rule {
    mock!(Iam::list_attached_role_policies).then_compute_output(|r| {
        let name = r.role_name().unwrap();
        let policies: &[&str] = if name.ends_with("-eks-cluster") {
            &CLUSTER_POLICIES
        } else if name.ends_with("-eks-node") {
            &NODE_POLICIES
        } else {
            &NODEGROUP_POLICIES
        };
        let attached = policies
            .iter()
            .map(|p| {
                AttachedPolicy::builder()
                    .policy_name(*p)
                    .policy_arn(format!("arn:aws:iam::aws:policy/{p}"))
                    .build()
            })
            .collect();
        ListAttachedRolePoliciesOutput::builder()
            .set_attached_policies(Some(attached))
            .build()
    })
}

pub(crate) fn cluster(status: ClusterStatus) -> Cluster {
    Cluster::builder()
        .name(CLUSTER)
        .arn(format!(
            "arn:aws:eks:us-west-2:123456789012:cluster/{CLUSTER}"
        ))
        .endpoint(ENDPOINT)
        .role_arn(role_arn("apiary-acme-eks-cluster"))
        .certificate_authority(Certificate::builder().data("LS0tLS1CRUdJTg==").build())
        .status(status)
        .build()
}

pub(crate) fn describe_cluster(status: ClusterStatus) -> Rule {
    mock!(Eks::describe_cluster).then_output(move || {
        DescribeClusterOutput::builder()
            .cluster(cluster(status.clone()))
            .build()
    })
}

pub(crate) fn cluster_not_found() -> Rule {
    mock!(Eks::describe_cluster).then_error(|| {
        DescribeClusterError::ResourceNotFoundException(
            aws_sdk_eks::types::error::ResourceNotFoundException::builder()
                .message("No cluster found for name: apiary-acme-eks.")
                .meta(meta("ResourceNotFoundException", "No cluster found"))
                .build(),
        )
    })
}

pub(crate) fn caller(arn: &'static str) -> Rule {
    mock!(Sts::get_caller_identity).then_output(move || {
        GetCallerIdentityOutput::builder()
            .account("123456789012")
            .arn(arn)
            .build()
    })
}

#[tokio::test]
async fn unknown_actions_and_missing_layers_fail_before_any_call() {
    let mocks = Mocks::default();
    let (deps, recorder) = mocks.deps();
    for action in ["ensure", "status", "ensure-eks", "delete-cluster"] {
        let err = handle(&deps, event(action)).await.unwrap_err();
        assert_eq!(err.name(), ErrorName::InvalidInput, "{action}");
    }
    let (deps, recorder_without_layers) = mocks.deps_with(&acme().before(Layer::Keys));
    let err = handle(&deps, event("ensure-cluster")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("layers.keys"), "{err}");
    assert!(recorder.entries.lock().unwrap().is_empty());
    assert!(recorder_without_layers.resources.lock().unwrap().is_empty());
}

#[test]
fn partitions_follow_the_region() {
    assert_eq!(partition("us-west-2"), "aws");
    assert_eq!(partition("cn-north-1"), "aws-cn");
    assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
}

#[test]
fn only_assumed_roles_name_a_control_plane_role() {
    use crate::access::assumed_role_name;
    assert_eq!(
        assumed_role_name("arn:aws:sts::123456789012:assumed-role/apiary-control/1700000000"),
        Some("apiary-control")
    );
    assert_eq!(
        assumed_role_name("arn:aws:sts::123456789012:user/moto"),
        None
    );
    assert_eq!(assumed_role_name("arn:aws:iam::123456789012:root"), None);
    assert_eq!(assumed_role_name("not an arn"), None);
}

#[test]
fn the_three_shards_assemble_into_one_cluster_output() {
    let queue = "https://sqs.us-west-2.amazonaws.com/123456789012/apiary-acme-karpenter";
    let seen = |queue_url: &str| View {
        output: ClusterOutput {
            cluster_name: CLUSTER.to_owned(),
            cluster_arn: format!("arn:aws:eks:us-west-2:123456789012:cluster/{CLUSTER}"),
            endpoint: ENDPOINT.to_owned(),
            certificate_authority: "LS0tLS1CRUdJTg==".to_owned(),
            node_role_arn: role_arn("apiary-acme-eks-node"),
            nodegroup_name: "apiary-acme-system".to_owned(),
            interruption_queue_url: queue_url.to_owned(),
            cluster_security_group_id: "sg-0eks".to_owned(),
        },
        ..View::default()
    };
    let shard = |view: View, action: Action| {
        let done = view.done(action);
        assert!(done.is_ready());
        serde_json::to_value(&done.output).unwrap()
    };
    let control_plane = shard(seen(""), Action::EnsureCluster);
    let nodegroup = shard(seen(""), Action::StatusNodegroup);
    let karpenter = shard(seen(queue), Action::EnsureKarpenter);
    assert!(
        nodegroup.get("interruption_queue_url").is_none(),
        "a later shard carries only what it knows: {nodegroup}"
    );

    // The steps between ensure-cluster and ensure-karpenter read the layer already.
    let early = apiary_core::step::assemble(
        [("cluster#control-plane".to_owned(), control_plane.clone())].into(),
    )
    .unwrap();
    assert_eq!(early.cluster().unwrap().endpoint, ENDPOINT);

    let layers = apiary_core::step::assemble(
        [
            ("cluster#control-plane".to_owned(), control_plane),
            ("cluster#karpenter".to_owned(), karpenter),
            ("cluster#nodegroup".to_owned(), nodegroup),
        ]
        .into(),
    )
    .unwrap();
    let cluster = layers.cluster().unwrap();
    assert_eq!(cluster.interruption_queue_url, queue);
    assert_eq!(cluster.node_role_arn, role_arn("apiary-acme-eks-node"));
    assert_eq!(cluster.nodegroup_name, "apiary-acme-system");
}
