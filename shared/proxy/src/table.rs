//! The resources the proxy follows from their create on: which read shows them, what
//! that read answers while AWS does not show them yet, and how long AWS keeps them in
//! their creating state.
//!
//! The durations are the typical (median) figures of the project's timing reference,
//! each with the evidence it rests on: [M] measured (Terraform's "Creation complete
//! after" lines, issue timestamps), [D] AWS documentation, [E] an estimate. Resources
//! that AWS makes within a few seconds (VPC, subnet, key, role, secret) are modelled
//! as ready at once: below the one-second granularity of a Step Functions `Wait` at any
//! time scale worth running, they would measure rounding, not the workflow.

/// Where the new resource's identifier is found.
#[derive(Debug, Clone, Copy)]
pub enum IdFrom {
    /// A top-level parameter of the create request (query form field or JSON member).
    Param(&'static str),
    /// The answer's first element of this name (XML), or this JSON pointer (JSON).
    Answer(&'static str),
}

/// Where a read's answer (and the create's own, which on AWS shows the creating state
/// too) holds the resource's status.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// XML: each element named one of `blocks` (the read's and the create's names for
    /// the resource) whose child `<id>` is the resource, and its child `<status>`.
    Xml {
        blocks: &'static [&'static str],
        id: &'static str,
        status: &'static str,
    },
    /// JSON: the object at `pointer`, whose member `id` is the resource, and its member
    /// `status`.
    Json {
        pointer: &'static str,
        id: &'static str,
        status: &'static str,
    },
}

/// The time AWS keeps a resource in its creating state.
#[derive(Debug, Clone, Copy)]
pub struct Creating {
    pub shape: Shape,
    /// What the status reads while creating, and once ready (only a ready status is
    /// rewritten: a failed or deleting one passes through).
    pub status: &'static str,
    pub ready: &'static str,
    /// The typical real duration, in seconds.
    pub seconds: u32,
    pub source: &'static str,
}

