//! `ensure` and `status` against the local AWS emulator (moto's server), in render mode,
//! as `apiary local provision` runs them: the IAM role is real (in the emulator), the
//! Pod Identity association is reported as not made (moto has no such API), and the
//! manifests are rendered and validated, never claimed as applied.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use apiary_core::aws::{AwsSettings, ProcessEnv};
use apiary_core::local::Emulator;
use apiary_core::step::MemoryRecorder;
use serde_json::{Value, json};
use workloads::{Deps, KubeAccess};

const REGION: &str = "us-west-2";

fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        Emulator::from_env_or_start(&ProcessEnv).unwrap_or_else(|e| panic!("emulator: {e}"))
    })
}

fn unique_name() -> String {
    format!("wl-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn event(action: &str, name: &str) -> Value {
    let subnet =
        |id: &str, az: &str, cidr: &str| json!({"id": id, "availability_zone": az, "cidr": cidr});
    json!({
        "action": action,
        "execution_id": "emulator-test",
        "spec": {"name": name, "region": REGION, "dns": {"domain": "hh.example.com"}},
        "layers": {
            "keys": {"keys": {"app": {"key_id": "k1", "arn": "arn:aws:kms:us-west-2:123456789012:key/k1",
                                      "alias": format!("alias/apiary/{name}/app")}}},
            "network": {
                "vpc_id": "vpc-1", "vpc_cidr": "10.9.0.0/16",
                "public_subnets": [subnet("subnet-0a", "us-west-2a", "10.9.0.0/20")],
                "private_subnets": [subnet("subnet-0b", "us-west-2a", "10.9.128.0/19"),
                                    subnet("subnet-0c", "us-west-2b", "10.9.160.0/19")],
                "nat_gateway_ids": [], "security_groups": {"alb": "sg-0a", "cluster": "sg-0b", "databases": "sg-0c"}
            },
            "dns": {"domain": "hh.example.com", "hosted_zone_id": "Z1",
                    "certificate_arn": "arn:aws:acm:us-west-2:123456789012:certificate/c-1"},
            "storage": {"buckets": {"metrics": format!("apiary-{name}-metrics")}},
            "databases": {"postgres": {"identifier": "pg", "host": "pg.local", "port": 5432,
                                       "secret_arn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:pg-1"}},
            "cluster": {"cluster_name": format!("apiary-{name}"),
                        "cluster_arn": format!("arn:aws:eks:us-west-2:123456789012:cluster/apiary-{name}"),
                        "endpoint": "", "certificate_authority": "",
                        "node_role_arn": format!("arn:aws:iam::123456789012:role/apiary-{name}-node"),
                        "nodegroup_name": "ng", "interruption_queue_url": ""}
        }
    })
}

async fn local_deps(folder: PathBuf) -> (Deps, MemoryRecorder) {
    let config = apiary_core::aws::load(&AwsSettings::local(emulator().endpoint(), REGION)).await;
    let recorder = MemoryRecorder::default();
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
    let folder = std::env::temp_dir().join(format!("apiary-workloads-{name}"));
    let (deps, recorder) = local_deps(folder.clone()).await;
    assert!(deps.emulator);

    let first = workloads::handle(&deps, event("ensure", &name))
        .await
        .unwrap();
    assert_eq!(first["mode"], "rendered");
    assert_eq!(first["applied"], false);
    assert_eq!(first["changed"], 14);
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
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 14);

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
    let (deps, recorder) = local_deps(folder.clone()).await;
    let second = workloads::handle(&deps, event("ensure", &name))
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

    let status = workloads::handle(&deps, event("status", &name))
        .await
        .unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["mode"], "rendered");
    assert_eq!(status["applied"], false);
    std::fs::remove_dir_all(&folder).unwrap();
}
