use apiary_core::ErrorName;
use aws_sdk_docdb::Client as DocDb;
use aws_sdk_docdb::operation::create_db_cluster::{CreateDBClusterError, CreateDbClusterOutput};
use aws_sdk_docdb::operation::create_db_cluster_parameter_group::CreateDbClusterParameterGroupOutput;
use aws_sdk_docdb::operation::create_db_instance::CreateDbInstanceOutput;
use aws_sdk_docdb::operation::create_db_subnet_group::CreateDbSubnetGroupOutput;
use aws_sdk_docdb::operation::describe_db_cluster_parameter_groups::{
    DescribeDBClusterParameterGroupsError, DescribeDbClusterParameterGroupsOutput,
};
use aws_sdk_docdb::operation::describe_db_cluster_parameters::DescribeDbClusterParametersOutput;
use aws_sdk_docdb::operation::describe_db_clusters::{
    DescribeDBClustersError, DescribeDbClustersOutput,
};
use aws_sdk_docdb::operation::describe_db_instances::{
    DescribeDBInstancesError, DescribeDbInstancesOutput,
};
use aws_sdk_docdb::operation::describe_db_subnet_groups::{
    DescribeDBSubnetGroupsError, DescribeDbSubnetGroupsOutput,
};
use aws_sdk_docdb::operation::modify_db_cluster_parameter_group::ModifyDbClusterParameterGroupOutput;
use aws_sdk_docdb::types::error::{
    DbClusterNotFoundFault, DbInstanceNotFoundFault, DbParameterGroupNotFoundFault,
    DbSubnetGroupNotFoundFault,
};
use aws_sdk_docdb::types::{
    ClusterMasterUserSecret, DbCluster, DbClusterParameterGroup, DbInstance, DbSubnetGroup,
    Parameter,
};
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::*;

const CLUSTER: &str = "apiary-acme-docdb";
const INSTANCE: &str = "apiary-acme-docdb-1";
const SECRET: &str = "arn:aws:secretsmanager:us-west-2:123456789012:secret:docdb!cluster-1";
const HOST: &str = "apiary-acme-docdb.cluster-abc.us-west-2.docdb.amazonaws.com";
/// What moto 5.2.5 answers to CreateDBCluster with Engine=docdb.
const MOTO_REJECTION: &str = "Engine 'docdb' is not supported to satisfy constraint: Member must \
     satisfy enum value set: ['aurora-mysql', 'aurora-postgresql', 'mysql', 'neptune', 'postgres']";

fn cluster(status: &str) -> DbCluster {
    DbCluster::builder()
        .db_cluster_identifier(CLUSTER)
        .db_cluster_arn(format!(
            "arn:aws:rds:us-west-2:123456789012:cluster:{CLUSTER}"
        ))
        .status(status)
        .endpoint(HOST)
        .port(27017)
        // As the spec of `acme` says.
        .backup_retention_period(7)
        .deletion_protection(true)
        .master_user_secret(
            ClusterMasterUserSecret::builder()
                .secret_arn(SECRET)
                .build(),
        )
        .build()
}

fn instance(id: &str, status: &str) -> DbInstance {
    DbInstance::builder()
        .db_instance_identifier(id)
        .db_instance_status(status)
        .build()
}

fn found_prerequisites() -> [Rule; 3] {
    [
        mock!(DocDb::describe_db_subnet_groups).then_output(|| {
            DescribeDbSubnetGroupsOutput::builder()
                .db_subnet_groups(
                    DbSubnetGroup::builder()
                        .db_subnet_group_name(CLUSTER)
                        .build(),
                )
                .build()
        }),
        mock!(DocDb::describe_db_cluster_parameter_groups).then_output(|| {
            DescribeDbClusterParameterGroupsOutput::builder()
                .db_cluster_parameter_groups(
                    DbClusterParameterGroup::builder()
                        .db_cluster_parameter_group_name("apiary-acme-docdb5")
                        .build(),
                )
                .build()
        }),
        mock!(DocDb::describe_db_cluster_parameters).then_output(|| {
            DescribeDbClusterParametersOutput::builder()
                .parameters(
                    Parameter::builder()
                        .parameter_name("tls")
                        .parameter_value("enabled")
                        .build(),
                )
                .build()
        }),
    ]
}

