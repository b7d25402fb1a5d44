//! End-to-end against the local AWS emulator: the whole cluster sequence (ensure-cluster,
//! status-cluster, ensure-nodegroup, status-nodegroup, ensure-karpenter) on top of real
//! keys and a real VPC, every ensure run twice (the second creates nothing), and the
//! settings read back through the AWS APIs.

use std::sync::Arc;

use apiary_core::fixtures;
use apiary_core::step::MemoryRecorder;
use aws_config::SdkConfig;
use aws_sdk_eks::types::LogType;
use serde_json::{Value, json};

struct Fixture {
    config: SdkConfig,
    name: String,
    layers: Value,
    recorder: MemoryRecorder,
    deps: cluster::Deps,
}

impl Fixture {
    async fn new(prefix: &str) -> Fixture {
        let config = apiary_e2e::sdk_config().await;
        let name = apiary_e2e::unique_name(prefix);
        let spec = fixtures::Fixture::named(&name).spec;
        let layers = apiary_e2e::minimal_layers(&config, &spec, "cluster").await;
        // The state the provision workflow would have built: the spec and earlier layers.
        let recorder = MemoryRecorder::with(&spec, &layers);
        let deps = cluster::Deps::new(&config, Arc::new(recorder.clone()));
        Fixture {
            config,
            name,
            layers,
            recorder,
            deps,
        }
    }

    async fn run(&self, action: &str) -> Value {
        cluster::handle(&self.deps, apiary_core::step::event(action, &self.name))
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"))
    }

    /// Runs an ensure twice and shows the second run creates nothing.
    async fn ensure_twice(&self, action: &str) -> Value {
        let first = self.run(action).await;
        assert!(
            !first["created"].as_array().unwrap().is_empty(),
            "{action}: {first}"
        );
        let second = self.run(action).await;
        assert_eq!(
            second["created"],
            json!([]),
            "{action}: second run creates nothing"
        );
        assert_eq!(
            self.recorder
                .entries
                .lock()
                .unwrap()
                .last()
                .unwrap()
                .outcome,
            "unchanged"
        );
        second
    }

    fn layer(&self, pointer: &str) -> String {
        self.layers
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }
}

