//! A key an interrupted run created but never aliased is found by its tags and named, and
//! CreateKey (which takes no idempotency token) is never repeated by the SDK.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::operation::list_aliases::ListAliasesOutput;
use aws_sdk_kms::operation::list_keys::ListKeysOutput;
use aws_sdk_kms::operation::list_resource_tags::{ListResourceTagsError, ListResourceTagsOutput};
use aws_sdk_kms::types::{AliasListEntry, KeyListEntry};
use aws_smithy_mocks::MockResponse;

use super::*;

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .tag_key(key)
        .tag_value(value)
        .build()
        .unwrap()
}

/// The account: a key an alias names, this deployment's unnamed `rds` key, another
/// deployment's unnamed key, and a key this role may not read the tags of.
fn account() -> [Rule; 3] {
    let aliases = mock!(Kms::list_aliases).then_output(|| {
        ListAliasesOutput::builder()
            .aliases(
                AliasListEntry::builder()
                    .alias_name("alias/someone-else")
                    .target_key_id("named")
                    .build(),
            )
            .build()
    });
    let keys = mock!(Kms::list_keys).then_output(|| {
        let key = |id: &str| KeyListEntry::builder().key_id(id).build();
        ListKeysOutput::builder()
            .keys(key("named"))
            .keys(key("orphan-rds"))
            .keys(key("theirs"))
            .keys(key("locked"))
            .build()
    });
    let tags = mock!(Kms::list_resource_tags).then_compute_response(|r| {
        let ours = |scope: &str| {
            vec![
                tag("apiary:deployment", "acme"),
                tag("apiary:layer", "keys"),
                tag("apiary:role", scope),
            ]
        };
        let tags = match r.key_id().unwrap_or_default() {
            "orphan-rds" => ours("rds"),
            "theirs" => vec![
                tag("apiary:deployment", "other"),
                tag("apiary:layer", "keys"),
                tag("apiary:role", "rds"),
            ],
            "locked" => {
                return MockResponse::Error(ListResourceTagsError::generic(
                    ErrorMetadata::builder()
                        .code("AccessDeniedException")
                        .message("not authorized to perform kms:ListResourceTags")
                        .build(),
                ));
            }
            other => panic!("the tags of {other} are read, though an alias names it"),
        };
        MockResponse::Output(
            ListResourceTagsOutput::builder()
                .set_tags(Some(tags))
                .build(),
        )
    });
    [aliases, keys, tags]
}

#[tokio::test]
async fn a_key_whose_alias_is_missing_is_found_by_its_tags_and_named() {
    let named: Arc<Mutex<Vec<String>>> = Arc::default();
    let describe = {
        let named = named.clone();
        mock!(Kms::describe_key).then_compute_response(move |r| {
            let id = r.key_id().unwrap_or_default();
            let rds = "alias/apiary/acme/rds";
            if id == "orphan-rds" || (id == rds && named.lock().unwrap().iter().any(|a| a == rds)) {
                MockResponse::Output(
                    DescribeKeyOutput::builder()
                        .key_metadata(metadata("orphan-rds", KeyState::Enabled))
                        .build(),
                )
            } else {
                MockResponse::Error(not_found())
            }
        })
    };
    let alias = {
        let named = named.clone();
        mock!(Kms::create_alias).then_compute_output(move |r| {
            named
                .lock()
                .unwrap()
                .push(r.alias_name().unwrap_or_default().to_owned());
            CreateAliasOutput::builder().build()
        })
    };
    let second_rds_key = mock!(Kms::create_key)
        .match_requests(|r| {
            r.tags()
                .iter()
                .any(|t| t.tag_key() == "apiary:role" && t.tag_value() == "rds")
        })
        .then_output(|| {
            CreateKeyOutput::builder()
                .key_metadata(metadata("dup", KeyState::Enabled))
                .build()
        });
    let create = mock!(Kms::create_key).then_output(|| {
        CreateKeyOutput::builder()
            .key_metadata(metadata("new", KeyState::Enabled))
            .build()
    });
    let policy = mock!(Kms::get_key_policy).then_output(|| GetKeyPolicyOutput::builder().build());
    let put_policy =
        mock!(Kms::put_key_policy).then_output(|| PutKeyPolicyOutput::builder().build());
    let rotation = mock!(Kms::get_key_rotation_status).then_output(|| {
        GetKeyRotationStatusOutput::builder()
            .key_rotation_enabled(true)
            .build()
    });
    let [aliases, keys, tags] = account();
    let (deps, _) = deps(&[
        &describe,
        &alias,
        &second_rds_key,
        &create,
        &policy,
        &put_policy,
        &rotation,
        &aliases,
        &keys,
        &tags,
    ]);

    let out = handle(&deps, event("ensure")).await.expect("ensure");
    assert_eq!(second_rds_key.num_calls(), 0, "no second key for rds");
    assert_eq!(
        create.num_calls(),
        SCOPES.len() - 1,
        "the other scopes are new"
    );
    assert_eq!(out["keys"]["rds"]["key_id"], json!("orphan-rds"), "{out}");
    assert!(
        named
            .lock()
            .unwrap()
            .contains(&"alias/apiary/acme/rds".to_owned()),
        "the alias names the found key"
    );
    // Its policy is brought to what this version writes, like any found key's.
    assert!(put_policy.num_calls() >= 1);
    // The account is listed once per run, however many aliases are missing.
    assert_eq!(keys.num_calls(), 1);
    assert_eq!(aliases.num_calls(), 1);
}

#[tokio::test]
async fn keys_are_not_listed_when_every_alias_exists() {
    let describe = describe_existing(KeyState::Enabled);
    let rotation = mock!(Kms::get_key_rotation_status).then_output(|| {
        GetKeyRotationStatusOutput::builder()
            .key_rotation_enabled(true)
            .build()
    });
    let [aliases, keys, tags] = account();
    let (deps, _) = deps(&[
        &describe,
        &current_policies(),
        &rotation,
        &aliases,
        &keys,
        &tags,
    ]);
    handle(&deps, event("ensure")).await.expect("ensure");
    assert_eq!(keys.num_calls() + aliases.num_calls() + tags.num_calls(), 0);
}

#[tokio::test]
async fn create_key_is_never_repeated_by_the_sdk() {
    let describe = mock!(Kms::describe_key).then_error(not_found);
    let create = mock!(Kms::create_key).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(500).unwrap(),
            aws_smithy_types::body::SdkBody::from(""),
        )
    });
    let (aliases, keys) = (
        mock!(Kms::list_aliases).then_output(|| ListAliasesOutput::builder().build()),
        mock!(Kms::list_keys).then_output(|| ListKeysOutput::builder().build()),
    );
    let rules = [&describe, &create, &aliases, &keys];
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, rules, |config| {
        config.retry_config(
            aws_sdk_kms::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(1)),
        )
    });
    let deps = Deps {
        kms,
        sts: sts(),
        recorder: Arc::new(state()),
    };
    let err = handle(&deps, event("ensure")).await.unwrap_err();
    // The key may exist with its answer lost: the workflow's retry finds it by its tags.
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    assert_eq!(create.num_calls(), 1, "one attempt only");
    let _ = deps.kms.create_key().send().await;
    assert_eq!(create.num_calls(), 1 + 3, "the client itself does retry");
}
