//! Mocked AWS clients for the unit tests: the IAM and EKS answers of a deployment whose
//! pod identity does not exist yet, and of one where it already exists as `ensure`
//! leaves it. The deployment is the shared fixture (`apiary_core::fixtures`).

use std::sync::Arc;

use apiary_core::step::MemoryRecorder;
use aws_sdk_eks::operation::create_pod_identity_association::CreatePodIdentityAssociationOutput;
use aws_sdk_eks::operation::describe_pod_identity_association::DescribePodIdentityAssociationOutput;
use aws_sdk_eks::operation::list_pod_identity_associations::ListPodIdentityAssociationsOutput;
use aws_sdk_eks::types::{PodIdentityAssociation, PodIdentityAssociationSummary};
use aws_sdk_iam::operation::create_role::CreateRoleOutput;
use aws_sdk_iam::operation::get_role::{GetRoleError, GetRoleOutput};
use aws_sdk_iam::operation::get_role_policy::{GetRolePolicyError, GetRolePolicyOutput};
use aws_sdk_iam::operation::put_role_policy::PutRolePolicyOutput;
use aws_sdk_iam::types::error::NoSuchEntityException;
use aws_sdk_iam::types::{
    AttachedPermissionsBoundary, PermissionsBoundaryAttachmentType, Role, Tag,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::Value;

use crate::manifests::Context;
use crate::pod_identity::{POLICY_NAME, permissions_policy, trust_policy};
use crate::{Deps, KubeAccess};
use apiary_core::fixtures::{self, Fixture};

pub const ROLE_NAME: &str = "apiary-acme-prod-ingestion";
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/apiary-acme-prod-ingestion";
pub const BOUNDARY_ARN: &str =
    "arn:aws:iam::123456789012:policy/apiary-acme-prod-ingestion-boundary";
pub const ASSOCIATION_ID: &str = "a-0123456789abcdef0";
pub const ASSOCIATION_ARN: &str = "arn:aws:eks:us-west-2:123456789012:podidentityassociation/apiary-acme-prod/a-0123456789abcdef0";

/// The step as the kit runs it, against a given cluster client (or none: rendered).
pub struct Against {
    pub deps: Deps,
    pub client: Option<kube::Client>,
}

#[async_trait::async_trait]
impl apiary_core::step::Step for Against {
    const LAYER: apiary_core::naming::Layer = apiary_core::naming::Layer::Workloads;
    type Action = crate::WorkloadsAction;
    type Output = crate::output::Output;

    async fn run(
        &self,
        step: &apiary_core::step::StepContext<'_, crate::WorkloadsAction>,
    ) -> apiary_core::Result<apiary_core::step::Done<crate::output::Output>> {
        let target = match &self.client {
            Some(client) => crate::Target::Apply {
                client: client.clone(),
                via: "eks",
                auto_mode: true,
            },
            None => crate::Target::Render(std::env::temp_dir().join("apiary-workloads-test")),
        };
        crate::run_on(&self.deps, step, target).await
    }

    fn state(&self) -> &dyn apiary_core::step::Recorder {
        self.deps.recorder.as_ref()
    }
}

/// What the manifests of [`Fixture::test`] are built from.
pub fn context() -> Context {
    let fixture = Fixture::test();
    Context::new(&fixture.spec(), &fixture.layers).expect("the fixture context builds")
}

/// Builds `Deps` from mocked clients, over a state table holding the fixture deployment.
pub fn mock_deps(
    eks_rules: &[&Rule],
    iam_rules: &[&Rule],
    kube: KubeAccess,
    emulator: bool,
) -> (Deps, MemoryRecorder) {
    mock_deps_over(&Fixture::test(), eks_rules, iam_rules, kube, emulator)
}

/// Builds `Deps` from mocked clients, over a state table holding `fixture`.
pub fn mock_deps_over(
    fixture: &Fixture,
    eks_rules: &[&Rule],
    iam_rules: &[&Rule],
    kube: KubeAccess,
    emulator: bool,
) -> (Deps, MemoryRecorder) {
    let recorder = fixture.state();
    let deps = Deps {
        eks: mock_client!(aws_sdk_eks, RuleMode::MatchAny, eks_rules.iter().copied()),
        iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, iam_rules.iter().copied()),
        // No test here reaches the load balancer check (it needs the EKS access): its
        // own tests are in `serving`.
        elb: mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, []),
        secrets: mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, []),
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, []),
        credentials: None,
        region: Some("us-west-2".to_owned()),
        recorder: Arc::new(recorder.clone()),
        kube,
        emulator,
        permissions_boundary: Some(BOUNDARY_ARN.to_owned()),
        twingate_role: None,
        metrics_role: None,
        alert_router_role: None,
        alert_topic: None,
    };
    (deps, recorder)
}