/// A resource kind the proxy follows.
#[derive(Debug, Clone, Copy)]
pub struct Followed {
    /// As the inventory names it (`ec2:vpc`).
    pub kind: &'static str,
    /// The SigV4 signing name of the service.
    pub service: &'static str,
    pub create: &'static str,
    pub id: IdFrom,
    /// The read that shows it (by its identifier).
    pub read: &'static str,
    /// What that read answers for an identifier AWS does not show yet: error code and
    /// HTTP status.
    pub not_found: (&'static str, u16),
    pub creating: Option<Creating>,
}

const fn ec2(
    kind: &'static str,
    create: &'static str,
    id: &'static str,
    read: &'static str,
    not_found: &'static str,
) -> Followed {
    Followed {
        kind,
        service: "ec2",
        create,
        id: IdFrom::Answer(id),
        read,
        not_found: (not_found, 400),
        creating: None,
    }
}

/// Every followed kind. A create not listed here is still faulted, but not followed.
pub const FOLLOWED: &[Followed] = &[
    ec2(
        "ec2:vpc",
        "CreateVpc",
        "vpcId",
        "DescribeVpcs",
        "InvalidVpcID.NotFound",
    ),
    ec2(
        "ec2:subnet",
        "CreateSubnet",
        "subnetId",
        "DescribeSubnets",
        "InvalidSubnetID.NotFound",
    ),
    ec2(
        "ec2:security-group",
        "CreateSecurityGroup",
        "groupId",
        "DescribeSecurityGroups",
        "InvalidGroup.NotFound",
    ),
    ec2(
        "ec2:internet-gateway",
        "CreateInternetGateway",
        "internetGatewayId",
        "DescribeInternetGateways",
        "InvalidInternetGatewayID.NotFound",
    ),
    ec2(
        "ec2:route-table",
        "CreateRouteTable",
        "routeTableId",
        "DescribeRouteTables",
        "InvalidRouteTableID.NotFound",
    ),
    ec2(
        "ec2:elastic-ip",
        "AllocateAddress",
        "allocationId",
        "DescribeAddresses",
        "InvalidAllocationID.NotFound",
    ),
    ec2(
        "ec2:launch-template",
        "CreateLaunchTemplate",
        "launchTemplateId",
        "DescribeLaunchTemplates",
        "InvalidLaunchTemplateId.NotFound",
    ),
    Followed {
        creating: Some(Creating {
            shape: Shape::Xml {
                blocks: &["item", "natGateway"],
                id: "natGatewayId",
                status: "state",
            },
            status: "pending",
            ready: "available",
            seconds: 105,
            source: "[M] Terraform aws_nat_gateway creates 1m25s-2m05s (median 1m45s); kubernetes/kops PR #944",
        }),
        ..ec2(
            "ec2:nat-gateway",
            "CreateNatGateway",
            "natGatewayId",
            "DescribeNatGateways",
            "NatGatewayNotFound",
        )
    },
    Followed {
        creating: Some(Creating {
            shape: Shape::Xml {
                blocks: &["item", "vpcEndpoint"],
                id: "vpcEndpointId",
                status: "state",
            },
            status: "pending",
            ready: "available",
            seconds: 60,
            source: "[E] terraform-provider-aws PR #46800 (interface endpoint test 69.9 s with its VPC); #32774 (120-150 s pending to available)",
        }),
        ..ec2(
            "ec2:vpc-endpoint",
            "CreateVpcEndpoint",
            "vpcEndpointId",
            "DescribeVpcEndpoints",
            "InvalidVpcEndpointId.NotFound",
        )
    },
    Followed {
        kind: "rds:db-instance",
        service: "rds",
        create: "CreateDBInstance",
        id: IdFrom::Param("DBInstanceIdentifier"),
        read: "DescribeDBInstances",
        not_found: ("DBInstanceNotFound", 404),
        creating: Some(Creating {
            shape: Shape::Xml {
                blocks: &["DBInstance"],
                id: "DBInstanceIdentifier",
                status: "DBInstanceStatus",
            },
            status: "creating",
            ready: "available",
            seconds: 300,
            source: "[M] Terraform aws_db_instance (PostgreSQL, Single-AZ) creates 3m16s-6m08s; hashicorp/terraform#498",
        }),
    },
    Followed {
        kind: "elasticache:replication-group",
        service: "elasticache",
        create: "CreateReplicationGroup",
        id: IdFrom::Param("ReplicationGroupId"),
        read: "DescribeReplicationGroups",
        not_found: ("ReplicationGroupNotFoundFault", 404),
        creating: Some(Creating {
            shape: Shape::Xml {
                blocks: &["ReplicationGroup"],
                id: "ReplicationGroupId",
                status: "Status",
            },
            status: "creating",
            ready: "available",
            seconds: 420,
            source: "[M] Terraform aws_elasticache_replication_group (1 node, TLS, at rest) creates 5m58s-9m15s; terraform-provider-aws PR #34460",
        }),
    },
    Followed {
        kind: "eks:cluster",
        service: "eks",
        create: "CreateCluster",
        id: IdFrom::Param("name"),
        read: "DescribeCluster",
        not_found: ("ResourceNotFoundException", 404),
        creating: Some(Creating {
            shape: Shape::Json {
                pointer: "/cluster",
                id: "name",
                status: "status",
            },
            status: "CREATING",
            ready: "ACTIVE",
            seconds: 600,
            source: "[M] Terraform aws_eks_cluster creates 8m23s-11m23s; 792-971 s across 21 regions (easontechtalk.com); aws/containers-roadmap#1227 (\"9 minutes on an average\")",
        }),
    },
    Followed {
        kind: "eks:nodegroup",
        service: "eks",
        create: "CreateNodegroup",
        id: IdFrom::Param("nodegroupName"),
        read: "DescribeNodegroup",
        not_found: ("ResourceNotFoundException", 404),
        creating: Some(Creating {
            shape: Shape::Json {
                pointer: "/nodegroup",
                id: "nodegroupName",
                status: "status",
            },
            status: "CREATING",
            ready: "ACTIVE",
            seconds: 120,
            source: "[M] Terraform aws_eks_node_group (2 nodes) creates 1m28s-3m41s",
        }),
    },
    Followed {
        kind: "eks:addon",
        service: "eks",
        create: "CreateAddon",
        id: IdFrom::Param("addonName"),
        read: "DescribeAddon",
        not_found: ("ResourceNotFoundException", 404),
        creating: Some(Creating {
            shape: Shape::Json {
                pointer: "/addon",
                id: "addonName",
                status: "status",
            },
            status: "CREATING",
            ready: "ACTIVE",
            seconds: 25,
            source: "[M] Terraform aws_eks_addon creates 14-55 s once nodes exist (coredns 15 s, kube-proxy 25 s, vpc-cni 35 s)",
        }),
    },
    Followed {
        kind: "kms:key",
        service: "kms",
        create: "CreateKey",
        id: IdFrom::Answer("/KeyMetadata/KeyId"),
        read: "DescribeKey",
        not_found: ("NotFoundException", 400),
        creating: None,
    },
    Followed {
        kind: "secretsmanager:secret",
        service: "secretsmanager",
        create: "CreateSecret",
        id: IdFrom::Param("Name"),
        read: "DescribeSecret",
        not_found: ("ResourceNotFoundException", 400),
        creating: None,
    },
    Followed {
        kind: "iam:role",
        service: "iam",
        create: "CreateRole",
        id: IdFrom::Param("RoleName"),
        read: "GetRole",
        not_found: ("NoSuchEntity", 404),
        creating: None,
    },
    Followed {
        kind: "acm:certificate",
        service: "acm",
        create: "RequestCertificate",
        id: IdFrom::Answer("/CertificateArn"),
        read: "DescribeCertificate",
        not_found: ("ResourceNotFoundException", 400),
        creating: Some(Creating {
            shape: Shape::Json {
                pointer: "/Certificate",
                id: "CertificateArn",
                status: "Status",
            },
            status: "PENDING_VALIDATION",
            ready: "ISSUED",
            seconds: 110,
            source: "[M] Terraform aws_acm_certificate_validation with the CNAME already in Route 53: 1m29s-4m25s; aws/aws-cdk#2914",
        }),
    },
    Followed {
        kind: "route53:change",
        service: "route53",
        create: "ChangeResourceRecordSets",
        id: IdFrom::Answer("Id"),
        read: "GetChange",
        not_found: ("NoSuchChange", 404),
        creating: Some(Creating {
            shape: Shape::Xml {
                blocks: &["ChangeInfo"],
                id: "Id",
                status: "Status",
            },
            status: "PENDING",
            ready: "INSYNC",
            seconds: 30,
            source: "[D] Route 53 FAQ: changes reach every authoritative server \"within 60 seconds under normal conditions\"",
        }),
    },
];

/// The followed kind a create makes, if any.
pub fn created_by(service: &str, operation: &str) -> Option<&'static Followed> {
    FOLLOWED
        .iter()
        .find(|f| f.service == service && f.create == operation)
}

/// The followed kinds a read shows.
pub fn shown_by(service: &str, operation: &str) -> impl Iterator<Item = &'static Followed> {
    let (service, operation) = (service.to_owned(), operation.to_owned());
    FOLLOWED
        .iter()
        .filter(move |f| f.service == service && f.read == operation)
}
