//! The teardown workflow end to end: provision, make by hand what the controllers in the
//! cluster would (Karpenter's instance, the load balancer controller's load balancer,
//! target group and security group, a detached interface, a PVC's volume), then
//! `statemachines/teardown.asl.json` in the embedded engine against the emulator.

use std::sync::Arc;

use apiary_asl::ExecutionStatus;
use apiary_core::store::DeploymentStatus;
use apiary_e2e::{Local as Fixture, REGION, in_region, unique_cidr, unique_name};
use aws_sdk_ec2::types::{Filter, InstanceStateName, ResourceType, Tag, TagSpecification};
use serde_json::{Value, json};

async fn fixture() -> Fixture {
    Fixture::new("apiary-test-teardown").await
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tags(resource: ResourceType, pairs: &[(&str, &str)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(pairs.iter().map(|(k, v)| tag(k, v)).collect()))
        .build()
}

/// What the controllers would have made, as their tags say.
struct Leftovers {
    instance: String,
    load_balancer: String,
    target_group: String,
    group: String,
    interface: String,
    volume: String,
    /// A volume of another cluster: must survive.
    foreign_volume: String,
}

async fn make_leftovers(f: &Fixture, layers: &Value) -> Leftovers {
    let ec2 = aws_sdk_ec2::Client::new(&f.config);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&f.config);
    let cluster = layers["cluster"]["cluster_name"].as_str().unwrap();
    let vpc = layers["network"]["vpc_id"].as_str().unwrap();
    let private = layers["network"]["private_subnets"][0]["id"]
        .as_str()
        .unwrap();
    let zone = layers["network"]["private_subnets"][0]["availability_zone"]
        .as_str()
        .unwrap();
    let public: Vec<String> = layers["network"]["public_subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let cluster_tag = format!("kubernetes.io/cluster/{cluster}");

    let image = ec2
        .describe_images()
        .send()
        .await
        .unwrap()
        .images()
        .iter()
        .find_map(|i| i.image_id().map(str::to_owned))
        .expect("the emulator has an image");
    let launched = ec2
        .run_instances()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Large)
        .min_count(1)
        .max_count(1)
        .subnet_id(private)
        .tag_specifications(tags(
            ResourceType::Instance,
            &[
                ("karpenter.sh/nodepool", "default"),
                (&cluster_tag, "owned"),
                ("eks:eks-cluster-name", cluster),
            ],
        ))
        .send()
        .await
        .unwrap();
    let instance = launched.instances()[0].instance_id().unwrap().to_owned();

    let group = ec2
        .create_security_group()
        .group_name(format!("k8s-{cluster}-ingress"))
        .description("managed by the load balancer controller")
        .vpc_id(vpc)
        .tag_specifications(tags(
            ResourceType::SecurityGroup,
            &[
                ("elbv2.k8s.aws/cluster", cluster),
                ("elbv2.k8s.aws/resource", "frontend"),
            ],
        ))
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let elb_tag = |k: &str, v: &str| {
        aws_sdk_elasticloadbalancingv2::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
    };
    let load_balancer = elb
        .create_load_balancer()
        .name(format!("k8s-ingest-{}", &cluster[cluster.len() - 8..]))
        .set_subnets(Some(public))
        .security_groups(&group)
        .tags(elb_tag("elbv2.k8s.aws/cluster", cluster))
        .tags(elb_tag("ingress.k8s.aws/stack", "honeyhive/ingestion"))
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let target_group = elb
        .create_target_group()
        .name(format!("k8s-tg-{}", &cluster[cluster.len() - 8..]))
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .tags(elb_tag("elbv2.k8s.aws/cluster", cluster))
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    // A detached interface, as the VPC CNI leaves them: no tags.
    let interface = ec2
        .create_network_interface()
        .subnet_id(private)
        .description("aws-K8S-i-0123456789")
        .send()
        .await
        .unwrap()
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_owned();
    let volume = ec2
        .create_volume()
        .availability_zone(zone)
        .size(10)
        .tag_specifications(tags(
            ResourceType::Volume,
            &[
                (&cluster_tag, "owned"),
                ("KubernetesCluster", cluster),
                ("kubernetes.io/created-for/pvc/name", "data-ingestion-0"),
                ("ebs.csi.aws.com/cluster", "true"),
            ],
        ))
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_owned();
    let foreign_volume = ec2
        .create_volume()
        .availability_zone(zone)
        .size(10)
        .tag_specifications(tags(
            ResourceType::Volume,
            &[
                ("kubernetes.io/cluster/someone-elses-cluster", "owned"),
                ("ebs.csi.aws.com/cluster", "true"),
            ],
        ))
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_owned();
    Leftovers {
        instance,
        load_balancer,
        target_group,
        group,
        interface,
        volume,
        foreign_volume,
    }
}

