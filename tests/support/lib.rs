//! What the end-to-end tests share: one emulator per test binary, unique deployment
//! names, and SDK configuration pointed at the emulator.

use std::sync::OnceLock;

use apiary_core::aws::{AwsSettings, ProcessEnv};
use apiary_core::local::Emulator;
use aws_config::SdkConfig;

pub mod iam_calls;
pub mod iam_eval;
pub mod report_server;

pub const REGION: &str = "us-west-2";

/// The emulator for this test binary: `AWS_ENDPOINT_URL` when set (CI starts one), else
/// one started now and stopped when the binary exits.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        Emulator::from_env_or_start(&ProcessEnv).unwrap_or_else(|e| panic!("emulator: {e}"))
    })
}

/// SDK configuration for the emulator.
pub async fn sdk_config() -> SdkConfig {
    apiary_core::aws::load(&AwsSettings::local(emulator().endpoint(), REGION)).await
}

/// `config` in another region (the DR region's clients), same endpoint and credentials.
pub fn in_region(config: &SdkConfig, region: &str) -> SdkConfig {
    config
        .to_builder()
        .region(aws_config::Region::new(region.to_owned()))
        .build()
}

/// A deployment name no other test uses (tests share one emulator): `prefix-xxxxxx`.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let prefix: String = prefix.chars().take(15).collect();
    format!("{prefix}-{}", &suffix[..8])
}

