//! The spec table: valid and invalid documents, and what each must report.

use serde_json::{Value, json};

use super::*;

fn minimal() -> Value {
    json!({"name": "acme", "dns": {"domain": "hh.acme.example.com"}})
}

fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let mut node = &mut base;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        node = node
            .as_object_mut()
            .expect("object")
            .entry(part)
            .or_insert_with(|| json!({}));
    }
    node.as_object_mut()
        .expect("object")
        .insert(key.to_owned(), value);
    base
}

#[test]
fn minimal_spec_gets_every_default() {
    let spec = DeploymentSpec::parse(&minimal()).expect("valid");
    assert_eq!(spec.region, "us-west-2");
    assert_eq!(spec.size, SizePreset::Small);
    assert_eq!(spec.network.az_count, 3);
    assert_eq!(spec.network.nat_mode, NatMode::Single);
    assert_eq!(spec.storage.retention_days, 30);
    assert_eq!(spec.backup.retention_days, 7);
    assert_eq!(spec.keys.rotation_days, 365);
    assert_eq!(spec.backup.schedule, DEFAULT_BACKUP_SCHEDULE);
    assert_eq!(spec.cluster.version, DEFAULT_KUBERNETES_VERSION);
    assert!(!spec.cluster.public_endpoint);
    assert!(spec.databases.documentdb && spec.databases.redis);
    assert_eq!(spec.databases.multi_az, Some(false));
    // The derived VPC CIDR is made explicit, is a /16 in 10/8, and is stable per name.
    let cidr = spec.network.vpc_cidr.clone().expect("filled");
    assert_eq!(cidr, default_vpc_cidr("acme").to_string());
    assert!(
        cidr.starts_with("10.") && cidr.ends_with(".0.0/16"),
        "{cidr}"
    );
    assert_ne!(default_vpc_cidr("acme"), default_vpc_cidr("globex"));
}

#[test]
fn valid_specs() {
    let cases = [
        with(minimal(), "/size", json!("large")),
        with(minimal(), "/network/vpc_cidr", json!("172.20.0.0/16")),
        with(minimal(), "/network/vpc_cidr", json!("192.168.0.0/16")),
        with(minimal(), "/network/az_count", json!(2)),
        with(minimal(), "/network/nat_mode", json!("per-az")),
        with(
            minimal(),
            "/network/ingress_cidrs",
            json!(["203.0.113.0/24", "198.51.100.7/32"]),
        ),
        with(minimal(), "/backup/schedule", json!("rate(12 hours)")),
        with(minimal(), "/backup/dr_region", json!("us-east-1")),
        with(minimal(), "/databases/documentdb", json!(false)),
        with(
            minimal(),
            "/workloads/ingestion_image",
            json!("ghcr.io/x/ingest@sha256:abcd"),
        ),
        with(minimal(), "/name", json!("a-24-character-long-name")),
        with(
            minimal(),
            "/cluster",
            json!({"public_endpoint": true, "public_access_cidrs": ["203.0.113.0/24"]}),
        ),
        with(
            minimal(),
            "/storage/metrics_workspace_arn",
            json!(
                "arn:aws:aps:us-west-2:123456789012:workspace/ws-0123abcd-4567-89ef-0123-456789abcdef"
            ),
        ),
    ];
    for case in cases {
        if let Err(e) = DeploymentSpec::parse(&case) {
            panic!("{case} should be valid: {e}");
        }
    }
    let medium = DeploymentSpec::parse(&with(minimal(), "/size", json!("medium"))).unwrap();
    assert_eq!(
        medium.databases.multi_az,
        Some(true),
        "medium defaults to Multi-AZ"
    );
    assert_eq!(medium.sizing().nodes_min, 10);
}

