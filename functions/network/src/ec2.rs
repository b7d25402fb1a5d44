//! Small EC2 helpers: tags, tag filters, and "already there" error checks.

use apiary_core::naming::{Layer, Names, TAG_DEPLOYMENT, TAG_ROLE};
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
