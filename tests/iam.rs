//! Least privilege, measured: every AWS operation each function performs in a full set of
//! provision runs (and the launch custom resource's create and delete) against the emulator is recorded (`apiary_core::calls`, an SDK
//! interceptor on every client) and checked against that function's IAM role in
//! `infra-bootstrap/bootstrap.yaml`:
//!
//! - every operation a function performed is allowed by its role;
//! - every action its role allows was performed, or is listed in [`JUSTIFIED`] with the
//!   reason no run can show it (an action AWS checks on another call's behalf, a path
//!   the emulator cannot reach).
//!
//! Then resources and conditions: each recorded call, as sent, is read for the resources
//! it touches (by ARN, with the resource types each action needs from the IAM definitions
//! the project's pinned policy linter ships) and the condition keys it carries (request
//! tags, the tags earlier calls gave the resource, route record names and types, the
//! table's leading keys, a role's permissions boundary, ...), and evaluated against the
//! function's role as written, and a key's own policy as the keys function wrote it
//! (`apiary_e2e::iam_calls`, `apiary_e2e::iam_eval`). A call AWS would deny fails the
//! test, naming the call, its resource and what decided. The emulator enforces none of
//! this. The escalation paths are in `tests/escalation.rs`.

use std::collections::{BTreeMap, BTreeSet};

use apiary_asl::{ExecutionResult, ExecutionStatus};
use apiary_core::calls::{self, Call, Exchange};
use apiary_e2e::iam_calls::{Dataset, Ledger, iam_action, needs};
use apiary_e2e::iam_eval::{Decision, Policy, Resolver, function_roles};
use apiary_e2e::{Local as Fixture, REGION, sdk_config, template, unique_cidr, unique_name};
use serde_json::{Value, json};

