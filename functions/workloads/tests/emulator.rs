//! `ensure` and `status` against the local AWS emulator (moto's server), in render mode,
//! as `apiary local provision` runs them: the IAM role is real (in the emulator), the
//! Pod Identity association is reported as not made (moto has no such API), and the
//! manifests are rendered and validated, never claimed as applied.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use apiary_core::aws::{AwsSettings, ProcessEnv};
use apiary_core::fixtures::{Fixture, REGION};
use apiary_core::local::Emulator;
use apiary_core::step::MemoryRecorder;
use serde_json::{Value, json};
use workloads::{Deps, KubeAccess};

fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        Emulator::from_env_or_start(&ProcessEnv).unwrap_or_else(|e| panic!("emulator: {e}"))
    })
}

fn unique_name() -> String {
    format!("wl-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Deps over a state table holding `fixture`, as provision's earlier steps leave it.
async fn local_deps(fixture: &Fixture, folder: PathBuf) -> (Deps, MemoryRecorder) {
    let config = apiary_core::aws::load(&AwsSettings::local(emulator().endpoint(), REGION)).await;
    let recorder = fixture.state();
    let deps = Deps::new(
        &config,
        Arc::new(recorder.clone()),
        KubeAccess::Render(folder),
    );
    (deps, recorder)
}

#[tokio::test]
async fn provision_renders_locally_with_a_real_role_and_converges() {
    let name = unique_name();
    let fixture = Fixture::named(&name);
    let folder = std::env::temp_dir().join(format!("apiary-workloads-{name}"));
    let (deps, recorder) = local_deps(&fixture, folder.clone()).await;
    assert!(deps.emulator);

    let first = workloads::handle(&deps, fixture.event("ensure"))
        .await
        .unwrap();
    assert_eq!(first["mode"], "rendered");
    assert_eq!(first["applied"], false);
    assert_eq!(first["changed"], 28);
    let identity = &first["pod_identity"];
    assert_eq!(identity["role_name"], format!("apiary-{name}-ingestion"));
    assert!(
        identity["role_arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":role/apiary-{name}-ingestion"))
    );
    // moto 5.2.5 has no EKS Pod Identity API: reported, not claimed.
    assert_eq!(identity["association"], "not-created");
    assert_eq!(identity["association_id"], Value::Null);
    assert!(
        identity["association_detail"]
            .as_str()
            .unwrap()
            .contains("HTTP 404")
    );
    assert_eq!(
        first["created"],
        json!([format!("apiary-{name}-ingestion")])
    );
    let kinds: Vec<String> = recorder
        .resources
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.kind.clone())
        .collect();
    assert_eq!(kinds, ["iam:role"]);
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 28);

    // The role really exists in the emulator, with its permissions and tags.
    let config = apiary_core::aws::load(&AwsSettings::local(emulator().endpoint(), REGION)).await;
    let iam = aws_sdk_iam::Client::new(&config);
    let role = iam
        .get_role()
        .role_name(format!("apiary-{name}-ingestion"))
        .send()
        .await
        .unwrap();
    let tags = role.role.unwrap().tags.unwrap_or_default();
    assert!(
        tags.iter()
            .any(|t| t.key() == "apiary:layer" && t.value() == "workloads"),
        "{tags:?}"
    );
    iam.get_role_policy()
        .role_name(format!("apiary-{name}-ingestion"))
        .policy_name(workloads::pod_identity::POLICY_NAME)
        .send()
        .await
        .unwrap();

    // A second run finds everything as it was.
    let (deps, recorder) = local_deps(&fixture, folder.clone()).await;
    let second = workloads::handle(&deps, fixture.event("ensure"))
        .await
        .unwrap();
    assert_eq!(second["changed"], 0);
    assert_eq!(second["created"], json!([]));
    let journal: Vec<String> = recorder
        .entries
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.outcome.clone())
        .collect();
    assert_eq!(journal, ["unchanged"]);

    let status = workloads::handle(&deps, fixture.event("status"))
        .await
        .unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["mode"], "rendered");
    assert_eq!(status["applied"], false);
    std::fs::remove_dir_all(&folder).unwrap();
}
