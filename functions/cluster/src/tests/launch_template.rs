use apiary_core::ErrorName;
use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ec2::operation::create_launch_template::{
    CreateLaunchTemplateError, CreateLaunchTemplateOutput,
};
use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
use aws_sdk_ec2::types::{LaunchTemplate, LaunchTemplateHttpTokensState, ResourceType, VolumeType};
use aws_sdk_eks::Client as Eks;
use aws_sdk_eks::operation::create_nodegroup::CreateNodegroupOutput;
use aws_sdk_eks::types::{ClusterStatus, Nodegroup, NodegroupStatus};
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::nodegroup::{ASSUMED, access_and_addons_present, roles_with_caller};
use super::*;

fn no_template() -> Rule {
    mock!(Ec2::describe_launch_templates)
        .then_output(|| DescribeLaunchTemplatesOutput::builder().build())
}

fn nodegroup_missing() -> Rule {
    mock!(Eks::describe_nodegroup).then_error(|| {
        aws_sdk_eks::operation::describe_nodegroup::DescribeNodegroupError::ResourceNotFoundException(
            aws_sdk_eks::types::error::ResourceNotFoundException::builder()
                .message("No node group found")
                .meta(meta("ResourceNotFoundException", "No node group found"))
                .build(),
        )
    })
}

fn nodegroup_using(template_id: &'static str) -> Rule {
    mock!(Eks::create_nodegroup)
        .match_requests(move |r| {
            r.launch_template().and_then(|t| t.id()) == Some(template_id)
                && r.launch_template().and_then(|t| t.version()) == Some("1")
                && r.disk_size().is_none()
        })
        .then_output(|| {
            CreateNodegroupOutput::builder()
                .nodegroup(
                    Nodegroup::builder()
                        .nodegroup_name("apiary-acme-system")
                        .status(NodegroupStatus::Creating)
                        .build(),
                )
                .build()
        })
}

#[tokio::test]
async fn a_new_node_group_gets_an_encrypted_100_gib_gp3_root_volume() {
    let (cluster, roles, identity, missing) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        nodegroup_missing(),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let ebs_key = fixtures::key_arn("ebs");
    let lookup = no_template();
    let create_template = mock!(Ec2::create_launch_template)
        .match_requests(move |r| {
            let data = r.launch_template_data().unwrap();
            let mapping = &data.block_device_mappings()[0];
            let ebs = mapping.ebs().unwrap();
            let metadata = data.metadata_options().unwrap();
            let tagged = r.tag_specifications().iter().any(|t| {
                t.resource_type() == Some(&ResourceType::LaunchTemplate)
                    && t.tags()
                        .iter()
                        .any(|t| t.key() == Some("apiary:deployment") && t.value() == Some("acme"))
            });
            r.launch_template_name() == Some(TEMPLATE)
                && r.client_token().is_some_and(|t| t.starts_with("apiary-"))
                && data.block_device_mappings().len() == 1
                && mapping.device_name() == Some("/dev/xvda")
                && ebs.volume_size() == Some(100)
                && ebs.volume_type() == Some(&VolumeType::Gp3)
                && ebs.encrypted() == Some(true)
                && ebs.kms_key_id() == Some(ebs_key.as_str())
                && ebs.delete_on_termination() == Some(true)
                && metadata.http_tokens() == Some(&LaunchTemplateHttpTokensState::Required)
                && data.iam_instance_profile().is_none()
                && tagged
        })
        .then_output(|| {
            CreateLaunchTemplateOutput::builder()
                .launch_template(
                    LaunchTemplate::builder()
                        .launch_template_name(TEMPLATE)
                        .launch_template_id("lt-new")
                        .default_version_number(1)
                        .build(),
                )
                .build()
        });
    let create = nodegroup_using("lt-new");
    let mocks = Mocks {
        eks: vec![&cluster, &missing, &entries, &policies, &addons, &create],
        ec2: vec![&lookup, &create_template],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    assert_eq!(
        create_template.num_calls(),
        1,
        "the template carries every setting"
    );
    assert_eq!(create.num_calls(), 1, "the node group names the template");
    let created = out["created"].as_array().unwrap();
    assert!(created.contains(&json!(TEMPLATE)), "{out}");
    assert!(
        recorder
            .resources
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.kind == "ec2:launch-template" && r.id == "lt-new")
    );
}

#[tokio::test]
async fn a_template_found_by_name_is_used_and_not_made_again() {
    let (cluster, roles, identity, missing) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        nodegroup_missing(),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let found = template_found();
    let create_template = mock!(Ec2::create_launch_template)
        .then_output(|| CreateLaunchTemplateOutput::builder().build());
    let create = nodegroup_using(TEMPLATE_ID);
    let mocks = Mocks {
        eks: vec![&cluster, &missing, &entries, &policies, &addons, &create],
        ec2: vec![&found, &create_template],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    assert_eq!(create_template.num_calls(), 0);
    assert_eq!(create.num_calls(), 1);
    assert!(
        !out["created"]
            .as_array()
            .unwrap()
            .contains(&json!(TEMPLATE)),
        "{out}"
    );
}

#[tokio::test]
async fn another_deployments_template_is_a_conflict_and_a_lost_race_reads_the_winner() {
    let (cluster, roles, identity, missing) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        nodegroup_missing(),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let foreign = template_tagged("globex");
    let mocks = Mocks {
        eks: vec![&cluster, &missing, &entries, &policies, &addons],
        ec2: vec![&foreign],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-nodegroup")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    assert!(err.to_string().contains("globex"), "{err}");

    // Made by a concurrent run between the lookup and the create: its template is used.
    let (cluster, roles, identity, missing) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        nodegroup_missing(),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let lookups = mock!(Ec2::describe_launch_templates)
        .sequence()
        .output(|| DescribeLaunchTemplatesOutput::builder().build())
        .output(|| {
            DescribeLaunchTemplatesOutput::builder()
                .launch_templates(
                    LaunchTemplate::builder()
                        .launch_template_name(TEMPLATE)
                        .launch_template_id(TEMPLATE_ID)
                        .default_version_number(1)
                        .tags(
                            aws_sdk_ec2::types::Tag::builder()
                                .key("apiary:deployment")
                                .value("acme")
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
        .build();
    let exists = mock!(Ec2::create_launch_template).then_error(|| {
        CreateLaunchTemplateError::generic(meta(
            "InvalidLaunchTemplateName.AlreadyExistsException",
            "Launch template name already in use.",
        ))
    });
    let create = nodegroup_using(TEMPLATE_ID);
    let mocks = Mocks {
        eks: vec![&cluster, &missing, &entries, &policies, &addons, &create],
        ec2: vec![&lookups, &exists],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    assert_eq!(exists.num_calls(), 1);
    assert_eq!(lookups.num_calls(), 2);
    assert_eq!(create.num_calls(), 1);
}