/// (document, expected problems as `path: message-fragment`)
fn invalid_cases() -> Vec<(Value, Vec<(&'static str, &'static str)>)> {
    vec![
        (
            json!({}),
            vec![("name", "is required"), ("dns.domain", "is required")],
        ),
        (
            with(minimal(), "/network/vpc_cidr", json!("10.0.0.0/8")),
            vec![("network.vpc_cidr", "10.0.0.0/8 is wider than /16")],
        ),
        (
            with(minimal(), "/network/vpc_cidr", json!("10.1.0.0/24")),
            vec![("network.vpc_cidr", "narrower than /16")],
        ),
        (
            with(minimal(), "/network/vpc_cidr", json!("8.8.0.0/16")),
            vec![("network.vpc_cidr", "not inside RFC 1918")],
        ),
        (
            with(minimal(), "/network/vpc_cidr", json!("10.1.2.0/16")),
            vec![("network.vpc_cidr", "did you mean 10.1.0.0/16")],
        ),
        (
            with(minimal(), "/network/vpc_cidr", json!("banana")),
            vec![("network.vpc_cidr", "not an IPv4 CIDR")],
        ),
        (
            with(minimal(), "/network/az_count", json!(4)),
            vec![("network.az_count", "use 2 or 3")],
        ),
        (
            with(minimal(), "/network/az_count", json!("three")),
            vec![("network.az_count", "invalid type")],
        ),
        (
            with(minimal(), "/network/nat_mode", json!("both")),
            vec![("network.nat_mode", "unknown variant `both`")],
        ),
        (
            with(
                minimal(),
                "/network/ingress_cidrs",
                json!(["10.0.0.0/8", "10.1.0.0/16", "x"]),
            ),
            vec![
                ("network.ingress_cidrs[1]", "overlaps 10.0.0.0/8"),
                ("network.ingress_cidrs[2]", "not an IPv4 CIDR"),
            ],
        ),
        (
            with(minimal(), "/name", json!("Acme_Prod")),
            vec![
                ("name", "must start with a lowercase letter"),
                ("name", "contains 'A'"),
            ],
        ),
        (
            with(
                minimal(),
                "/name",
                json!("this-name-is-far-too-long-for-aws"),
            ),
            vec![("name", "at most 24")],
        ),
        (
            with(minimal(), "/name", json!("acme-")),
            vec![("name", "must not end with a hyphen")],
        ),
        (
            with(minimal(), "/region", json!("mars-1")),
            vec![("region", "not an AWS region")],
        ),
        (
            with(minimal(), "/size", json!("huge")),
            vec![("size", "unknown variant `huge`")],
        ),
        (
            with(minimal(), "/dns/domain", json!("not a domain")),
            vec![("dns.domain", "not a lowercase DNS name")],
        ),
        (
            with(minimal(), "/dns/domain", json!("hh.example.com.")),
            vec![("dns.domain", "ends with a dot: write it without one")],
        ),
        (
            with(minimal(), "/storage/retention_days", json!(0)),
            vec![("storage.retention_days", "outside 1..=3650")],
        ),
        (
            with(minimal(), "/backup/schedule", json!("cron(0 3 * * *)")),
            vec![("backup.schedule", "needs 6")],
        ),
        (
            with(minimal(), "/backup/schedule", json!("daily")),
            vec![("backup.schedule", "not a schedule expression")],
        ),
        (
            with(minimal(), "/backup/retention_days", json!(90)),
            vec![("backup.retention_days", "RDS limit")],
        ),
        (
            with(minimal(), "/keys/rotation_days", json!(30)),
            vec![("keys.rotation_days", "outside 90..=2560")],
        ),
        (
            with(minimal(), "/keys/rotation_days", json!(3000)),
            vec![("keys.rotation_days", "outside 90..=2560")],
        ),
        (
            with(minimal(), "/backup/dr_region", json!("us-west-2")),
            vec![("backup.dr_region", "own region")],
        ),
        (
            with(
                minimal(),
                "/workloads/ingestion_image",
                json!("honeyhive/ingest"),
            ),
            vec![("workloads.ingestion_image", "no tag or digest")],
        ),
        (
            with(
                minimal(),
                "/workloads/ingestion_image",
                json!("honeyhive/ingest:latest"),
            ),
            vec![("workloads.ingestion_image", "moving tag")],
        ),
        (
            with(minimal(), "/network/colour", json!("blue")),
            vec![("network.colour", "unknown field")],
        ),
        (
            with(minimal(), "/cluster/version", json!("2")),
            vec![("cluster.version", "Kubernetes minor version")],
        ),
        (
            with(minimal(), "/cluster/public_endpoint", json!(true)),
            vec![("cluster.public_access_cidrs", "is required when")],
        ),
        (
            with(
                minimal(),
                "/cluster/public_access_cidrs",
                json!(["203.0.113.0/24"]),
            ),
            vec![("cluster.public_access_cidrs", "applies only to a public")],
        ),
        (
            with(
                minimal(),
                "/cluster",
                json!({
                    "public_endpoint": true,
                    "public_access_cidrs": ["0.0.0.0/0", "10.1.0.0/16", "198.51.100.7/24", "y"]
                }),
            ),
            vec![
                ("cluster.public_access_cidrs[0]", "whole internet"),
                ("cluster.public_access_cidrs[1]", "overlaps 0.0.0.0/0"),
                ("cluster.public_access_cidrs[1]", "private range"),
                ("cluster.public_access_cidrs[2]", "host bits"),
                ("cluster.public_access_cidrs[2]", "overlaps 0.0.0.0/0"),
                ("cluster.public_access_cidrs[3]", "not an IPv4 CIDR"),
            ],
        ),
        (
            with(
                minimal(),
                "/cluster/access",
                json!({
                    "admins": [
                        "arn:aws:sts::123456789012:assumed-role/ops/alice",
                        "arn:aws:iam::123456789012:root",
                        "arn:aws:iam::123456789012:group/ops",
                        "arn:aws-cn:iam::123456789012:role/ops",
                        "arn:aws:iam::1234:role/ops",
                        "arn:aws:iam::123456789012:role/a,b",
                        "operators",
                        "arn:aws:iam::123456789012:role/team/ops"
                    ],
                    "viewers": ["arn:aws:iam::123456789012:role/team/ops"],
                    "twingate_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tg"
                }),
            ),
            vec![
                ("cluster.access.admins[0]", "STS session"),
                ("cluster.access.admins[1]", "neither a role nor a user"),
                ("cluster.access.admins[2]", "IAM group"),
                ("cluster.access.admins[3]", "partition aws-cn"),
                ("cluster.access.admins[4]", "12-digit account"),
                ("cluster.access.admins[5]", "invalid role name"),
                ("cluster.access.admins[6]", "not an ARN"),
                (
                    "cluster.access.viewers[0]",
                    "already listed at cluster.access.admins[7]",
                ),
                ("cluster.access.twingate_secret_arn", "deployment's region"),
            ],
        ),
        (
            with(
                minimal(),
                "/cluster/access/twingate_secret_arn",
                json!("arn:aws:secretsmanager:us-west-2:123456789012:secret:tg"),
            ),
            vec![("cluster.access.twingate_secret_arn", "full ARN")],
        ),
        (
            with(
                minimal(),
                "/cluster/access/twingate_secret_arn",
                json!("arn:aws:s3:::tg-AbCdEf"),
            ),
            vec![("cluster.access.twingate_secret_arn", "not a secret ARN")],
        ),
        (
            with(
                minimal(),
                "/storage/metrics_workspace_arn",
                json!("arn:aws:aps:eu-west-1:123456789012:workspace/ws-1"),
            ),
            vec![("storage.metrics_workspace_arn", "deployment's region")],
        ),
        (
            with(
                minimal(),
                "/storage/metrics_workspace_arn",
                json!("arn:aws:s3:::apiary-acme-metrics"),
            ),
            vec![("storage.metrics_workspace_arn", "not a workspace ARN")],
        ),
        (
            with(
                minimal(),
                "/storage/metrics_workspace_arn",
                json!("arn:aws:aps:us-west-2:123456789012:rulegroupsnamespace/ws-1/rules"),
            ),
            vec![("storage.metrics_workspace_arn", "not a workspace ARN")],
        ),
        (
            with(
                minimal(),
                "/storage/metrics_workspace_arn",
                json!("arn:aws:aps:us-west-2:1234:workspace/ws-1"),
            ),
            vec![("storage.metrics_workspace_arn", "12-digit account")],
        ),
        (json!([1, 2]), vec![("", "must be a JSON object")]),
    ]
}