/// A 10.x.0.0/16 that no VPC in the emulator uses yet and no other test of this binary
/// was given: tests share one emulator, and the network layer rightly refuses a CIDR that
/// overlaps another VPC.
pub async fn unique_cidr(config: &SdkConfig) -> String {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u8>>> = Mutex::new(None);
    let ec2 = aws_sdk_ec2::Client::new(config);
    let vpcs = ec2.describe_vpcs().send().await.expect("DescribeVpcs");
    let used: HashSet<u8> = vpcs
        .vpcs()
        .iter()
        .filter_map(|v| v.cidr_block())
        .filter_map(|c| c.strip_prefix("10."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect();
    let mut given = GIVEN.lock().expect("cidr lock");
    let given = given.get_or_insert_with(HashSet::new);
    let start = (uuid::Uuid::new_v4().as_u128() % 256) as usize;
    let free = (0..256usize)
        .map(|i| ((start + i) % 256) as u8)
        .find(|n| !used.contains(n) && !given.contains(n))
        .expect("a free 10.x.0.0/16 in the emulator");
    given.insert(free);
    format!("10.{free}.0.0/16")
}

/// The layers the data layers need, made as cheaply as possible: keys from the keys
/// function, and the smallest network they accept (a VPC with two private subnets in two
/// zones) with one security group, named `security_group` in `security_groups`.
/// Returns `{"keys": ..., "network": ...}` as the state table keeps them, ready to seed a
/// `MemoryRecorder::with(&spec, &layers)`.
pub async fn minimal_layers(
    config: &SdkConfig,
    spec: &serde_json::Value,
    security_group: &str,
) -> serde_json::Value {
    use std::sync::Arc;

    use apiary_core::step::MemoryRecorder;
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    use serde_json::json;

    let parsed = apiary_core::DeploymentSpec::parse(spec).expect("a valid spec");
    let name = parsed.name.clone();
    let keys_state = MemoryRecorder::with(spec, &json!({}));
    let keys_deps = keys::Deps::new(config, Arc::new(keys_state.clone()));
    keys::handle(&keys_deps, apiary_core::step::event("ensure", &name))
        .await
        .expect("keys ensure");
    let keys = keys_state
        .saved(&name, "keys")
        .expect("the keys layer keeps its output");

    let cidr = parsed.vpc_cidr().expect("a VPC CIDR");
    let ec2 = aws_sdk_ec2::Client::new(config);
    let tags = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .tags(Tag::builder().key("apiary:deployment").value(&name).build())
            .build()
    };
    let vpc = ec2
        .create_vpc()
        .cidr_block(cidr.to_string())
        .tag_specifications(tags(ResourceType::Vpc))
        .send()
        .await
        .expect("vpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("a VPC id");
    let subnets = cidr.subnets(24).expect("/24 subnets").skip(100);
    let mut private = Vec::new();
    for (az, subnet_cidr) in ["us-west-2a", "us-west-2b"].into_iter().zip(subnets) {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .availability_zone(az)
            .cidr_block(subnet_cidr.to_string())
            .tag_specifications(tags(ResourceType::Subnet))
            .send()
            .await
            .expect("subnet")
            .subnet
            .and_then(|s| s.subnet_id)
            .expect("a subnet id");
        private
            .push(json!({"id": subnet, "availability_zone": az, "cidr": subnet_cidr.to_string()}));
    }
    let group = ec2
        .create_security_group()
        .vpc_id(&vpc)
        .group_name(format!("apiary-{name}-{security_group}"))
        .description(security_group)
        .send()
        .await
        .expect("security group")
        .group_id
        .expect("a group id");
    let mut groups = json!({"alb": "", "cluster": "", "databases": ""});
    groups[security_group] = json!(group);
    json!({
        "keys": keys,
        "network": {
            "vpc_id": vpc,
            "vpc_cidr": cidr.to_string(),
            "public_subnets": [],
            "private_subnets": private,
            "nat_gateway_ids": [],
            "security_groups": groups,
        },
    })
}

/// A PEM bundle of two made-up certificate authorities, written to `dir`, standing in
/// for the database CA bundle `apiary package` puts into the verifier's zip.
pub fn test_ca_bundle(dir: &std::path::Path) -> std::path::PathBuf {
    let mut pem = String::new();
    for name in ["Test Database CA", "Test Root CA"] {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        pem.push_str(&params.self_signed(&key).expect("a CA").pem());
    }
    std::fs::create_dir_all(dir).expect("the bundle's folder");
    let path = dir.join("database-ca-bundle.pem");
    std::fs::write(&path, pem).expect("the bundle");
    path
}

/// The repository's root folder.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `infra-bootstrap/bootstrap.yaml` as JSON.
pub fn template() -> serde_json::Value {
    let text = std::fs::read_to_string(repo_root().join("infra-bootstrap/bootstrap.yaml"))
        .expect("infra-bootstrap/bootstrap.yaml is readable");
    serde_yaml::from_str(&text).expect("the template is plain YAML (long-form intrinsics only)")
}

/// The function crates: every folder of `functions/` with a Cargo.toml.
pub fn function_crates() -> std::collections::BTreeSet<String> {
    std::fs::read_dir(repo_root().join("functions"))
        .expect("functions/ is readable")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A local environment for running whole workflows: the state table `table` on the
/// emulator, the repository's state machine files, and every function in-process. The
/// one way the end-to-end tests run a workflow.
pub struct Local {
    pub env: apiary::local::LocalEnv,
    pub store: apiary_core::store::Store,
    pub root: std::path::PathBuf,
    pub config: SdkConfig,
}

impl Local {
    /// The environment over state table `table` (made if missing), its local state in a
    /// folder of this process named after the table.
    pub async fn new(table: &str) -> Local {
        let config = sdk_config().await;
        let store =
            apiary_core::store::Store::new(apiary_core::client!(aws_sdk_dynamodb, &config), table);
        store.ensure_table().await.expect("state table");
        let state_dir = std::env::temp_dir().join(format!("{table}-{}", std::process::id()));
        Local {
            env: apiary::local::LocalEnv::new(config.clone(), store.clone(), state_dir, None),
            store,
            root: repo_root(),
            config,
        }
    }

    /// Phone home sends to `url`, trusting only the CA of `ca_pem` (a test server's).
    pub fn with_phone_home(mut self, url: &str, ca_pem: Option<&[u8]>) -> Local {
        self.env = self
            .env
            .with_phone_home(url, ca_pem)
            .expect("a valid endpoint");
        self
    }

    /// Runs `statemachines/<workflow>.asl.json` for deployment `name` with `input`, as
    /// execution `<name>-<run>`.
    pub async fn run(
        &self,
        workflow: &str,
        name: &str,
        input: serde_json::Value,
        run: &str,
    ) -> apiary_asl::ExecutionResult {
        let machine = self
            .env
            .load(&self.root, workflow)
            .unwrap_or_else(|e| panic!("{workflow}.asl.json loads: {e}"));
        self.env
            .run(
                &machine,
                workflow,
                name,
                input,
                format!("{name}-{run}"),
                None,
            )
            .await
    }

    /// The object the last apply rendered for `name` (the workloads step's manifests
    /// folder in the local state) from the first file whose lower-cased name `matches`.
    pub fn rendered(&self, name: &str, matches: impl Fn(&str) -> bool) -> serde_json::Value {
        let folder = self.env.state_dir.join(name).join("manifests");
        let file = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .map(|e| e.unwrap().path())
            .find(|p| matches(&p.file_name().unwrap().to_string_lossy().to_lowercase()))
            .unwrap_or_else(|| panic!("no matching file in {}", folder.display()));
        let text = std::fs::read_to_string(&file).unwrap();
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }

    /// The deployment's record as the state table holds it; it must exist.
    pub async fn record(&self, name: &str) -> apiary_core::store::DeploymentRecord {
        self.store
            .get_deployment(name)
            .await
            .expect("GetItem")
            .unwrap_or_else(|| panic!("deployment {name} has a record"))
    }

    /// Provisions a new deployment named after `prefix`: the smallest spec of its own
    /// (unique name and VPC range) with `overrides` merged over it; returns its name and
    /// spec. The one way a test gets a provisioned deployment.
    pub async fn provisioned(
        &self,
        prefix: &str,
        overrides: serde_json::Value,
    ) -> (String, serde_json::Value) {
        let name = unique_name(prefix);
        let mut spec = serde_json::json!({
            "name": name,
            "region": REGION,
            "dns": {"domain": format!("{name}.example.com")},
            "network": {"vpc_cidr": unique_cidr(&self.config).await},
        });
        merge(&mut spec, overrides);
        let done = self.provision(&spec, "provision").await;
        assert_eq!(
            done.status,
            apiary_asl::ExecutionStatus::Succeeded,
            "{done:?}"
        );
        (name, spec)
    }

    /// Runs provision with `spec` (whose name names the deployment).
    pub async fn provision(
        &self,
        spec: &serde_json::Value,
        run: &str,
    ) -> apiary_asl::ExecutionResult {
        let name = spec["name"].as_str().expect("the spec has a name");
        self.run("provision", name, serde_json::json!({ "spec": spec }), run)
            .await
    }
}

/// `overrides` merged over `base`, object by object.
fn merge(base: &mut serde_json::Value, overrides: serde_json::Value) {
    match (base, overrides) {
        (serde_json::Value::Object(base), serde_json::Value::Object(overrides)) => {
            for (key, value) in overrides {
                merge(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, value) => *base = value,
    }
}
