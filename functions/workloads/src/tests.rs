//! The handler end to end over mocked AWS clients and an in-memory Kubernetes API.

use std::sync::{Arc, Mutex};

use apiary_core::ErrorName;
use apiary_core::step::MemoryRecorder;
use serde_json::json;

use apiary_core::step;

use super::*;
use crate::fake_api::{self, ApplyServer, Reply};
use crate::test_support::*;
use apiary_core::fixtures::Fixture;

/// A deployment none of whose identity exists yet, its manifests rendered into `folder`.
fn render_fresh(fixture: &Fixture, folder: &std::path::Path) -> (Deps, MemoryRecorder) {
    let (iam, eks) = (FreshIam::new(), FreshEks::new());
    mock_deps_over(
        fixture,
        &eks.rules(),
        &iam.rules(),
        KubeAccess::Render(folder.to_path_buf()),
        false,
    )
}

fn temp_folder() -> PathBuf {
    std::env::temp_dir().join(format!(
        "apiary-workloads-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

fn journal(recorder: &MemoryRecorder) -> Vec<(String, String)> {
    recorder
        .entries
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.action.clone(), e.outcome.clone()))
        .collect()
}

fn journal_detail(recorder: &MemoryRecorder) -> String {
    let entries = recorder.entries.lock().unwrap();
    entries.last().unwrap().detail.clone().unwrap_or_default()
}

/// The step as the kit runs it, against a given cluster client instead of one it
/// connects to.
struct Against {
    deps: Deps,
    client: kube::Client,
    via: &'static str,
    auto_mode: bool,
}

impl Against {
    fn eks(deps: Deps, client: &kube::Client) -> Self {
        Against {
            deps,
            client: client.clone(),
            via: "eks",
            auto_mode: true,
        }
    }
}

#[async_trait]
impl Step for Against {
    const LAYER: Layer = Layer::Workloads;
    type Action = WorkloadsAction;
    type Output = Output;

    async fn run(&self, step: &StepContext<'_, WorkloadsAction>) -> Result<Done<Output>> {
        let target = Target::Apply {
            client: self.client.clone(),
            via: self.via,
            auto_mode: self.auto_mode,
        };
        run_on(&self.deps, step, target).await
    }

    fn state(&self) -> &dyn Recorder {
        self.deps.state()
    }
}

#[tokio::test]
async fn an_unknown_action_is_invalid_input() {
    let (deps, _) = mock_deps(&[], &[], KubeAccess::Render(temp_folder()), false);
    let err = handle(&deps, Fixture::test().event("deploy"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("`deploy`"), "{err}");
}

#[tokio::test]
async fn a_spec_or_layers_in_the_event_or_a_missing_layer_fail_before_any_call() {
    // The spec is validated when provision's lock step stores it; a step takes none.
    let (deps, _) = mock_deps(&[], &[], KubeAccess::Render(temp_folder()), false);
    let mut event = Fixture::test().event("ensure");
    event["spec"] = Fixture::test()
        .with_image("public.ecr.aws/honeyhive/ingestion:latest")
        .spec;
    let err = handle(&deps, event).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("`spec`"), "{err}");

    // Layers named by the caller would choose what the pods' role may reach.
    let mut event = Fixture::test().event("ensure");
    let mut layers = Fixture::test().layers;
    layers
        .storage
        .as_mut()
        .unwrap()
        .buckets
        .insert("metrics".into(), "someone-elses-bucket".into());
    event["layers"] = serde_json::to_value(layers).unwrap();
    let err = handle(&deps, event).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("layers"), "{err}");

    let fixture = Fixture::test().with_layers(|layers| layers.dns = None);
    let (deps, _) = mock_deps_over(&fixture, &[], &[], KubeAccess::Render(temp_folder()), false);
    let err = handle(&deps, fixture.event("ensure")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("layers.dns"), "{err}");
}