#[test]
fn invalid_specs_report_every_problem_with_its_path() {
    for (document, expected) in invalid_cases() {
        let errors = DeploymentSpec::parse(&document).expect_err(&document.to_string());
        for (path, fragment) in &expected {
            assert!(
                errors
                    .problems
                    .iter()
                    .any(|p| p.path == *path && p.message.contains(fragment)),
                "{document}: expected `{path}: …{fragment}…` in {errors}"
            );
        }
        assert_eq!(
            errors.problems.len(),
            expected.len(),
            "{document}: unexpected extra problems in {errors}"
        );
    }
}

#[test]
fn many_problems_are_reported_together() {
    let document = json!({
        "name": "Bad Name",
        "region": "nowhere",
        "network": {"vpc_cidr": "10.0.0.0/8", "az_count": 9, "nat_mode": "sometimes", "extra": 1},
        "dns": {"domain": ""},
        "storage": {"retention_days": "thirty"},
        "backup": {"retention_days": 99}
    });
    let errors = DeploymentSpec::parse(&document).unwrap_err();
    let paths = errors.paths();
    for path in [
        "name",
        "region",
        "network.vpc_cidr",
        "network.az_count",
        "network.nat_mode",
        "network.extra",
        "dns.domain",
        "storage.retention_days",
        "backup.retention_days",
    ] {
        assert!(paths.contains(&path), "{path} missing from {errors}");
    }
    let text = errors.to_string();
    assert!(text.starts_with("the deployment spec has"), "{text}");
    assert!(
        text.contains("network.vpc_cidr: 10.0.0.0/8 is wider than /16"),
        "{text}"
    );
}