/// Actions a role holds that no run records, each with the reason. `*` is every
/// function. A stale entry (no role has the action, or a run now records it) fails the
/// test.
const JUSTIFIED: &[(&str, &str, &str)] = &[
    (
        "control",
        "states:DescribeExecution",
        "asked only on AWS, whether a lock's holder still runs (locally the runner knows its \
         own processes) and for an ended run's input when the status-change event left it out",
    ),
    (
        "control",
        "states:StartExecution",
        "asked only on AWS, when ACM reports the certificate a provision waited for issued \
         (locally the emulator issues it at once, so no run waits); unit-tested with a \
         mocked Step Functions",
    ),
    (
        "workloads",
        "elasticloadbalancing:DescribeLoadBalancers",
        "asked only on AWS, after the rollout, for the load balancer the Ingress names (locally \
         the manifests are rendered and no load balancer exists); unit-tested in `serving`",
    ),
    (
        "workloads",
        "elasticloadbalancing:DescribeTargetGroups",
        "asked only on AWS, for the target groups of the Ingress's load balancer",
    ),
    (
        "workloads",
        "elasticloadbalancing:DescribeTargetHealth",
        "asked only on AWS, whether the load balancer's targets are healthy before READY",
    ),
    (
        "workloads",
        "cloudwatch:PutMetricData",
        "asked only on AWS, by pool-usage with the cluster's NodePool in hand (locally there is \
         no cluster, so nothing is measured or put); unit-tested with a mocked CloudWatch \
         (functions/workloads/src/usage.rs)",
    ),
    (
        "workloads",
        "sqs:SendMessage",
        "sent by Lambda itself with the function's role, never by the code: the on-failure \
         destination of a pool-usage tick that failed its retries (WorkloadsInvokeConfig)",
    ),
    (
        "databases",
        "cloudwatch:DescribeAlarms",
        "asked only on AWS, after the stores' alarms are put: the emulator does not accept \
         this SDK's CloudWatch requests, so the step ends at the first PutMetricAlarm; \
         unit-tested with mocks (functions/databases/src/tests/alarms.rs)",
    ),
    (
        "databases",
        "cloudwatch:TagResource",
        "PutMetricAlarm with Tags needs it (CloudWatch's API reference), though no call of \
         that name is made",
    ),
    (
        "teardown",
        "cloudwatch:ListTagsForResource",
        "asked only on AWS, for each store alarm found: the emulator does not accept this \
         SDK's CloudWatch requests; unit-tested with mocks (teardown's mocked stores test)",
    ),
    (
        "teardown",
        "cloudwatch:DeleteAlarms",
        "asked only on AWS, for the store alarms tagged as the deployment's; unit-tested with \
         mocks (teardown's mocked stores test)",
    ),
    (
        "cluster",
        "eks:DescribeAddonVersions",
        "asked only on AWS, for the add-on versions of the new Kubernetes version (the \
         emulator implements no add-ons, so the upgrade's add-on step ends at DescribeAddon); \
         unit-tested with mocks (functions/cluster/src/tests/upgrade.rs)",
    ),
    (
        "cluster",
        "eks:DescribeUpdate",
        "asked only on AWS, for the update an upgrade step started, while EKS still reports \
         the cluster or node group at its old version (the emulator implements no EKS \
         update API); unit-tested with mocks (functions/cluster/src/tests/upgrade.rs)",
    ),
    (
        "cluster",
        "eks:UpdateAddon",
        "asked only on AWS, for an add-on not compatible with the new Kubernetes version; \
         unit-tested with mocks (functions/cluster/src/tests/upgrade.rs)",
    ),
    (
        "cluster",
        "logs:TagResource",
        "CreateLogGroup with tags tags with the caller's rights",
    ),
    // What the Lambda service and DynamoDB do with each function's role.
    (
        "*",
        "logs:CreateLogStream",
        "Lambda writes the function's logs with its role",
    ),
    (
        "*",
        "logs:PutLogEvents",
        "Lambda writes the function's logs with its role",
    ),
    (
        "*",
        "xray:PutTraceSegments",
        "Lambda sends active-tracing segments with the role",
    ),
    (
        "*",
        "xray:PutTelemetryRecords",
        "Lambda sends active-tracing telemetry with the role",
    ),
    (
        "*",
        "kms:Decrypt",
        "DynamoDB (and for databases, RDS, ElastiCache and Secrets Manager) uses the key \
         on the caller's behalf (kms:ViaService)",
    ),
    (
        "*",
        "kms:GenerateDataKey",
        "DynamoDB (and for databases, RDS, ElastiCache and Secrets Manager) uses the key \
         on the caller's behalf (kms:ViaService)",
    ),
    // Tags given on a create call are authorized against the service's tagging action.
    (
        "network",
        "ec2:CreateTags",
        "tag on create: TagSpecifications of every Create*",
    ),
    (
        "keys",
        "kms:TagResource",
        "tag on create: CreateKey with Tags",
    ),
    (
        "cluster",
        "eks:TagResource",
        "tag on create: CreateCluster and CreateNodegroup",
    ),
    (
        "cluster",
        "events:TagResource",
        "tag on create: PutRule with Tags",
    ),
    (
        "cluster",
        "ec2:CreateTags",
        "tag on create: CreateLaunchTemplate with TagSpecifications",
    ),
    (
        "cluster",
        "sqs:TagQueue",
        "tag on create: CreateQueue with tags",
    ),
    (
        "cluster",
        "iam:TagRole",
        "tag on create: CreateRole with Tags",
    ),
    (
        "databases",
        "rds:AddTagsToResource",
        "tag on create: Create* with Tags",
    ),
    (
        "databases",
        "elasticache:AddTagsToResource",
        "tag on create: Create* with Tags",
    ),
    (
        "databases",
        "secretsmanager:TagResource",
        "tag on create: CreateSecret with Tags",
    ),
    (
        "dns",
        "acm:AddTagsToCertificate",
        "tag on create: RequestCertificate with Tags",
    ),
    (
        "workloads",
        "eks:TagResource",
        "tag on create: CreatePodIdentityAssociation",
    ),
    (
        "storage",
        "cloudtrail:AddTags",
        "tag on create: CreateTrail with TagsList",
    ),
    (
        "storage",
        "ec2:CreateTags",
        "tag on create: CreateFlowLogs with TagSpecifications",
    ),
    (
        "storage",
        "logs:CreateLogDelivery",
        "AWS checks it on CreateFlowLogs to an S3 destination (log delivery is set up on \
         the caller's behalf); the emulator does not",
    ),
    (
        "storage",
        "cloudtrail:UpdateTrail",
        "only for a trail changed by hand (a run converges it); the unit test \
         a_trail_changed_by_hand_is_brought_back makes the call",
    ),
    (
        "workloads",
        "iam:TagRole",
        "tag on create: CreateRole with Tags",
    ),
    // Checked by AWS on another call's behalf.
    (
        "cluster",
        "iam:PassRole",
        "CreateCluster and CreateNodegroup pass the EKS roles",
    ),
    (
        "workloads",
        "iam:PassRole",
        "CreatePodIdentityAssociation passes the ingestion role",
    ),
    (
        "storage",
        "iam:PassRole",
        "PutBucketReplication passes the replication role to S3",
    ),
    (
        "backup",
        "s3:GetBucketLocation",
        "ElastiCache's CopySnapshot to a bucket asks it of the caller (API reference)",
    ),
    (
        "backup",
        "s3:ListAllMyBuckets",
        "ElastiCache's CopySnapshot to a bucket asks it of the caller (API reference)",
    ),
    (
        "backup",
        "s3:GetObject",
        "HeadObject on an exported Redis file; the emulator has no ElastiCache export, so \
         no file is ever there (unit-tested with mocks in functions/backup)",
    ),
    (
        "backup",
        "s3:PutObjectTagging",
        "tags an exported Redis file; the emulator has no ElastiCache export (unit-tested \
         with mocks in functions/backup)",
    ),
    (
        "backup",
        "s3:GetObjectTagging",
        "reads an exported file's or replica's tags; the emulator has no ElastiCache export \
         and no replication (unit-tested with mocks in functions/backup)",
    ),
    (
        "backup",
        "s3:ListBucketVersions",
        "prunes a DR replica past retention; the emulator has no replication, so no replica \
         (unit-tested with mocks in functions/backup)",
    ),
    (
        "teardown",
        "s3:GetObjectTagging",
        "reads a Redis replica's tags in the DR export bucket; the emulator does not \
         replicate, so there is none (unit-tested with mocks in functions/backup)",
    ),
    (
        "backup",
        "s3:DeleteObjectVersion",
        "prunes a DR replica past retention; the emulator has no replication, so no replica \
         (unit-tested with mocks in functions/backup)",
    ),
    (
        "workloads",
        "iam:PutRolePermissionsBoundary",
        "only for an ingestion role found without the boundary (made before boundaries \
         existed, or changed by hand); locally no boundary policy is configured, so none \
         is attached (unit-tested in functions/workloads)",
    ),
    (
        "cluster",
        "iam:CreateServiceLinkedRole",
        "EKS creates its service-linked roles on the first cluster in an account",
    ),
    (
        "databases",
        "iam:CreateServiceLinkedRole",
        "RDS and ElastiCache create their service-linked roles on first use",
    ),
    (
        "cluster",
        "ec2:DescribeLaunchTemplateVersions",
        "CreateNodegroup reads the launch template's version with the caller's rights",
    ),
    (
        "cluster",
        "kms:DescribeKey",
        "CreateCluster checks the secrets-encryption key",
    ),
    (
        "cluster",
        "kms:CreateGrant",
        "CreateCluster grants EKS the secrets-encryption key",
    ),
    (
        "databases",
        "kms:DescribeKey",
        "RDS and ElastiCache check the deployment's keys",
    ),
    (
        "databases",
        "kms:CreateGrant",
        "RDS and ElastiCache take grants on the deployment's keys",
    ),
    (
        "databases",
        "secretsmanager:RotateSecret",
        "RDS creates and rotates the managed master-user secret with the caller's rights",
    ),
    (
        "dns",
        "ec2:DescribeVpcs",
        "CreateHostedZone checks the VPC of a private zone with the caller's rights",
    ),
    // Lambda manages an in-VPC function's network interfaces with the function's role.
    (
        "workloads",
        "ec2:CreateNetworkInterface",
        "Lambda creates the in-VPC function's network interfaces with its role (the \
         emulator makes none)",
    ),
    (
        "workloads",
        "ec2:DeleteNetworkInterface",
        "Lambda removes network interfaces the in-VPC function no longer needs",
    ),
    (
        "workloads",
        "ec2:DescribeNetworkInterfaces",
        "Lambda looks up the in-VPC function's network interfaces with its role",
    ),
    (
        "workloads",
        "ec2:DescribeSubnets",
        "Lambda checks the in-VPC function's subnets with its role",
    ),
    (
        "workloads",
        "ec2:AssignPrivateIpAddresses",
        "Lambda manages the addresses of the in-VPC function's network interfaces",
    ),
    (
        "workloads",
        "ec2:UnassignPrivateIpAddresses",
        "Lambda manages the addresses of the in-VPC function's network interfaces",
    ),
    (
        "verifier",
        "ec2:CreateNetworkInterface",
        "Lambda creates the in-VPC function's network interfaces with its role (the emulator makes none)",
    ),
    (
        "verifier",
        "ec2:DeleteNetworkInterface",
        "Lambda removes network interfaces the in-VPC function no longer needs",
    ),
    (
        "verifier",
        "ec2:DescribeNetworkInterfaces",
        "Lambda looks up the in-VPC function's network interfaces with its role",
    ),
    (
        "verifier",
        "ec2:DescribeSubnets",
        "Lambda checks the in-VPC function's subnets with its role",
    ),
    (
        "verifier",
        "ec2:AssignPrivateIpAddresses",
        "Lambda manages the addresses of the in-VPC function's network interfaces",
    ),
    (
        "verifier",
        "ec2:UnassignPrivateIpAddresses",
        "Lambda manages the addresses of the in-VPC function's network interfaces",
    ),
    (
        "verifier",
        "secretsmanager:GetSecretValue",
        "locally the stores have no server, so the verifier reads no credentials; its \
         tests read them through a mocked Secrets Manager and log in to real servers",
    ),
    (
        "network",
        "route53:AssociateVPCWithHostedZone",
        "CreateVpcEndpoint with private DNS associates the endpoint's zone with the VPC",
    ),
    // The teardown function: paths the emulator cannot reach.
    (
        "teardown",
        "ec2:RevokeSecurityGroupEgress",
        "an egress rule in someone else's group that names one of the deployment's groups \
         (it blocks DeleteSecurityGroup); the stack's own groups send their egress to CIDRs, \
         so no run of the emulator tests makes one (the ingress path is the same code and is \
         exercised)",
    ),
    (
        "teardown",
        "rds:CreateDBClusterSnapshot",
        "DocumentDB's final snapshot: the emulator has no DocumentDB (unit-tested paths share RDS's)",
    ),
    (
        "teardown",
        "rds:DescribeDBClusterSnapshots",
        "DocumentDB's final snapshot: the emulator has no DocumentDB",
    ),
    (
        "teardown",
        "rds:DeleteDBCluster",
        "DocumentDB's deletion: the emulator has no DocumentDB",
    ),
    (
        "teardown",
        "rds:DeleteDBClusterSnapshot",
        "deletes the backup workflow's DocumentDB snapshots (delete_backups): the emulator has no DocumentDB",
    ),
    (
        "teardown",
        "rds:ModifyDBCluster",
        "lifts a DocumentDB cluster's deletion protection: the emulator has no DocumentDB",
    ),
    (
        "teardown",
        "rds:AddTagsToResource",
        "RDS checks it on CreateDBSnapshot with tags, not as a call of its own",
    ),
    (
        "teardown",
        "elasticache:AddTagsToResource",
        "ElastiCache checks it on CreateSnapshot with tags, not as a call of its own",
    ),
    (
        "teardown",
        "s3:DeleteObjectVersion",
        "S3 checks it for each versioned key of DeleteObjects (the call is s3:DeleteObject)",
    ),
    (
        "teardown",
        "secretsmanager:DescribeSecret",
        "asked only when the Tagging API lists a secret the receipt does not know (eventual consistency)",
    ),
    (
        "teardown",
        "route53:ChangeResourceRecordSets",
        "the private zone holds records besides SOA and NS only once something on AWS \
         published one (the emulator run leaves it empty)",
    ),
    (
        "teardown",
        "iam:DeleteInstanceProfile",
        "instance profiles exist only where Karpenter made them for the node role, on AWS",
    ),
    (
        "teardown",
        "iam:RemoveRoleFromInstanceProfile",
        "instance profiles exist only where Karpenter made them for the node role, on AWS",
    ),
    (
        "teardown",
        "iam:ListInstanceProfileTags",
        "instance profiles exist only where Karpenter made them for the node role, on AWS \
         (the ownership check is unit-tested)",
    ),
    // The backup function: what a service does with its rights, and what the emulator
    // cannot show (no DocumentDB; snapshots always fresh, so nothing to prune).
    (
        "backup",
        "kms:CreateGrant",
        "RDS and ElastiCache take grants on the deployment's keys (and the DR key) for \
         snapshots, re-encrypted copies and restores",
    ),
    (
        "backup",
        "kms:ReEncryptFrom",
        "CopyDBSnapshot re-encrypts a snapshot from the rds key to the DR key",
    ),
    (
        "backup",
        "kms:ReEncryptTo",
        "CopyDBSnapshot re-encrypts a snapshot from the rds key to the DR key",
    ),
    (
        "backup",
        "ec2:CreateTags",
        "CreateSecurityGroup with TagSpecifications tags with the caller's rights",
    ),
    (
        "backup",
        "elasticache:AddTagsToResource",
        "CreateSnapshot and CreateReplicationGroup with Tags tag with the caller's rights",
    ),
    (
        "backup",
        "secretsmanager:TagResource",
        "CreateSecret with Tags tags with the caller's rights",
    ),
    (
        "backup",
        "rds:DeleteDBSnapshot",
        "pruning deletes only snapshots past retention; the emulator stamps snapshots with \
         the real time (unit-tested with mocks in functions/backup)",
    ),
    (
        "backup",
        "elasticache:DeleteSnapshot",
        "pruning deletes only snapshots past retention; the emulator stamps snapshots with \
         the real time (unit-tested with mocks in functions/backup)",
    ),
    (
        "cluster",
        "logs:AssociateKmsKey",
        "on AWS only: a control-plane log group EKS made unencrypted gets the stack's state \
         key, whose ARN only the stack gives (functions/cluster/src/tests/control_plane.rs)",
    ),
    (
        "databases",
        "rds:ModifyDBCluster",
        "DocumentDB's backup retention and deletion protection: the emulator has no \
         DocumentDB (functions/databases/src/tests/documentdb.rs, with mocks)",
    ),
    (
        "databases",
        "elasticache:DecreaseReplicaCount",
        "Redis's Multi-AZ turned off, after failover is off: the emulator does not \
         implement it (functions/databases/src/tests/redis.rs, with mocks)",
    ),
    (
        "state-table",
        "cloudformation:DescribeStacks",
        "whether its own stack is being deleted or its create rolled back: the emulator never \
         holds a stack in those states (tests/state_table.rs mocks this one call)",
    ),
    (
        "state-table",
        "dynamodb:TagResource",
        "DynamoDB checks it on the caller's behalf for the tags a CreateTable carries",
    ),
    (
        "state-table",
        "kms:DescribeKey",
        "DynamoDB describes the table's customer managed key with the caller's rights \
         (kms:ViaService)",
    ),
    (
        "state-table",
        "kms:CreateGrant",
        "DynamoDB creates its grant on the table's key with the caller's rights \
         (kms:ViaService, kms:GrantIsForAWSResource)",
    ),
    (
        "launch",
        "cloudformation:DescribeStacks",
        "whether its own stack is being deleted, before a teardown on delete: the emulator never holds a stack in DELETE_IN_PROGRESS (unit-tested with mocks in functions/launch)",
    ),
    (
        "drift",
        "rds:DescribeDBClusters",
        "the emulator rejects DocumentDB clusters, so no local deployment has one to compare (unit-tested with mocks in functions/drift)",
    ),
    (
        "backup",
        "rds:CreateDBClusterSnapshot",
        "the emulator rejects DocumentDB clusters (unit-tested with mocks)",
    ),
    (
        "backup",
        "rds:DescribeDBClusterSnapshots",
        "the emulator rejects DocumentDB clusters (unit-tested with mocks)",
    ),
    (
        "backup",
        "rds:CopyDBClusterSnapshot",
        "the emulator rejects DocumentDB clusters (unit-tested with mocks)",
    ),
    (
        "backup",
        "rds:DeleteDBClusterSnapshot",
        "the emulator rejects DocumentDB clusters (unit-tested with mocks)",
    ),
    (
        "backup",
        "rds:RestoreDBClusterFromSnapshot",
        "the emulator rejects DocumentDB clusters",
    ),
    (
        "backup",
        "rds:CreateDBInstance",
        "a restored DocumentDB cluster's instance; the emulator rejects DocumentDB",
    ),
    (
        "backup",
        "rds:ModifyDBCluster",
        "a restored DocumentDB cluster's password; the emulator rejects DocumentDB",
    ),
    (
        "backup",
        "rds:DeleteDBCluster",
        "a scratch DocumentDB cluster; the emulator rejects DocumentDB",
    ),
    (
        "backup",
        "rds:ListTagsForResource",
        "read for DocumentDB snapshots and clusters only; the emulator rejects DocumentDB",
    ),
    (
        "backup",
        "s3:PutObject",
        "the DR replicas of Redis exports re-encrypted in place with the DR key (CopyObject, \
         or a multipart copy over 5 GiB): the emulator does not replicate, so no replica \
         exists locally; unit-tested with mocks (functions/backup/src/tests.rs)",
    ),
    (
        "backup",
        "s3:ListBucketMultipartUploads",
        "a multipart copy of a DR replica over 5 GiB resumed by a later poll; unit-tested \
         with mocks",
    ),
    (
        "backup",
        "s3:ListMultipartUploadParts",
        "the parts a resumed multipart copy already has; unit-tested with mocks",
    ),
    (
        "backup",
        "s3:AbortMultipartUpload",
        "a failed multipart copy of a DR replica over 5 GiB is aborted; unit-tested with \
         mocks",
    ),
    // Paths no run here can reach.
    (
        "operate",
        "kms:EnableKeyRotation",
        "only when a key's rotation is off or its period differs from the spec's; the \
         emulator stores no period and the keys layer has just turned rotation on \
         (unit-tested with mocks in functions/operate and functions/keys)",
    ),
    (
        "keys",
        "kms:ScheduleKeyDeletion",
        "only when a concurrent run wins the race for an alias; the workflow lock keeps \
         runs of one deployment apart, so a test cannot stage it",
    ),
    (
        "cluster",
        "eks:CreateAccessEntry",
        "the emulator has no EKS access entries (DescribeAccessEntry answers 404)",
    ),
    (
        "cluster",
        "eks:ListAssociatedAccessPolicies",
        "the emulator has no EKS access entries",
    ),
    (
        "cluster",
        "eks:AssociateAccessPolicy",
        "the emulator has no EKS access entries",
    ),
    (
        "cluster",
        "eks:CreateAddon",
        "the emulator has no EKS add-ons (DescribeAddon answers 404)",
    ),
    (
        "cluster",
        "eks:CreatePodIdentityAssociation",
        "made by EKS within CreateAddon for the fluent-bit add-on; the emulator has no \
         add-ons, and a local run has no log shipper role (unit-tested with mocks)",
    ),
    (
        "cluster",
        "eks:DeleteAccessEntry",
        "an operator's entry whose principal the spec no longer lists; the emulator has no \
         access entries (unit-tested with mocks in functions/cluster/src/tests/access.rs)",
    ),
    (
        "cluster",
        "eks:DisassociateAccessPolicy",
        "an operator moved to the other list; the emulator has no access entries",
    ),
    (
        "cluster",
        "eks:ListAccessEntries",
        "the operators' revocation lists the entries only once the entries themselves answer; \
         the emulator has no access entries",
    ),
    (
        "workloads",
        "secretsmanager:DescribeSecret",
        "rotate-keys' wait for the CSI driver's sync reads the stores' secret versions only \
         against a cluster; local runs render the manifests (unit-tested in `sync`)",
    ),
    (
        "databases",
        "rds:StartDBCluster",
        "the emulator rejects DocumentDB clusters, so none can be stopped and restarted",
    ),
    (
        "workloads",
        "eks:CreatePodIdentityAssociation",
        "the emulator has no Pod Identity (ListPodIdentityAssociations answers 404)",
    ),
    (
        "workloads",
        "eks:DescribePodIdentityAssociation",
        "the emulator has no Pod Identity",
    ),
    (
        "workloads",
        "eks:UpdatePodIdentityAssociation",
        "the emulator has no Pod Identity",
    ),
    (
        "workloads",
        "eks:DescribeCluster",
        "only when applying to the real cluster; local runs render the manifests",
    ),
];

