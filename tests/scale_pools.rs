//! The scale-pools workflow end to end: provision a deployment, then run
//! `statemachines/scale-pools.asl.json` in the embedded engine against the emulator, and
//! read back the record, the system node group (moto implements UpdateNodegroupConfig)
//! and the NodePool a later provision renders.
//!
//! Locally there is no Kubernetes API: the NodePool is not applied (the step says "not
//! verified locally") but the next provision renders it from the record. What the
//! emulator cannot show (a node group UPDATING, ResourceInUseException, a NodePool read
//! back) is unit-tested with mocks in functions/cluster and functions/workloads.

use apiary_asl::{ExecutionResult, ExecutionStatus};
use apiary_e2e::Local as Fixture;
use serde_json::{Value, json};

const TABLE: &str = "apiary-test-scale-pools";

async fn fixture() -> Fixture {
    Fixture::new(TABLE).await
}

async fn provisioned(f: &Fixture, prefix: &str) -> (String, Value) {
    f.provisioned(prefix, json!({"databases": {"documentdb": false}}))
        .await
}

async fn scale(f: &Fixture, name: &str, input: Value, run: &str) -> ExecutionResult {
    let mut input = input;
    input["deployment"] = json!(name);
    f.run("scale-pools", name, input, run).await
}

/// The system node group's (min, desired, max) as EKS (the emulator) reports it.
async fn nodegroup_sizes(f: &Fixture, name: &str) -> (i32, i32, i32) {
    let group = aws_sdk_eks::Client::new(&f.config)
        .describe_nodegroup()
        .cluster_name(format!("apiary-{name}-eks"))
        .nodegroup_name(format!("apiary-{name}-system"))
        .send()
        .await
        .expect("DescribeNodegroup");
    let scaling = group
        .nodegroup()
        .and_then(|g| g.scaling_config())
        .expect("a scaling config");
    (
        scaling.min_size().unwrap(),
        scaling.desired_size().unwrap(),
        scaling.max_size().unwrap(),
    )
}

/// The actions journaled by one execution (`<name>-<run>`).
async fn actions_of(f: &Fixture, name: &str, run: &str) -> Vec<String> {
    let execution = format!("{name}-{run}");
    f.store
        .journal(name)
        .await
        .expect("journal")
        .into_iter()
        .filter(|e| e.execution_id.ends_with(&execution))
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_beyond_the_preset_is_refused() {
    let f = fixture().await;
    let (name, _) = provisioned(&f, "spdry").await;
    let before = f.record(&name).await.spec;
    let sizes = nodegroup_sizes(&f, &name).await;

    let done = scale(
        &f,
        &name,
        json!({"pool": "system", "min": 2, "max": 8, "desired": 2, "dry_run": true}),
        "dry",
    )
    .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let result = &done.output.expect("output")["result"];
    assert!(
        result.get("nodepool").is_none() && result.get("nodegroup").is_none(),
        "no apply step ran: {result}"
    );
    let plan = &result["plan"];
    assert_eq!(plan["dry_run"], json!(true));
    assert_eq!(plan["before"], json!({"min": 3, "max": 10, "desired": 3}));
    assert_eq!(plan["after"], json!({"min": 2, "max": 8, "desired": 2}));
    assert_eq!(
        f.record(&name).await.spec,
        before,
        "the record is unchanged"
    );
    assert_eq!(nodegroup_sizes(&f, &name).await, sizes, "the group too");
    let actions = actions_of(&f, &name, "dry").await;
    assert!(actions.iter().any(|a| a == "scale-plan"), "{actions:?}");
    for never in ["scale-record", "scale-nodepool", "scale-nodegroup"] {
        assert!(
            !actions.iter().any(|a| a == never),
            "a dry run runs no {never}: {actions:?}"
        );
    }

    // Beyond the small preset's 64 vCPUs: refused naming the field, before any change.
    let done = scale(&f, &name, json!({"pool": "ingestion", "cpu": 96}), "beyond").await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("Apiary.InvalidInput"));
    let cause = done.cause.unwrap_or_default();
    assert!(
        cause.contains("`cpu`") && cause.contains("allow_beyond_preset"),
        "{cause}"
    );
    assert_eq!(f.record(&name).await.spec, before);
    let actions = actions_of(&f, &name, "beyond").await;
    assert!(!actions.iter().any(|a| a == "scale-record"), "{actions:?}");

    // A field of the other pool: refused by validate-input, before the lock.
    let done = scale(&f, &name, json!({"pool": "system", "cpu": 8}), "foreign").await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("Apiary.InvalidInput"));
    assert!(done.cause.unwrap_or_default().contains("`cpu`"));

    // A torn-down deployment has no pools: refused before its record is touched.
    f.store
        .set_status(
            &name,
            apiary_core::store::DeploymentStatus::Deleted,
            chrono::Utc::now(),
        )
        .await
        .expect("UpdateItem");
    let done = scale(&f, &name, json!({"pool": "system", "max": 8}), "deleted").await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert!(
        done.cause
            .as_deref()
            .unwrap_or_default()
            .contains("DELETED"),
        "{done:?}"
    );
    assert_eq!(
        f.record(&name).await.spec.cluster.pools,
        before.cluster.pools
    );
}