/// RFC 3986 encoding, as IAM returns policy documents.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn expected_policy() -> Value {
    permissions_policy(&Fixture::test().layers, "us-west-2").unwrap()
}

/// The role as `ensure` leaves it: trust, tags and the permissions boundary.
pub fn role() -> Role {
    let mut role = role_without_boundary();
    role.permissions_boundary = Some(
        AttachedPermissionsBoundary::builder()
            .permissions_boundary_type(PermissionsBoundaryAttachmentType::Policy)
            .permissions_boundary_arn(BOUNDARY_ARN)
            .build(),
    );
    role
}

/// The role as a version of `ensure` before permissions boundaries made it.
pub fn role_without_boundary() -> Role {
    let tags = apiary_core::Names::new("acme-prod")
        .tags(apiary_core::Layer::Workloads)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
        .collect();
    Role::builder()
        .path("/")
        .role_name(ROLE_NAME)
        .role_id("AROAEXAMPLE")
        .arn(ROLE_ARN)
        .create_date(aws_smithy_types::DateTime::from_secs(0))
        .assume_role_policy_document(url_encode(&trust_policy(fixtures::CLUSTER_ARN).to_string()))
        .set_tags(Some(tags))
        .build()
        .unwrap()
}

fn no_such_entity() -> NoSuchEntityException {
    NoSuchEntityException::builder()
        .message("not found")
        .meta(ErrorMetadata::builder().code("NoSuchEntity").build())
        .build()
}

/// IAM with nothing made yet; creating the role and its policy are expected.
pub struct FreshIam {
    pub get_role: Rule,
    pub create_role: Rule,
    pub get_policy: Rule,
    pub put_policy: Rule,
}

impl FreshIam {
    pub fn new() -> Self {
        FreshIam {
            get_role: mock!(aws_sdk_iam::Client::get_role)
                .then_error(|| GetRoleError::NoSuchEntityException(no_such_entity())),
            create_role: mock!(aws_sdk_iam::Client::create_role)
                .match_requests(|r| {
                    r.role_name() == Some(ROLE_NAME)
                        && r.permissions_boundary() == Some(BOUNDARY_ARN)
                        && r.assume_role_policy_document()
                            .and_then(|d| serde_json::from_str::<Value>(d).ok())
                            == Some(trust_policy(fixtures::CLUSTER_ARN))
                        && r.tags()
                            .iter()
                            .any(|t| t.key() == "apiary:layer" && t.value() == "workloads")
                })
                .then_output(|| CreateRoleOutput::builder().role(role()).build()),
            get_policy: mock!(aws_sdk_iam::Client::get_role_policy)
                .then_error(|| GetRolePolicyError::NoSuchEntityException(no_such_entity())),
            put_policy: mock!(aws_sdk_iam::Client::put_role_policy)
                .match_requests(|r| {
                    r.role_name() == Some(ROLE_NAME)
                        && r.policy_name() == Some(POLICY_NAME)
                        && r.policy_document()
                            .and_then(|d| serde_json::from_str::<Value>(d).ok())
                            == Some(expected_policy())
                })
                .then_output(|| PutRolePolicyOutput::builder().build()),
        }
    }

    pub fn rules(&self) -> [&Rule; 4] {
        [
            &self.get_role,
            &self.create_role,
            &self.get_policy,
            &self.put_policy,
        ]
    }
}

/// IAM as `ensure` leaves it: reads only. Any write would find no rule and panic.
pub struct ExistingIam {
    pub get_role: Rule,
    pub get_policy: Rule,
}

impl ExistingIam {
    pub fn new() -> Self {
        ExistingIam {
            get_role: mock!(aws_sdk_iam::Client::get_role)
                .then_output(|| GetRoleOutput::builder().role(role()).build()),
            get_policy: mock!(aws_sdk_iam::Client::get_role_policy).then_output(|| {
                GetRolePolicyOutput::builder()
                    .role_name(ROLE_NAME)
                    .policy_name(POLICY_NAME)
                    .policy_document(url_encode(&expected_policy().to_string()))
                    .build()
                    .unwrap()
            }),
        }
    }

    pub fn rules(&self) -> [&Rule; 2] {
        [&self.get_role, &self.get_policy]
    }
}

fn association(role_arn: &str) -> PodIdentityAssociation {
    PodIdentityAssociation::builder()
        .cluster_name("apiary-acme-prod")
        .namespace("honeyhive")
        .service_account("ingestion")
        .role_arn(role_arn)
        .association_id(ASSOCIATION_ID)
        .association_arn(ASSOCIATION_ARN)
        .build()
}