/// IAM action matching: case-insensitive, `*` matches any run of characters.
fn action_matches(pattern: &str, action: &str) -> bool {
    apiary_e2e::iam_eval::glob(pattern, action, true)
}

/// Each function's name (from `apiary-${DeploymentName}-<name>`) and the actions its
/// role's policies allow. A Deny grants nothing (the workloads role's guard around its
/// permissions boundary); what is measured is what a role may do.
fn role_actions(template: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let resolver = Resolver::for_template(
        template,
        EMULATOR_ACCOUNT,
        REGION,
        &[("DeploymentName", "x")],
    );
    function_roles(template, &resolver)
        .into_iter()
        .map(|(name, (_, policy))| {
            let actions = policy
                .statements
                .iter()
                .filter(|s| s.allow)
                .flat_map(|s| s.actions.iter().cloned())
                .collect();
            (name, actions)
        })
        .collect()
}

async fn provision(f: &Fixture, spec: &Value, run: &str) -> ExecutionResult {
    f.provision(spec, run).await
}

fn assert_succeeded(result: &ExecutionResult, what: &str) {
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{what}: {:?}: {:?}",
        result.error,
        result.cause
    );
}

/// Drives every path the workflows take: a failed run (the failure is recorded and the
/// lock released), a first full run, a converging rerun, and a run with a changed spec.
async fn exercise_every_path() {
    let f = Fixture::new("apiary-test-iam").await;
    let config = f.config.clone();
    let name = unique_name("iam");
    let cidr = unique_cidr(&config).await;
    let mut spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": cidr, "ingress_cidrs": ["203.0.113.0/24"]},
    });

    // Someone else's VPC holds the CIDR: the network layer refuses it and the run fails.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let blocker = ec2.create_vpc().cidr_block(&cidr).send().await.unwrap();
    let blocker = blocker.vpc().unwrap().vpc_id().unwrap().to_owned();
    let failed = provision(&f, &spec, "blocked").await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    ec2.delete_vpc().vpc_id(&blocker).send().await.unwrap();

    // A public zone for the domain: the dns layer writes the certificate's validation
    // records into it.
    let route53 = aws_sdk_route53::Client::new(&config);
    route53
        .create_hosted_zone()
        .name(format!("{name}.example.com"))
        .caller_reference(unique_name("zone"))
        .send()
        .await
        .expect("public zone");

    assert_succeeded(&provision(&f, &spec, "first").await, "first run");
    assert_succeeded(&provision(&f, &spec, "again").await, "converging run");
    let pending = damage(&config, &name).await;
    drift(&f, &name).await;
    // The key pending deletion: the run cancels the deletion and refuses the key, which
    // KMS leaves disabled; the operator enables it (Apiary never does) and runs again.
    let refused = provision(&f, &spec, "key-refused").await;
    assert_eq!(refused.status, ExecutionStatus::Failed, "{refused:?}");
    aws_sdk_kms::Client::new(&config)
        .enable_key()
        .key_id(&pending)
        .send()
        .await
        .expect("EnableKey by the operator");
    spec["size"] = json!("medium");
    // Longer backups: RDS and Redis follow in place (ModifyReplicationGroup).
    spec["backup"] = json!({"retention_days": 14});
    // The endpoint opened to one network: the cluster is updated in place.
    spec["cluster"] = json!({"public_endpoint": true, "public_access_cidrs": ["198.51.100.0/24"]});
    // A customer network replaced: the load balancer's group loses the old one.
    spec["network"]["ingress_cidrs"] = json!(["198.51.100.0/24"]);
    assert_succeeded(
        &provision(&f, &spec, "repaired").await,
        "repairing, resized run",
    );
    // The database the repair started again is brought in line with the larger preset
    // (Multi-AZ) once it is available.
    assert_succeeded(
        &provision(&f, &spec, "modified").await,
        "run that modifies the database",
    );
    rotate_keys(&f, &config, &name).await;
    scale_pools(&f, &name).await;
    handle_alert(&f, &name).await;
    phone_home(&name).await;

    // A second deployment whose Redis token an earlier teardown scheduled for deletion:
    // the token is restored and reused rather than replaced.
    let name = unique_name("iam-restore");
    let spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": unique_cidr(&config).await},
    });
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let token = format!("apiary-{name}-redis-auth");
    secrets
        .create_secret()
        .name(&token)
        .secret_string(json!({"auth_token": "a".repeat(64), "engine": "redis"}).to_string())
        .send()
        .await
        .expect("CreateSecret");
    secrets
        .delete_secret()
        .secret_id(&token)
        .recovery_window_in_days(7)
        .send()
        .await
        .expect("DeleteSecret");

    assert_succeeded(
        &provision(&f, &spec, "restored").await,
        "run with a restored token",
    );
    exercise_verifier(&f, &name).await;
    exercise_backup(&f, &config).await;
    crate::teardown::exercise().await;
}