fn describe_cluster(status: &'static str) -> Rule {
    mock!(DocDb::describe_db_clusters).then_output(move || {
        DescribeDbClustersOutput::builder()
            .db_clusters(cluster(status))
            .build()
    })
}

fn cluster_not_found() -> Rule {
    mock!(DocDb::describe_db_clusters).then_error(|| {
        DescribeDBClustersError::DbClusterNotFoundFault(
            DbClusterNotFoundFault::builder()
                .meta(meta("DBClusterNotFoundFault", "not found"))
                .build(),
        )
    })
}

fn describe_instance(status: &'static str) -> Rule {
    mock!(DocDb::describe_db_instances).then_compute_output(move |r| {
        DescribeDbInstancesOutput::builder()
            .db_instances(instance(
                r.db_instance_identifier().unwrap_or_default(),
                status,
            ))
            .build()
    })
}

fn instance_not_found() -> Rule {
    mock!(DocDb::describe_db_instances).then_error(|| {
        DescribeDBInstancesError::DbInstanceNotFoundFault(
            DbInstanceNotFoundFault::builder()
                .meta(meta("DBInstanceNotFound", "not found"))
                .build(),
        )
    })
}

fn create_instance() -> Rule {
    mock!(DocDb::create_db_instance).then_compute_output(|r| {
        CreateDbInstanceOutput::builder()
            .db_instance(instance(
                r.db_instance_identifier().unwrap_or_default(),
                "creating",
            ))
            .build()
    })
}

