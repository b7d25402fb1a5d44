//! The launch template of the system node group: the nodes' root volume is 100 GiB gp3,
//! encrypted with the deployment's `ebs` key (not the account's default EBS key), and the
//! instance metadata service answers only session (IMDSv2) requests.
//!
//! Found by name first (tagged with the deployment, so another deployment's template of
//! the same name is a conflict), created otherwise with an idempotency token. EKS takes a
//! launch template only when a node group is created: a node group made before this one
//! existed keeps its settings until it is replaced.

use apiary_core::naming::{TAG_DEPLOYMENT, client_token};
use apiary_core::{Error, Result};
use aws_sdk_ec2::types::{
    Filter, LaunchTemplate, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification, VolumeType,
};

use crate::Work;

/// Root volume size of a system node, GiB.
pub const ROOT_VOLUME_GIB: i32 = 100;
/// The AL2023 EKS AMI's root device.
pub const ROOT_DEVICE: &str = "/dev/xvda";

/// The template a node group names: its id and the version to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateRef {
    pub id: String,
    pub version: String,
}

/// Finds the template by name or creates it.
pub(crate) async fn ensure(step: &Work<'_>) -> Result<TemplateRef> {
    let key_arn = step.layers.keys()?.key("ebs")?.arn.clone();
    let found = match find(step).await? {
        Some(found) => found,
        None => create(step, &key_arn).await?,
    };
    let name = &step.resources.launch_template;
    let id = found
        .launch_template_id()
        .ok_or_else(|| Error::fatal(format!("launch template {name} has no id")))?
        .to_owned();
    step.log.resource("ec2:launch-template", &id, None).await?;
    Ok(TemplateRef {
        id,
        version: found.default_version_number().unwrap_or(1).to_string(),
    })
}

/// The template of this name, which must carry this deployment's tag.
async fn find(step: &Work<'_>) -> Result<Option<LaunchTemplate>> {
    let name = &step.resources.launch_template;
    let out = step
        .deps
        .ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name("launch-template-name")
                .values(name)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeLaunchTemplates {name}"), e))?;
    let Some(found) = out.launch_templates().first().cloned() else {
        return Ok(None);
    };
    let owner = found
        .tags()
        .iter()
        .find(|t| t.key() == Some(TAG_DEPLOYMENT))
        .and_then(|t| t.value());
    if owner != Some(step.names.deployment()) {
        return Err(Error::Conflict(format!(
            "launch template {name} exists but is tagged {TAG_DEPLOYMENT}={}, not {}",
            owner.unwrap_or("(none)"),
            step.names.deployment()
        )));
    }
    Ok(Some(found))
}

/// What every node launched from the template gets.
pub(crate) fn template_data(key_arn: &str, volume_tags: Vec<Tag>) -> RequestLaunchTemplateData {
    RequestLaunchTemplateData::builder()
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(ROOT_DEVICE)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(ROOT_VOLUME_GIB)
                        .volume_type(VolumeType::Gp3)
                        .encrypted(true)
                        .kms_key_id(key_arn)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        // IMDSv2 only; two hops so pods on the host network still reach it.
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(2)
                .build(),
        )
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Volume)
                .set_tags(Some(volume_tags))
                .build(),
        )
        .build()
}

fn ec2_tags(pairs: Vec<(String, String)>) -> Vec<Tag> {
    pairs
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// Creates the template. The token is made of the deployment, the key (new after a
/// teardown, so a re-provision gets a new token) and the template's settings.
async fn create(step: &Work<'_>, key_arn: &str) -> Result<LaunchTemplate> {
    let name = &step.resources.launch_template;
    let size = ROOT_VOLUME_GIB.to_string();
    let token = client_token(&[
        step.names.deployment(),
        name.as_str(),
        key_arn,
        ROOT_DEVICE,
        size.as_str(),
        VolumeType::Gp3.as_str(),
    ]);
    let created = step
        .deps
        .ec2
        .create_launch_template()
        .launch_template_name(name)
        .client_token(token)
        .version_description("system nodes: encrypted gp3 root volume, IMDSv2")
        .launch_template_data(template_data(key_arn, ec2_tags(step.tags("node-volume"))))
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .set_tags(Some(ec2_tags(step.tags("launch-template"))))
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(out) => {
            step.log.created(name);
            out.launch_template.ok_or_else(|| {
                Error::fatal(format!("CreateLaunchTemplate {name} returned no template"))
            })
        }
        // Another run made it between the lookup and now.
        Err(err)
            if aws_sdk_ec2::error::ProvideErrorMetadata::code(&err)
                == Some("InvalidLaunchTemplateName.AlreadyExistsException") =>
        {
            find(step).await?.ok_or_else(|| {
                Error::Conflict(format!(
                    "launch template {name} exists but cannot be described"
                ))
            })
        }
        Err(err) => Err(Error::aws(format!("CreateLaunchTemplate {name}"), err)),
    }
}