/// The backup and restore-test workflows on a deployment with a DR region: two backups
/// (snapshots, DR copies, prune, ledger) and a
/// restore test (scratch copies, report, cleanup).
async fn exercise_backup(f: &Fixture, config: &aws_config::SdkConfig) {
    let name = unique_name("iam-backup");
    let spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": unique_cidr(config).await},
        "backup": {"dr_region": "us-east-1"},
    });
    assert_succeeded(
        &provision(f, &spec, "backup").await,
        "provision for backups",
    );
    for (workflow, run) in [("backup", "1"), ("backup", "2"), ("restore-test", "1")] {
        let machine = f.env.load(&f.root, workflow).expect("workflow loads");
        let done = f
            .env
            .run(
                &machine,
                workflow,
                &name,
                json!({"deployment": name}),
                format!("{name}-{workflow}-{run}"),
                None,
            )
            .await;
        assert_succeeded(&done, workflow);
    }
    // The upgrade on a deployment whose only store is PostgreSQL: the emulator's
    // ElastiCache snapshots carry no creation time, so the backup gate cannot pass with
    // Redis (it refuses a backup of unknown age).
    let name = unique_name("iam-upgrade");
    let spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": unique_cidr(config).await},
        "databases": {"documentdb": false, "redis": false},
    });
    assert_succeeded(
        &provision(f, &spec, "upgrade").await,
        "provision for upgrades",
    );
    let backup = f
        .run(
            "backup",
            &name,
            json!({"deployment": name}),
            "upgrade-backup",
        )
        .await;
    assert_succeeded(&backup, "backup before the upgrade");
    upgrade(f, &name).await;
}

/// The upgrade workflow, both kinds, on a deployment with a fresh backup: the image
/// (recorded, rendered) and the next Kubernetes version (the EKS calls the emulator
/// implements none of, then the record).
async fn upgrade(f: &Fixture, name: &str) {
    let version = f
        .store
        .get_deployment(name)
        .await
        .expect("GetItem")
        .expect("a record")
        .spec
        .cluster
        .version;
    let minor: u32 = version.split_once('.').unwrap().1.parse().unwrap();
    for (run, input) in [
        (
            "image",
            json!({"image": "public.ecr.aws/honeyhive/ingestion:1.1.0"}),
        ),
        (
            "version",
            json!({"kubernetes_version": format!("1.{}", minor + 1)}),
        ),
    ] {
        let mut input = input;
        input["deployment"] = json!(name);
        let done = f
            .run("upgrade", name, input, &format!("upgrade-{run}"))
            .await;
        assert_succeeded(&done, "upgrade");
    }
}

/// The verifier's two actions on a provisioned deployment, as the backup and
/// restore-test workflows call them. Locally the stores have no server, so it reads and
/// writes only the state table (its Secrets Manager reads are JUSTIFIED).
async fn exercise_verifier(f: &Fixture, name: &str) {
    let verifier = f
        .env
        .registry(name)
        .get("verifier")
        .expect("verifier registered");
    for action in ["write-sentinel", "verify-restore"] {
        let out = verifier
            .invoke(
                json!({"action": action, "deployment": name, "execution_id": "iam",
                           "options": {"store": "postgres"}}),
            )
            .await
            .unwrap_or_else(|e| panic!("verifier {action}: {e:?}"));
        assert_eq!(out["ready"], true, "{action}: {out}");
    }
}

