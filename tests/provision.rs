//! The provision workflow end to end: `statemachines/provision.asl.json` in the embedded
//! engine, every handler in-process, against the AWS emulator.

use apiary::local::summarize;
use apiary_asl::{ExecutionResult, ExecutionStatus};
use apiary_core::store::{DeploymentStatus, Store};
use apiary_e2e::{Local as Fixture, REGION, sdk_config, unique_cidr, unique_name};
use aws_sdk_ec2::types::Filter;
use serde_json::{Value, json};

async fn fixture() -> Fixture {
    Fixture::new("apiary-test-provision").await
}

async fn spec(name: &str) -> Value {
    let config = sdk_config().await;
    json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": unique_cidr(&config).await, "ingress_cidrs": ["203.0.113.0/24"]},
    })
}

/// The steps of one execution that created something, from the journal (every step
/// journals `created` when its run made a resource).
async fn created_by(store: &Store, name: &str, execution: &ExecutionResult) -> Vec<String> {
    store
        .journal(name)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.execution_id == execution.execution_arn && e.outcome == "created")
        .map(|e| format!("{} {}: {:?}", e.step, e.action, e.resource_ids))
        .collect()
}

#[tokio::test]
async fn provision_builds_every_layer_then_converges_without_changes() {
    let f = fixture().await;
    let name = unique_name("prov");
    let spec = spec(&name).await;

    let first = f.provision(&spec, "1").await;
    assert_eq!(
        first.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        first.error,
        first.cause
    );
    let output = first.output.clone().unwrap();
    for layer in [
        "keys",
        "network",
        "dns",
        "storage",
        "databases",
        "cluster",
        "workloads",
    ] {
        assert!(
            output["layers"].get(layer).is_some(),
            "layer {layer} missing from {output}"
        );
    }
    let record = f
        .store
        .get_deployment(&name)
        .await
        .unwrap()
        .expect("deployment record");
    assert_eq!(record.status, DeploymentStatus::Ready);
    assert_eq!(
        f.store.current_lock(&name).await.unwrap(),
        None,
        "lock released"
    );
    let inventory = f.store.inventory(&name).await.unwrap();

    // Read settings back through the AWS APIs.
    let config = sdk_config().await;
    let layers = &output["layers"];
    let kms = aws_sdk_kms::Client::new(&config);
    for (scope, _) in keys::SCOPES {
        let key_id = layers["keys"]["keys"][scope]["key_id"].as_str().unwrap();
        let rotation = kms
            .get_key_rotation_status()
            .key_id(key_id)
            .send()
            .await
            .unwrap();
        assert!(rotation.key_rotation_enabled(), "{scope} key rotates");
    }
    let s3_key = layers["keys"]["keys"]["s3"]["arn"].as_str().unwrap();
    let s3 = apiary_core::aws::s3_client(&config);
    for bucket in layers["storage"]["buckets"].as_object().unwrap().values() {
        let encryption = s3
            .get_bucket_encryption()
            .bucket(bucket.as_str().unwrap())
            .send()
            .await
            .unwrap();
        let rule = &encryption
            .server_side_encryption_configuration()
            .unwrap()
            .rules()[0];
        let default = rule.apply_server_side_encryption_by_default().unwrap();
        assert_eq!(
            default.kms_master_key_id(),
            Some(s3_key),
            "{bucket} uses the s3 key"
        );
    }
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc = layers["network"]["vpc_id"].as_str().unwrap();
    let subnets = ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .unwrap();
    let mut zones: Vec<_> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    zones.sort();
    zones.dedup();
    assert_eq!(zones.len(), 3);

    let eks = aws_sdk_eks::Client::new(&config);
    let cluster_name = layers["cluster"]["cluster_name"].as_str().unwrap();
    let cluster = eks
        .describe_cluster()
        .name(cluster_name)
        .send()
        .await
        .unwrap();
    let cluster = cluster.cluster().unwrap();
    let vpc_config = cluster.resources_vpc_config().unwrap();
    assert!(vpc_config.endpoint_private_access());
    assert!(!vpc_config.endpoint_public_access());
    let eks_key = layers["keys"]["keys"]["eks-secrets"]["arn"]
        .as_str()
        .unwrap();
    let encryption = &cluster.encryption_config()[0];
    assert_eq!(
        encryption.provider().and_then(|p| p.key_arn()),
        Some(eks_key)
    );

    let rds = aws_sdk_rds::Client::new(&config);
    let db_id = layers["databases"]["postgres"]["identifier"]
        .as_str()
        .unwrap();
    let db = rds
        .describe_db_instances()
        .db_instance_identifier(db_id)
        .send()
        .await
        .unwrap();
    let db = &db.db_instances()[0];
    assert_eq!(db.storage_encrypted(), Some(true));
    assert_eq!(
        db.kms_key_id(),
        layers["keys"]["keys"]["rds"]["arn"].as_str()
    );
    assert_eq!(db.deletion_protection(), Some(true));
    assert_eq!(db.max_allocated_storage(), Some(1000));

    // Second run: the same inventory, nothing created.
    let second = f.provision(&spec, "2").await;
    assert_eq!(
        second.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        second.error,
        second.cause
    );
    assert!(
        !created_by(&f.store, &name, &first).await.is_empty(),
        "the first run journals what it created"
    );
    let created = created_by(&f.store, &name, &second).await;
    assert!(
        created.is_empty(),
        "second run created something: {created:?}"
    );
    let mut again = f.store.inventory(&name).await.unwrap();
    let mut before = inventory.clone();
    again.sort_by(|a, b| a.id.cmp(&b.id));
    before.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(again, before, "the inventory did not change");

    let summary = summarize(&f.store, &name).await.unwrap();
    let text = summary.render();
    assert!(text.contains("ec2:vpc"), "{text}");
    assert!(
        text.contains("rendered"),
        "the summary says the workloads were rendered: {text}"
    );
}