#[tokio::test]
async fn ensure_renders_validates_and_says_nothing_was_applied() {
    let folder = temp_folder();
    let (deps, recorder) = render_fresh(&Fixture::test(), &folder);
    let out = handle(&deps, Fixture::test().event("ensure"))
        .await
        .unwrap();
    assert_eq!(out["mode"], "rendered");
    assert_eq!(out["applied"], false);
    assert_eq!(out["validated"], true);
    assert_eq!(out["folder"], json!(folder));
    assert_eq!(out["objects"].as_array().unwrap().len(), 28);
    assert_eq!(out["changed"], 28);
    assert_eq!(out["pod_identity"]["association"], "created");
    assert_eq!(out["pod_identity"]["role_arn"], ROLE_ARN);
    assert!(
        out["detail"].as_str().unwrap().ends_with("not applied"),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 28);
    assert_eq!(journal(&recorder), [("ensure".into(), "created".into())]);

    // Run again over what exists: nothing is created or rewritten.
    let (iam, eks) = (ExistingIam::new(), ExistingEks::new(ROLE_ARN));
    let (deps, recorder) = mock_deps(
        &eks.rules(),
        &iam.rules(),
        KubeAccess::Render(folder.clone()),
        false,
    );
    let out = handle(&deps, Fixture::test().event("ensure"))
        .await
        .unwrap();
    assert_eq!(out["changed"], 0);
    assert_eq!(out["created"], json!([]));
    assert_eq!(out["pod_identity"]["association"], "unchanged");
    assert_eq!(journal(&recorder), [("ensure".into(), "unchanged".into())]);
    std::fs::remove_dir_all(&folder).unwrap();
}

#[tokio::test]
async fn status_of_rendered_manifests_is_ready_and_says_why() {
    let folder = temp_folder();
    let (deps, _) = mock_deps(&[], &[], KubeAccess::Render(folder.clone()), false);
    let out = handle(&deps, Fixture::test().event("status"))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({
            "ready": true, "created": [], "mode": "rendered", "applied": false, "folder": folder,
            "desired": 0, "updated": 0, "available": 0,
            "detail": format!("the manifests were rendered to {}, not applied: there is no rollout to wait for, and the load balancer and its targets' health are not verified locally", folder.display())
        })
    );
}

#[tokio::test]
async fn ensure_applies_records_and_reapplies_without_change() {
    let server = Arc::new(Mutex::new(ApplyServer::default()));
    let shared = server.clone();
    let (client, _requests) = fake_api::start(move |r| shared.lock().unwrap().respond(r));
    let fixture = Fixture::test();

    let (iam, eks) = (FreshIam::new(), FreshEks::new());
    let (deps, recorder) = mock_deps(&eks.rules(), &iam.rules(), KubeAccess::Eks, false);
    let out = step::run(&Against::eks(deps, &client), fixture.event("ensure"))
        .await
        .unwrap();
    assert_eq!(out["mode"], "applied");
    assert_eq!(out["applied"], true);
    assert_eq!(out["changed"], 28);
    assert_eq!(out["skipped"], json!([]));
    assert_eq!(out["objects"][8]["kind"], "Deployment");
    assert_eq!(out["objects"][8]["created"], true);
    let created = out["created"].as_array().unwrap();
    assert!(
        created.contains(&json!("Deployment honeyhive/ingestion")),
        "{created:?}"
    );
    let resources = recorder.resources.lock().unwrap().clone();
    assert!(
        resources
            .iter()
            .any(|r| r.kind == "k8s:nodepool" && r.id == "apiary-ingestion")
    );
    assert!(
        resources
            .iter()
            .any(|r| r.kind == "k8s:deployment" && r.id == "honeyhive/ingestion")
    );
    // Applied is not rolled out: the status action follows the rollout.
    assert_eq!(out["ready"], false);
    assert_eq!(journal(&recorder), [("ensure".into(), "not-ready".into())]);
    assert!(
        journal_detail(&recorder).contains("(28 changed)"),
        "{}",
        journal_detail(&recorder)
    );

    let (iam, eks) = (ExistingIam::new(), ExistingEks::new(ROLE_ARN));
    let (deps, recorder) = mock_deps(&eks.rules(), &iam.rules(), KubeAccess::Eks, false);
    let out = step::run(&Against::eks(deps, &client), fixture.event("ensure"))
        .await
        .unwrap();
    assert_eq!(out["changed"], 0);
    assert_eq!(out["created"], json!([]));
    assert_eq!(journal(&recorder), [("ensure".into(), "not-ready".into())]);
    assert!(journal_detail(&recorder).contains("(0 changed)"));

    // A new image is an update: the journal says so.
    let changed = Fixture::test().with_image("public.ecr.aws/honeyhive/ingestion:1.1.0");
    let (iam, eks) = (ExistingIam::new(), ExistingEks::new(ROLE_ARN));
    let (deps, recorder) =
        mock_deps_over(&changed, &eks.rules(), &iam.rules(), KubeAccess::Eks, false);
    let out = step::run(&Against::eks(deps, &client), changed.event("ensure"))
        .await
        .unwrap();
    assert_eq!(out["changed"], 1);
    assert_eq!(journal(&recorder), [("ensure".into(), "not-ready".into())]);
    assert!(journal_detail(&recorder).contains("(1 changed)"));
}