/// The scale-pools workflow: the system node group resized (UpdateNodegroupConfig by the
/// cluster function), then the ingestion NodePool's limits recorded.
async fn scale_pools(f: &Fixture, name: &str) {
    for (run, input) in [
        (
            "system",
            json!({"pool": "system", "min": 10, "max": 20, "desired": 12}),
        ),
        ("ingestion", json!({"pool": "ingestion", "cpu": 160})),
    ] {
        let mut input = input;
        input["deployment"] = json!(name);
        let done = f
            .run("scale-pools", name, input, &format!("scale-{run}"))
            .await;
        assert_succeeded(&done, "scale-pools");
    }
}

/// The drift workflow on a damaged deployment (a key pending deletion): it describes
/// every recorded resource, and reports by event and metric.
async fn drift(f: &Fixture, name: &str) {
    let done = f
        .run("drift", name, json!({"deployment": name}), "drift")
        .await;
    assert_succeeded(&done, "drift");
    let drift = &done.output.unwrap()["drift"];
    assert!(drift["security"].as_u64().unwrap() > 0, "{drift}");
}

/// The handle-alert workflow: RDS's low-storage event for the deployment (the storage
/// runbook, then the notification on the alerts topic).
async fn handle_alert(f: &Fixture, name: &str) {
    let text = std::fs::read_to_string(f.root.join("examples/events/rds-low-storage.json"))
        .expect("the sample event");
    let event: Value =
        serde_json::from_str(&text.replace("apiary-demo-", &format!("apiary-{name}-"))).unwrap();
    let done = f
        .run(
            "handle-alert",
            name,
            json!({"deployment": name, "event": event}),
            "alert",
        )
        .await;
    assert_succeeded(&done, "handle-alert");
    assert_eq!(done.output.unwrap()["notified"]["notified"], true);
}

/// The phone-home workflow: a report kept while the endpoint is down, then both sent.
async fn phone_home(name: &str) {
    let mut server = apiary_e2e::report_server::ReportServer::start().await;
    let f = Fixture::new("apiary-test-iam")
        .await
        .with_phone_home(&server.url(), Some(server.ca_pem.as_bytes()));
    server.stop().await;
    let kept = f
        .run("phone-home", name, json!({"deployment": name}), "home-down")
        .await;
    assert_succeeded(&kept, "phone-home with the endpoint down");
    server.resume().await;
    let done = f
        .run("phone-home", name, json!({"deployment": name}), "home")
        .await;
    assert_succeeded(&done, "phone-home");
    assert_eq!(server.received().len(), 2, "both reports delivered");
}

/// The rotate-keys workflow: a key pending deletion (cancelled and refused), then, the
/// operator having enabled it, an on-demand rotation of every key and secret.
async fn rotate_keys(f: &Fixture, config: &aws_config::SdkConfig, name: &str) {
    let machine = f
        .env
        .load(&f.root, "rotate-keys")
        .expect("rotate-keys loads");
    let kms = aws_sdk_kms::Client::new(config);
    let key = kms
        .describe_key()
        .key_id(format!("alias/apiary/{name}/s3"))
        .send()
        .await
        .expect("DescribeKey")
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    kms.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("ScheduleKeyDeletion");
    let refused = f
        .env
        .run(
            &machine,
            "rotate-keys",
            name,
            json!({"deployment": name, "scope": "keys-check"}),
            format!("{name}-rotate-refused"),
            None,
        )
        .await;
    assert_eq!(refused.status, ExecutionStatus::Failed, "{refused:?}");
    kms.enable_key()
        .key_id(&key)
        .send()
        .await
        .expect("EnableKey by the operator");
    let rotated = f
        .env
        .run(
            &machine,
            "rotate-keys",
            name,
            json!({"deployment": name, "on_demand": true}),
            format!("{name}-rotate"),
            None,
        )
        .await;
    assert_succeeded(&rotated, "on-demand rotation");
}

