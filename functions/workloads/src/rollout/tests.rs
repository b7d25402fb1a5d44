use apiary_core::ErrorName;
use serde_json::{Value, json};

use super::*;
use crate::fake_api::{self, Reply};
use crate::manifests;
use crate::test_support::context;

const IMAGE: &str = "public.ecr.aws/honeyhive/ingestion:1.0.0";

/// The Deployment as the API server returns it: what we applied, plus its status.
fn deployment(generation: i64, status: Value) -> Deployment {
    let objects = manifests::build(&context()).unwrap();
    let mut body = objects
        .iter()
        .find(|m| m.kind == "Deployment")
        .unwrap()
        .body
        .clone();
    body["metadata"]["generation"] = json!(generation);
    body["spec"]["replicas"] = json!(2);
    body["status"] = status;
    serde_json::from_value(body).unwrap()
}

fn config_hash() -> Value {
    let d = deployment(1, json!({}));
    json!(d.spec.template.metadata.unwrap().annotations.unwrap()[manifests::CONFIG_HASH_ANNOTATION])
}

fn pod(name: &str, image: &str, container_status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "honeyhive",
                     "labels": {"app.kubernetes.io/name": "ingestion"},
                     "annotations": {manifests::CONFIG_HASH_ANNOTATION: config_hash()}},
        "spec": {"containers": [{"name": "ingestion", "image": image}]},
        "status": {"phase": "Pending", "containerStatuses": [container_status]}
    }))
    .unwrap()
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({"name": "ingestion", "image": IMAGE, "imageID": "", "ready": false, "restartCount": 0,
           "state": {"waiting": {"reason": reason, "message": message}}})
}

fn running() -> Value {
    json!({"name": "ingestion", "image": IMAGE, "imageID": "sha256:1", "ready": true,
           "restartCount": 0, "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}}})
}

#[test]
fn not_ready_until_every_replica_is_updated_and_available() {
    let midway = deployment(
        2,
        json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "readyReplicas": 2, "availableReplicas": 2
        }),
    );
    let pods = [pod(
        "ingestion-new-1",
        IMAGE,
        waiting("ContainerCreating", ""),
    )];
    let rollout = evaluate(&midway, &pods, 2).unwrap();
    assert!(!rollout.ready);
    assert_eq!(
        (
            rollout.desired,
            rollout.updated,
            rollout.available,
            rollout.replicas
        ),
        (2, 1, 2, 3)
    );
    assert!(
        rollout
            .detail
            .contains("1 of 2 replicas updated, 2 available, 2 old replicas left"),
        "{}",
        rollout.detail
    );
    assert_eq!(
        rollout.waiting,
        ["pod ingestion-new-1 container ingestion: ContainerCreating"]
    );

    // Updated but not yet available (readiness probe not passing) is not ready either.
    let unavailable = deployment(
        2,
        json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1
        }),
    );
    assert!(!evaluate(&unavailable, &[], 2).unwrap().ready);

    // The controller has not seen the new spec yet: old counts mean nothing.
    let stale = deployment(
        3,
        json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2
        }),
    );
    let rollout = evaluate(&stale, &[], 2).unwrap();
    assert!(!rollout.ready);
    assert!(
        rollout.detail.contains("has not seen the latest change"),
        "{}",
        rollout.detail
    );

    let done = deployment(
        2,
        json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2
        }),
    );
    let pods = [pod("a", IMAGE, running()), pod("b", IMAGE, running())];
    let rollout = evaluate(&done, &pods, 2).unwrap();
    assert!(rollout.ready, "{rollout:?}");
    assert_eq!(
        (rollout.desired, rollout.updated, rollout.available),
        (2, 2, 2)
    );
    assert!(rollout.waiting.is_empty());
}

#[test]
fn desired_is_at_least_the_autoscaler_minimum() {
    // A new Deployment starts at one replica until the autoscaler raises it.
    let mut one = deployment(
        1,
        json!({
            "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1
        }),
    );
    one.spec.replicas = None;
    let rollout = evaluate(&one, &[], 2).unwrap();
    assert!(!rollout.ready);
    assert_eq!(rollout.desired, 2);
}

#[test]
fn an_image_that_cannot_be_pulled_fails_naming_the_reason() {
    let d = deployment(
        1,
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
    );
    let pods = [
        pod("ingestion-1", IMAGE, running()),
        pod(
            "ingestion-2",
            IMAGE,
            waiting(
                "ImagePullBackOff",
                "Back-off pulling image \"public.ecr.aws/honeyhive/ingestion:1.0.0\"",
            ),
        ),
    ];
    let err = evaluate(&d, &pods, 2).unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "Deployment honeyhive/ingestion cannot roll out: pod ingestion-2 container ingestion is \
         ImagePullBackOff: Back-off pulling image \"public.ecr.aws/honeyhive/ingestion:1.0.0\""
    );
}