#[test]
fn cloudformation_parameters_map_is_accepted() {
    let parameters = json!({
        "DeploymentName": "acme",
        "Size": "medium",
        "VpcCidr": "10.20.0.0/16",
        "AzCount": "2",
        "NatMode": "per-az",
        "IngressCidrs": "203.0.113.0/24, 198.51.100.0/24",
        "Domain": "hh.acme.example.com",
        "DrRegion": "",
        "S3RetentionDays": "45",
        "EnableDocumentDb": "false",
        "MultiAz": "true"
    });
    let spec = DeploymentSpec::parse(&parameters).expect("valid parameters");
    assert_eq!(spec.name, "acme");
    assert_eq!(spec.size, SizePreset::Medium);
    assert_eq!(spec.network.vpc_cidr.as_deref(), Some("10.20.0.0/16"));
    assert_eq!(spec.network.az_count, 2);
    assert_eq!(spec.network.nat_mode, NatMode::PerAz);
    assert_eq!(
        spec.network.ingress_cidrs,
        ["203.0.113.0/24", "198.51.100.0/24"]
    );
    assert_eq!(spec.storage.retention_days, 45);
    assert_eq!(spec.backup.dr_region, None, "empty means default");
    assert!(!spec.databases.documentdb);
    assert_eq!(spec.databases.multi_az, Some(true));
}

#[test]
fn the_public_access_parameter_feeds_the_cluster_and_its_problems_name_it() {
    let parameters = json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "PublicClusterEndpoint": "true",
        "PublicAccessCidrs": "203.0.113.0/24, 198.51.100.0/24"
    });
    let spec = DeploymentSpec::parse(&parameters).expect("valid parameters");
    assert!(spec.cluster.public_endpoint);
    assert_eq!(
        spec.cluster.public_access_cidrs,
        ["203.0.113.0/24", "198.51.100.0/24"]
    );
    let open = json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "PublicClusterEndpoint": "true",
        "PublicAccessCidrs": ""
    });
    let errors = DeploymentSpec::parse(&open).unwrap_err();
    assert_eq!(errors.paths(), ["PublicAccessCidrs"], "{errors}");
}

#[test]
fn the_metrics_workspace_parameter_feeds_storage_and_its_problems_name_it() {
    let arn = "arn:aws:aps:us-west-2:123456789012:workspace/ws-0123abcd";
    let base = json!({"DeploymentName": "acme", "Domain": "hh.acme.example.com"});
    let spec = DeploymentSpec::parse(&with(base.clone(), "/MetricsWorkspaceArn", json!(arn)))
        .expect("valid parameters");
    assert_eq!(spec.storage.metrics_workspace_arn.as_deref(), Some(arn));
    let unset = DeploymentSpec::parse(&with(base.clone(), "/MetricsWorkspaceArn", json!("")))
        .expect("an empty parameter is the default");
    assert_eq!(unset.storage.metrics_workspace_arn, None, "the bucket path");
    let errors = DeploymentSpec::parse(&with(base, "/MetricsWorkspaceArn", json!("ws-0123abcd")))
        .unwrap_err();
    assert_eq!(errors.paths(), ["MetricsWorkspaceArn"], "{errors}");
}

#[test]
fn the_access_parameters_feed_the_cluster_and_their_problems_name_them() {
    let parameters = json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "ClusterAdminArns": "arn:aws:iam::123456789012:role/platform/admins, arn:aws:iam::123456789012:user/break-glass",
        "ClusterViewerArns": "arn:aws:iam::210987654321:role/vendor-support"
    });
    let spec = DeploymentSpec::parse(&parameters).expect("valid parameters");
    assert_eq!(
        spec.cluster.access.admins,
        [
            "arn:aws:iam::123456789012:role/platform/admins",
            "arn:aws:iam::123456789012:user/break-glass"
        ]
    );
    assert_eq!(
        spec.cluster.access.viewers,
        ["arn:aws:iam::210987654321:role/vendor-support"]
    );
    let session = json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "ClusterViewerArns": "arn:aws:sts::123456789012:assumed-role/ops/alice"
    });
    let errors = DeploymentSpec::parse(&session).unwrap_err();
    assert_eq!(errors.paths(), ["ClusterViewerArns[0]"], "{errors}");
    let many = (0..=MAX_OPERATOR_PRINCIPALS)
        .map(|i| format!("arn:aws:iam::123456789012:role/r{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let errors = DeploymentSpec::parse(&json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "ClusterAdminArns": many
    }))
    .unwrap_err();
    assert!(errors.to_string().contains("at most 20"), "{errors}");
    let own = DeploymentSpec::parse(&json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "ClusterViewerArns": "arn:aws:iam::123456789012:role/apiary-acme-fn-workloads"
    }))
    .unwrap_err();
    assert!(own.to_string().contains("own roles"), "{own}");
    let long = (0..12)
        .map(|i| format!("arn:aws:iam::123456789012:role/a-rather-long-role-name-{i:02}"))
        .collect::<Vec<_>>()
        .join(",");
    let too_long = DeploymentSpec::parse(&json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "ClusterAdminArns": long
    }))
    .unwrap_err();
    assert!(too_long.to_string().contains("at most 600"), "{too_long}");
}