#[tokio::test]
async fn a_plain_cluster_skips_auto_mode_objects_and_says_so() {
    let mut server = ApplyServer::default();
    let (client, requests) = fake_api::start(move |r| server.respond(r));
    let (iam, eks) = (FreshIam::new(), FreshEks::new());
    let (deps, _) = mock_deps(
        &eks.rules(),
        &iam.rules(),
        KubeAccess::Kubeconfig("kind.yaml".into()),
        false,
    );
    let plain = Against {
        deps,
        client,
        via: "kubeconfig",
        auto_mode: false,
    };
    let out = step::run(&plain, Fixture::test().event("ensure"))
        .await
        .unwrap();
    drop(plain);
    assert_eq!(out["auto_mode"], false);
    assert_eq!(out["objects"].as_array().unwrap().len(), 10);
    let skipped: Vec<&str> = out["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        [
            "NodeClass",
            "NodePool",
            "ConfigMap",
            "SecretProviderClass",
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "ConfigMap",
            "StatefulSet",
            "Deployment",
            "Service",
            "Service",
            "NetworkPolicy",
            "NetworkPolicy",
            "IngressClassParams",
        ]
    );
    assert!(
        out["detail"].as_str().unwrap().contains("18 skipped"),
        "{out}"
    );
    let requests = requests.await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| !r.path.contains("karpenter.sh") && !r.path.contains("eks.amazonaws.com"))
    );
}

#[tokio::test]
async fn discovery_tells_auto_mode_clusters_from_plain_ones() {
    let (plain, _) = fake_api::start(|_| Reply::Json(404, fake_api::status(404, "NotFound", "no")));
    assert!(!connect::serves_auto_mode(&plain).await.unwrap());
    let (auto, requests) = fake_api::start(|r| {
        let names: &[&str] = match r.path.as_str() {
            "/apis/karpenter.sh/v1" => &["nodepools", "nodeclaims"],
            "/apis/eks.amazonaws.com/v1" => {
                &["nodeclasses", "ingressclassparams", "targetgroupbindings"]
            }
            _ => &[],
        };
        let resources: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
        Reply::Json(
            200,
            json!({"kind": "APIResourceList", "resources": resources}),
        )
    });
    assert!(connect::serves_auto_mode(&auto).await.unwrap());
    drop(auto);
    let paths: Vec<String> = requests
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        paths,
        ["/apis/karpenter.sh/v1", "/apis/eks.amazonaws.com/v1"]
    );
}

fn rollout_server(pod_state: Value) -> kube::Client {
    rollout_server_with(pod_state, Some(INGRESS_ADDRESS))
}

/// The rollout, and the HTTPS Ingress with this load balancer address in its status.
fn rollout_server_with(pod_state: Value, address: Option<&'static str>) -> kube::Client {
    let objects = manifests::build(&context()).unwrap();
    let mut deployment = objects
        .iter()
        .find(|m| m.kind == "Deployment")
        .unwrap()
        .body
        .clone();
    deployment["metadata"]["generation"] = json!(1);
    deployment["spec"]["replicas"] = json!(2);
    deployment["status"] = json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                                  "readyReplicas": 2, "availableReplicas": 2});
    let template = deployment["spec"]["template"].clone();
    let pod = json!({
        "metadata": {"name": "ingestion-1", "annotations": template["metadata"]["annotations"]},
        "spec": template["spec"],
        "status": {"containerStatuses": [{"name": "ingestion", "image": "x", "imageID": "", "ready": false,
                                          "restartCount": 0, "state": pod_state}]}
    });
    let (client, _) = fake_api::start(move |r| match r.path.as_str() {
        "/apis/apps/v1/namespaces/honeyhive/deployments/ingestion" => {
            Reply::Json(200, deployment.clone())
        }
        "/api/v1/namespaces/honeyhive/pods" => {
            Reply::Json(200, json!({"metadata": {}, "items": [pod.clone()]}))
        }
        "/apis/networking.k8s.io/v1/namespaces/honeyhive/ingresses/ingestion" => {
            let ingress = match address {
                Some(host) => json!({"loadBalancer": {"ingress": [{"hostname": host}]}}),
                None => json!({}),
            };
            Reply::Json(
                200,
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                       "metadata": {"name": "ingestion", "namespace": "honeyhive"},
                       "status": ingress}),
            )
        }
        _ => Reply::Json(404, fake_api::status(404, "NotFound", "no")),
    });
    client
}