#[tokio::test]
async fn an_existing_cluster_is_reported_and_nothing_is_created() {
    let [subnets, groups, params] = found_prerequisites();
    let (describe, instances) = (
        describe_cluster("available"),
        describe_instance("available"),
    );
    let create_cluster =
        mock!(DocDb::create_db_cluster).then_output(|| CreateDbClusterOutput::builder().build());
    let create_instance = create_instance();
    let modify = mock!(DocDb::modify_db_cluster_parameter_group)
        .then_output(|| ModifyDbClusterParameterGroupOutput::builder().build());
    let mocks = Mocks {
        docdb: vec![
            &subnets,
            &groups,
            &params,
            &describe,
            &instances,
            &create_cluster,
            &create_instance,
            &modify,
        ],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-documentdb"))
        .await
        .expect("ensure");
    assert_eq!(
        out,
        json!({
            "identifier": CLUSTER,
            "host": HOST,
            "port": 27017,
            "secret_arn": SECRET,
            "app_secret_arn": app_secret_arn("documentdb"),
            "ready": true,
            "enabled": true,
            "status": "available",
            "created": [],
        })
    );
    for rule in [&create_cluster, &create_instance, &modify] {
        assert_eq!(rule.num_calls(), 0);
    }
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
}

#[tokio::test]
async fn a_new_cluster_is_encrypted_tls_only_with_a_managed_password() {
    let subnets_missing = mock!(DocDb::describe_db_subnet_groups).then_error(|| {
        DescribeDBSubnetGroupsError::DbSubnetGroupNotFoundFault(
            DbSubnetGroupNotFoundFault::builder()
                .meta(meta("DBSubnetGroupNotFoundFault", "no"))
                .build(),
        )
    });
    let create_subnets = mock!(DocDb::create_db_subnet_group)
        .match_requests(|r| {
            r.db_subnet_group_name() == Some(CLUSTER) && r.subnet_ids() == fixtures::PRIVATE_SUBNETS
        })
        .then_output(|| CreateDbSubnetGroupOutput::builder().build());
    let groups_missing = mock!(DocDb::describe_db_cluster_parameter_groups).then_error(|| {
        DescribeDBClusterParameterGroupsError::DbParameterGroupNotFoundFault(
            DbParameterGroupNotFoundFault::builder()
                .meta(meta("DBParameterGroupNotFound", "no"))
                .build(),
        )
    });
    let create_group = mock!(DocDb::create_db_cluster_parameter_group)
        .match_requests(|r| r.db_parameter_group_family() == Some("docdb5.0"))
        .then_output(|| CreateDbClusterParameterGroupOutput::builder().build());
    let tls = mock!(DocDb::modify_db_cluster_parameter_group)
        .match_requests(|r| {
            r.db_cluster_parameter_group_name() == Some("apiary-acme-docdb5")
                && r.parameters().iter().any(|p| {
                    p.parameter_name() == Some("tls") && p.parameter_value() == Some("enabled")
                })
        })
        .then_output(|| ModifyDbClusterParameterGroupOutput::builder().build());
    let missing = cluster_not_found();
    let docdb_key = fixtures::key_arn("docdb");
    let create_cluster = mock!(DocDb::create_db_cluster)
        .match_requests(move |r| {
            r.db_cluster_identifier() == Some(CLUSTER)
                && r.engine() == Some("docdb")
                && r.storage_encrypted() == Some(true)
                && r.kms_key_id() == Some(docdb_key.as_str())
                && r.manage_master_user_password() == Some(true)
                && r.master_user_secret_kms_key_id() == Some(fixtures::key_arn("app").as_str())
                && r.master_user_password().is_none()
                && r.deletion_protection() == Some(true)
                && r.backup_retention_period() == Some(7)
                && r.vpc_security_group_ids() == [fixtures::DATABASES_SG]
                && r.db_subnet_group_name() == Some(CLUSTER)
                && r.db_cluster_parameter_group_name() == Some("apiary-acme-docdb5")
                && has_tag(
                    r.tags().iter().map(|t| (t.key(), t.value())),
                    "apiary:deployment",
                    "acme",
                )
        })
        .then_output(|| {
            CreateDbClusterOutput::builder()
                .db_cluster(cluster("creating"))
                .build()
        });
    let instance_missing = instance_not_found();
    let create = mock!(DocDb::create_db_instance)
        .match_requests(|r| {
            r.db_instance_identifier() == Some(INSTANCE)
                && r.db_cluster_identifier() == Some(CLUSTER)
                && r.engine() == Some("docdb")
                && r.db_instance_class() == Some("db.t3.medium")
        })
        .then_output(|| {
            CreateDbInstanceOutput::builder()
                .db_instance(instance(INSTANCE, "creating"))
                .build()
        });
    let mocks = Mocks {
        docdb: vec![
            &subnets_missing,
            &create_subnets,
            &groups_missing,
            &create_group,
            &tls,
            &missing,
            &create_cluster,
            &instance_missing,
            &create,
        ],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-documentdb"))
        .await
        .expect("ensure");
    assert_eq!(
        create_cluster.num_calls(),
        1,
        "the request carries every setting"
    );
    assert_eq!(create.num_calls(), 1);
    assert_eq!(tls.num_calls(), 1);
    assert_eq!(out["ready"], json!(false));
    assert_eq!(
        out["created"],
        json!([CLUSTER, "apiary-acme-docdb5", CLUSTER, INSTANCE])
    );
}

#[tokio::test]
async fn multi_az_gets_a_second_instance() {
    let [subnets, groups, params] = found_prerequisites();
    let (describe, missing, create) = (
        describe_cluster("available"),
        instance_not_found(),
        create_instance(),
    );
    let mocks = Mocks {
        docdb: vec![&subnets, &groups, &params, &describe, &missing, &create],
        ..Default::default()
    };
    let multi_az = acme().with_spec(|spec| spec["databases"] = json!({"multi_az": true}));
    let (deps, _) = mocks.deps_with(&multi_az);
    let out = handle(&deps, event("ensure-documentdb"))
        .await
        .expect("ensure");
    assert_eq!(create.num_calls(), 2);
    assert_eq!(
        out["created"],
        json!(["apiary-acme-docdb-1", "apiary-acme-docdb-2"])
    );
    assert_eq!(out["ready"], json!(false), "instances still creating");
}

#[tokio::test]
async fn the_emulator_rejecting_docdb_is_reported_not_hidden() {
    let [subnets, groups, params] = found_prerequisites();
    let missing = cluster_not_found();
    let rejected = mock!(DocDb::create_db_cluster).then_error(|| {
        CreateDBClusterError::generic(meta("InvalidParameterValue", MOTO_REJECTION))
    });
    let create = create_instance();
    let mocks = Mocks {
        docdb: vec![&subnets, &groups, &params, &missing, &rejected, &create],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-documentdb"))
        .await
        .expect("reported, not failed");
    assert_eq!(out["emulated"], json!(false));
    assert_eq!(out["ready"], json!(true), "nothing to wait for");
    assert_eq!(out["enabled"], json!(true));
    assert!(out.get("host").is_none(), "no endpoint is invented: {out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("DocumentDB is not emulated locally")
    );
    assert_eq!(create.num_calls(), 0);
    let entries = recorder.entries.lock().unwrap();
    // Nothing was made or is awaited; what later layers read is "no endpoint".
    assert_eq!(entries[0].outcome, "unchanged");
    assert!(
        entries[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("DocumentDB is not emulated locally")),
        "{entries:?}"
    );
    let saved = recorder
        .saved("acme", "databases.documentdb")
        .expect("kept");
    assert_eq!(saved["emulated"], json!(false));
    let layers =
        apiary_core::step::assemble([("databases.documentdb".to_owned(), saved)].into()).unwrap();
    assert_eq!(layers.databases().unwrap().documentdb, None);
    assert!(
        !recorder
            .resources
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.kind == "docdb:db-cluster"),
        "no cluster is recorded"
    );
}

#[tokio::test]
async fn other_invalid_parameters_still_fail() {
    let [subnets, groups, params] = found_prerequisites();
    let missing = cluster_not_found();
    let rejected = mock!(DocDb::create_db_cluster).then_error(|| {
        CreateDBClusterError::generic(meta(
            "InvalidParameterValue",
            "The engine version 9.9 is not available",
        ))
    });
    let mocks = Mocks {
        docdb: vec![&subnets, &groups, &params, &missing, &rejected],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-documentdb")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string()
            .contains("CreateDBCluster apiary-acme-docdb"),
        "{err}"
    );
}

#[tokio::test]
async fn failed_cluster_and_instance_states_name_the_resource() {
    let describe = describe_cluster("inaccessible-encryption-credentials");
    let mocks = Mocks {
        docdb: vec![&describe],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-documentdb")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(err.to_string().contains(CLUSTER), "{err}");

    let (describe, instances) = (describe_cluster("available"), describe_instance("failed"));
    let mocks = Mocks {
        docdb: vec![&describe, &instances],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-documentdb")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(err.to_string().contains(INSTANCE), "{err}");
}

#[tokio::test]
async fn status_waits_for_cluster_and_instances() {
    let (describe, instances) = (describe_cluster("available"), describe_instance("creating"));
    let create = create_instance();
    let mocks = Mocks {
        docdb: vec![&describe, &instances, &create],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("status-documentdb"))
        .await
        .expect("status");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(
        out["status"],
        json!("available"),
        "the cluster's own status"
    );

    let (missing, create) = (cluster_not_found(), create_instance());
    let mocks = Mocks {
        docdb: vec![&missing, &create],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("status-documentdb"))
        .await
        .expect("status");
    assert_eq!(out["missing"], json!([CLUSTER, INSTANCE]));
    assert_eq!(create.num_calls(), 0);
}

#[tokio::test]
async fn throttling_is_retryable_and_access_denied_is_fatal() {
    let throttled = mock!(DocDb::describe_db_clusters).then_error(|| {
        DescribeDBClustersError::generic(meta("ThrottlingException", "Rate exceeded"))
    });
    let mocks = Mocks {
        docdb: vec![&throttled],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-documentdb")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable);

    let [subnets, groups, params] = found_prerequisites();
    let missing = cluster_not_found();
    let denied = mock!(DocDb::create_db_cluster).then_error(|| {
        CreateDBClusterError::generic(meta(
            "AccessDenied",
            "not authorized to perform rds:CreateDBCluster",
        ))
    });
    let mocks = Mocks {
        docdb: vec![&subnets, &groups, &params, &missing, &denied],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-documentdb")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
}

#[tokio::test]
async fn an_existing_cluster_follows_backup_retention_and_gets_its_protection_back() {
    let [subnets, groups, params] = found_prerequisites();
    let unprotected = mock!(DocDb::describe_db_clusters).then_output(|| {
        let mut found = cluster("available");
        found.deletion_protection = Some(false);
        DescribeDbClustersOutput::builder()
            .db_clusters(found)
            .build()
    });
    let instances = describe_instance("available");
    let modify = mock!(DocDb::modify_db_cluster)
        .match_requests(|r| {
            r.db_cluster_identifier() == Some(CLUSTER)
                && r.backup_retention_period() == Some(14)
                && r.deletion_protection() == Some(true)
                && r.apply_immediately() == Some(true)
        })
        .then_output(|| {
            aws_sdk_docdb::operation::modify_db_cluster::ModifyDbClusterOutput::builder().build()
        });
    let mocks = Mocks {
        docdb: vec![
            &subnets,
            &groups,
            &params,
            &unprotected,
            &instances,
            &modify,
        ],
        ..Default::default()
    };
    let longer = acme().with_spec(|spec| spec["backup"]["retention_days"] = json!(14));
    let (deps, _) = mocks.deps_with(&longer);
    let out = handle(&deps, event("ensure-documentdb"))
        .await
        .expect("ensure");
    assert_eq!(modify.num_calls(), 1);
    assert_eq!(
        out["created"],
        json!([format!("{CLUSTER}:modified")]),
        "{out}"
    );
}

#[tokio::test]
async fn a_busy_cluster_is_changed_on_a_later_round_and_a_kept_instance_is_said() {
    let [subnets, groups, params] = found_prerequisites();
    let busy = mock!(DocDb::describe_db_clusters).then_output(|| {
        let mut found = cluster("backing-up");
        found.db_cluster_members = Some(vec![
            aws_sdk_docdb::types::DbClusterMember::builder()
                .db_instance_identifier(INSTANCE)
                .build(),
            aws_sdk_docdb::types::DbClusterMember::builder()
                .db_instance_identifier("apiary-acme-docdb-2")
                .build(),
        ]);
        DescribeDbClustersOutput::builder()
            .db_clusters(found)
            .build()
    });
    let instances = describe_instance("available");
    let modify = mock!(DocDb::modify_db_cluster).then_output(|| {
        aws_sdk_docdb::operation::modify_db_cluster::ModifyDbClusterOutput::builder().build()
    });
    let mocks = Mocks {
        docdb: vec![&subnets, &groups, &params, &busy, &instances, &modify],
        ..Default::default()
    };
    let longer = acme().with_spec(|spec| spec["backup"]["retention_days"] = json!(14));
    let (deps, recorder) = mocks.deps_with(&longer);
    let out = handle(&deps, event("ensure-documentdb"))
        .await
        .expect("ensure");
    assert_eq!(modify.num_calls(), 0, "not while the cluster is backing up");
    assert_eq!(out["ready"], json!(false), "{out}");
    let entries = recorder.entries.lock().unwrap();
    let detail = entries
        .last()
        .and_then(|e| e.detail.clone())
        .unwrap_or_default();
    assert!(detail.contains("backup retention wait"), "{detail}");
    assert!(detail.contains("apiary-acme-docdb-2 is kept"), "{detail}");
}

#[tokio::test]
async fn a_change_waiting_for_a_busy_cluster_is_made_on_the_next_round() {
    let [subnets, groups, params] = found_prerequisites();
    let instances = describe_instance("available");
    let modify = mock!(DocDb::modify_db_cluster)
        .match_requests(|r| r.backup_retention_period() == Some(14))
        .then_output(|| {
            aws_sdk_docdb::operation::modify_db_cluster::ModifyDbClusterOutput::builder().build()
        });
    let longer = acme().with_spec(|spec| spec["backup"]["retention_days"] = json!(14));
    for (status, calls) in [("backing-up", 0), ("available", 1)] {
        let described = describe_cluster(status);
        let mocks = Mocks {
            docdb: vec![&subnets, &groups, &params, &described, &instances, &modify],
            ..Default::default()
        };
        let (deps, _) = mocks.deps_with(&longer);
        handle(&deps, event("ensure-documentdb"))
            .await
            .expect("ensure");
        assert_eq!(modify.num_calls(), calls, "{status}");
    }
}
