//! What exists in the account, read through the AWS APIs (never the state table): the
//! chaos suite compares it with the inventory (what is there but not recorded has
//! leaked) and with a fault-free run (more of a kind than that run made is a duplicate).
//!
//! Kinds are named as the inventory names them. Things every account has (default VPC,
//! its subnets and groups, main route tables, default parameter groups, AWS-managed
//! keys) are left out; what the local environment itself makes is taken away as the
//! baseline read before the first run.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use aws_config::SdkConfig;

/// One resource: its kind and the names it goes by (id, name or ARN).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub kind: &'static str,
    /// The first is shown; any of them in the inventory makes it recorded.
    pub names: Vec<String>,
}

impl Found {
    fn one(kind: &'static str, id: impl Into<String>) -> Found {
        Found {
            kind,
            names: vec![id.into()],
        }
    }

    pub fn id(&self) -> &str {
        &self.names[0]
    }
}

/// Every resource of the kinds the workflows make.
pub async fn take(config: &SdkConfig) -> anyhow::Result<BTreeSet<Found>> {
    let mut found = BTreeSet::new();
    found.extend(ec2(config).await.context("EC2")?);
    found.extend(stores(config).await.context("RDS and ElastiCache")?);
    found.extend(
        platform(config)
            .await
            .context("EKS, KMS, S3, Secrets Manager")?,
    );
    found.extend(
        edges(config)
            .await
            .context("IAM, events, logs, queues, DNS")?,
    );
    Ok(found)
}

/// How many of each kind.
pub fn counts(found: &BTreeSet<Found>) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for f in found {
        *counts.entry(f.kind).or_default() += 1;
    }
    counts
}

async fn ec2(config: &SdkConfig) -> anyhow::Result<Vec<Found>> {
    use aws_sdk_ec2::types::{NatGatewayState, State};
    let ec2 = apiary_core::client!(aws_sdk_ec2, config);
    let mut out = Vec::new();
    for vpc in ec2.describe_vpcs().send().await?.vpcs() {
        if vpc.is_default() != Some(true) {
            out.extend(vpc.vpc_id().map(|id| Found::one("ec2:vpc", id)));
        }
    }
    for subnet in ec2.describe_subnets().send().await?.subnets() {
        if subnet.default_for_az() != Some(true) {
            out.extend(subnet.subnet_id().map(|id| Found::one("ec2:subnet", id)));
        }
    }
    for gateway in ec2
        .describe_internet_gateways()
        .send()
        .await?
        .internet_gateways()
    {
        out.extend(
            gateway
                .internet_gateway_id()
                .map(|id| Found::one("ec2:internet-gateway", id)),
        );
    }
    for nat in ec2.describe_nat_gateways().send().await?.nat_gateways() {
        if !matches!(
            nat.state(),
            Some(NatGatewayState::Deleted | NatGatewayState::Deleting)
        ) {
            out.extend(
                nat.nat_gateway_id()
                    .map(|id| Found::one("ec2:nat-gateway", id)),
            );
        }
    }
    for address in ec2.describe_addresses().send().await?.addresses() {
        out.extend(
            address
                .allocation_id()
                .map(|id| Found::one("ec2:elastic-ip", id)),
        );
    }
    for table in ec2.describe_route_tables().send().await?.route_tables() {
        let main = table.associations().iter().any(|a| a.main() == Some(true));
        if !main {
            out.extend(
                table
                    .route_table_id()
                    .map(|id| Found::one("ec2:route-table", id)),
            );
        }
    }
    for group in ec2
        .describe_security_groups()
        .send()
        .await?
        .security_groups()
    {
        if group.group_name() != Some("default") {
            out.extend(
                group
                    .group_id()
                    .map(|id| Found::one("ec2:security-group", id)),
            );
        }
    }
    for endpoint in ec2.describe_vpc_endpoints().send().await?.vpc_endpoints() {
        if !matches!(endpoint.state(), Some(State::Deleted | State::Deleting)) {
            out.extend(
                endpoint
                    .vpc_endpoint_id()
                    .map(|id| Found::one("ec2:vpc-endpoint", id)),
            );
        }
    }
    for template in ec2
        .describe_launch_templates()
        .send()
        .await?
        .launch_templates()
    {
        out.extend(
            template
                .launch_template_id()
                .map(|id| Found::one("ec2:launch-template", id)),
        );
    }
    for log in ec2.describe_flow_logs().send().await?.flow_logs() {
        out.extend(
            log.flow_log_id()
                .map(|id| Found::one("ec2:vpc-flow-log", id)),
        );
    }
    Ok(out)
}