#[tokio::test]
async fn scaled_pools_are_recorded_applied_and_kept_by_a_later_provision() {
    let f = fixture().await;
    let (name, spec) = provisioned(&f, "spkeep").await;

    let done = scale(
        &f,
        &name,
        json!({"pool": "system", "min": 4, "max": 12, "desired": 5, "allow_beyond_preset": true}),
        "system",
    )
    .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let result = &done.output.as_ref().expect("output")["result"];
    assert_eq!(
        result["nodegroup"]["scaling"]["target"],
        json!({"min": 4, "max": 12, "desired": 5}),
        "{result}"
    );
    assert_eq!(result["nodepool"]["skipped"], json!(true), "{result}");
    let recorded = f.record(&name).await.spec.cluster.pools;
    assert_eq!(
        (
            recorded.system.min,
            recorded.system.max,
            recorded.system.desired
        ),
        (Some(4), Some(12), Some(5))
    );
    assert_eq!(nodegroup_sizes(&f, &name).await, (4, 5, 12));

    let done = scale(
        &f,
        &name,
        json!({"pool": "ingestion", "cpu": 96, "memory_gib": 384, "disruption_budget": "5%",
               "allow_beyond_preset": true}),
        "ingestion",
    )
    .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let result = &done.output.expect("output")["result"];
    assert_eq!(result["nodepool"]["verified"], json!(false), "{result}");
    assert!(
        result["nodepool"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not verified locally"),
        "{result}"
    );
    assert_eq!(result["nodegroup"]["scaling"]["skipped"], json!(true));
    let plan = &result["plan"];
    assert_eq!(plan["before"]["cpu"], json!(64));
    assert_eq!(plan["after"]["cpu"], json!(96));
    assert_eq!(
        f.record(&name).await.spec.cluster.pools.ingestion.cpu,
        Some(96)
    );
    let journal = f.store.journal(&name).await.unwrap();
    let recorded = journal
        .iter()
        .find(|e| e.action == "scale-record" && e.execution_id.ends_with("-ingestion"))
        .expect("the record step is journaled");
    let detail = recorded.detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("before") && detail.contains("\"cpu\":96"),
        "{detail}"
    );
    // A rerun finds everything recorded and applied, and changes nothing.
    let again = scale(
        &f,
        &name,
        json!({"pool": "ingestion", "cpu": 96, "memory_gib": 384, "disruption_budget": "5%",
               "allow_beyond_preset": true}),
        "again",
    )
    .await;
    assert_eq!(again.status, ExecutionStatus::Succeeded, "{again:?}");
    assert_eq!(
        again.output.unwrap()["result"]["plan"]["changes"],
        json!(false)
    );

    // A provision from the stack's parameters (no pools) keeps the scaled pools.
    let done = f.provision(&spec, "after-scale").await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let pools = f.record(&name).await.spec.cluster.pools;
    assert_eq!(pools.ingestion.cpu, Some(96));
    assert_eq!(pools.system.max, Some(12));
    let pool = f.rendered(&name, |file| file.contains("nodepool"));
    assert_eq!(
        pool["spec"]["limits"],
        json!({"cpu": "96", "memory": "384Gi"})
    );
    assert_eq!(
        pool["spec"]["disruption"]["budgets"],
        json!([{"nodes": "5%"}])
    );
    assert_eq!(
        nodegroup_sizes(&f, &name).await,
        (4, 5, 12),
        "never lowered"
    );

    // A provision that sets the pools differently is refused naming the field.
    let mut contradicting = spec.clone();
    contradicting["cluster"] = json!({"pools": {"ingestion": {"cpu": 64}}});
    let done = f.provision(&contradicting, "contradicting").await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    let cause = done.cause.unwrap_or_default();
    assert!(
        cause.contains("cluster.pools.ingestion.cpu") && cause.contains("scale-pools"),
        "{cause}"
    );
    assert_eq!(
        f.record(&name).await.spec.cluster.pools.ingestion.cpu,
        Some(96)
    );
}
