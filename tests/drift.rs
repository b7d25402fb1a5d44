//! The drift workflow end to end: provision a deployment, change behind its back what a
//! person might (a rule open to the internet on the load balancer's group, the control
//! plane's egress opened, the logs bucket's default encryption removed, a key policy
//! rewritten, a group made with the deployment's tags), and run
//! `statemachines/drift.asl.json` in the embedded engine against the emulator: each is
//! reported as a security finding, and a provision converges them.

use apiary_asl::{ExecutionResult, ExecutionStatus};
use apiary_e2e::Local as Fixture;
use serde_json::{Value, json};

const TABLE: &str = "apiary-test-drift";

async fn drift(f: &Fixture, name: &str, input: Value, run: &str) -> ExecutionResult {
    let mut input = input;
    input["deployment"] = json!(name);
    f.run("drift", name, input, run).await
}

fn findings(done: &ExecutionResult) -> Vec<Value> {
    done.output.as_ref().expect("output")["drift"]["findings"]
        .as_array()
        .expect("findings")
        .clone()
}

#[tokio::test]
async fn a_rule_opened_by_hand_and_a_bucket_left_unencrypted_are_reported_then_repaired() {
    let f = Fixture::new(TABLE).await;
    let (name, spec) = f
        .provisioned("drift", json!({"databases": {"documentdb": false}}))
        .await;

    let clean = drift(&f, &name, json!({}), "clean").await;
    assert_eq!(clean.status, ExecutionStatus::Succeeded, "{clean:?}");
    assert_eq!(
        findings(&clean),
        Vec::<Value>::new(),
        "a fresh deployment has no drift"
    );
    let checked = clean.output.as_ref().unwrap()["drift"]["checked"].clone();
    for what in [
        "security group",
        "S3 bucket",
        "EKS cluster",
        "RDS instance",
        "KMS key",
    ] {
        assert!(
            checked.to_string().contains(what),
            "{what} not checked: {checked}"
        );
    }

    let outputs = f.store.layer_outputs(&name).await.unwrap();
    let alb = outputs["network"]["security_groups"]["alb"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = outputs["storage"]["buckets"]["logs"]
        .as_str()
        .unwrap()
        .to_owned();
    let ec2 = aws_sdk_ec2::Client::new(&f.config);
    ec2.authorize_security_group_ingress()
        .group_id(&alb)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .expect("a rule added by hand");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&f.config)
            .force_path_style(true)
            .build(),
    );
    s3.delete_bucket_encryption()
        .bucket(&logs)
        .send()
        .await
        .expect("encryption removed by hand");

    // EC2's default allow-all egress put back on the control plane's group.
    let control_plane = outputs["network"]["security_groups"]["control_plane"]
        .as_str()
        .unwrap()
        .to_owned();
    ec2.authorize_security_group_egress()
        .group_id(&control_plane)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("egress opened by hand");

    let app_key = outputs["keys"]["keys"]["app"]["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    aws_sdk_kms::Client::new(&f.config)
        .put_key_policy()
        .key_id(&app_key)
        .policy_name("default")
        .policy(
            json!({"Version": "2012-10-17", "Statement": [{"Sid": "ByHand", "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*",
                "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("a key policy rewritten by hand");

    let drifted = drift(&f, &name, json!({}), "drifted").await;
    assert_eq!(drifted.status, ExecutionStatus::Succeeded, "{drifted:?}");
    let found = findings(&drifted);
    let rule = found
        .iter()
        .find(|f| f["resource"].as_str().unwrap().contains(&alb))
        .unwrap_or_else(|| panic!("the opened rule: {found:?}"));
    assert_eq!(rule["setting"], "ingress");
    assert_eq!(rule["kind"], "changed");
    assert_eq!(rule["security"], true);
    assert!(
        rule["found"]
            .as_str()
            .unwrap()
            .contains("tcp 22 from 0.0.0.0/0"),
        "{rule}"
    );
    let bucket = found
        .iter()
        .find(|f| f["resource"].as_str().unwrap().contains(&logs))
        .unwrap_or_else(|| panic!("the bucket: {found:?}"));
    assert_eq!(bucket["setting"], "default encryption");
    assert_eq!(bucket["security"], true);
    let policy = found
        .iter()
        .find(|f| f["setting"] == "key policy")
        .unwrap_or_else(|| panic!("the key policy: {found:?}"));
    assert!(
        policy["resource"].as_str().unwrap().contains("(app)"),
        "{policy}"
    );
    assert_eq!(policy["security"], true);
    let egress = found
        .iter()
        .find(|f| f["setting"] == "egress")
        .unwrap_or_else(|| panic!("the opened egress: {found:?}"));
    assert!(
        egress["resource"]
            .as_str()
            .unwrap()
            .contains(&control_plane),
        "{egress}"
    );
    assert_eq!(egress["found"], "all traffic to 0.0.0.0/0", "{egress}");
    assert_eq!(egress["security"], true);
    assert_eq!(egress["repairable"], true, "provision revokes allow-all");
    let drift_out = &drifted.output.as_ref().unwrap()["drift"];
    assert_eq!(drift_out["total"], json!(found.len()));
    assert!(drift_out["security"].as_u64().unwrap() >= 4, "{drift_out}");
    let journal = f.store.journal(&name).await.unwrap();
    let entry = journal
        .iter()
        .rev()
        .find(|e| e.step == "drift" && e.action == "check")
        .expect("a journal entry");
    assert!(
        entry
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("security-relevant"),
        "{entry:?}"
    );

    // A repair asks for a provision; locally the runner cannot start one from a step,
    // so it says so, and the provision run here converges both.
    let repaired = drift(&f, &name, json!({"repair": true}), "repair").await;
    assert_eq!(repaired.status, ExecutionStatus::Succeeded, "{repaired:?}");
    let repair = &repaired.output.as_ref().unwrap()["repair"];
    assert!(
        repair["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be started from here"),
        "{repair}"
    );
    let converged = f.provision(&spec, "converge").await;
    assert_eq!(
        converged.status,
        ExecutionStatus::Succeeded,
        "{converged:?}"
    );
    let after = drift(&f, &name, json!({}), "after").await;
    assert_eq!(findings(&after), Vec::<Value>::new(), "provision converged");

    // Made by hand with the deployment's tags, recorded nowhere: reported as
    // `unrecorded`. The same made by a controller for the cluster (its tag says so) is
    // the cluster's and not reported.
    let vpc = outputs["network"]["vpc_id"].as_str().unwrap().to_owned();
    let tagged_group = |group: &str, extra: Option<(&str, &str)>| {
        let mut spec = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("apiary:deployment")
                    .value(&name)
                    .build(),
            );
        if let Some((k, v)) = extra {
            spec = spec.tags(aws_sdk_ec2::types::Tag::builder().key(k).value(v).build());
        }
        ec2.create_security_group()
            .group_name(group)
            .description("made by hand")
            .vpc_id(&vpc)
            .tag_specifications(spec.build())
    };
    let by_hand = tagged_group("by-hand", None)
        .send()
        .await
        .expect("a group made by hand")
        .group_id
        .unwrap();
    tagged_group(
        "k8s-elb-by-controller",
        Some(("elbv2.k8s.aws/cluster", "x")),
    )
    .send()
    .await
    .expect("a group as the load balancer controller makes it");
    // And a rule opened on the interface endpoints' group, which the network layer's
    // output does not name (drift finds it by its tags): security drift a provision
    // does not revoke there, so not repairable.
    let endpoints = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:apiary:role")
                .values("endpoints")
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&vpc)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .group_id()
        .unwrap()
        .to_owned();
    ec2.authorize_security_group_ingress()
        .group_id(&endpoints)
        .ip_protocol("tcp")
        .from_port(443)
        .to_port(443)
        .cidr_ip("203.0.113.0/24")
        .send()
        .await
        .expect("a rule added by hand");
    let scanned = drift(&f, &name, json!({}), "unrecorded").await;
    assert_eq!(scanned.status, ExecutionStatus::Succeeded, "{scanned:?}");
    let found = findings(&scanned);
    assert_eq!(found.len(), 2, "{found:?}");
    let unrecorded = found
        .iter()
        .find(|f| f["kind"] == "unrecorded")
        .unwrap_or_else(|| panic!("{found:?}"));
    assert!(
        unrecorded["resource"].as_str().unwrap().ends_with(&by_hand),
        "{found:?}"
    );
    assert_eq!(unrecorded["repairable"], false);
    let opened = found
        .iter()
        .find(|f| f["kind"] == "changed")
        .unwrap_or_else(|| panic!("{found:?}"));
    assert_eq!(
        opened["resource"],
        json!(format!("security group {endpoints} (endpoints)")),
        "{opened}"
    );
    assert_eq!(opened["security"], true);
    assert_eq!(
        opened["repairable"], false,
        "provision revokes nothing there"
    );
    assert!(
        scanned.output.as_ref().unwrap()["drift"]["checked"]
            .to_string()
            .contains("resources tagged apiary:deployment="),
        "{scanned:?}"
    );
}

#[tokio::test]
async fn a_bad_input_fails_naming_the_field() {
    let f = Fixture::new(TABLE).await;
    let (name, _) = f
        .provisioned("driftbad", json!({"databases": {"documentdb": false}}))
        .await;
    let done = drift(&f, &name, json!({"fix": true}), "bad").await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("Apiary.InvalidInput"));
    assert!(
        done.cause.as_deref().unwrap_or_default().contains("`fix`"),
        "{done:?}"
    );

    // Torn down: its keys are pending deletion on purpose; nothing is compared, and the
    // zeros clear the alarm.
    f.store
        .set_status(
            &name,
            apiary_core::store::DeploymentStatus::Deleted,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let done = drift(&f, &name, json!({}), "deleted").await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let drift_out = &done.output.as_ref().unwrap()["drift"];
    assert_eq!(drift_out["checked"], json!([]), "{drift_out}");
    assert_eq!(drift_out["total"], 0);
}
