//! The upgrade workflow end to end: provision a deployment, then run
//! `statemachines/upgrade.asl.json` in the embedded engine against the emulator, and read
//! back the record, the state table's rollback slot and the manifests the image step
//! renders.
//!
//! Locally there is no Kubernetes API and the emulator implements no EKS upgrade API:
//! the rollout is "not verified locally" and the cluster steps say "not emulated". The
//! rollback path runs in `shared/workflows/tests/upgrade.rs` (scripted functions) and the
//! EKS flow (update sent once, UPDATING, a failed update, insights in ERROR, add-ons) in
//! `functions/cluster` with mocked clients.

use apiary_asl::{ExecutionResult, ExecutionStatus};
use apiary_e2e::Local as Fixture;
use serde_json::{Value, json};

const TABLE: &str = "apiary-test-upgrade";
const NEW_IMAGE: &str = "public.ecr.aws/honeyhive/ingestion:1.1.0";

async fn upgrade(f: &Fixture, name: &str, input: Value, run: &str) -> ExecutionResult {
    let mut input = input;
    input["deployment"] = json!(name);
    f.run("upgrade", name, input, run).await
}

/// The image of the ingestion Deployment the last apply rendered for `name`.
fn rendered_image(f: &Fixture, name: &str) -> String {
    let deployment = f.rendered(name, |file| {
        file.contains("deployment") && !file.contains("disruption")
    });
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_else(|| panic!("no image in {deployment}"))
        .to_owned()
}

fn next_minor(version: &str) -> String {
    let minor: u32 = version.split_once('.').unwrap().1.parse().unwrap();
    format!("1.{}", minor + 1)
}

#[tokio::test]
async fn an_image_is_recorded_rendered_and_kept_by_later_provisions() {
    let f = Fixture::new(TABLE).await;
    let (name, spec) = f
        .provisioned("upimg", json!({"databases": {"documentdb": false}}))
        .await;
    let before = f.record(&name).await.spec.workloads.ingestion_image;
    assert_ne!(before, NEW_IMAGE);

    let done = upgrade(&f, &name, json!({"image": NEW_IMAGE}), "image").await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let output = done.output.expect("output");
    assert_eq!(output["result"]["plan"]["kind"], "image");
    assert_eq!(output["result"]["plan"]["before"], json!(before));
    assert_eq!(output["result"]["plan"]["changes"], true);
    assert_eq!(
        f.record(&name).await.spec.workloads.ingestion_image,
        NEW_IMAGE
    );
    assert_eq!(
        rendered_image(&f, &name),
        NEW_IMAGE,
        "the step applied the record"
    );
    let slot = f
        .store
        .layer_outputs(&name)
        .await
        .unwrap()
        .remove(apiary_core::inputs::upgrade::IMAGE_SLOT)
        .expect("the rollback slot");
    assert_eq!(slot["from"], json!(before));
    assert_eq!(slot["to"], NEW_IMAGE);
    assert!(
        slot["execution_id"].as_str().unwrap().ends_with("-image"),
        "{slot}"
    );

    // Again: nothing to record, the run still converges (and the slot still names the
    // first run, which alone may roll back).
    let again = upgrade(&f, &name, json!({"image": NEW_IMAGE}), "again").await;
    assert_eq!(again.status, ExecutionStatus::Succeeded, "{again:?}");
    assert_eq!(again.output.unwrap()["result"]["plan"]["changes"], false);

    // A provision (a stack update) with the old image is refused by name: the record
    // is the source of truth and the upgrade workflow owns the image.
    let refused = f.provision(&spec, "old-image").await;
    assert_eq!(refused.status, ExecutionStatus::Failed, "{refused:?}");
    assert_eq!(refused.error.as_deref(), Some("Apiary.InvalidSpec"));
    let cause = refused.cause.unwrap_or_default();
    assert!(
        cause.contains("workloads.ingestion_image") && cause.contains("upgrade"),
        "{cause}"
    );
    assert_eq!(
        f.record(&name).await.spec.workloads.ingestion_image,
        NEW_IMAGE
    );
    // With the recorded image, provision converges and keeps it.
    let mut current = spec.clone();
    current["workloads"] = json!({"ingestion_image": NEW_IMAGE});
    let kept = f.provision(&current, "new-image").await;
    assert_eq!(kept.status, ExecutionStatus::Succeeded, "{kept:?}");
    assert_eq!(rendered_image(&f, &name), NEW_IMAGE);
}

#[tokio::test]
async fn kubernetes_moves_one_minor_version_after_a_fresh_backup() {
    let f = Fixture::new(TABLE).await;
    // Redis off: the emulator's ElastiCache snapshots carry no creation time, so the gate
    // could not tell their age (unit-tested in apiary_core::inputs::upgrade).
    let (name, _) = f
        .provisioned(
            "upver",
            json!({"databases": {"documentdb": false, "redis": false}}),
        )
        .await;
    let version = f.record(&name).await.spec.cluster.version;
    let next = next_minor(&version);
    let status = || async { f.record(&name).await.status };
    let serving = status().await;

    // No backup yet: refused before anything changes.
    let gated = upgrade(&f, &name, json!({"kubernetes_version": next}), "gated").await;
    assert_eq!(gated.status, ExecutionStatus::Failed, "{gated:?}");
    assert_eq!(gated.error.as_deref(), Some("Apiary.Conflict"));
    assert!(
        gated
            .cause
            .as_deref()
            .unwrap_or_default()
            .contains("no backup is recorded"),
        "{gated:?}"
    );
    assert_eq!(f.record(&name).await.spec.cluster.version, version);
    assert_eq!(
        status().await,
        serving,
        "a refusal changed nothing, so the deployment is not marked FAILED"
    );

    // Skipping a version is refused by name, backup or not.
    let skip = next_minor(&next);
    let skipped = upgrade(&f, &name, json!({"kubernetes_version": skip}), "skip").await;
    assert_eq!(skipped.status, ExecutionStatus::Failed);
    assert_eq!(skipped.error.as_deref(), Some("Apiary.InvalidInput"));
    assert!(
        skipped
            .cause
            .as_deref()
            .unwrap_or_default()
            .contains("kubernetes_version"),
        "{skipped:?}"
    );

    let backup = f
        .run("backup", &name, json!({"deployment": name}), "backup")
        .await;
    assert_eq!(backup.status, ExecutionStatus::Succeeded, "{backup:?}");

    let done = upgrade(&f, &name, json!({"kubernetes_version": next}), "version").await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let result = &done.output.expect("output")["result"];
    assert_eq!(result["plan"]["kind"], "kubernetes_version");
    assert_eq!(result["plan"]["after"], json!(next));
    assert!(
        result["control_plane"]["upgrade"]["not_emulated"].is_string(),
        "the emulator implements no UpdateClusterVersion, and the step says so: {result}"
    );
    assert!(
        result.get("image").is_none(),
        "the pods are not touched: {result}"
    );
    assert_eq!(f.record(&name).await.spec.cluster.version, next);
    assert_eq!(status().await, serving);
}