#[tokio::test]
async fn a_bad_spec_is_rejected_before_anything_is_made() {
    let f = fixture().await;
    let name = unique_name("bad");
    let spec = json!({"name": name, "network": {"vpc_cidr": "10.0.0.0/8", "az_count": 7}});
    let result = f.provision(&spec, "1").await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.InvalidSpec"));
    let cause = result.cause.unwrap();
    for fragment in [
        "network.vpc_cidr: 10.0.0.0/8 is wider than /16",
        "network.az_count",
        "dns.domain: is required",
    ] {
        assert!(cause.contains(fragment), "{fragment} missing from {cause}");
    }
    assert_eq!(
        f.store.get_deployment(&name).await.unwrap(),
        None,
        "no record"
    );
    assert_eq!(f.store.current_lock(&name).await.unwrap(), None, "no lock");
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config().await);
    let vpcs = ec2
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("tag:apiary:deployment")
                .values(&name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty());
}

#[tokio::test]
async fn a_second_provision_fails_fast_while_the_first_holds_the_lock() {
    let f = fixture().await;
    let name = unique_name("locked");
    let spec = spec(&name).await;
    let now = chrono::Utc::now();
    f.store
        .acquire_lock(&name, "another-execution", chrono::Duration::hours(1), now)
        .await
        .unwrap();
    let result = f.provision(&spec, "1").await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.Conflict"));
    assert!(
        result
            .cause
            .unwrap()
            .contains("locked by another-execution")
    );
    let lock = f
        .store
        .current_lock(&name)
        .await
        .unwrap()
        .expect("still held");
    assert_eq!(
        lock.owner, "another-execution",
        "the other workflow's lock is untouched"
    );
    let kms = aws_sdk_kms::Client::new(&sdk_config().await);
    let alias = kms
        .describe_key()
        .key_id(format!("alias/apiary/{name}/rds"))
        .send()
        .await;
    assert!(alias.is_err(), "no key was created");
}

