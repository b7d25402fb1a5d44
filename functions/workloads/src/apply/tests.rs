use std::sync::{Arc, Mutex};

use apiary_core::ErrorName;
use serde_json::json;

use super::*;
use crate::fake_api::{self, ApplyServer, Reply};
use crate::manifests;
use crate::test_support::context;

fn manifests_for(image: &str) -> Vec<Manifest> {
    let mut ctx = context();
    ctx.image = image.to_owned();
    manifests::build(&ctx).unwrap()
}

#[tokio::test]
async fn each_object_is_read_then_server_side_applied_by_apiary() {
    let manifests = manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0");
    let mut server = ApplyServer::default();
    let (client, requests) = fake_api::start(move |r| server.respond(r));
    let applied = apply_all(&client, &manifests).await.unwrap();
    drop(client);
    let requests = requests.await.unwrap();

    assert_eq!(requests.len(), 2 * manifests.len());
    for (manifest, pair) in manifests.iter().zip(requests.chunks(2)) {
        let (read, apply) = (&pair[0], &pair[1]);
        assert_eq!(read.method, "GET");
        assert_eq!(read.path, manifest.object_path());
        assert_eq!(apply.method, "PATCH", "{}", manifest.display());
        assert_eq!(apply.path, manifest.object_path());
        assert_eq!(
            apply.query.get("fieldManager").map(String::as_str),
            Some("apiary")
        );
        assert_eq!(apply.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(
            apply.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "a server-side apply, not a merge patch"
        );
        assert_eq!(apply.body.as_ref(), Some(&manifest.body));
    }
    assert_eq!(
        requests[17].path,
        "/apis/apps/v1/namespaces/honeyhive/deployments/ingestion"
    );
    assert_eq!(
        requests[17].body.as_ref().unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("public.ecr.aws/honeyhive/ingestion:1.0.0")
    );
    assert!(
        applied.iter().all(|a| a.created && a.changed),
        "{applied:?}"
    );
    assert_eq!(applied[8].kind, "Deployment");
    assert_eq!(applied[8].namespace.as_deref(), Some("honeyhive"));
}

#[tokio::test]
async fn reapplying_the_same_spec_sends_the_same_objects_and_changes_nothing() {
    let server = Arc::new(Mutex::new(ApplyServer::default()));
    let shared = server.clone();
    let (client, requests) = fake_api::start(move |r| shared.lock().unwrap().respond(r));
    let manifests = manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0");
    let first = apply_all(&client, &manifests).await.unwrap();
    let second = apply_all(
        &client,
        &manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0"),
    )
    .await
    .unwrap();
    // A new image rolls out: only the Deployment changes.
    let third = apply_all(
        &client,
        &manifests_for("public.ecr.aws/honeyhive/ingestion:1.1.0"),
    )
    .await
    .unwrap();
    drop(client);
    let requests = requests.await.unwrap();
    let n = manifests.len();
    let patches = |run: usize| -> Vec<_> {
        requests[2 * n * run..2 * n * (run + 1)]
            .iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| (r.path.clone(), r.body.clone()))
            .collect()
    };
    assert_eq!(
        patches(0),
        patches(1),
        "the second run sends the same objects"
    );
    assert_eq!(first.len(), n);
    assert!(
        second.iter().all(|a| !a.created && !a.changed),
        "{second:?}"
    );
    assert_eq!(
        second
            .iter()
            .map(|a| &a.resource_version)
            .collect::<Vec<_>>(),
        first
            .iter()
            .map(|a| &a.resource_version)
            .collect::<Vec<_>>()
    );
    let changed: Vec<_> = third
        .iter()
        .filter(|a| a.changed)
        .map(|a| a.kind.as_str())
        .collect();
    assert_eq!(changed, ["Deployment"]);
    assert!(third.iter().all(|a| !a.created));
}

/// Applies the fixture's objects against a server that refuses the Deployment's apply
/// with `reply`, and returns the error.
async fn apply_refused_with(reply: fn() -> Reply) -> Error {
    let mut server = ApplyServer::default();
    let (client, _requests) = fake_api::start(move |r| {
        if r.method == "PATCH" && r.path.ends_with("/deployments/ingestion") {
            reply()
        } else {
            server.respond(r)
        }
    });
    apply_all(
        &client,
        &manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0"),
    )
    .await
    .expect_err("the apply is refused")
}

#[tokio::test]
async fn forbidden_and_invalid_fail_fast_naming_the_object() {
    let err = apply_refused_with(|| {
        Reply::Json(403, fake_api::status(403, "Forbidden",
            "deployments.apps \"ingestion\" is forbidden: User \"arn:aws:sts::1:assumed-role/x\" cannot patch resource"))
    })
    .await;
    assert_eq!(err.name(), ErrorName::Fatal);
    let text = err.to_string();
    assert!(text.contains("Deployment honeyhive/ingestion"), "{text}");
    assert!(text.contains("HTTP 403 Forbidden"), "{text}");
    assert!(text.contains("cannot patch resource"), "{text}");

    let err = apply_refused_with(|| {
        Reply::Json(422, fake_api::status(422, "Invalid",
            "Deployment.apps \"ingestion\" is invalid: spec.template.spec.containers[0].image: Required value"))
    })
    .await;
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("Deployment honeyhive/ingestion"), "{text}");
    assert!(text.contains("HTTP 422 Invalid"), "{text}");
    assert!(text.contains("Required value"), "{text}");
}

#[tokio::test]
async fn throttling_server_errors_and_transport_failures_are_retryable() {
    for reply in [
        (|| Reply::Json(429, fake_api::status(429, "TooManyRequests", "slow down")))
            as fn() -> Reply,
        || {
            Reply::Json(
                500,
                fake_api::status(500, "InternalError", "etcdserver: request timed out"),
            )
        },
        || {
            Reply::Json(
                503,
                fake_api::status(503, "ServiceUnavailable", "unavailable"),
            )
        },
        || Reply::TransportError("connection reset by peer"),
    ] {
        let err = apply_refused_with(reply).await;
        assert_eq!(err.name(), ErrorName::Retryable, "{err}");
        assert!(
            err.to_string().contains("Deployment honeyhive/ingestion"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_cluster_without_auto_mode_is_named_as_the_cause() {
    let (client, _requests) = fake_api::start(|r| {
        Reply::Json(
            404,
            fake_api::status(
                404,
                "NotFound",
                &format!(
                    "the server could not find the requested resource ({})",
                    r.path
                ),
            ),
        )
    });
    let err = apply_all(
        &client,
        &manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    let text = err.to_string();
    assert!(
        text.starts_with("Kubernetes apply of NodeClass apiary-ingestion failed (HTTP 404"),
        "{text}"
    );
    assert!(text.contains("is EKS Auto Mode enabled?"), "{text}");
}

#[tokio::test]
async fn an_unauthenticated_token_points_at_the_access_entry() {
    let (client, _requests) = fake_api::start(|_| {
        Reply::Json(401, fake_api::status(401, "Unauthorized", "Unauthorized"))
    });
    let err = apply_all(
        &client,
        &manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string()
            .contains("read of NodeClass apiary-ingestion"),
        "{err}"
    );
    assert!(err.to_string().contains("access entry"), "{err}");
}