#[tokio::test]
async fn a_bad_input_is_refused_before_the_lock() {
    let f = Fixture::new(TABLE).await;
    let (name, _) = f
        .provisioned("upbad", json!({"databases": {"documentdb": false}}))
        .await;
    for (n, (input, names)) in [
        (json!({}), "nothing to upgrade"),
        (
            json!({"image": NEW_IMAGE, "kubernetes_version": "1.40"}),
            "not both",
        ),
        (json!({"image": "example.com/ingestion:latest"}), "`image`"),
        (json!({"version": "1.34"}), "`version`"),
    ]
    .into_iter()
    .enumerate()
    {
        let done = upgrade(&f, &name, input.clone(), &format!("bad-{n}")).await;
        assert_eq!(done.status, ExecutionStatus::Failed, "{input}");
        assert_eq!(
            done.error.as_deref(),
            Some("Apiary.InvalidInput"),
            "{input}"
        );
        assert!(
            done.cause.as_deref().unwrap_or_default().contains(names),
            "{input}: {done:?}"
        );
    }
    assert!(
        f.store.current_lock(&name).await.unwrap().is_none(),
        "no lock was taken"
    );
}

/// The rollback's record step against the state table, through the control function as
/// the state machine calls it: only the execution that changed the image puts the
/// previous one back, a retry finds it done, and another run has nothing to put back.
#[tokio::test]
async fn only_the_run_that_changed_the_image_puts_the_previous_one_back() {
    let f = Fixture::new(TABLE).await;
    let (name, _) = f
        .provisioned("uprev", json!({"databases": {"documentdb": false}}))
        .await;
    let before = f.record(&name).await.spec.workloads.ingestion_image;
    let control = f.env.registry(&name).get("control").expect("control");
    let call = |action: &str, execution: &str| {
        json!({
            "action": action,
            "deployment": name,
            "execution_id": format!("{name}-{execution}"),
            "options": {"workflow": "upgrade", "input": {"image": NEW_IMAGE}}
        })
    };
    let invoke = |event: Value| {
        let control = control.clone();
        async move {
            control
                .invoke(event.clone())
                .await
                .unwrap_or_else(|e| panic!("{event}: {e:?}"))
        }
    };

    invoke(call("lock", "first")).await;
    let recorded = invoke(call("upgrade-record", "first")).await;
    assert_eq!(recorded["changes"], true, "{recorded}");
    assert_eq!(
        f.record(&name).await.spec.workloads.ingestion_image,
        NEW_IMAGE
    );
    let reverted = invoke(call("upgrade-revert", "first")).await;
    assert_eq!(reverted["changes"], true, "{reverted}");
    assert_eq!(reverted["after"], json!(before));
    assert_eq!(f.record(&name).await.spec.workloads.ingestion_image, before);
    let retried = invoke(call("upgrade-revert", "first")).await;
    assert_eq!(retried["changes"], true, "a retry finds it done: {retried}");
    assert_eq!(f.record(&name).await.spec.workloads.ingestion_image, before);
    invoke(call("unlock", "first")).await;

    // Another run that found the image recorded changed nothing, so it puts nothing back.
    invoke(call("lock", "second")).await;
    invoke(call("upgrade-record", "second")).await;
    invoke(call("unlock", "second")).await;
    invoke(call("lock", "third")).await;
    invoke(call("upgrade-record", "third")).await;
    let nothing = invoke(call("upgrade-revert", "third")).await;
    assert_eq!(nothing["changes"], false, "{nothing}");
    assert!(
        nothing["detail"]
            .as_str()
            .unwrap()
            .contains("nothing to roll back"),
        "{nothing}"
    );
    assert_eq!(
        f.record(&name).await.spec.workloads.ingestion_image,
        NEW_IMAGE
    );

    // A refusal leaves the status; a failed rollout marks FAILED, and the next upgrade
    // that succeeds clears it.
    let status = || async { f.record(&name).await.status };
    let serving = status().await;
    let fail = |error: &str| {
        let mut event = call("fail", "third");
        event["options"]["failure"] = json!({"Error": error, "Cause": "scripted"});
        event
    };
    invoke(fail("Apiary.Conflict")).await;
    assert_eq!(status().await, serving);
    invoke(fail("Apiary.Fatal")).await;
    assert_eq!(status().await.as_str(), "FAILED");
    invoke(call("finish", "third")).await;
    assert_eq!(status().await, serving);
    invoke(call("unlock", "third")).await;
}