async fn vpc_exists(f: &Fixture, vpc: &str) -> bool {
    let ec2 = aws_sdk_ec2::Client::new(&f.config);
    ec2.describe_vpcs()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .unwrap()
        .vpcs()
        .iter()
        .any(|v| v.vpc_id() == Some(vpc))
}

async fn cluster_parameter_group_exists(f: &Fixture, name: &str) -> bool {
    // DocumentDB's control plane is the RDS API's.
    match aws_sdk_rds::Client::new(&f.config)
        .describe_db_cluster_parameter_groups()
        .db_cluster_parameter_group_name(name)
        .send()
        .await
    {
        Ok(out) => !out.db_cluster_parameter_groups().is_empty(),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_db_parameter_group_not_found_fault()) =>
        {
            false
        }
        Err(err) => panic!("DescribeDBClusterParameterGroups {name}: {err:?}"),
    }
}

/// A key of the deployment's keys layer that no alias names, as a keys run stopped
/// between CreateKey and CreateAlias leaves it.
async fn unnamed_key(f: &Fixture, name: &str) -> String {
    let kms_tag = |k: &str, v: &str| {
        aws_sdk_kms::types::Tag::builder()
            .tag_key(k)
            .tag_value(v)
            .build()
            .unwrap()
    };
    // Made with the keys layer's key policy (its CreateKey carries it), through a
    // recorded client: the IAM measurement decides the teardown's calls on this key by it.
    let policy = keys::key_policy_for(
        apiary::local::LOCAL_ACCOUNT,
        REGION,
        "app",
        None,
        &apiary_core::naming::Names::new(name),
    );
    apiary_core::client!(aws_sdk_kms, &f.config)
        .create_key()
        .policy(policy)
        .tags(kms_tag("apiary:deployment", name))
        .tags(kms_tag("apiary:layer", "keys"))
        .tags(kms_tag("apiary:role", "logs"))
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

#[tokio::test]
async fn teardown_removes_the_data_plane_and_what_controllers_made() {
    let f = fixture().await;
    let name = unique_name("tear");
    let spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": unique_cidr(&f.config).await, "ingress_cidrs": ["203.0.113.0/24"]},
    });
    let provisioned = f
        .run("provision", &name, json!({"spec": spec}), "provision")
        .await;
    assert_eq!(
        provisioned.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        provisioned.error,
        provisioned.cause
    );
    let layers = provisioned.output.unwrap()["layers"].clone();
    let vpc = layers["network"]["vpc_id"].as_str().unwrap().to_owned();
    let left = make_leftovers(&f, &layers).await;
    // The DocumentDB cluster parameter group is made before the cluster (which the
    // emulator does not make): the teardown deletes it by its name.
    let docdb_group = format!("apiary-{name}-docdb5");
    assert!(cluster_parameter_group_exists(&f, &docdb_group).await);
    // A key a keys run made and did not get to name (stopped between CreateKey and
    // CreateAlias): found by its tags and scheduled like the named ones.
    let kms = aws_sdk_kms::Client::new(&f.config);
    let unnamed_key = unnamed_key(&f, &name).await;
    let secrets_alias = format!("alias/apiary/{name}/eks-secrets");
    let secrets_key = key_id(&f.config, &secrets_alias).await;

    // A wrong confirm changes nothing.
    let refused = f
        .run(
            "teardown",
            &name,
            json!({"deployment": name, "confirm": "demo"}),
            "wrong-confirm",
        )
        .await;
    assert_eq!(refused.status, ExecutionStatus::Failed);
    assert_eq!(
        refused.error.as_deref(),
        Some("Apiary.InvalidInput"),
        "{:?}",
        refused.cause
    );
    assert!(
        refused
            .cause
            .as_deref()
            .unwrap_or_default()
            .contains("confirm"),
        "{:?}",
        refused.cause
    );
    assert!(
        vpc_exists(&f, &vpc).await,
        "a refused teardown deletes nothing"
    );
    let record = f.store.get_deployment(&name).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        DeploymentStatus::Ready,
        "a refused teardown changes no status"
    );

    // A teardown killed after its first steps: those steps ran, the rest did not.
    let deps = teardown::Deps::new(&f.config, Arc::new(f.store.clone()));
    for action in ["snapshots", "cluster", "sweep"] {
        let mut event = apiary_core::step::event(action, &name);
        event["options"] = json!({"input": {"confirm": name, "delete_backups": false}});
        teardown::handle(&deps, event)
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
    }

    let done = f
        .run(
            "teardown",
            &name,
            json!({"deployment": name, "confirm": name}),
            "teardown",
        )
        .await;
    let journal = f.store.journal(&name).await.unwrap();
    let last = journal
        .iter()
        .rev()
        .take(5)
        .map(|e| format!("{} {} {}: {:?}", e.step, e.action, e.outcome, e.detail))
        .collect::<Vec<_>>();
    assert_eq!(
        done.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}; last journal entries: {last:#?}",
        done.error,
        done.cause
    );
    let output = done.output.unwrap();
    let receipt = &output["result"]["receipt"];
    assert_eq!(receipt["scan"]["unexplained"], json!([]), "{receipt:#}");
    let removed: Vec<&str> = receipt["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for id in [
        &left.instance,
        &left.load_balancer,
        &left.target_group,
        &left.group,
        &left.interface,
        &left.volume,
        &vpc,
    ] {
        assert!(
            removed.iter().any(|r| r.ends_with(id.as_str())),
            "{id} not in the receipt's removed list: {removed:?}"
        );
    }
    let record = f.store.get_deployment(&name).await.unwrap().unwrap();
    assert_eq!(record.status, DeploymentStatus::Deleted);
    assert_eq!(
        f.store.current_lock(&name).await.unwrap(),
        None,
        "lock released"
    );

    // Read back through the AWS APIs.
    assert!(!vpc_exists(&f, &vpc).await, "the VPC is gone");
    assert!(
        !cluster_parameter_group_exists(&f, &docdb_group).await,
        "the DocumentDB cluster parameter group is gone"
    );
    assert!(
        removed.contains(&format!("rds:cluster-pg {docdb_group}").as_str()),
        "{removed:?}"
    );
    let unnamed_state = kms
        .describe_key()
        .key_id(&unnamed_key)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_state()
        .cloned();
    assert_eq!(
        unnamed_state,
        Some(aws_sdk_kms::types::KeyState::PendingDeletion),
        "the key without an alias is scheduled for deletion too"
    );
    let ec2 = aws_sdk_ec2::Client::new(&f.config);
    let instance = ec2
        .describe_instances()
        .instance_ids(&left.instance)
        .send()
        .await
        .unwrap();
    let state = instance.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned();
    assert_eq!(state, Some(InstanceStateName::Terminated));
    let volumes = ec2.describe_volumes().send().await.unwrap();
    let ids: Vec<&str> = volumes
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id())
        .collect();
    assert!(
        !ids.contains(&left.volume.as_str()),
        "the PVC's volume is gone"
    );
    assert!(
        ids.contains(&left.foreign_volume.as_str()),
        "another cluster's volume is never touched"
    );

    // The scan by tag finds nothing but what the receipt keeps (or lists as going).
    let kept: Vec<String> = receipt["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            k["arn"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| k["resource"].as_str().unwrap().to_owned())
        })
        .collect();
    let explained: Vec<&str> = receipt["scan"]["explained"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["arn"].as_str())
        .collect();
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&f.config);
    let found = tagging
        .get_resources()
        .tag_filters(
            aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                .key("apiary:deployment")
                .values(&name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for mapping in found.resource_tag_mapping_list() {
        let arn = mapping.resource_arn().unwrap();
        assert!(
            explained.contains(&arn) || kept.iter().any(|k| k == arn || arn.ends_with(k.as_str())),
            "{arn} remains and the receipt does not explain it: {receipt:#}"
        );
    }
    // What is kept: the final snapshots and the backups bucket, with the keys that
    // protect them.
    let kept_kinds: Vec<&str> = receipt["kept"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["resource"].as_str()?.split(' ').next())
        .collect();
    for kind in ["rds:snapshot", "s3:bucket", "kms:key"] {
        assert!(kept_kinds.contains(&kind), "{kind} not kept: {receipt:#}");
    }

    // Running it again finds nothing to do and still succeeds.
    let again = f
        .run(
            "teardown",
            &name,
            json!({"deployment": name, "confirm": name}),
            "again",
        )
        .await;
    assert_eq!(
        again.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        again.error,
        again.cause
    );

    // A scheduled key's alias goes with it: a new provision of the same name must not
    // find the torn-down key (it would cancel its deletion and stop at the disabled key).
    let gone = kms.describe_key().key_id(&secrets_alias).send().await;
    assert!(
        gone.is_err_and(|e| e
            .as_service_error()
            .is_some_and(|e| e.is_not_found_exception())),
        "{secrets_alias} is deleted with its key"
    );
    assert_eq!(
        key_state(&f.config, &secrets_key).await,
        aws_sdk_kms::types::KeyState::PendingDeletion
    );

    // The same deployment provisioned again in the same table (the stack kept): its
    // keys layer makes new keys. The emulator then keeps the deleted Redis group
    // "deleting" for good (on AWS it is gone when the teardown ends), so the run may stop
    // at the databases, saying so; either way the keys are new and usable.
    let reborn = f
        .run("provision", &name, json!({"spec": spec}), "provision-again")
        .await;
    let stopped_at_redis = reborn.status == ExecutionStatus::Failed
        && reborn
            .cause
            .as_deref()
            .is_some_and(|c| c.contains("redis") && c.contains("deleting"));
    assert!(
        reborn.status == ExecutionStatus::Succeeded || stopped_at_redis,
        "{:?}: {:?}",
        reborn.error,
        reborn.cause
    );
    let new_key = key_id(&f.config, &secrets_alias).await;
    assert_ne!(new_key, secrets_key, "a new key, not the torn-down one");
    assert_eq!(
        key_state(&f.config, &new_key).await,
        aws_sdk_kms::types::KeyState::Enabled
    );
    assert_eq!(
        key_state(&f.config, &secrets_key).await,
        aws_sdk_kms::types::KeyState::PendingDeletion,
        "the torn-down key's deletion is not cancelled"
    );
}

/// A provision with a DR region, a backup, the controllers' leftovers and a whole
/// teardown that deletes the backups: what the IAM measurement (tests/iam.rs) records of
/// the teardown function.
pub(crate) async fn exercise() {
    let f = fixture().await;
    let name = unique_name("iam-tear");
    let spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": unique_cidr(&f.config).await},
        "backup": {"dr_region": DR_REGION},
    });
    let provisioned = f
        .run("provision", &name, json!({"spec": spec}), "provision")
        .await;
    assert_eq!(
        provisioned.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        provisioned.cause
    );
    let backed_up = f
        .run("backup", &name, json!({"deployment": name}), "backup")
        .await;
    assert_eq!(
        backed_up.status,
        ExecutionStatus::Succeeded,
        "{backed_up:?}"
    );
    make_leftovers(&f, &provisioned.output.unwrap()["layers"]).await;
    unnamed_key(&f, &name).await;
    let done = f
        .run(
            "teardown",
            &name,
            json!({"deployment": name, "confirm": name, "delete_backups": true}),
            "teardown",
        )
        .await;
    assert_eq!(
        done.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        done.error,
        done.cause
    );
}