#[tokio::test]
async fn a_failed_layer_is_named_releases_the_lock_and_a_rerun_converges() {
    let f = fixture().await;
    let name = unique_name("resume");
    let spec = spec(&name).await;
    let config = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    // Someone else's VPC already uses the CIDR: the network layer must refuse it.
    let cidr = spec["network"]["vpc_cidr"].as_str().unwrap();
    let blocker = ec2.create_vpc().cidr_block(cidr).send().await.unwrap();
    let blocker = blocker.vpc().unwrap().vpc_id().unwrap().to_owned();

    let failed = f.provision(&spec, "1").await;
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("Apiary.InvalidSpec"));
    assert!(
        failed
            .cause
            .as_deref()
            .unwrap()
            .contains("network.vpc_cidr"),
        "{:?}",
        failed.cause
    );
    assert_eq!(
        f.store.current_lock(&name).await.unwrap(),
        None,
        "lock released after the failure"
    );
    let record = f.store.get_deployment(&name).await.unwrap().unwrap();
    assert_eq!(record.status, DeploymentStatus::Failed);
    let journal = f.store.journal(&name).await.unwrap();
    assert!(
        journal
            .iter()
            .any(|e| e.step == "network" && e.outcome == "failed"),
        "the journal names the layer"
    );
    let keys_before: Vec<_> = f
        .store
        .inventory(&name)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "kms:key")
        .collect();
    assert_eq!(keys_before.len(), keys::SCOPES.len(), "a key per scope");

    // Fix the cause, run again: it converges and reuses the keys made before.
    ec2.delete_vpc().vpc_id(&blocker).send().await.unwrap();
    let second = f.provision(&spec, "2").await;
    assert_eq!(
        second.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        second.error,
        second.cause
    );
    let keys_after: Vec<_> = f
        .store
        .inventory(&name)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "kms:key")
        .collect();
    assert_eq!(keys_after.len(), keys::SCOPES.len(), "no duplicate keys");
    let created = created_by(&f.store, &name, &second).await;
    assert!(
        !created.iter().any(|c| c.starts_with("keys ")),
        "the keys step created nothing on the second run: {created:?}"
    );
}