#[tokio::test]
async fn status_reports_the_rollout_and_journals_its_end() {
    let event = Fixture::test().event("status");
    let (mut deps, recorder) = mock_deps(&[], &[], KubeAccess::Eks, false);
    deps.elb = serving_elb(true);
    let client = rollout_server(json!({"running": {}}));
    let out = step::run(&Against::eks(deps, &client), event.clone())
        .await
        .unwrap();
    assert_eq!(out["ready"], true);
    assert_eq!(out["mode"], "applied");
    assert_eq!(
        (
            out["desired"].clone(),
            out["updated"].clone(),
            out["available"].clone()
        ),
        (json!(2), json!(2), json!(2))
    );
    assert_eq!(journal(&recorder), [("status".into(), "ready".into())]);

    let (deps, recorder) = mock_deps(&[], &[], KubeAccess::Eks, false);
    let client =
        rollout_server(json!({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}));
    let err = step::run(&Against::eks(deps, &client), event)
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string().contains("ImagePullBackOff: not found"),
        "{err}"
    );
    assert_eq!(journal(&recorder), [("status".into(), "failed".into())]);
}

/// READY means serving: after the rollout, the Ingress must have a load balancer
/// address and the load balancer a healthy target; until then the step is pending and
/// says what it waits for.
#[tokio::test]
async fn status_waits_for_the_load_balancer_and_a_healthy_target() {
    let event = Fixture::test().event("status");
    let (deps, _) = mock_deps(&[], &[], KubeAccess::Eks, false);
    let client = rollout_server_with(json!({"running": {}}), None);
    let out = step::run(&Against::eks(deps, &client), event.clone())
        .await
        .unwrap();
    assert_eq!(out["ready"], false, "{out}");
    assert!(
        out["pending"][0]
            .as_str()
            .unwrap()
            .contains("no load balancer address yet"),
        "{out}"
    );

    let (mut deps, _) = mock_deps(&[], &[], KubeAccess::Eks, false);
    deps.elb = serving_elb(false);
    let client = rollout_server(json!({"running": {}}));
    let out = step::run(&Against::eks(deps, &client), event.clone())
        .await
        .unwrap();
    assert_eq!(out["ready"], false, "{out}");
    assert!(
        out["pending"][0]
            .as_str()
            .unwrap()
            .contains("no healthy target"),
        "{out}"
    );

    let (mut deps, _) = mock_deps(&[], &[], KubeAccess::Eks, false);
    deps.elb = serving_elb(true);
    let client = rollout_server(json!({"running": {}}));
    let out = step::run(&Against::eks(deps, &client), event)
        .await
        .unwrap();
    assert_eq!(out["ready"], true, "{out}");
    assert_eq!(
        out["serving"]["load_balancer"]["dns_name"],
        json!(INGRESS_ADDRESS)
    );
    assert_eq!(out["serving"]["healthy_targets"], json!(1));
}