const DR_REGION: &str = "us-east-1";

async fn key_state(config: &aws_config::SdkConfig, alias: &str) -> aws_sdk_kms::types::KeyState {
    aws_sdk_kms::Client::new(config)
        .describe_key()
        .key_id(alias)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{alias} exists: {e:?}"))
        .key_metadata()
        .unwrap()
        .key_state()
        .unwrap()
        .clone()
}

async fn rds_snapshot_exists(config: &aws_config::SdkConfig, id: &str) -> bool {
    match aws_sdk_rds::Client::new(config)
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
    {
        Ok(out) => !out.db_snapshots().is_empty(),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_db_snapshot_not_found_fault()) =>
        {
            false
        }
        Err(err) => panic!("DescribeDBSnapshots {id}: {err:?}"),
    }
}

fn kept_why<'a>(receipt: &'a Value, resource: &str) -> Option<&'a str> {
    receipt["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["resource"].as_str() == Some(resource))
        .and_then(|k| k["why"].as_str())
}

fn kept_key_why<'a>(receipt: &'a Value, key_id: &str) -> &'a str {
    kept_why(receipt, &format!("kms:key {key_id}"))
        .unwrap_or_else(|| panic!("key {key_id} is not in the receipt: {receipt:#}"))
}

async fn key_id(config: &aws_config::SdkConfig, alias: &str) -> String {
    aws_sdk_kms::Client::new(config)
        .describe_key()
        .key_id(alias)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

/// The backup workflow's snapshots and DR copies are kept by a teardown without
/// `delete_backups`, listed in its receipt, with the keys that encrypt them (alias and
/// all); a later teardown with `delete_backups` deletes them and then the DR key.
#[tokio::test]
async fn backups_are_kept_with_their_keys_or_deleted_when_asked() {
    let f = fixture().await;
    let name = unique_name("tearbak");
    let spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": unique_cidr(&f.config).await},
        "backup": {"dr_region": DR_REGION, "retention_days": 1},
    });
    let provisioned = f
        .run("provision", &name, json!({"spec": spec}), "provision")
        .await;
    assert_eq!(
        provisioned.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        provisioned.cause
    );
    let backed_up = f
        .run("backup", &name, json!({"deployment": name}), "backup")
        .await;
    assert_eq!(
        backed_up.status,
        ExecutionStatus::Succeeded,
        "{backed_up:?}"
    );
    let ledger = backed_up.output.unwrap()["result"]["ledger"]["stores"].clone();
    let pg = ledger["postgres"][REGION]["snapshot_id"]
        .as_str()
        .expect("a postgres backup")
        .to_owned();
    assert_eq!(ledger["postgres"][DR_REGION]["snapshot_id"], json!(pg));
    let redis = ledger["redis"][REGION]["snapshot_id"]
        .as_str()
        .expect("a redis backup")
        .to_owned();
    let dr_config = in_region(&f.config, DR_REGION);
    let dr_alias = format!("alias/apiary/{name}/dr");
    let rds_alias = format!("alias/apiary/{name}/rds");
    let dr_key = key_id(&dr_config, &dr_alias).await;
    let rds_key = key_id(&f.config, &rds_alias).await;

    // Without delete_backups: kept, listed, and so are their keys.
    let kept = f
        .run(
            "teardown",
            &name,
            json!({"deployment": name, "confirm": name}),
            "keep-backups",
        )
        .await;
    assert_eq!(
        kept.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        kept.error,
        kept.cause
    );
    let receipt = kept.output.unwrap()["result"]["receipt"].clone();
    assert_eq!(receipt["scan"]["unexplained"], json!([]), "{receipt:#}");
    for resource in [
        format!("rds:snapshot {pg}"),
        format!("rds:dr-snapshot {DR_REGION}/{pg}"),
        format!("elasticache:snapshot {redis}"),
        "state:ledger backup.ledger".to_owned(),
        // The Redis export buckets, in both regions.
        format!("s3:bucket apiary-{name}-exports-123456789012-{REGION}"),
        format!("s3:bucket apiary-{name}-exports-123456789012-{DR_REGION}"),
    ] {
        assert!(
            kept_why(&receipt, &resource).is_some(),
            "{resource} is not kept in the receipt: {receipt:#}"
        );
    }
    assert!(rds_snapshot_exists(&f.config, &pg).await);
    assert!(rds_snapshot_exists(&dr_config, &pg).await);
    let why = kept_key_why(&receipt, &dr_key);
    assert!(
        why.contains("encrypts what is kept") && why.contains(&pg),
        "{why}"
    );
    assert!(
        kept_key_why(&receipt, &rds_key).contains(&pg),
        "{receipt:#}"
    );
    // The s3 key is kept for the backups bucket, not for the SSE-S3 buckets kept with it
    // (access logs, Redis exports).
    let s3_key = key_id(&f.config, &format!("alias/apiary/{name}/s3")).await;
    let why = kept_key_why(&receipt, &s3_key);
    assert!(
        why.contains(&format!("apiary-{name}-backups-"))
            && !why.contains("-exports-")
            && !why.contains("-access-"),
        "{why}"
    );
    for (config, alias) in [(&dr_config, &dr_alias), (&f.config, &rds_alias)] {
        assert_eq!(
            key_state(config, alias).await,
            aws_sdk_kms::types::KeyState::Enabled,
            "{alias} must not be scheduled for deletion while it encrypts kept snapshots"
        );
    }

    // A later teardown with delete_backups: the backups go (both regions), the ledger
    // is emptied, and the DR key, which now encrypts nothing kept, is scheduled.
    let deleted = f
        .run(
            "teardown",
            &name,
            json!({"deployment": name, "confirm": name, "delete_backups": true}),
            "delete-backups",
        )
        .await;
    assert_eq!(
        deleted.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        deleted.error,
        deleted.cause
    );
    let receipt = deleted.output.unwrap()["result"]["receipt"].clone();
    assert_eq!(receipt["scan"]["unexplained"], json!([]), "{receipt:#}");
    assert!(!rds_snapshot_exists(&f.config, &pg).await, "{receipt:#}");
    assert!(!rds_snapshot_exists(&dr_config, &pg).await, "{receipt:#}");
    let redis_left = aws_sdk_elasticache::Client::new(&f.config)
        .describe_snapshots()
        .snapshot_name(&redis)
        .send()
        .await
        .map(|out| out.snapshots().len())
        .unwrap_or(0);
    assert_eq!(redis_left, 0, "the redis backup is deleted");
    // The export buckets go with the backups, the DR region's too.
    let dr_exports = format!("apiary-{name}-exports-123456789012-{DR_REGION}");
    let gone = apiary_core::aws::s3_client(&dr_config)
        .head_bucket()
        .bucket(&dr_exports)
        .send()
        .await;
    assert!(
        gone.is_err_and(|e| e.as_service_error().is_some_and(|e| e.is_not_found())),
        "{dr_exports} is deleted: {receipt:#}"
    );
    assert!(kept_why(&receipt, &format!("rds:snapshot {pg}")).is_none());
    assert_eq!(
        key_state(&dr_config, &dr_key).await,
        aws_sdk_kms::types::KeyState::PendingDeletion
    );
    // The final snapshot is still kept, and with it the rds key.
    assert_eq!(
        key_state(&f.config, &rds_alias).await,
        aws_sdk_kms::types::KeyState::Enabled
    );
    let outputs = apiary_core::step::Recorder::outputs(&f.store, &name)
        .await
        .unwrap();
    assert_eq!(outputs["backup.ledger"]["deleted_by"], json!("teardown"));
}