/// Holds the lock as another workflow would, then runs provision with `queue: true`
/// (what the launch resource asks for); `release_after` lock waits (LockSleep states), the other
/// workflow lets go (None: never).
async fn queued_run(
    f: &Fixture,
    name: &str,
    release_after: Option<usize>,
) -> (ExecutionResult, usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    f.store
        .acquire_lock(
            name,
            "another-execution",
            chrono::Duration::hours(3),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let spec = spec(name).await;
    let machine = f.env.load(&f.root, "provision").expect("provision loads");
    let waits = Arc::new(AtomicUsize::new(0));
    let seen = waits.clone();
    let store = f.store.clone();
    let deployment = name.to_owned();
    let listener: apiary_asl::EventListener = Arc::new(move |event: &apiary_asl::HistoryEvent| {
        let lock_wait = event.event_type == "WaitStateEntered"
            && event
                .details
                .as_ref()
                .is_some_and(|(_, d)| d["name"] == "LockSleep");
        if !lock_wait {
            return;
        }
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(n) == release_after {
            // The listener is synchronous; the engine waits for it, so the lock is gone
            // before the next attempt.
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(store.release_lock(&deployment, "another-execution"))
                    .expect("release the other workflow's lock")
            });
        }
    });
    let result = f
        .env
        .run(
            &machine,
            "provision",
            name,
            json!({"spec": spec, "queue": true}),
            format!("{name}-queued"),
            Some(listener),
        )
        .await;
    let waits = waits.load(Ordering::SeqCst);
    (result, waits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_provision_waits_for_the_lock_then_runs() {
    let f = fixture().await;
    let name = unique_name("queued");
    let (result, waits) = queued_run(&f, &name, Some(2)).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        result.error,
        result.cause
    );
    assert_eq!(waits, 2, "it waited twice, then took the lock");
    assert_eq!(
        f.store.current_lock(&name).await.unwrap(),
        None,
        "and released it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_provision_gives_up_after_two_hours_without_touching_anything() {
    let f = fixture().await;
    let name = unique_name("queuedout");
    let (result, waits) = queued_run(&f, &name, None).await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.Timeout"));
    let cause = result.cause.unwrap_or_default();
    assert!(
        cause.contains("2 hours") && cause.contains("locked by another-execution"),
        "{cause}"
    );
    // The generated lock wait: 15 rounds growing from a minute to ten, two hours in all.
    assert_eq!(waits, apiary_workflows::provision::LOCK_WAIT.len());
    assert_eq!(
        apiary_workflows::provision::LOCK_WAIT.iter().sum::<u64>(),
        2 * 3600
    );
    let lock = f
        .store
        .current_lock(&name)
        .await
        .unwrap()
        .expect("still held");
    assert_eq!(lock.owner, "another-execution");
    let kms = aws_sdk_kms::Client::new(&sdk_config().await);
    let alias = kms
        .describe_key()
        .key_id(format!("alias/apiary/{name}/rds"))
        .send()
        .await;
    assert!(alias.is_err(), "no key was created");
}

/// A run that times out while it holds the lock skips every Catch (as on AWS); the local
/// runner then cleans up as the stack's execution-status rule does: the lock is released
/// and the end is journaled, so the next run is not blocked.
#[tokio::test]
async fn a_timed_out_run_releases_its_lock_and_records_its_end() {
    let f = fixture().await;
    let name = unique_name("timedout");
    let spec = spec(&name).await;
    // Provision with a step that outlasts the execution's timeout right after the lock.
    let text = std::fs::read_to_string(f.root.join("statemachines/provision.asl.json")).unwrap();
    let mut definition: Value = serde_json::from_str(&text).unwrap();
    definition["TimeoutSeconds"] = json!(600);
    definition["States"]["Keys"] = json!({"Type": "Wait", "Seconds": 3600, "Next": "Network"});
    let machine = f
        .env
        .load_definition(&definition.to_string(), "provision with a slow step")
        .unwrap();
    let result = f
        .env
        .run(
            &machine,
            "provision",
            &name,
            json!({"spec": spec}),
            format!("{name}-slow"),
            None,
        )
        .await;
    assert_eq!(
        result.status,
        ExecutionStatus::TimedOut,
        "{:?}",
        result.error
    );
    assert_eq!(
        f.store.current_lock(&name).await.unwrap(),
        None,
        "the timed-out run's lock was released"
    );
    let journal = f.store.journal(&name).await.unwrap();
    assert!(
        journal
            .iter()
            .any(|e| e.execution_id == result.execution_arn && e.outcome == "timed-out"),
        "the end is journaled: {journal:?}"
    );
    let record = f.store.get_deployment(&name).await.unwrap().unwrap();
    assert_eq!(record.status, DeploymentStatus::Failed);

    // The next run takes the lock at once and converges.
    let next = f.provision(&spec, "after-timeout").await;
    assert_eq!(
        next.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        next.error,
        next.cause
    );
}

/// Every spec field that converges in place, changed together on a built deployment:
/// the next provision succeeds, and each field is read back through the AWS API (each
/// assertion names its field). What the emulator cannot show is covered by unit tests
/// with recorded responses, as the README's spec table says: Redis's replica and
/// failover (the emulator keeps one node), all of DocumentDB (not emulated), the keys'
/// rotation period (stored without one), the certificate and serving checks.
#[tokio::test]
async fn every_field_that_converges_in_place_is_read_back_after_the_next_provision() {
    const DR_REGION: &str = "us-east-1";
    let f = fixture().await;
    let name = unique_name("conv");
    let mut spec = spec(&name).await;
    let first = f.provision(&spec, "1").await;
    assert_eq!(first.status, ExecutionStatus::Succeeded, "{first:?}");

    spec["size"] = json!("medium");
    spec["network"]["nat_mode"] = json!("per-az");
    spec["cluster"] = json!({"public_endpoint": true, "public_access_cidrs": ["192.0.2.0/24"]});
    spec["databases"] = json!({"multi_az": true});
    spec["storage"] = json!({"retention_days": 90});
    spec["backup"] = json!({"retention_days": 14, "dr_region": DR_REGION});
    let second = f.provision(&spec, "2").await;
    assert_eq!(second.status, ExecutionStatus::Succeeded, "{second:?}");
    let layers = &second.output.as_ref().expect("output")["layers"];
    let config = sdk_config().await;

    // size: the node group's range is the medium preset's.
    let eks = aws_sdk_eks::Client::new(&config);
    let cluster_name = layers["cluster"]["cluster_name"].as_str().unwrap();
    let nodegroup = eks
        .describe_nodegroup()
        .cluster_name(cluster_name)
        .nodegroup_name(layers["cluster"]["nodegroup_name"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let scaling = nodegroup.nodegroup().unwrap().scaling_config().unwrap();
    assert_eq!(
        (scaling.min_size(), scaling.max_size()),
        (Some(10), Some(50)),
        "size"
    );

    // network.nat_mode: one NAT gateway per zone, and each private subnet's default
    // route through the one in its own zone.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc = layers["network"]["vpc_id"].as_str().unwrap();
    let in_vpc = || Filter::builder().name("vpc-id").values(vpc).build();
    let gateways: Vec<_> = ec2
        .describe_nat_gateways()
        .filter(in_vpc())
        .send()
        .await
        .unwrap()
        .nat_gateways()
        .iter()
        .filter(|g| g.state().map(|s| s.as_str()) == Some("available"))
        .cloned()
        .collect();
    assert_eq!(gateways.len(), 3, "network.nat_mode: {gateways:?}");
    let subnets = ec2
        .describe_subnets()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    let zone_of = |subnet: &str| {
        subnets
            .subnets()
            .iter()
            .find(|s| s.subnet_id() == Some(subnet))
            .and_then(|s| s.availability_zone())
            .map(str::to_owned)
    };
    let tables = ec2
        .describe_route_tables()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    for private in layers["network"]["private_subnets"].as_array().unwrap() {
        let subnet = private["id"].as_str().unwrap();
        let table = tables
            .route_tables()
            .iter()
            .find(|t| {
                t.associations()
                    .iter()
                    .any(|a| a.subnet_id() == Some(subnet))
            })
            .unwrap_or_else(|| panic!("network.nat_mode: {subnet} has a route table"));
        let nat = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .and_then(|r| r.nat_gateway_id())
            .unwrap_or_else(|| panic!("network.nat_mode: {subnet} routes through a NAT"));
        let gateway = gateways
            .iter()
            .find(|g| g.nat_gateway_id() == Some(nat))
            .expect("network.nat_mode: the route names an available gateway");
        assert_eq!(
            zone_of(gateway.subnet_id().unwrap()),
            zone_of(subnet),
            "network.nat_mode: {subnet} leaves through its own zone's gateway"
        );
    }

    // cluster.public_endpoint and cluster.public_access_cidrs.
    let cluster = eks
        .describe_cluster()
        .name(cluster_name)
        .send()
        .await
        .unwrap();
    let vpc_config = cluster.cluster().unwrap().resources_vpc_config().unwrap();
    assert!(
        vpc_config.endpoint_public_access(),
        "cluster.public_endpoint"
    );
    assert_eq!(
        vpc_config.public_access_cidrs(),
        ["192.0.2.0/24"],
        "cluster.public_access_cidrs"
    );

    // databases.multi_az and backup.retention_days on PostgreSQL; the retention on Redis.
    let rds = aws_sdk_rds::Client::new(&config);
    let db = rds
        .describe_db_instances()
        .db_instance_identifier(
            layers["databases"]["postgres"]["identifier"]
                .as_str()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let db = &db.db_instances()[0];
    assert_eq!(db.multi_az(), Some(true), "databases.multi_az");
    assert_eq!(
        db.backup_retention_period(),
        Some(14),
        "backup.retention_days"
    );
    let group = aws_sdk_elasticache::Client::new(&config)
        .describe_replication_groups()
        .replication_group_id(layers["databases"]["redis"]["identifier"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        group.replication_groups()[0].snapshot_retention_limit(),
        Some(14),
        "backup.retention_days (Redis)"
    );

    // storage.retention_days: the logs bucket's objects expire after 90 days.
    let s3 = apiary_core::aws::s3_client(&config);
    let logs = layers["storage"]["buckets"]["logs"].as_str().unwrap();
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(logs)
        .send()
        .await
        .unwrap();
    assert!(
        lifecycle
            .rules()
            .iter()
            .any(|r| r.expiration().and_then(|e| e.days()) == Some(90)),
        "storage.retention_days: {lifecycle:?}"
    );

    // backup.dr_region: the Redis exports replicate to a bucket in the DR region.
    let exports = &layers["storage"]["exports"];
    assert_eq!(exports["dr_region"], json!(DR_REGION), "backup.dr_region");
    let replication = s3
        .get_bucket_replication()
        .bucket(exports["primary"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        replication.replication_configuration().unwrap().rules()[0]
            .destination()
            .map(|d| d.bucket().to_owned()),
        Some(format!("arn:aws:s3:::{}", exports["dr"].as_str().unwrap())),
        "backup.dr_region"
    );
}

/// The fields that cannot change in place, changed on a built deployment: each
/// provision fails with `Apiary.InvalidSpec` naming the field, before the lock, and the
/// record and the deployment's VPC stay as they were.
#[tokio::test]
async fn every_field_that_cannot_change_in_place_is_refused_by_name() {
    let f = fixture().await;
    let name = unique_name("refuse");
    let spec = spec(&name).await;
    let first = f.provision(&spec, "1").await;
    assert_eq!(first.status, ExecutionStatus::Succeeded, "{first:?}");
    let recorded = f.store.get_deployment(&name).await.unwrap().unwrap();
    let config = sdk_config().await;
    let other_cidr = unique_cidr(&config).await;
    for (field, change) in [
        ("region", json!({"region": "eu-west-1"})),
        (
            "network.vpc_cidr",
            json!({"network": {"vpc_cidr": other_cidr}}),
        ),
        ("network.az_count", json!({"network": {"az_count": 2}})),
        (
            "dns.domain",
            json!({"dns": {"domain": format!("other-{name}.example.com")}}),
        ),
        ("cluster.version", json!({"cluster": {"version": "1.34"}})),
        (
            "workloads.ingestion_image",
            json!({"workloads": {"ingestion_image": "public.ecr.aws/honeyhive/ingestion:9.9.9"}}),
        ),
        ("databases.redis", json!({"databases": {"redis": false}})),
    ] {
        let mut changed = spec.clone();
        for (key, value) in change.as_object().unwrap() {
            match (changed.get_mut(key), value) {
                (Some(Value::Object(into)), Value::Object(from)) => {
                    into.extend(from.clone());
                }
                _ => changed[key] = value.clone(),
            }
        }
        let result = f.provision(&changed, &format!("refused-{field}")).await;
        assert_eq!(
            result.status,
            ExecutionStatus::Failed,
            "{field}: {result:?}"
        );
        assert_eq!(
            result.error.as_deref(),
            Some("Apiary.InvalidSpec"),
            "{field}"
        );
        let cause = result.cause.unwrap_or_default();
        assert!(cause.contains(field), "{field} named in {cause}");
        let now = f.store.get_deployment(&name).await.unwrap().unwrap();
        assert_eq!(now.spec, recorded.spec, "{field}: the record is unchanged");
        assert_eq!(
            f.store.current_lock(&name).await.unwrap(),
            None,
            "{field}: no lock"
        );
    }
}