#[test]
fn deps_come_from_the_sdk_configuration() {
    let config = aws_config::SdkConfig::builder()
        .region(aws_sdk_eks::config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:5000")
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let deps = Deps::new(
        &config,
        Arc::new(MemoryRecorder::default()),
        KubeAccess::Eks,
    );
    assert_eq!(deps.region.as_deref(), Some("eu-west-1"));
    assert!(deps.emulator);
    assert_eq!(deps.kube, KubeAccess::Eks);
    let real = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    assert!(!Deps::new(&real, Arc::new(MemoryRecorder::default()), KubeAccess::Eks).emulator);
}

/// The fixture with a certificate ACM has not issued: its validation records are not in
/// public DNS yet.
fn certificate_pending() -> Fixture {
    Fixture::test().with_layers(|layers| {
        layers.dns.as_mut().unwrap().certificate_status = Some("PENDING_VALIDATION".into())
    })
}

#[tokio::test]
async fn the_https_ingress_is_not_rendered_until_the_certificate_is_issued() {
    let folder = temp_folder();
    let fixture = certificate_pending();
    let (deps, recorder) = render_fresh(&fixture, &folder);
    let out = handle(&deps, fixture.event("ensure")).await.unwrap();
    assert_eq!(out["ready"], true);
    assert_eq!(out["objects"].as_array().unwrap().len(), 27);
    assert!(
        out["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["kind"] != "Ingress"),
        "{out}"
    );
    assert_eq!(out["skipped"][0]["kind"], "Ingress");
    assert_eq!(out["skipped"][0]["name"], "ingestion");
    let reason = out["skipped"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("PENDING_VALIDATION") && reason.contains("not ISSUED"),
        "{reason}"
    );
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 27);
    assert!(
        journal_detail(&recorder).contains("Ingress honeyhive/ingestion skipped"),
        "{}",
        journal_detail(&recorder)
    );

    // Once ACM issues it, the next run renders the Ingress too.
    let (iam, eks) = (ExistingIam::new(), ExistingEks::new(ROLE_ARN));
    let (deps, _) = mock_deps(
        &eks.rules(),
        &iam.rules(),
        KubeAccess::Render(folder.clone()),
        false,
    );
    let out = handle(&deps, Fixture::test().event("ensure"))
        .await
        .unwrap();
    assert_eq!(out["objects"].as_array().unwrap().len(), 28);
    assert_eq!(out["skipped"], json!([]));
    assert_eq!(out["changed"], 1, "only the Ingress is new");
    std::fs::remove_dir_all(&folder).unwrap();
}

#[tokio::test]
async fn the_https_ingress_is_not_applied_until_the_certificate_is_issued() {
    let mut server = ApplyServer::default();
    let (client, requests) = fake_api::start(move |r| server.respond(r));
    let fixture = certificate_pending();
    let (iam, eks) = (FreshIam::new(), FreshEks::new());
    let (deps, recorder) =
        mock_deps_over(&fixture, &eks.rules(), &iam.rules(), KubeAccess::Eks, false);
    let against = Against::eks(deps, &client);
    drop(client);
    let out = step::run(&against, fixture.event("ensure")).await.unwrap();
    drop(against);
    assert_eq!(out["objects"].as_array().unwrap().len(), 27);
    let skipped: Vec<&str> = out["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["Ingress"]);
    assert!(
        journal_detail(&recorder).contains("Ingress honeyhive/ingestion skipped"),
        "{}",
        journal_detail(&recorder)
    );
    let requests = requests.await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| !r.path.ends_with("/ingresses/ingestion")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.path.ends_with("/ingressclasses/apiary-alb")),
        "the rest is applied"
    );
}

/// The upgrade's image steps: a Kubernetes version upgrade skips them before any call;
/// for an image, the status step follows the rollout of the record's image and fails on
/// a pod that cannot start it, which sends the workflow to its rollback.
#[tokio::test]
async fn the_upgrade_image_steps_skip_a_version_and_fail_a_stuck_rollout() {
    let (deps, recorder) = mock_deps(&[], &[], KubeAccess::Eks, false);
    for action in [
        "upgrade-image",
        "upgrade-image-status",
        "rollback-image",
        "rollback-image-status",
    ] {
        let mut event = Fixture::test().event(action);
        event["options"] = json!({"input": {"kubernetes_version": "1.34"}});
        let out = handle(&deps, event).await.expect("skipped");
        assert_eq!(out["ready"], true, "{action}: {out}");
        assert_eq!(out["skipped"], true, "{action}: {out}");
    }
    assert_eq!(
        journal(&recorder).len(),
        4,
        "each skip is journaled: {:?}",
        journal(&recorder)
    );

    let (deps, recorder) = mock_deps(&[], &[], KubeAccess::Eks, false);
    let client = rollout_server(
        json!({"waiting": {"reason": "ImagePullBackOff", "message": "manifest unknown"}}),
    );
    let mut event = Fixture::test().event("upgrade-image-status");
    event["options"] = json!({"input": {"image": "public.ecr.aws/honeyhive/ingestion:9.9.9"}});
    let err = step::run(&Against::eks(deps, &client), event)
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal, "{err}");
    assert_eq!(
        journal(&recorder),
        [("upgrade-image-status".into(), "failed".into())]
    );
}