#[test]
fn a_crash_looping_container_fails_with_its_last_exit() {
    let d = deployment(
        1,
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
    );
    let mut status = waiting(
        "CrashLoopBackOff",
        "back-off 5m0s restarting failed container",
    );
    status["restartCount"] = json!(6);
    status["lastState"] = json!({"terminated": {"reason": "Error", "exitCode": 1}});
    let err = evaluate(&d, &[pod("ingestion-1", IMAGE, status)], 2).unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    let text = err.to_string();
    assert!(
        text.contains("pod ingestion-1 container ingestion is CrashLoopBackOff"),
        "{text}"
    );
    assert!(
        text.contains("last exit: Error, code 1, 6 restarts"),
        "{text}"
    );
}

#[test]
fn transient_waits_and_old_revisions_do_not_fail_the_rollout() {
    let d = deployment(
        2,
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}),
    );
    let pods = [
        // A pod of the previous image crash-looping is being replaced, not rolled out.
        pod(
            "old-1",
            "public.ecr.aws/honeyhive/ingestion:0.9.0",
            waiting("CrashLoopBackOff", ""),
        ),
        // A first pull error is retried by the kubelet before it backs off.
        pod("new-1", IMAGE, waiting("ErrImagePull", "rate limited")),
    ];
    let rollout = evaluate(&d, &pods, 2).unwrap();
    assert!(!rollout.ready);
    assert_eq!(
        rollout.waiting,
        ["pod new-1 container ingestion: ErrImagePull"]
    );
}

#[test]
fn a_passed_progress_deadline_is_a_timeout_and_a_refused_replica_set_is_fatal() {
    let stuck = deployment(
        1,
        json!({"observedGeneration": 1, "conditions": [{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet \"ingestion-5d9\" has timed out progressing."}]}),
    );
    let err = evaluate(&stuck, &[], 2).unwrap_err();
    assert_eq!(err.name(), ErrorName::Timeout);
    assert!(
        err.to_string().contains("ProgressDeadlineExceeded"),
        "{err}"
    );

    let refused = deployment(
        1,
        json!({"observedGeneration": 1, "conditions": [{
        "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
        "message": "pods \"ingestion-5d9-x\" is forbidden: violates PodSecurity \"restricted:latest\""}]}),
    );
    let err = evaluate(&refused, &[], 2).unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string()
            .contains("cannot create pods (FailedCreate)"),
        "{err}"
    );
}

#[tokio::test]
async fn status_reads_the_deployment_and_its_pods() {
    let d = serde_json::to_value(deployment(
        1,
        json!({
            "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1
        }),
    ))
    .unwrap();
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
        serde_json::to_value(pod("ingestion-1", IMAGE, running())).unwrap(),
        serde_json::to_value(pod("ingestion-2", IMAGE, waiting("ContainerCreating", ""))).unwrap(),
    ]});
    let (client, requests) = fake_api::start(move |r| match r.path.as_str() {
        "/apis/apps/v1/namespaces/honeyhive/deployments/ingestion" => Reply::Json(200, d.clone()),
        "/api/v1/namespaces/honeyhive/pods" => Reply::Json(200, pods.clone()),
        _ => Reply::Json(404, fake_api::status(404, "NotFound", "no")),
    });
    let rollout = status(&client, 2).await.unwrap();
    drop(client);
    let requests = requests.await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].query.get("labelSelector").map(String::as_str),
        Some("app.kubernetes.io%2Fname%3Dingestion")
    );
    assert!(!rollout.ready);
    assert_eq!(
        (rollout.desired, rollout.updated, rollout.available),
        (2, 2, 1)
    );
    assert_eq!(
        rollout.waiting,
        ["pod ingestion-2 container ingestion: ContainerCreating"]
    );
}

#[tokio::test]
async fn status_before_the_deployment_exists_is_not_ready() {
    let (client, _requests) =
        fake_api::start(|_| Reply::Json(404, fake_api::status(404, "NotFound", "no")));
    let rollout = status(&client, 2).await.unwrap();
    assert!(!rollout.ready);
    assert_eq!(
        rollout.detail,
        "Deployment honeyhive/ingestion does not exist yet"
    );
}
