//! Small EC2 helpers: tags, tag filters, "already there" error checks, and how calls on
//! ids the step holds and creates without a token are made safe on real AWS.

use apiary_core::Error;
use apiary_core::error::transient;
use apiary_core::naming::{Layer, Names, TAG_DEPLOYMENT, TAG_ROLE};
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::error::SdkError;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

pub fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Filters that find the resource with `role` of this deployment.
pub fn role_filters(names: &Names, role: &str) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{TAG_DEPLOYMENT}"), names.deployment()),
        filter(&format!("tag:{TAG_ROLE}"), role),
    ]
}

/// Whether `tags` mark the resource with `role` of this deployment: the check
/// [`role_filters`] asks EC2 for, made again on what came back (not every EC2
/// implementation applies tag filters to every Describe call).
pub fn has_role(tags: &[Tag], names: &Names, role: &str) -> bool {
    let is = |key: &str, value: &str| {
        tags.iter()
            .any(|t| t.key() == Some(key) && t.value() == Some(value))
    };
    is(TAG_DEPLOYMENT, names.deployment()) && is(TAG_ROLE, role)
}

pub fn tags(names: &Names, role: &str, extra: &[(&str, &str)]) -> Vec<Tag> {
    let mut pairs = names.tags_named(Layer::Network, role);
    pairs.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    pairs
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn tag_spec(
    kind: ResourceType,
    names: &Names,
    role: &str,
    extra: &[(&str, &str)],
) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags(names, role, extra)))
        .build()
}

/// True for an EC2 error code that means the thing we asked for is already in place.
pub fn is_code<E: aws_sdk_ec2::error::ProvideErrorMetadata>(err: &E, codes: &[&str]) -> bool {
    err.code().is_some_and(|c| codes.contains(&c))
}

/// The error of a call on an id the step has just created or found: EC2 is eventually
/// consistent, so its `*.NotFound` for that id is `Apiary.Retryable` (the workflow runs
/// the step again, which looks everything up again), not a failure.
pub fn on_known_id<E>(operation: impl Into<String>, err: SdkError<E>) -> Error
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    Error::aws_transient_if(operation, err, transient::ec2_not_yet_visible)
}

/// Per-call configuration for a create that takes no idempotency token (CreateVpc,
/// CreateSubnet, CreateInternetGateway, AllocateAddress, CreateSecurityGroup): the SDK
/// must not repeat it after a timeout, which could make a second resource. A failure is
/// `Apiary.Retryable` instead, and the workflow's retry runs the step again, which
/// looks the resource up by its tags before creating anything.
pub fn without_sdk_retries() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(RetryConfig::disabled())
}