/// DescribeSecret answering `version` as AWSCURRENT for every store secret.
fn secrets_at(version: &'static str) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
    let rule = aws_smithy_mocks::mock!(aws_sdk_secretsmanager::Client::describe_secret)
        .then_compute_output(move |r| {
            DescribeSecretOutput::builder()
                .arn(r.secret_id().unwrap())
                .version_ids_to_stages(version, vec!["AWSCURRENT".to_owned()])
                .version_ids_to_stages("old", vec!["AWSPREVIOUS".to_owned()])
                .build()
        });
    aws_smithy_mocks::mock_client!(
        aws_sdk_secretsmanager,
        aws_smithy_mocks::RuleMode::MatchAny,
        [&rule]
    )
}

/// The driver's pod statuses: `ingestion-a` holds `version` of every credential file of
/// the fixture (PostgreSQL and Redis).
fn pod_status_server(version: &'static str) -> kube::Client {
    let files = [
        "postgres",
        "postgres-username",
        "postgres-password",
        "redis",
        "redis-username",
        "redis-auth-token",
    ];
    let (client, _server) = fake_api::start(move |request| {
        if request.path.ends_with("/namespaces/honeyhive/pods") {
            Reply::Json(
                200,
                json!({"items": [
                    {"metadata": {"name": "ingestion-a"}, "status": {"phase": "Running"}},
                    {"metadata": {"name": "ingestion-gone", "deletionTimestamp": "2026-12-07T00:00:00Z"},
                     "status": {"phase": "Running"}}
                ]}),
            )
        } else if request
            .path
            .ends_with("/namespaces/honeyhive/secretproviderclasspodstatuses")
        {
            let objects: Vec<Value> = files
                .iter()
                .map(|id| json!({"id": id, "version": version}))
                .collect();
            Reply::Json(
                200,
                json!({"items": [{"status": {
                    "podName": "ingestion-a",
                    "secretProviderClassName": crate::manifests::credentials::CLASS,
                    "mounted": true,
                    "objects": objects
                }}]}),
            )
        } else {
            Reply::Json(404, fake_api::status(404, "NotFound", "no"))
        }
    });
    client
}

#[tokio::test]
async fn the_restart_waits_until_every_pods_mount_holds_the_current_versions() {
    let mut event = Fixture::test().event("credentials-synced");
    event["options"] = json!({"input": {"scope": "secrets"}});

    let (mut deps, _) = mock_deps(&[], &[], KubeAccess::Eks, false);
    deps.secrets = secrets_at("v2");
    let behind = step::run(&Against::eks(deps, &pod_status_server("v1")), event.clone())
        .await
        .unwrap();
    assert_eq!(behind["ready"], false, "{behind}");
    let named = behind["behind"].as_array().unwrap();
    assert_eq!(named.len(), 6, "every file of the pod is named: {behind}");
    assert!(
        named[0]
            .as_str()
            .unwrap()
            .starts_with("pod ingestion-a: postgres at v1, current v2"),
        "{behind}"
    );

    let (mut deps, recorder) = mock_deps(&[], &[], KubeAccess::Eks, false);
    deps.secrets = secrets_at("v2");
    let synced = step::run(&Against::eks(deps, &pod_status_server("v2")), event.clone())
        .await
        .unwrap();
    assert_eq!(synced["ready"], true, "{synced}");
    assert_eq!(synced["synced"], true);
    assert_eq!(
        journal(&recorder),
        [("credentials-synced".into(), "ready".into())]
    );

    // A keys-only run has nothing to wait for and asks nothing.
    let (deps, _) = mock_deps(&[], &[], KubeAccess::Eks, false);
    let mut keys_only = event;
    keys_only["options"] = json!({"input": {"scope": "keys-check"}});
    let skipped = step::run(&Against::eks(deps, &pod_status_server("v1")), keys_only)
        .await
        .unwrap();
    assert_eq!(skipped["ready"], true);
    assert!(
        skipped["detail"]
            .as_str()
            .unwrap()
            .contains("rotates no secret")
    );
}