/// EKS with no association yet; creating it is expected.
pub struct FreshEks {
    pub list: Rule,
    pub create: Rule,
}

impl FreshEks {
    pub fn new() -> Self {
        FreshEks {
            list: mock!(aws_sdk_eks::Client::list_pod_identity_associations)
                .match_requests(|r| {
                    r.cluster_name() == Some("apiary-acme-prod")
                        && r.namespace() == Some("honeyhive")
                        && r.service_account() == Some("ingestion")
                })
                .then_output(|| ListPodIdentityAssociationsOutput::builder().build()),
            create: mock!(aws_sdk_eks::Client::create_pod_identity_association)
                .match_requests(|r| {
                    r.cluster_name() == Some("apiary-acme-prod")
                        && r.namespace() == Some("honeyhive")
                        && r.service_account() == Some("ingestion")
                        && r.role_arn() == Some(ROLE_ARN)
                        && r.tags().and_then(|t| t.get("apiary:deployment"))
                            == Some(&"acme-prod".to_owned())
                })
                .then_output(|| {
                    CreatePodIdentityAssociationOutput::builder()
                        .association(association(ROLE_ARN))
                        .build()
                }),
        }
    }

    pub fn rules(&self) -> [&Rule; 2] {
        [&self.list, &self.create]
    }
}

/// EKS where the association exists, bound to `role_arn`.
pub struct ExistingEks {
    pub list: Rule,
    pub describe: Rule,
}

impl ExistingEks {
    pub fn new(role_arn: &'static str) -> Self {
        ExistingEks {
            list: mock!(aws_sdk_eks::Client::list_pod_identity_associations).then_output(|| {
                ListPodIdentityAssociationsOutput::builder()
                    .associations(
                        PodIdentityAssociationSummary::builder()
                            .cluster_name("apiary-acme-prod")
                            .namespace("honeyhive")
                            .service_account("ingestion")
                            .association_id(ASSOCIATION_ID)
                            .association_arn(ASSOCIATION_ARN)
                            .build(),
                    )
                    .build()
            }),
            describe: mock!(aws_sdk_eks::Client::describe_pod_identity_association)
                .match_requests(|r| r.association_id() == Some(ASSOCIATION_ID))
                .then_output(move || {
                    DescribePodIdentityAssociationOutput::builder()
                        .association(association(role_arn))
                        .build()
                }),
        }
    }

    pub fn rules(&self) -> [&Rule; 2] {
        [&self.list, &self.describe]
    }
}

/// The load balancer the Ingress in [`INGRESS_ADDRESS`] names, active, with one target
/// group whose one target is healthy or not.
pub const INGRESS_ADDRESS: &str = "internal-k8s-apiaryacme-1.us-west-2.elb.amazonaws.com";

pub fn serving_elb(healthy: bool) -> aws_sdk_elasticloadbalancingv2::Client {
    use aws_sdk_elasticloadbalancingv2::Client as Elb;
    use aws_sdk_elasticloadbalancingv2::operation::describe_load_balancers::DescribeLoadBalancersOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
    use aws_sdk_elasticloadbalancingv2::types::{
        LoadBalancer, LoadBalancerState, LoadBalancerStateEnum, TargetGroup, TargetHealth,
        TargetHealthDescription, TargetHealthStateEnum,
    };
    let balancers = aws_smithy_mocks::mock!(Elb::describe_load_balancers).then_output(|| {
        DescribeLoadBalancersOutput::builder()
            .load_balancers(
                LoadBalancer::builder()
                    .load_balancer_arn("arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/app/k8s-apiaryacme/1")
                    .dns_name(INGRESS_ADDRESS)
                    .canonical_hosted_zone_id("Z1H1FL5HABSF5")
                    .state(LoadBalancerState::builder().code(LoadBalancerStateEnum::Active).build())
                    .build(),
            )
            .build()
    });
    let groups = aws_smithy_mocks::mock!(Elb::describe_target_groups).then_output(|| {
        DescribeTargetGroupsOutput::builder()
            .target_groups(TargetGroup::builder().target_group_arn("tg-1").build())
            .build()
    });
    let state = if healthy {
        TargetHealthStateEnum::Healthy
    } else {
        TargetHealthStateEnum::Unhealthy
    };
    let health = aws_smithy_mocks::mock!(Elb::describe_target_health).then_output(move || {
        DescribeTargetHealthOutput::builder()
            .target_health_descriptions(
                TargetHealthDescription::builder()
                    .target_health(TargetHealth::builder().state(state.clone()).build())
                    .build(),
            )
            .build()
    });
    mock_client!(
        aws_sdk_elasticloadbalancingv2,
        RuleMode::MatchAny,
        [&balancers, &groups, &health]
    )
}