#[tokio::test]
async fn the_cluster_sequence_builds_a_private_encrypted_auto_mode_cluster() {
    let fixture = Fixture::new("e2e-eks").await;
    let cluster_name = format!("apiary-{}-eks", fixture.name);

    // ensure-cluster: roles and cluster.
    let out = fixture.ensure_twice("ensure-cluster").await;
    assert_eq!(out["cluster_name"], json!(cluster_name));
    assert_eq!(out["ready"], json!(true), "the emulator is ready at once");
    for field in [
        "cluster_arn",
        "endpoint",
        "certificate_authority",
        "node_role_arn",
        "cluster_role_arn",
        "nodegroup_role_arn",
    ] {
        assert!(!out[field].as_str().unwrap().is_empty(), "{field}: {out}");
    }
    let status = fixture.run("status-cluster").await;
    assert_eq!(status["ready"], json!(true));
    assert_eq!(status["created"], json!([]));

    let eks = aws_sdk_eks::Client::new(&fixture.config);
    let described = eks
        .describe_cluster()
        .name(&cluster_name)
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(described.version(), Some("1.33"));
    let vpc = described.resources_vpc_config().unwrap();
    assert!(vpc.endpoint_private_access());
    assert!(
        !vpc.endpoint_public_access(),
        "private endpoint only by default"
    );
    assert_eq!(
        vpc.security_group_ids(),
        [fixture.layer("/network/security_groups/cluster")]
    );
    assert_eq!(vpc.subnet_ids().len(), 2);
    let key = described.encryption_config()[0]
        .provider()
        .and_then(|p| p.key_arn())
        .unwrap();
    assert_eq!(key, fixture.layer("/keys/keys/eks-secrets/arn"));
    let logging = &described.logging().unwrap().cluster_logging()[0];
    assert_eq!(logging.enabled(), Some(true));
    for kind in [
        LogType::Api,
        LogType::Audit,
        LogType::Authenticator,
        LogType::ControllerManager,
        LogType::Scheduler,
    ] {
        assert!(logging.types().contains(&kind), "{kind:?}");
    }
    assert_eq!(
        described
            .kubernetes_network_config()
            .and_then(|k| k.elastic_load_balancing())
            .and_then(|e| e.enabled()),
        Some(true)
    );
    assert_eq!(described.role_arn(), out["cluster_role_arn"].as_str());

    let iam = aws_sdk_iam::Client::new(&fixture.config);
    for (role, policies) in [
        ("eks-cluster", &cluster::CLUSTER_POLICIES[..]),
        ("eks-node", &cluster::NODE_POLICIES[..]),
        ("eks-nodegroup", &cluster::NODEGROUP_POLICIES[..]),
    ] {
        let name = format!("apiary-{}-{role}", fixture.name);
        let attached: Vec<String> = iam
            .list_attached_role_policies()
            .role_name(&name)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_owned))
            .collect();
        for policy in policies {
            assert!(
                attached.iter().any(|a| a == policy),
                "{name}: {policy} in {attached:?}"
            );
        }
    }

    // ensure-nodegroup: access entries, add-ons (not in the emulator) and node group.
    let out = fixture.ensure_twice("ensure-nodegroup").await;
    let entries = out["access_entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{out}");
    assert_eq!(
        entries[0]["state"],
        json!("skipped"),
        "the emulator's caller is a user"
    );
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not an assumed IAM role")
    );
    assert_eq!(entries[1]["type"], json!("EC2"));
    assert_eq!(entries[1]["principal_arn"], out["node_role_arn"]);
    assert_eq!(entries[1]["state"], json!("not-emulated"));
    for addon in out["addons"].as_array().unwrap() {
        assert_eq!(addon["state"], json!("not-emulated"), "{addon}");
    }
    let status = fixture.run("status-nodegroup").await;
    assert_eq!(status["ready"], json!(true));
    assert_eq!(status["nodegroup_status"], json!("ACTIVE"));

    let nodegroup = eks
        .describe_nodegroup()
        .cluster_name(&cluster_name)
        .nodegroup_name(format!("apiary-{}-system", fixture.name))
        .send()
        .await
        .unwrap()
        .nodegroup
        .unwrap();
    let scaling = nodegroup.scaling_config().unwrap();
    assert_eq!(
        (
            scaling.min_size(),
            scaling.desired_size(),
            scaling.max_size()
        ),
        (Some(3), Some(3), Some(10)),
        "the small preset"
    );
    assert_eq!(nodegroup.instance_types(), ["t3.large"]);
    assert_eq!(nodegroup.node_role(), out["nodegroup_role_arn"].as_str());
    assert_eq!(nodegroup.subnets().len(), 2);

    // ensure-karpenter: queue, rules, discovery tag; the output is complete.
    let out = fixture.ensure_twice("ensure-karpenter").await;
    assert_eq!(out["ready"], json!(true));
    let complete: apiary_core::outputs::ClusterOutput =
        serde_json::from_value(out.clone()).expect("a ClusterOutput");
    for (field, value) in [
        ("cluster_arn", &complete.cluster_arn),
        ("endpoint", &complete.endpoint),
        ("certificate_authority", &complete.certificate_authority),
        ("node_role_arn", &complete.node_role_arn),
        ("nodegroup_name", &complete.nodegroup_name),
        ("interruption_queue_url", &complete.interruption_queue_url),
    ] {
        assert!(!value.is_empty(), "{field} is filled");
    }

    let sqs = aws_sdk_sqs::Client::new(&fixture.config);
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&complete.interruption_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    assert_eq!(
        attributes.get(&A::SqsManagedSseEnabled).map(String::as_str),
        Some("true")
    );
    let queue_arn = attributes.get(&A::QueueArn).unwrap().clone();
    let policy: Value = serde_json::from_str(attributes.get(&A::Policy).unwrap()).unwrap();
    assert_eq!(
        policy["Statement"][0]["Principal"]["Service"],
        json!(["events.amazonaws.com", "sqs.amazonaws.com"])
    );
    assert_eq!(policy["Statement"][0]["Resource"], json!(queue_arn));

    let events = aws_sdk_eventbridge::Client::new(&fixture.config);
    let rules = out["interruption_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    for rule in rules {
        let rule = rule.as_str().unwrap();
        let targets = events
            .list_targets_by_rule()
            .rule(rule)
            .send()
            .await
            .unwrap();
        assert!(
            targets.targets().iter().any(|t| t.arn() == queue_arn),
            "{rule} targets the queue"
        );
    }

    let node_role = iam
        .get_role()
        .role_name(format!("apiary-{}-eks-node", fixture.name))
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert!(
        node_role
            .tags()
            .iter()
            .any(|t| t.key() == "karpenter.sh/discovery" && t.value() == cluster_name),
        "discovery tag"
    );

    let kinds: Vec<String> = fixture
        .recorder
        .resources
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.kind.clone())
        .collect();
    for kind in [
        "iam:role",
        "eks:cluster",
        "eks:nodegroup",
        "sqs:queue",
        "events:rule",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in the inventory");
    }
}

#[tokio::test]
async fn a_spot_interruption_notice_reaches_the_queue() {
    let fixture = Fixture::new("e2e-spot").await;
    fixture.run("ensure-cluster").await;
    let out = fixture.run("ensure-karpenter").await;
    let queue_url = out["interruption_queue_url"].as_str().unwrap();

    let events = aws_sdk_eventbridge::Client::new(&fixture.config);
    let detail = json!({"instance-id": "i-0123456789abcdef0", "instance-action": "terminate"});
    let put = events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source("aws.ec2")
                .detail_type("EC2 Spot Instance Interruption Warning")
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(put.failed_entry_count(), 0);

    let sqs = aws_sdk_sqs::Client::new(&fixture.config);
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "one notice routed by the spot rule");
    let body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(
        body["detail-type"],
        json!("EC2 Spot Instance Interruption Warning")
    );
    assert_eq!(body["detail"]["instance-id"], json!("i-0123456789abcdef0"));
}

#[tokio::test]
async fn ensure_nodegroup_before_the_cluster_is_not_ready() {
    let fixture = Fixture::new("e2e-early").await;
    let err = cluster::handle(
        &fixture.deps,
        apiary_core::step::event("ensure-nodegroup", &fixture.name),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), apiary_core::ErrorName::NotReady);
    assert!(
        err.to_string()
            .contains(&format!("apiary-{}-eks", fixture.name)),
        "{err}"
    );
    let status = fixture.run("status-cluster").await;
    assert_eq!(status["ready"], json!(false));
    assert_eq!(status["missing"].as_array().unwrap().len(), 4, "{status}");
}
