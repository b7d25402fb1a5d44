//! Unit tests with mocked clients: every path the emulator cannot produce (not ready,
//! failed states, refused and throttled calls), and the exact settings of each request.

mod alarms;
mod documentdb;
mod postgres;
mod redis;

use std::sync::Arc;

use apiary_core::fixtures::{self, Fixture};
use apiary_core::step::MemoryRecorder;
use aws_smithy_mocks::{Rule, RuleMode, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::{Value, json};

use super::*;

/// Deployment `acme` as the databases steps find it: the layers before the databases
/// built.
pub(crate) fn acme() -> Fixture {
    Fixture::named("acme").before(Layer::Databases)
}

/// The event the state machine sends for `action` on deployment `acme`.
pub(crate) fn event(action: &str) -> Value {
    apiary_core::step::event(action, "acme")
}

/// Mocked clients, one rule list per service.
#[derive(Default)]
pub(crate) struct Mocks<'a> {
    pub cloudwatch: Vec<&'a Rule>,
    pub rds: Vec<&'a Rule>,
    pub docdb: Vec<&'a Rule>,
    pub elasticache: Vec<&'a Rule>,
    pub secrets: Vec<&'a Rule>,
}

impl Mocks<'_> {
    /// Clients over the state of [`acme`].
    pub(crate) fn deps(&self) -> (Deps, MemoryRecorder) {
        self.deps_with(&acme())
    }

    /// Clients over a state holding `fixture`'s spec and layer outputs.
    pub(crate) fn deps_with(&self, fixture: &Fixture) -> (Deps, MemoryRecorder) {
        let recorder = fixture.state();
        // The pods' users' secrets exist unless a test says otherwise (its own rules
        // come first).
        let (app_found, app_value) = (app_secret_found(), app_secret_value());
        let mut secrets = self.secrets.clone();
        secrets.extend([&app_found, &app_value]);
        let deps = Deps {
            cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &self.cloudwatch),
            alert_topic: None,
            emulator: false,
            rds: mock_client!(aws_sdk_rds, RuleMode::MatchAny, &self.rds),
            docdb: mock_client!(aws_sdk_docdb, RuleMode::MatchAny, &self.docdb),
            elasticache: mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, &self.elasticache),
            secrets: mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, &secrets),
            recorder: Arc::new(recorder.clone()),
        };
        (deps, recorder)
    }
}

/// The ARN of the pods' `store` user's secret in these tests.
pub(crate) fn app_secret_arn(store: &str) -> String {
    format!("arn:aws:secretsmanager:us-west-2:123456789012:secret:apiary-acme-{store}-app-AbCdEf")
}

/// The ARN of the secret named `apiary-acme-<store>-app`.
fn app_secret_arn_of(name: &str) -> String {
    app_secret_arn(
        name.trim_start_matches("apiary-acme-")
            .trim_end_matches("-app"),
    )
}

fn is_app_secret(id: Option<&str>) -> bool {
    id.is_some_and(|id| id.ends_with("-app"))
}

fn app_secret_found() -> Rule {
    aws_smithy_mocks::mock!(aws_sdk_secretsmanager::Client::describe_secret)
        .match_requests(|r| is_app_secret(r.secret_id()))
        .then_compute_output(|r| {
            let name = r.secret_id().unwrap_or_default();
            aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput::builder()
                .name(name)
                .arn(app_secret_arn_of(name))
                .build()
        })
}

fn app_secret_value() -> Rule {
    aws_smithy_mocks::mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .match_requests(|r| is_app_secret(r.secret_id()))
        .then_compute_output(|r| {
            let name = r.secret_id().unwrap_or_default();
            aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput::builder()
                .name(name)
                .arn(app_secret_arn_of(name))
                .secret_string(
                    json!({"username": "honeyhive_app_a", "password": "generated"}).to_string(),
                )
                .build()
        })
}

pub(crate) fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

pub(crate) fn has_tag<'t>(
    tags: impl IntoIterator<Item = (Option<&'t str>, Option<&'t str>)>,
    key: &str,
    value: &str,
) -> bool {
    tags.into_iter()
        .any(|(k, v)| k == Some(key) && v == Some(value))
}

#[tokio::test]
async fn unknown_actions_and_events_carrying_a_spec_fail_before_any_call() {
    let mocks = Mocks::default();
    let (deps, recorder) = mocks.deps();
    for action in ["ensure", "ensure-mysql", "create-postgres", "status"] {
        let err = handle(&deps, event(action)).await.unwrap_err();
        assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput, "{action}");
    }
    // The spec comes from the state table, where only a valid one is ever stored: an
    // event that brings its own is refused.
    let mut with_spec = event("ensure-postgres");
    with_spec["spec"] = json!({"name": "Bad!"});
    let err = handle(&deps, with_spec).await.unwrap_err();
    assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput);
    assert!(err.to_string().contains("spec"), "{err}");
    assert!(recorder.entries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn ensure_without_earlier_layers_is_invalid_input() {
    let mocks = Mocks::default();
    let (deps, _) = mocks.deps_with(&acme().before(Layer::Keys));
    for action in ["ensure-postgres", "ensure-documentdb", "ensure-redis"] {
        let err = handle(&deps, event(action)).await.unwrap_err();
        assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput, "{action}");
        assert!(err.to_string().contains("layers.keys"), "{err}");
    }
}

#[tokio::test]
async fn disabled_stores_report_ready_without_any_call() {
    let mocks = Mocks::default();
    let off =
        acme().with_spec(|spec| spec["databases"] = json!({"documentdb": false, "redis": false}));
    let (deps, recorder) = mocks.deps_with(&off);
    for action in [
        "ensure-documentdb",
        "status-documentdb",
        "ensure-redis",
        "status-redis",
    ] {
        let out = handle(&deps, event(action)).await.expect(action);
        assert_eq!(
            out,
            json!({"ready": true, "created": [], "enabled": false}),
            "{action}"
        );
    }
    // What later layers read: a store that is off has no endpoint.
    for slot in ["databases.documentdb", "databases.redis"] {
        assert_eq!(
            recorder.saved("acme", slot),
            Some(json!({"enabled": false}))
        );
    }
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(entries.len(), 4);
    // The kit names the outcome (nothing made by an ensure, ready for a status); the
    // detail says why.
    let outcomes: Vec<_> = entries.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["unchanged", "ready", "unchanged", "ready"]);
    assert!(
        entries.iter().all(|e| e
            .detail
            .as_deref()
            .is_some_and(|d| d.ends_with("is off in the spec"))),
        "{entries:?}"
    );
}