/// A security group a person made in the deployment's VPC is not the deployment's: the
/// teardown never deletes it and fails naming it (it keeps the VPC from going); once it
/// is removed, the teardown run again finishes.
#[tokio::test]
async fn what_is_not_the_deployments_in_its_vpc_is_named_and_never_deleted() {
    let f = fixture().await;
    let name = unique_name("tearfor");
    let spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": unique_cidr(&f.config).await},
    });
    let provisioned = f
        .run("provision", &name, json!({"spec": spec}), "provision")
        .await;
    assert_eq!(
        provisioned.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        provisioned.cause
    );
    let layers = provisioned.output.unwrap()["layers"].clone();
    let vpc = layers["network"]["vpc_id"].as_str().unwrap().to_owned();
    let ec2 = aws_sdk_ec2::Client::new(&f.config);
    let bastion = ec2
        .create_security_group()
        .group_name(format!("{name}-bastion"))
        .description("made by hand")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let group_exists = |id: String| {
        let ec2 = ec2.clone();
        async move {
            ec2.describe_security_groups()
                .filters(Filter::builder().name("group-id").values(&id).build())
                .send()
                .await
                .unwrap()
                .security_groups()
                .iter()
                .any(|g| g.group_id() == Some(id.as_str()))
        }
    };

    let blocked = f
        .run(
            "teardown",
            &name,
            json!({"deployment": name, "confirm": name}),
            "blocked",
        )
        .await;
    assert_eq!(blocked.status, ExecutionStatus::Failed, "{blocked:?}");
    let cause = blocked.cause.clone().unwrap_or_default();
    assert!(
        cause.contains(&format!("security group {bastion}")) && cause.contains("not deployment"),
        "the failure names what is not ours: {cause}"
    );
    assert!(group_exists(bastion.clone()).await, "never deleted");
    assert!(
        vpc_exists(&f, &vpc).await,
        "the VPC stays while it holds it"
    );

    ec2.delete_security_group()
        .group_id(&bastion)
        .send()
        .await
        .unwrap();
    let done = f
        .run(
            "teardown",
            &name,
            json!({"deployment": name, "confirm": name}),
            "after-removal",
        )
        .await;
    assert_eq!(
        done.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        done.error,
        done.cause
    );
    assert!(!vpc_exists(&f, &vpc).await, "the VPC is gone");
}