/// What an operator or an accident does between runs, so the next run takes its repair
/// paths: a key scheduled for deletion, a key policy changed by hand, a stopped database, a default route pointed elsewhere, a private zone
/// that lost its tags, a changed trust policy. Returns the key scheduled for deletion.
async fn damage(config: &aws_config::SdkConfig, name: &str) -> String {
    let kms = aws_sdk_kms::Client::new(config);
    let key_id = |scope: &'static str| {
        let kms = kms.clone();
        let alias = format!("alias/apiary/{name}/{scope}");
        async move {
            let key = kms.describe_key().key_id(&alias).send().await;
            let key = key.unwrap_or_else(|e| panic!("DescribeKey {alias}: {e}"));
            key.key_metadata().unwrap().key_id().to_owned()
        }
    };
    let pending = key_id("redis").await;
    kms.schedule_key_deletion()
        .key_id(&pending)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("ScheduleKeyDeletion");

    kms.put_key_policy()
        .key_id(key_id("app").await)
        .policy_name("default")
        .policy(
            json!({"Version": "2012-10-17", "Statement": [{"Sid": "Drifted", "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*",
                "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("PutKeyPolicy");

    // A crash between CreateKey and CreateAlias: the alias is gone, the tagged key stays.
    kms.delete_alias()
        .alias_name(format!("alias/apiary/{name}/docdb"))
        .send()
        .await
        .expect("DeleteAlias");

    let rds = aws_sdk_rds::Client::new(config);
    rds.stop_db_instance()
        .db_instance_identifier(format!("apiary-{name}-postgres"))
        .send()
        .await
        .expect("StopDBInstance");

    let ec2 = aws_sdk_ec2::Client::new(config);
    let tagged = aws_sdk_ec2::types::Filter::builder()
        .name("tag:apiary:deployment")
        .values(name)
        .build();
    let gateways = ec2
        .describe_internet_gateways()
        .filters(tagged.clone())
        .send()
        .await
        .expect("DescribeInternetGateways");
    let igw = gateways.internet_gateways()[0]
        .internet_gateway_id()
        .expect("igw id")
        .to_owned();
    let tables = ec2
        .describe_route_tables()
        .filters(tagged)
        .send()
        .await
        .expect("DescribeRouteTables");
    let private = tables
        .route_tables()
        .iter()
        .find(|t| t.routes().iter().any(|r| r.nat_gateway_id().is_some()))
        .expect("a private route table with a NAT route");
    ec2.replace_route()
        .route_table_id(private.route_table_id().unwrap())
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(igw)
        .send()
        .await
        .expect("ReplaceRoute");

    // The private zone loses its tags: found again by its CallerReference.
    let route53 = aws_sdk_route53::Client::new(config);
    let zones = route53
        .list_hosted_zones_by_name()
        .dns_name(format!("{name}.example.com"))
        .send()
        .await
        .expect("ListHostedZonesByName");
    let private = zones
        .hosted_zones()
        .iter()
        .find(|z| z.config().is_some_and(|c| c.private_zone()))
        .expect("the private zone");
    route53
        .change_tags_for_resource()
        .resource_type(aws_sdk_route53::types::TagResourceType::Hostedzone)
        .resource_id(private.id().trim_start_matches("/hostedzone/"))
        .remove_tag_keys("apiary:deployment")
        .send()
        .await
        .expect("ChangeTagsForResource");

    let iam = aws_sdk_iam::Client::new(config);
    iam.update_assume_role_policy()
        .role_name(format!("apiary-{name}-ingestion"))
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("UpdateAssumeRolePolicy");
    pending
}

/// The launch custom resource's Create and Delete against a state machine in the
/// emulator, answering a loopback server in place of CloudFormation's presigned URL.
async fn exercise_launch() {
    let config = sdk_config().await;
    let name = unique_name("iam-launch");
    let machine =
        crate::launch::holding_machine(&aws_sdk_sfn::Client::new(&config), &name, "provision")
            .await;
    let deps = launch::Deps::new(&config, &std::collections::HashMap::<&str, &str>::new())
        .expect("launch deps");
    let server = launch::test_support::CaptureServer::start(&[]).await;
    calls::attributed_for("launch", &name, async {
        for (request_type, physical_id) in [("Create", None), ("Delete", Some(format!("apiary-{name}-launch")))] {
            let mut event = json!({
                "RequestType": request_type,
                "ResponseURL": server.url(),
                "StackId": format!("arn:aws:cloudformation:{REGION}:123456789012:stack/apiary-{name}/1"),
                "RequestId": uuid::Uuid::new_v4().to_string(),
                "LogicalResourceId": "Launch",
                "ResourceType": "Custom::ApiaryLaunch",
                "ResourceProperties": {
                    "StateMachineArn": machine,
                    "Input": {"spec": {"DeploymentName": name, "Domain": format!("{name}.example.com")}}
                }
            });
            if let Some(id) = physical_id {
                event["PhysicalResourceId"] = json!(id);
            }
            launch::handle(&deps, event).await.expect("answered");
        }
    })
    .await;
    // The signing key resource, on a secret made as the template makes it (no value).
    let secret = aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(format!("apiary-{name}-signing-key"))
        .send()
        .await
        .expect("CreateSecret")
        .arn
        .expect("an ARN");
    calls::attributed_for("launch", &name, async {
        let event = json!({
            "RequestType": "Create",
            "ResponseURL": server.url(),
            "StackId": format!("arn:aws:cloudformation:{REGION}:123456789012:stack/apiary-{name}/1"),
            "RequestId": uuid::Uuid::new_v4().to_string(),
            "LogicalResourceId": "SigningKey",
            "ResourceType": launch::SIGNING_KEY_TYPE,
            "ResourceProperties": {"SecretArn": secret}
        });
        launch::handle(&deps, event).await.expect("answered");
    })
    .await;
    // OnStackDelete=Teardown: the Delete starts the teardown and the workflow that waits
    // for it; a poll past the deadline answers (FAILED, the teardown still running).
    let stack_id = format!("arn:aws:cloudformation:{REGION}:123456789012:stack/apiary-{name}/1");
    let recorded = apiary_core::fixtures::Fixture::named(&name).spec();
    let stack = crate::launch::teardown_stack(&config, &stack_id, &recorded).await;
    let waiting = stack
        .deps(&config)
        .answering_within(std::time::Duration::ZERO);
    calls::attributed_for("launch", &name, async {
        let request_id = uuid::Uuid::new_v4().to_string();
        let event = json!({
            "RequestType": "Delete",
            "ResponseURL": server.url(),
            "StackId": stack_id,
            "RequestId": request_id,
            "LogicalResourceId": "Launch",
            "ResourceType": "Custom::ApiaryLaunch",
            "PhysicalResourceId": format!("apiary-{name}-launch"),
            "ResourceProperties": {
                "StateMachineArn": machine,
                "Input": {"spec": {"DeploymentName": name, "Domain": format!("{name}.example.com")}}
            }
        });
        let deferred = launch::handle(&waiting, event).await.expect("handled");
        assert_eq!(deferred["Status"], "DEFERRED", "{deferred}");
        let watched = launch::handle(
            &waiting,
            json!({"watch_stack_delete": {"request_id": request_id}}),
        )
        .await
        .expect("watched");
        assert_eq!(watched["done"], true, "{watched}");
    })
    .await;
    let statuses: Vec<String> = server
        .requests()
        .iter()
        .map(|a| a.json()["Status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["SUCCESS", "SUCCESS", "SUCCESS", "FAILED"],
        "one answer to Create and Delete, one to the key's Create, one to the teardown's \
         Delete at its deadline"
    );
}

/// The state table resource: made, then, the deployment torn down, backed up and deleted
/// on the stack's delete (DescribeStacks mocked: see [`JUSTIFIED`]).
async fn exercise_state_table() {
    let config = sdk_config().await;
    let name = unique_name("iam-table");
    let table = format!("apiary-{name}");
    let stack_id = format!("arn:aws:cloudformation:{REGION}:123456789012:stack/apiary-{name}/1");
    let key = aws_sdk_kms::Client::new(&config)
        .create_key()
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .and_then(|m| m.arn)
        .expect("key ARN");
    let env = std::collections::HashMap::from([
        ("APIARY_TABLE", table.as_str()),
        ("APIARY_DEPLOYMENT", name.as_str()),
        ("APIARY_STATE_KEY_ARN", key.as_str()),
        ("APIARY_STACK_ID", stack_id.as_str()),
    ]);
    let server = launch::test_support::CaptureServer::start(&[]).await;
    let event = |request_type: &str| {
        json!({
            "RequestType": request_type,
            "ResponseURL": server.url(),
            "StackId": stack_id,
            "RequestId": uuid::Uuid::new_v4().to_string(),
            "LogicalResourceId": "StateStore",
            "ResourceType": launch::STATE_TABLE_TYPE,
            "PhysicalResourceId": table,
            "ResourceProperties": {}
        })
    };
    let mut deps = launch::Deps::new(&config, &env).expect("state-table deps");
    calls::attributed_for("state-table", &name, async {
        launch::handle(&deps, event("Create"))
            .await
            .expect("answered");
    })
    .await;
    let spec = apiary_core::fixtures::Fixture::named(&name).spec();
    apiary_core::store::Store::new(aws_sdk_dynamodb::Client::new(&config), &table)
        .put_deployment(
            &spec,
            apiary_core::store::DeploymentStatus::Deleted,
            chrono::Utc::now(),
        )
        .await
        .expect("a torn-down deployment's record");
    deps.cloudformation = launch::test_support::stack_client(
        &stack_id,
        aws_sdk_cloudformation::types::StackStatus::DeleteInProgress,
    );
    calls::attributed_for("state-table", &name, async {
        launch::handle(&deps, event("Delete"))
            .await
            .expect("answered");
    })
    .await;
    let statuses: Vec<Value> = server
        .requests()
        .iter()
        .map(|r| r.json()["Status"].clone())
        .collect();
    assert_eq!(statuses, [json!("SUCCESS"), json!("SUCCESS")]);
}

#[tokio::test]
async fn every_role_allows_exactly_what_its_function_does() {
    calls::start();
    exercise_every_path().await;
    exercise_launch().await;
    exercise_state_table().await;
    let exchanges = calls::exchanges();
    if let Ok(path) = std::env::var("APIARY_DUMP_EXCHANGES") {
        let dump: Vec<Value> = exchanges.iter().map(exchange_json).collect();
        std::fs::write(&path, serde_json::to_string(&dump).expect("JSON")).expect("dump");
    }
    let (mut resource_problems, decided, stale) = resource_problems(&exchanges);
    resource_problems.extend(stale);
    assert!(
        decided > 1000,
        "the resource evaluation decided too few requests to mean anything: {decided}"
    );

    let mut roles = role_actions(&template());
    // What each key's own policy grants a function's role by name (the keys function
    // writes it; its unit tests read it back): allowed, and measured, like IAM's.
    for (function, actions) in keys::KEY_POLICY_GRANTS {
        roles
            .entry((*function).to_owned())
            .or_default()
            .extend(actions.iter().map(|a| (*a).to_owned()));
    }
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for call in calls::recorded() {
        if call.caller == calls::UNATTRIBUTED {
            continue; // the test's own setup and checks
        }
        let Some(action) = iam_action(&call) else {
            continue;
        };
        match roles.get(&call.caller) {
            None => problems.push(format!(
                "{} performs {action} but has no Lambda in the template",
                call.caller
            )),
            Some(allowed) => match allowed.iter().find(|p| action_matches(p, &action)) {
                None => problems.push(format!(
                    "{}: performs {action} ({} {}), which its role does not allow",
                    call.caller, call.service, call.operation
                )),
                Some(pattern) => {
                    used.entry(call.caller.clone())
                        .or_default()
                        .insert(pattern.clone());
                }
            },
        }
    }

    let justified = |function: &str, action: &str| {
        JUSTIFIED
            .iter()
            .find(|(f, a, _)| (*f == function || *f == "*") && *a == action)
            .map(|(_, _, why)| *why)
    };
    println!("{:<12} {:<48} measured", "function", "allowed action");
    for (function, allowed) in &roles {
        let used = used.get(function).cloned().unwrap_or_default();
        for action in allowed {
            let why = justified(function, action);
            let seen = used.contains(action);
            match (seen, why) {
                (true, None) => println!("{function:<12} {action:<48} yes"),
                (false, Some(why)) => println!("{function:<12} {action:<48} no: {why}"),
                (true, Some(_)) => problems.push(format!(
                    "{function}: {action} is listed as justified but a run performs it; \
                     remove it from JUSTIFIED"
                )),
                (false, None) => problems.push(format!(
                    "{function}: its role allows {action}, which no run performed \
                     (remove it, or add it to JUSTIFIED with the reason)"
                )),
            }
        }
    }
    for (function, action, _) in JUSTIFIED {
        let held = roles
            .iter()
            .filter(|(name, _)| *function == "*" || name == function)
            .any(|(_, allowed)| allowed.contains(*action));
        if !held {
            problems.push(format!(
                "JUSTIFIED lists {function} {action}, which no such role has"
            ));
        }
    }
    problems.extend(resource_problems);
    assert!(
        problems.is_empty(),
        "IAM does not match the code:\n  {}",
        problems.join("\n  ")
    );
}

fn exchange_json(e: &Exchange) -> Value {
    json!({"caller": e.call.caller, "service": e.call.service, "region": e.region,
        "deployment": e.deployment,
        "operation": e.call.operation, "method": e.method, "uri": e.uri,
        "target": e.target, "amz_headers": e.amz_headers, "body": e.body,
        "status": e.status, "response": e.response})
}

fn exchange_of(v: &Value) -> Exchange {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Exchange {
        call: Call {
            caller: s("caller"),
            service: s("service"),
            operation: s("operation"),
        },
        deployment: v["deployment"].as_str().map(str::to_owned),
        region: v["region"].as_str().map(str::to_owned),
        method: s("method"),
        uri: s("uri"),
        target: v["target"].as_str().map(str::to_owned),
        amz_headers: v["amz_headers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p[0].as_str().unwrap_or_default().to_owned(),
                    p[1].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: s("body"),
        status: v["status"].as_u64().map(|n| n as u16),
        response: s("response"),
    }
}

/// The deployment a call is for: the first `iam[-<word>]-<8 hex>` name it carries.
fn deployment_of(exchange: &Exchange) -> Option<String> {
    let text = format!("{} {}", exchange.uri, exchange.body);
    let mut rest = text.as_str();
    while let Some(at) = rest.find("iam-") {
        let tail = &rest[at..];
        let token: String = tail
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        let parts: Vec<&str> = token.split('-').collect();
        for n in 2..=parts.len().min(3) {
            let last = parts[n - 1];
            if last.len() == 8 && last.chars().all(|c| c.is_ascii_hexdigit()) {
                return Some(parts[..n].join("-"));
            }
        }
        rest = &tail[4..];
    }
    None
}

/// `text` with the local runner's state table names (`apiary-test-<suite>`) replaced by
/// the stack's (`apiary-<deployment>`).
fn local_table_as_stack(text: &str, deployment: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("apiary-test-") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(tail.len());
        out.push_str(&format!("apiary-{deployment}"));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The function roles of the stack of deployment `name`, as the evaluator reads them.
fn stack_roles(template: &Value, name: &str) -> BTreeMap<String, (String, Policy)> {
    let domain = format!("{name}.example.com");
    let resolver = Resolver::for_template(
        template,
        EMULATOR_ACCOUNT,
        REGION,
        &[("DeploymentName", name), ("Domain", &domain)],
    );
    function_roles(template, &resolver)
}

/// `text` with the secret `local` (by name or by ARN, whatever its six-character suffix)
/// replaced by `stack_arn`.
fn secret_as_stack(text: &str, local: &str, stack_arn: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(local) {
        let before = &rest[..at];
        let after = &rest[at + local.len()..];
        // An ARN: drop its prefix already copied, and its suffix.
        let (keep, skip) = match before.rfind("arn:aws:secretsmanager:") {
            Some(p) if !before[p..].contains('"') => {
                (&before[..p], after.strip_prefix('-').map_or(0, |_| 7))
            }
            _ => (before, 0),
        };
        out.push_str(keep);
        out.push_str(stack_arn);
        rest = &after[skip.min(after.len())..];
    }
    out.push_str(rest);
    out
}

/// The account the emulator answers for.
const EMULATOR_ACCOUNT: &str = "123456789012";

/// Each recorded call, with the resources it names and the conditions it carries,
/// evaluated against its function's role (and, for a KMS key, the key's policy as the
/// keys function wrote it): what AWS would deny. Printed: how many calls were decided,
/// how many only "if the resource carries the deployment's tags" (tags the run never
/// saw), and what could not be read.
/// Returns what AWS would deny (and what cannot be read), how many requests were
/// allowed, and the NOT_EVALUATED entries no call needed.
fn resource_problems(exchanges: &[Exchange]) -> (Vec<String>, usize, Vec<String>) {
    let template = template();
    let dataset = Dataset::load();
    let mut ledger = Ledger::default();
    let mut roles_of: BTreeMap<String, BTreeMap<String, (String, Policy)>> = BTreeMap::new();
    let mut problems = BTreeSet::new();
    let mut unresolved: BTreeMap<String, usize> = BTreeMap::new();
    let (mut decided, mut calls_seen) = (0usize, 0usize);
    let mut assumed = BTreeSet::new();
    let default_key_policy = Policy::from_document(
        "default-key-policy",
        &json!({"Statement": [{"Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{EMULATOR_ACCOUNT}:root")},
            "Action": "kms:*", "Resource": "*"}]}),
    );
    for original in exchanges {
        // Only this test's deployments (`iam-...`): other tests of the binary run
        // side by side and are recorded too.
        let name = original
            .deployment
            .clone()
            .or_else(|| deployment_of(original));
        if name.as_deref().is_some_and(|n| !n.starts_with("iam-")) {
            continue;
        }
        // The local runner's state table (`apiary-test-<suite>`) stands in for the
        // stack's `apiary-<name>`.
        let mut exchange = original.clone();
        if let Some(name) = &name {
            exchange.uri = local_table_as_stack(&exchange.uri, name);
            exchange.body = local_table_as_stack(&exchange.body, name);
            // The runner's signing-key secrets stand in for the stack's SigningKeySecret,
            // whose ARN the functions are given by the stack (`Ref`).
            let stack_secret = Resolver::for_template(
                &template,
                EMULATOR_ACCOUNT,
                REGION,
                &[("DeploymentName", name)],
            )
            .value("SigningKeySecret")
            .to_owned();
            for local in [
                format!("apiary-{name}-signing-key"),
                format!("apiary-{name}-report-signing-key"),
            ] {
                exchange.body = secret_as_stack(&exchange.body, &local, &stack_secret);
            }
        }
        let region = exchange.region.clone().unwrap_or_else(|| REGION.to_owned());
        if exchange.call.caller != calls::UNATTRIBUTED && iam_action(&exchange.call).is_some() {
            calls_seen += 1;
            let Some(name) = &name else {
                *unresolved
                    .entry(format!("{}: names no deployment", exchange.call.operation))
                    .or_default() += 1;
                ledger.learn(&exchange, &dataset, &region, EMULATOR_ACCOUNT);
                continue;
            };
            let roles = roles_of
                .entry(name.clone())
                .or_insert_with(|| stack_roles(&template, name));
            let Some((arn, policy)) = roles.get(&exchange.call.caller) else {
                problems.insert(format!("{}: no role in the template", exchange.call.caller));
                continue;
            };
            let need = needs(&exchange, arn, &dataset, &ledger, &region, EMULATOR_ACCOUNT);
            for u in need.unresolved {
                *unresolved
                    .entry(format!("{} {u}", exchange.call.caller))
                    .or_default() += 1;
            }
            for mut a in need.requests {
                let decide = |r: &apiary_e2e::iam_eval::Request| match &a.key {
                    Some(key) => {
                        let key_policy = ledger
                            .key_policies
                            .get(key)
                            .map(|p| Policy::from_document("key-policy", p));
                        Policy::decide_kms(
                            key_policy.as_ref().unwrap_or(&default_key_policy),
                            policy,
                            r,
                        )
                    }
                    None => policy.decide(r),
                };
                let decision = decide(&a.request);
                if decision.is_allowed() {
                    decided += 1;
                    continue;
                }
                if a.tags_unknown {
                    a.request.assume_resource_tags = true;
                    if decide(&a.request).is_allowed() {
                        let listed = ASSUMED_TAGS.iter().any(|(caller, action, _)| {
                            *caller == exchange.call.caller && *action == a.request.action
                        });
                        if listed {
                            assumed.insert(format!(
                                "{} {} on {}",
                                exchange.call.caller, a.request.action, a.request.resource
                            ));
                        } else {
                            problems.insert(format!(
                                "{}: {} on {} is allowed only if the resource carries the \
                                 tags its statement asks for, and the run never saw them \
                                 (teach the ledger where they come from, or list it in \
                                 ASSUMED_TAGS with the reason)",
                                exchange.call.caller, a.request.action, a.request.resource
                            ));
                        }
                        continue;
                    }
                }
                problems.insert(format!(
                    "{}: {} on {}{} would be denied on AWS ({}): {}",
                    exchange.call.caller,
                    a.request.action,
                    a.request.resource,
                    match a
                        .request
                        .context
                        .iter()
                        .filter(|(k, _)| !k.starts_with("aws:requesttag")
                            && *k != "aws:securetransport")
                        .map(|(k, v)| format!("{k}={}", v.join("|")))
                        .collect::<Vec<_>>()
                    {
                        c if c.is_empty() => String::new(),
                        c => format!(" [{}]", c.join(", ")),
                    },
                    match decision {
                        Decision::Denied(by) => format!("denied by {by}"),
                        _ => "no statement allows it".to_owned(),
                    },
                    exchange.call.operation,
                ));
            }
        }
        ledger.learn(&exchange, &dataset, &region, EMULATOR_ACCOUNT);
    }
    println!(
        "resources and conditions: {calls_seen} calls, {decided} requests allowed, {} \
         allowed if the resource carries the deployment's tags (tags not seen in the run), \
         {} denied",
        assumed.len(),
        problems.len()
    );
    for what in &assumed {
        println!("  allowed if tagged: {what}");
    }
    for (what, n) in &unresolved {
        println!("  not evaluated ({n}x): {what}");
        let listed = NOT_EVALUATED
            .iter()
            .any(|(action, _)| what.contains(&format!(" {action}:")));
        if !listed {
            problems.insert(format!(
                "{what}: the evaluation cannot read this call (teach tests/support/iam_calls.rs \
                 to, or list it in NOT_EVALUATED with the reason)"
            ));
        }
    }
    let stale: Vec<String> = NOT_EVALUATED
        .iter()
        .filter(|(action, _)| {
            !unresolved
                .keys()
                .any(|w| w.contains(&format!(" {action}:")))
        })
        .map(|(action, _)| {
            format!("NOT_EVALUATED lists {action}, which is now evaluated: remove it")
        })
        .collect();
    (problems.into_iter().collect(), decided, stale)
}

/// Calls allowed only on the assumption that their resource carries the tags the
/// statement asks for, because the run never saw those tags, each with where they come
/// from on AWS.
const ASSUMED_TAGS: &[(&str, &str, &str)] = &[
    (
        "operate",
        "secretsmanager:DescribeSecret",
        "the RDS-managed master secret (rds!...): RDS makes and tags it, not a function",
    ),
    (
        "operate",
        "secretsmanager:RotateSecret",
        "the RDS-managed master secret (rds!...): RDS makes and tags it",
    ),
    (
        "teardown",
        "elasticloadbalancing:DeleteLoadBalancer",
        "made by the load balancer controller, which tags it (here the test plants it)",
    ),
    (
        "teardown",
        "elasticloadbalancing:DeleteTargetGroup",
        "made and tagged by the load balancer controller (here the test plants it)",
    ),
    (
        "teardown",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "made and tagged by the load balancer controller (here the test plants it)",
    ),
];

/// Calls the resource evaluation cannot read, with the reason.
const NOT_EVALUATED: &[(&str, &str)] = &[
    (
        "cloudwatch:PutMetricData",
        "this SDK sends CloudWatch requests in CBOR, which the emulator refuses, so nothing \
         ran; the metric namespace condition is unit-tested where the metrics are put",
    ),
    (
        "cloudwatch:PutMetricAlarm",
        "a CBOR request the emulator refuses",
    ),
    (
        "cloudwatch:DescribeAlarms",
        "a CBOR request the emulator refuses",
    ),
];

/// The resource evaluation alone, over calls dumped by a run of the test above with
/// `APIARY_DUMP_EXCHANGES=<file>`; for working on the evaluation without re-running
/// every workflow. Skipped unless `APIARY_EXCHANGES_FILE` names such a file.
#[test]
#[ignore = "needs APIARY_EXCHANGES_FILE, a dump from the measured test"]
fn recorded_calls_from_a_dump_are_allowed_on_their_resources() {
    let path = std::env::var("APIARY_EXCHANGES_FILE")
        .expect("APIARY_EXCHANGES_FILE: a dump made with APIARY_DUMP_EXCHANGES");
    let text = std::fs::read_to_string(&path).expect("the dump");
    let exchanges: Vec<Exchange> = serde_json::from_str::<Vec<Value>>(&text)
        .expect("JSON")
        .iter()
        .map(exchange_of)
        .collect();
    let (problems, _, _) = resource_problems(&exchanges);
    assert!(
        problems.is_empty(),
        "denied on AWS:\n  {}",
        problems.join("\n  ")
    );
}

/// The canary of the resource evaluation: the dns function's certificate-validation
/// record is allowed, and the same record deleted, or an A record of another name
/// written, is named as what AWS would deny, with the statement that did not allow it.
#[test]
fn a_call_its_statement_does_not_cover_is_named() {
    let change = |action: &str, name: &str, kind: &str| Exchange {
        call: Call {
            caller: "dns".into(),
            service: "Route 53".into(),
            operation: "ChangeResourceRecordSets".into(),
        },
        deployment: None,
        region: Some(REGION.into()),
        method: "POST".into(),
        uri: "http://127.0.0.1:1/2013-04-01/hostedzone/Z0123456789/rrset".into(),
        target: None,
        amz_headers: vec![("content-type".into(), "application/xml".into())],
        body: format!(
            "<ChangeResourceRecordSetsRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
             <ChangeBatch><Changes><Change><Action>{action}</Action><ResourceRecordSet>\
             <Name>{name}</Name><Type>{kind}</Type><TTL>300</TTL></ResourceRecordSet>\
             </Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
        ),
        status: Some(200),
        response: String::new(),
    };
    let domain = "iam-0000abcd.example.com";
    let (allowed, decided, _) =
        resource_problems(&[change("UPSERT", &format!("_a1b2.{domain}."), "CNAME")]);
    assert_eq!(
        (allowed, decided),
        (vec![], 1),
        "the validation record is allowed"
    );
    let (denied, _, _) = resource_problems(&[
        change("DELETE", &format!("_a1b2.{domain}."), "CNAME"),
        change("UPSERT", &format!("www.{domain}."), "A"),
    ]);
    assert_eq!(denied.len(), 2, "{denied:#?}");
    assert!(
        denied.iter().all(|d| d.starts_with(
            "dns: route53:ChangeResourceRecordSets on arn:aws:route53:::hostedzone/Z0123456789"
        ) && d.contains("would be denied on AWS")),
        "{denied:#?}"
    );
    assert!(
        denied
            .iter()
            .any(|d| d.contains("changeresourcerecordsetsactions=DELETE")),
        "{denied:#?}"
    );
}

#[test]
fn the_action_mapping_names_iam_actions() {
    let call = |service: &str, operation: &str| Call {
        caller: "x".into(),
        service: service.into(),
        operation: operation.into(),
    };
    assert_eq!(
        iam_action(&call("DocDB", "CreateDBCluster")).as_deref(),
        Some("rds:CreateDBCluster")
    );
    assert_eq!(
        iam_action(&call("S3", "PutBucketEncryption")).as_deref(),
        Some("s3:PutEncryptionConfiguration")
    );
    assert_eq!(
        iam_action(&call("Secrets Manager", "CreateSecret")).as_deref(),
        Some("secretsmanager:CreateSecret")
    );
    assert_eq!(iam_action(&call("STS", "GetCallerIdentity")), None);
    assert!(action_matches(
        "kms:GenerateDataKey*",
        "kms:GenerateDataKeyWithoutPlaintext"
    ));
    assert!(action_matches("EC2:describe*", "ec2:DescribeVpcs"));
    assert!(!action_matches("ec2:Describe*", "ec2:DeleteVpc"));
    assert!(!action_matches("s3:GetObject", "s3:GetObjectAcl"));
}

/// IAM ARNs carry the account: `arn:aws:iam::<account>:role/...`. Without it a
/// statement matches no role at all, and nothing but a failed call in a real account
/// would tell.
#[test]
fn iam_resource_arns_name_the_account() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra-bootstrap/bootstrap.yaml"),
    )
    .expect("bootstrap.yaml");
    let wrong: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.match_indices(":iam::").any(|(at, found)| {
                let rest = &line[at + found.len()..];
                // This account's resources, an AWS managed policy, or a parameter's
                // pattern that requires an account.
                !(rest.starts_with("${AWS::AccountId}:")
                    || rest.starts_with("aws:policy/")
                    || rest.starts_with("[0-9]{12}:"))
            })
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "IAM ARNs without the account:\n{}",
        wrong.join("\n")
    );
}