/// A deployment with a Twingate connector.
fn with_connector() -> Fixture {
    Fixture::test().with_spec(|spec| {
        spec["cluster"]["access"] = json!({
            "twingate_secret_arn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:twingate-AbCdEf"
        });
    })
}

#[tokio::test]
async fn the_connector_is_rendered_and_its_service_account_bound_to_the_stacks_role() {
    const CONNECTOR_ROLE: &str = "arn:aws:iam::123456789012:role/apiary-acme-prod-twingate";
    let fixture = with_connector();
    let (iam, eks) = (FreshIam::new(), FreshEks::new());
    let connector_list = aws_smithy_mocks::mock!(aws_sdk_eks::Client::list_pod_identity_associations)
        .match_requests(|r| {
            r.namespace() == Some("twingate") && r.service_account() == Some("twingate-connector")
        })
        .then_output(|| {
            aws_sdk_eks::operation::list_pod_identity_associations::ListPodIdentityAssociationsOutput::builder().build()
        });
    let connector_create =
        aws_smithy_mocks::mock!(aws_sdk_eks::Client::create_pod_identity_association)
            .match_requests(|r| {
                r.namespace() == Some("twingate")
                    && r.service_account() == Some("twingate-connector")
                    && r.role_arn() == Some(CONNECTOR_ROLE)
            })
            .then_output(|| {
                aws_sdk_eks::operation::create_pod_identity_association::CreatePodIdentityAssociationOutput::builder()
                    .association(
                        aws_sdk_eks::types::PodIdentityAssociation::builder()
                            .association_id("a-connector")
                            .association_arn("arn:aws:eks:us-west-2:123456789012:podidentityassociation/apiary-acme-prod/a-connector")
                            .build(),
                    )
                    .build()
            });
    let mut rules = vec![&connector_list, &connector_create];
    rules.extend(eks.rules());
    let folder = temp_folder();
    let (mut deps, _) = mock_deps_over(
        &fixture,
        &rules,
        &iam.rules(),
        KubeAccess::Render(folder.clone()),
        false,
    );
    deps.twingate_role = Some(CONNECTOR_ROLE.to_owned());
    let out = handle(&deps, fixture.event("ensure")).await.unwrap();
    assert_eq!(out["objects"].as_array().unwrap().len(), 33, "{out}");
    assert_eq!(out["connector"]["association"], "created");
    assert_eq!(out["connector"]["role_arn"], CONNECTOR_ROLE);
    assert_eq!(connector_create.num_calls(), 1);

    // Without the stack's role (a local run) the manifests still render, and the
    // binding is said not to be made.
    let (deps, _) = render_fresh(&fixture, &temp_folder());
    let out = handle(&deps, fixture.event("ensure")).await.unwrap();
    assert_eq!(out["connector"]["association"], "not-created");
    assert!(
        out["connector"]["detail"]
            .as_str()
            .unwrap()
            .contains("TwingateConnectorRole"),
        "{out}"
    );
}