async fn stores(config: &SdkConfig) -> anyhow::Result<Vec<Found>> {
    let rds = apiary_core::client!(aws_sdk_rds, config);
    let mut out = Vec::new();
    for db in rds.describe_db_instances().send().await?.db_instances() {
        if db.db_instance_status() != Some("deleting") {
            out.extend(
                db.db_instance_identifier()
                    .map(|id| Found::one("rds:db-instance", id)),
            );
        }
    }
    for group in rds
        .describe_db_parameter_groups()
        .send()
        .await?
        .db_parameter_groups()
    {
        if let Some(name) = group.db_parameter_group_name()
            && !name.starts_with("default.")
        {
            out.push(Found::one("rds:db-parameter-group", name));
        }
    }
    for group in rds
        .describe_db_subnet_groups()
        .send()
        .await?
        .db_subnet_groups()
    {
        if let Some(name) = group.db_subnet_group_name()
            && name != "default"
        {
            out.push(Found::one("rds:db-subnet-group", name));
        }
    }
    for snapshot in rds.describe_db_snapshots().send().await?.db_snapshots() {
        if snapshot.snapshot_type() == Some("manual") {
            out.extend(
                snapshot
                    .db_snapshot_identifier()
                    .map(|id| Found::one("rds:snapshot", id)),
            );
        }
    }
    let elasticache = apiary_core::client!(aws_sdk_elasticache, config);
    for group in elasticache
        .describe_replication_groups()
        .send()
        .await?
        .replication_groups()
    {
        if group.status() != Some("deleting") {
            out.extend(
                group
                    .replication_group_id()
                    .map(|id| Found::one("elasticache:replication-group", id)),
            );
        }
    }
    for group in elasticache
        .describe_cache_subnet_groups()
        .send()
        .await?
        .cache_subnet_groups()
    {
        if let Some(name) = group.cache_subnet_group_name()
            && name != "default"
        {
            out.push(Found::one("elasticache:cache-subnet-group", name));
        }
    }
    Ok(out)
}

async fn platform(config: &SdkConfig) -> anyhow::Result<Vec<Found>> {
    use aws_sdk_kms::types::{KeyManagerType, KeyState};
    let mut out = Vec::new();
    let eks = apiary_core::client!(aws_sdk_eks, config);
    for cluster in eks.list_clusters().send().await?.clusters() {
        out.push(Found::one("eks:cluster", cluster));
        for group in eks
            .list_nodegroups()
            .cluster_name(cluster)
            .send()
            .await?
            .nodegroups()
        {
            out.push(Found::one("eks:nodegroup", group));
        }
    }
    let kms = apiary_core::client!(aws_sdk_kms, config);
    // AWS-managed keys (`alias/aws/...`, made on first use of a service: the emulator
    // says they are the customer's) are no one's to record.
    let managed: BTreeSet<String> = kms
        .list_aliases()
        .limit(1000)
        .send()
        .await?
        .aliases()
        .iter()
        .filter(|a| a.alias_name().is_some_and(|n| n.starts_with("alias/aws/")))
        .filter_map(|a| a.target_key_id().map(str::to_owned))
        .collect();
    for key in kms.list_keys().limit(1000).send().await?.keys() {
        let Some(id) = key.key_id() else { continue };
        if managed.contains(id) {
            continue;
        }
        let described = kms.describe_key().key_id(id).send().await?;
        let Some(meta) = described.key_metadata() else {
            continue;
        };
        if meta.key_manager() == Some(&KeyManagerType::Customer)
            && meta.key_state() != Some(&KeyState::PendingDeletion)
        {
            out.push(Found::one("kms:key", id));
        }
    }
    let s3 = apiary_core::aws::s3_client(config);
    for bucket in s3.list_buckets().send().await?.buckets() {
        out.extend(bucket.name().map(|name| Found::one("s3:bucket", name)));
    }
    let secrets = apiary_core::client!(aws_sdk_secretsmanager, config);
    let mut token = None;
    loop {
        let page = secrets.list_secrets().set_next_token(token).send().await?;
        for secret in page.secret_list() {
            let (Some(name), Some(arn)) = (secret.name(), secret.arn()) else {
                continue;
            };
            if secret.deleted_date().is_none() {
                out.push(Found {
                    kind: "secretsmanager:secret",
                    names: vec![name.to_owned(), arn.to_owned()],
                });
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}

async fn edges(config: &SdkConfig) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    let iam = apiary_core::client!(aws_sdk_iam, config);
    for role in iam.list_roles().max_items(1000).send().await?.roles() {
        out.push(Found::one("iam:role", role.role_name()));
    }
    let events = apiary_core::client!(aws_sdk_eventbridge, config);
    let mut token = None;
    loop {
        let page = events.list_rules().set_next_token(token).send().await?;
        for rule in page.rules() {
            out.extend(rule.name().map(|name| Found::one("events:rule", name)));
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let logs = apiary_core::client!(aws_sdk_cloudwatchlogs, config);
    let mut token = None;
    loop {
        let page = logs
            .describe_log_groups()
            .set_next_token(token)
            .send()
            .await?;
        for group in page.log_groups() {
            out.extend(
                group
                    .log_group_name()
                    .map(|name| Found::one("logs:log-group", name)),
            );
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let sqs = apiary_core::client!(aws_sdk_sqs, config);
    for url in sqs.list_queues().send().await?.queue_urls() {
        let name = url.rsplit('/').next().unwrap_or(url);
        out.push(Found::one("sqs:queue", name));
    }
    let trails = apiary_core::client!(aws_sdk_cloudtrail, config);
    for trail in trails.describe_trails().send().await?.trail_list() {
        out.extend(
            trail
                .name()
                .map(|name| Found::one("cloudtrail:trail", name)),
        );
    }
    let acm = apiary_core::client!(aws_sdk_acm, config);
    for certificate in acm
        .list_certificates()
        .send()
        .await?
        .certificate_summary_list()
    {
        out.extend(
            certificate
                .certificate_arn()
                .map(|arn| Found::one("acm:certificate", arn)),
        );
    }
    let route53 = apiary_core::client!(aws_sdk_route53, config);
    for zone in route53.list_hosted_zones().send().await?.hosted_zones() {
        let id = zone.id().trim_start_matches("/hostedzone/");
        out.push(Found::one("route53:hosted-zone", id));
    }
    Ok(out)
}