#[test]
fn cloudformation_problems_name_the_parameter() {
    let parameters = json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "AzCount": "many",
        "VpcCidr": "10.0.0.0/8",
        "EnableRedis": "maybe",
        "Colour": "blue"
    });
    let errors = DeploymentSpec::parse(&parameters).unwrap_err();
    let paths = errors.paths();
    assert_eq!(errors.problems.len(), 4, "{errors}");
    for path in ["AzCount", "VpcCidr", "EnableRedis", "Colour"] {
        assert!(paths.contains(&path), "{path} missing from {errors}");
    }
}

#[test]
fn a_problem_with_a_parameters_map_speaks_of_parameters_only() {
    // Found by fuzzing: the problem named the spec path of the field it depends on.
    let errors = DeploymentSpec::parse(&json!({
        "DeploymentName": "acme",
        "Domain": "hh.acme.example.com",
        "PublicClusterEndpoint": "false",
        "PublicAccessCidrs": "203.0.113.0/24"
    }))
    .unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("set PublicClusterEndpoint to true"), "{text}");
    assert!(!text.contains("cluster.public_endpoint"), "{text}");

    assert_eq!(
        cfn::in_parameter_terms(
            "cluster.access.admins and cluster.access.viewers (see cluster.version; \
             not xcluster.version, nor cluster.versions)"
        ),
        "ClusterAdminArns and ClusterViewerArns (see KubernetesVersion; \
         not xcluster.version, nor cluster.versions)"
    );
}

#[test]
fn spec_and_schema_round_trip() {
    for size in SizePreset::ALL {
        let example = DeploymentSpec::example(size);
        let text = serde_json::to_string_pretty(&example).unwrap();
        let parsed = DeploymentSpec::parse_str(&text).expect("the example is valid");
        assert_eq!(parsed, example, "{size}");
    }
    let schema = DeploymentSpec::json_schema();
    let reparsed: Value = serde_json::from_str(&serde_json::to_string(&schema).unwrap()).unwrap();
    assert_eq!(reparsed, schema);
    let validator = jsonschema::validator_for(&schema).expect("the exported schema compiles");
    for size in SizePreset::ALL {
        let example = serde_json::to_value(DeploymentSpec::example(size)).unwrap();
        assert!(
            validator.is_valid(&example),
            "example {size} fails its own schema"
        );
    }
    let wrong = json!({"name": "acme", "network": {"az_count": "three"}});
    assert!(!validator.is_valid(&wrong), "the schema checks types");
    let unknown = json!({"name": "acme", "colour": "blue"});
    assert!(
        !validator.is_valid(&unknown),
        "the schema rejects unknown fields"
    );
}

#[test]
fn typed_accessors_parse_the_validated_fields() {
    let spec = DeploymentSpec::parse(&with(
        with(minimal(), "/network/vpc_cidr", json!("10.9.0.0/16")),
        "/network/ingress_cidrs",
        json!(["203.0.113.0/24"]),
    ))
    .unwrap();
    assert_eq!(spec.vpc_cidr().unwrap().to_string(), "10.9.0.0/16");
    assert_eq!(
        spec.ingress_cidrs().unwrap()[0].to_string(),
        "203.0.113.0/24"
    );
}

#[test]
fn the_dr_region_is_another_region_or_none() {
    let mut spec = DeploymentSpec::example(SizePreset::Small);
    assert_eq!(spec.dr_region(), None);
    spec.backup.dr_region = Some("us-east-1".into());
    assert_eq!(spec.dr_region(), Some("us-east-1"));
    spec.backup.dr_region = Some(String::new());
    assert_eq!(spec.dr_region(), None);
    spec.backup.dr_region = Some(spec.region.clone());
    assert_eq!(
        spec.dr_region(),
        None,
        "the deployment's own region is no DR region"
    );
}