/// Prometheus and Alertmanager get the stack's roles by Pod Identity. Without the roles
/// (a local run) the stack still renders and the output says what is missing.
#[tokio::test]
async fn the_metrics_stack_service_accounts_are_bound_to_the_stacks_roles() {
    use aws_sdk_eks::operation::create_pod_identity_association::CreatePodIdentityAssociationOutput;
    use aws_sdk_eks::operation::list_pod_identity_associations::ListPodIdentityAssociationsOutput;
    use aws_sdk_eks::types::PodIdentityAssociation;
    const METRICS_ROLE: &str = "arn:aws:iam::123456789012:role/apiary-acme-prod-metrics-writer";
    const ALERT_ROLE: &str = "arn:aws:iam::123456789012:role/apiary-acme-prod-alert-router";
    let fixture = Fixture::test();
    let for_account = |account: &'static str, role: &'static str| {
        let create = aws_smithy_mocks::mock!(aws_sdk_eks::Client::create_pod_identity_association)
            .match_requests(move |r| {
                r.namespace() == Some("monitoring")
                    && r.service_account() == Some(account)
                    && r.role_arn() == Some(role)
            })
            .then_output(move || {
                CreatePodIdentityAssociationOutput::builder()
                    .association(
                        PodIdentityAssociation::builder()
                            .association_id(format!("a-{account}"))
                            .role_arn(role)
                            .build(),
                    )
                    .build()
            });
        let list = aws_smithy_mocks::mock!(aws_sdk_eks::Client::list_pod_identity_associations)
            .match_requests(move |r| {
                r.namespace() == Some("monitoring") && r.service_account() == Some(account)
            })
            .then_output(|| ListPodIdentityAssociationsOutput::builder().build());
        (list, create)
    };
    let (prometheus_list, prometheus_create) = for_account("prometheus", METRICS_ROLE);
    let (alert_list, alert_create) = for_account("alertmanager", ALERT_ROLE);
    let (iam, eks) = (FreshIam::new(), FreshEks::new());
    let mut rules = vec![
        &prometheus_list,
        &prometheus_create,
        &alert_list,
        &alert_create,
    ];
    rules.extend(eks.rules());
    let (mut deps, _) = mock_deps_over(
        &fixture,
        &rules,
        &iam.rules(),
        KubeAccess::Render(temp_folder()),
        false,
    );
    deps.metrics_role = Some(METRICS_ROLE.to_owned());
    deps.alert_router_role = Some(ALERT_ROLE.to_owned());
    let out = handle(&deps, fixture.event("ensure")).await.unwrap();
    let monitoring = out["monitoring"].as_array().unwrap();
    assert_eq!(monitoring.len(), 2, "{out}");
    assert_eq!(monitoring[0]["service_account"], "monitoring/prometheus");
    assert_eq!(monitoring[0]["role_arn"], METRICS_ROLE);
    assert_eq!(monitoring[0]["association"], "created");
    assert_eq!(monitoring[1]["service_account"], "monitoring/alertmanager");
    assert_eq!(monitoring[1]["association"], "created");
    assert_eq!(prometheus_create.num_calls(), 1);
    assert_eq!(alert_create.num_calls(), 1);

    // Without the roles: rendered all the same, and said not bound.
    let folder = temp_folder();
    let (deps, _) = render_fresh(&fixture, &folder);
    let out = handle(&deps, fixture.event("ensure")).await.unwrap();
    for identity in out["monitoring"].as_array().unwrap() {
        assert_eq!(identity["association"], "not-created", "{out}");
    }
    assert!(
        out["monitoring"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("MetricsWriterRole"),
        "{out}"
    );
    let rendered: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        rendered
            .iter()
            .any(|f| f.ends_with("-statefulset-monitoring-prometheus.yaml")),
        "{rendered:?}"
    );
}

/// A connector the spec no longer names: its namespace (Deployment, synced tokens) is
/// deleted at the next apply, and only when it is this deployment's.
#[tokio::test]
async fn a_connector_no_longer_named_is_removed_and_another_deployments_is_not() {
    const PATH: &str = "/api/v1/namespaces/twingate";
    let namespace = |deployment: &str| {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "twingate",
            "labels": {"apiary.dev/deployment": deployment, "app.kubernetes.io/managed-by": "apiary"}}})
    };
    for (owner, removed) in [("acme-prod", true), ("someone-else", false)] {
        let server = Arc::new(Mutex::new(ApplyServer::default()));
        server.lock().unwrap().insert(PATH, namespace(owner));
        let shared = server.clone();
        let (client, requests) = fake_api::start(move |r| shared.lock().unwrap().respond(r));
        let (iam, eks) = (FreshIam::new(), FreshEks::new());
        let (deps, _) = mock_deps(&eks.rules(), &iam.rules(), KubeAccess::Eks, false);
        let out = step::run(
            &Against::eks(deps, &client),
            Fixture::test().event("ensure"),
        )
        .await
        .unwrap();
        drop(client);
        let deletes = requests
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .count();
        if removed {
            assert_eq!(deletes, 1, "{out}");
            assert!(
                out["removed"][0]
                    .as_str()
                    .unwrap()
                    .starts_with("Namespace twingate deleted"),
                "{out}"
            );
            assert!(
                out["detail"].as_str().unwrap().contains("twingate"),
                "{out}"
            );
        } else {
            assert_eq!(deletes, 0, "{out}");
            assert!(out.get("removed").is_none(), "{out}");
        }
    }
}
