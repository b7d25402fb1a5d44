//! What handle-alert makes of an EventBridge event: which runbook it gets, what a person
//! is told, and which alarm record it opens or closes.
//!
//! The bootstrap stack's rules deliver the deployment's trouble to the handle-alert
//! workflow as `{"deployment": "<name>", "rule": "<rule name>", "event": <the event>}`.
//! [`classify`] reads the event with `aws_lambda_events`' EventBridge and CloudWatch
//! alarm types and picks one runbook:
//!
//! | event | runbook |
//! |---|---|
//! | RDS `low storage` for this deployment's PostgreSQL instance, or its free-storage alarm in ALARM | [`Runbook::RaiseStorage`] |
//! | CloudTrail `ScheduleKeyDeletion` of a key this deployment owns | [`Runbook::KeyState`] (cancel the deletion, notify) |
//! | the ingestion pool's at-limit alarm in ALARM | [`Runbook::ScalePool`] (scale-pools to the size preset's limits) |
//! | an alarm of this deployment back to `OK` | [`Runbook::Close`] (close its record) |
//! | Secrets Manager moved `AWSCURRENT` of one of this deployment's store secrets (RDS's own rotation of a master password, or any other) | [`Runbook::RestartIngestion`] (once the pods' secrets driver has the new value) |
//! | anything else (an alarm, a database, cache or Health event, a key disabled, a failed backup or restore test, an event no rule names) | [`Runbook::Record`] (record and notify) |
//!
//! A person hears of every event once: an alarm publishes its own state changes to the
//! alerts topic (its `AlarmActions`), so handle-alert does not publish them again unless
//! a runbook acted or failed; every other event it publishes.

use aws_lambda_events::event::cloudwatch_alarms::CloudWatchAlarmData;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

pub const WORKFLOW: &str = "handle-alert";

pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";
pub const CLOUDTRAIL_CALL: &str = "AWS API Call via CloudTrail";
pub const RDS_INSTANCE_EVENT: &str = "RDS DB Instance Event";
pub const STATES_STATUS_CHANGE: &str = "Step Functions Execution Status Change";
/// Secrets Manager's own event when a staging label moves to a new version (sent for
/// every label but `AWSPENDING` and `AWSPREVIOUS`, with no trail needed).
pub const SECRET_LABEL_UPDATED: &str = "Secret Label Updated";

/// The data-plane alarm (after `apiary-<name>-`) whose ALARM raises PostgreSQL's storage.
pub const LOW_STORAGE_ALARM: &str = "dp-postgres-free-storage";
/// The stack's alarm (after `apiary-<name>-`) on the ingestion NodePool's use of its
/// limits, whose ALARM raises the pool within its size preset.
pub const POOL_AT_LIMIT_ALARM: &str = "pool-ingestion-at-limit";

/// What handle-alert does about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runbook {
    /// The PostgreSQL instance is low on storage: raise its allocated storage within the
    /// ceiling (the databases function's `raise-storage`).
    RaiseStorage,
    /// A key of this deployment was scheduled for deletion: the one key-state policy
    /// (cancel the deletion, leave the key disabled as KMS does, notify).
    KeyState,
    /// An alarm of this deployment returned to OK: its open record is closed.
    Close,
    /// A store secret of this deployment has a new current value (RDS rotates its
    /// managed master passwords on its own schedule): once every ingestion pod's mount
    /// holds it, the pods restart, since their environment was read at start.
    RestartIngestion,
    /// The ingestion NodePool has held 90 % of its limits for 15 minutes: start
    /// scale-pools with the size preset's limits, unless the pool is frozen or already
    /// there (then only a person can decide: a bigger preset or `allow_beyond_preset`).
    ScalePool,
    /// Record the event and tell a person.
    Record,
}

/// An alarm's state change, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmChange {
    pub name: String,
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: String,
}

/// One event, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// EventBridge's event id: what makes a redelivered event act once.
    pub event_id: String,
    pub source: String,
    pub detail_type: String,
    pub time: DateTime<Utc>,
    /// What it is about: the alarm, database, cache, key, execution or Health event.
    pub subject: String,
    /// One line for a person.
    pub summary: String,
    pub runbook: Runbook,
    /// Whether handle-alert publishes it to the alerts topic itself.
    pub notify: bool,
    /// Why not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<AlarmChange>,
}

/// Reads `event` (an EventBridge event delivered by one of the stack's rules, or given
/// to handle-alert from the console) for `deployment`, whose keys are `keys` (ARNs).
/// An input that is not an EventBridge event is refused naming the field; an event of a
/// kind no runbook knows is [`Runbook::Record`], never refused.
pub fn classify(
    deployment: &str,
    event: &Value,
    keys: &[String],
    secrets: &[String],
) -> Result<Alert> {
    let parsed: EventBridgeEvent<Value> =
        serde_path_to_error::deserialize(event.clone()).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "event".to_owned()
            } else {
                format!("event.{path}")
            };
            Error::invalid_input(format!(
                "handle-alert input field `{field}`: not an EventBridge event ({}); it needs \
                 id, source, detail-type, time and detail",
                e.inner()
            ))
        })?;
    let Some(event_id) = parsed.id.clone().filter(|id| !id.is_empty()) else {
        return Err(Error::invalid_input(
            "handle-alert input field `event.id` is missing: the event id is what makes a \
             redelivered event act once",
        ));
    };
    let prefix = format!("apiary-{deployment}-");
    let mut alert = Alert {
        event_id,
        source: parsed.source.clone(),
        detail_type: parsed.detail_type.clone(),
        time: parsed.time.unwrap_or_else(Utc::now),
        subject: parsed
            .resources
            .as_ref()
            .and_then(|r| r.first().cloned())
            .unwrap_or_else(|| parsed.source.clone()),
        summary: format!("{} from {}", parsed.detail_type, parsed.source),
        runbook: Runbook::Record,
        notify: true,
        quiet: None,
        alarm: None,
    };
    let detail = &parsed.detail;
    match (parsed.source.as_str(), parsed.detail_type.as_str()) {
        ("aws.cloudwatch", ALARM_STATE_CHANGE) => alarm(&mut alert, detail, &prefix)?,
        ("aws.rds" | "aws.elasticache", _) => data_store(&mut alert, detail, &prefix),
        ("aws.kms", CLOUDTRAIL_CALL) => key_call(&mut alert, detail, keys),
        ("aws.secretsmanager", SECRET_LABEL_UPDATED) => secret_rotated(&mut alert, detail, secrets),
        ("aws.health", _) => health(&mut alert, detail),
        ("aws.states", STATES_STATUS_CHANGE) => execution(&mut alert, detail),
        _ => {
            alert.summary = format!(
                "{} from {}: no runbook knows this event; it is recorded for a person to read",
                parsed.detail_type, parsed.source
            );
        }
    }
    Ok(alert)
}

fn text<'a>(detail: &'a Value, field: &str) -> Option<&'a str> {
    detail.get(field).and_then(Value::as_str)
}

fn alarm(alert: &mut Alert, detail: &Value, prefix: &str) -> Result<()> {
    let data: CloudWatchAlarmData = serde_json::from_value(detail.clone()).map_err(|e| {
        Error::invalid_input(format!(
            "handle-alert input field `event.detail`: not a CloudWatch alarm state change ({e})"
        ))
    })?;
    let state = data
        .state
        .as_ref()
        .map(|s| serde_json::to_value(&s.value).ok())
        .and_then(|v| v.and_then(|v| v.as_str().map(str::to_owned)))
        .unwrap_or_else(|| "UNKNOWN".to_owned());
    let reason = data.state.as_ref().map(|s| s.reason.as_str()).unwrap_or("");
    alert.subject = data.alarm_name.clone();
    alert.summary = format!("alarm {} is {state}: {reason}", data.alarm_name);
    if !is_deployment_alarm(&data.alarm_name, prefix) {
        // Not one of this deployment's alarms (another deployment's, even one whose name
        // starts with this one's): it has no actions on our topic and is not ours to act
        // on or record.
        alert.notify = false;
        alert.quiet = Some("the alarm is not this deployment's".into());
        alert.summary = format!(
            "{}; it is not one of this deployment's alarms ({prefix}*)",
            alert.summary
        );
        return Ok(());
    }
    // The deployment's alarms publish their own state changes to the alerts topic.
    alert.notify = false;
    alert.quiet = Some("the alarm published its own state change to the alerts topic".into());
    if state == "OK" {
        alert.runbook = Runbook::Close;
    } else if state == "ALARM" && data.alarm_name == format!("{prefix}{LOW_STORAGE_ALARM}") {
        alert.runbook = Runbook::RaiseStorage;
    } else if state == "ALARM" && data.alarm_name == format!("{prefix}{POOL_AT_LIMIT_ALARM}") {
        alert.runbook = Runbook::ScalePool;
    }
    alert.alarm = Some(AlarmChange {
        name: data.alarm_name,
        state,
    });
    Ok(())
}

/// The names of the stack's own alarms after `apiary-<name>-`.
const STACK_ALARMS: [&str; 17] = [
    "provision-run-failed",
    "teardown-run-failed",
    "backup-run-failed",
    "restore-test-run-failed",
    "rotate-keys-run-failed",
    "scale-pools-run-failed",
    "handle-alert-run-failed",
    "phone-home-run-failed",
    "upgrade-run-failed",
    "drift-run-failed",
    "drift-security",
    "stack-delete-run-failed",
    "restore-test-failed",
    "restore-test-missed",
    "schedule-dead-letters",
    "events-dead-letters",
    POOL_AT_LIMIT_ALARM,
];

/// Whether `name` is one of this deployment's alarms: the stack's own, or a data-plane
/// alarm (`dp-postgres-*`, `dp-documentdb-cpu`, `dp-redis-<node>-*`, the load
/// balancer's `dp-lb-*`; the databases step's `alarms::wanted` makes them, and its
/// tests check that every name it makes is read here as ours). A name prefix is
/// not enough: deployment `demo-eu`'s alarms start with `apiary-demo-` too.
pub fn is_deployment_alarm(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    if STACK_ALARMS.contains(&rest) {
        return true;
    }
    let Some(store) = rest.strip_prefix("dp-") else {
        return false;
    };
    if matches!(
        store,
        "postgres-free-storage"
            | "postgres-cpu"
            | "postgres-connections"
            | "documentdb-cpu"
            | "lb-5xx"
    ) {
        return true;
    }
    // dp-lb-no-healthy-targets | dp-lb-unhealthy-targets, then -<n> from the second
    // target group on
    for base in ["lb-no-healthy-targets", "lb-unhealthy-targets"] {
        if let Some(rest) = store.strip_prefix(base) {
            return rest.is_empty()
                || rest
                    .strip_prefix('-')
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        }
    }
    // dp-redis-<node number>-memory | -evictions
    store
        .strip_prefix("redis-")
        .and_then(|n| {
            n.strip_suffix("-memory")
                .or_else(|| n.strip_suffix("-evictions"))
        })
        .is_some_and(|node| !node.is_empty() && node.chars().all(|c| c.is_ascii_digit()))
}

/// Whether `identifier` (an RDS or ElastiCache source) is one of this deployment's
/// stores: `postgres`, `docdb` and its instances `docdb-<n>`, `redis` and its nodes
/// `redis-<nnn>`, after `apiary-<name>-`.
pub fn is_deployment_store(identifier: &str, prefix: &str) -> bool {
    let Some(rest) = identifier.strip_prefix(prefix) else {
        return false;
    };
    let numbered = |base: &str| {
        rest.strip_prefix(base)
            .and_then(|n| n.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    matches!(rest, "postgres" | "docdb" | "redis") || numbered("docdb") || numbered("redis")
}

/// RDS and ElastiCache events share one detail shape (`SourceIdentifier`,
/// `EventCategories`, `EventID`, `Message`).
fn data_store(alert: &mut Alert, detail: &Value, prefix: &str) {
    let identifier = text(detail, "SourceIdentifier").unwrap_or("an unnamed resource");
    let message = text(detail, "Message").unwrap_or("");
    let event_id = text(detail, "EventID").unwrap_or("");
    alert.subject = identifier.to_owned();
    alert.summary = format!("{} {identifier}: {message} ({event_id})", alert.detail_type);
    if !is_deployment_store(identifier, prefix) {
        // The rules match the name prefix: another deployment whose name starts with
        // this one's sends its events here too. Recorded, not told, never acted on.
        alert.notify = false;
        alert.quiet = Some(format!(
            "{identifier} is not one of this deployment's stores"
        ));
        return;
    }
    let low_storage = detail
        .get("EventCategories")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c == "low storage"));
    if alert.source == "aws.rds"
        && alert.detail_type == RDS_INSTANCE_EVENT
        && low_storage
        && identifier == format!("{prefix}postgres")
    {
        alert.runbook = Runbook::RaiseStorage;
    }
}

/// A store secret's `AWSCURRENT` moved: the pods' environment holds the old value. The
/// rotation that moved it is RDS's own schedule (which nothing else follows) or any
/// other; triage leaves it alone while rotate-keys runs, which restarts the pods itself.
fn secret_rotated(alert: &mut Alert, detail: &Value, secrets: &[String]) {
    let label = text(detail, "labelUpdated").unwrap_or("a label");
    let version = text(detail, "versionId").unwrap_or("an unnamed version");
    let secret = alert.subject.clone();
    let ours = secrets.contains(&secret);
    if !ours {
        alert.summary = format!(
            "{label} of secret {secret} moved to version {version}: not a store secret of this deployment, nothing to do"
        );
        alert.notify = false;
        alert.quiet = Some("the secret is not this deployment's".into());
        return;
    }
    if label != "AWSCURRENT" {
        alert.summary = format!(
            "{label} of this deployment's secret {secret} moved to version {version}: only AWSCURRENT reaches the pods"
        );
        alert.notify = false;
        alert.quiet = Some("a label the pods do not read".into());
        return;
    }
    alert.summary = format!(
        "this deployment's store secret {secret} has a new current version ({version}): the ingestion pods restart once their secrets driver holds it"
    );
    // The person hears that the pods restarted (or why they could not).
    alert.runbook = Runbook::RestartIngestion;
}

/// A CloudTrail record of a KMS call: ScheduleKeyDeletion or DisableKey.
fn key_call(alert: &mut Alert, detail: &Value, keys: &[String]) {
    let name = text(detail, "eventName").unwrap_or("a call");
    let by = detail
        .pointer("/userIdentity/arn")
        .and_then(Value::as_str)
        .unwrap_or("an unknown principal");
    let key = detail
        .pointer("/responseElements/keyId")
        .and_then(Value::as_str)
        .or_else(|| {
            detail
                .get("resources")
                .and_then(Value::as_array)
                .and_then(|r| r.iter().find_map(|r| r.get("ARN").and_then(Value::as_str)))
        })
        .or_else(|| {
            detail
                .pointer("/requestParameters/keyId")
                .and_then(Value::as_str)
        })
        .unwrap_or("an unnamed key");
    let ours = keys
        .iter()
        .any(|k| k == key || k.rsplit('/').next() == Some(key));
    alert.subject = key.to_owned();
    if !ours {
        alert.summary =
            format!("{name} of KMS key {key} by {by}: not a key of this deployment, nothing to do");
        alert.notify = false;
        alert.quiet = Some("the key is not this deployment's".into());
        return;
    }
    alert.summary = format!("{name} of this deployment's KMS key {key} by {by}");
    if name == "ScheduleKeyDeletion" {
        alert.runbook = Runbook::KeyState;
    } else {
        alert.summary.push_str(
            ": a disabled key is the customer's kill switch; Apiary never enables it on its \
             own, and every workflow refuses to run until a person enables it",
        );
    }
}

fn health(alert: &mut Alert, detail: &Value) {
    let service = text(detail, "service").unwrap_or("AWS");
    let code = text(detail, "eventTypeCode").unwrap_or("an event");
    let description = detail
        .pointer("/eventDescription/0/latestDescription")
        .and_then(Value::as_str)
        .unwrap_or("");
    alert.subject = text(detail, "eventArn").unwrap_or(code).to_owned();
    alert.summary = format!("AWS Health: {service} {code}: {description}");
}

fn execution(alert: &mut Alert, detail: &Value) {
    let arn = text(detail, "executionArn").unwrap_or("an execution");
    let status = text(detail, "status").unwrap_or("ended");
    let error = text(detail, "error").unwrap_or("");
    let cause = text(detail, "cause").unwrap_or("");
    alert.subject = arn.to_owned();
    alert.summary = format!("{arn} {status}: {error} {cause}").trim().to_owned();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_envelope_field_of_the_wrong_type_is_named() {
        // Found by fuzzing: the refusal said "invalid type" without the field.
        let mut bad = event("aws.rds", "RDS DB Instance Event", json!({}));
        bad["account"] = json!(false);
        let err = classify("demo", &bad, &[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("handle-alert input field `event.account`"),
            "{err}"
        );
    }

    fn event(source: &str, detail_type: &str, detail: Value) -> Value {
        json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type, "source": source, "account": "123456789012",
            "time": "2026-12-01T03:00:00Z", "region": "us-west-2", "resources": [],
            "detail": detail
        })
    }

    #[test]
    fn input_that_is_not_an_event_is_refused_naming_the_field() {
        let err = classify("demo", &json!({"hello": 1}), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("`event`"), "{err}");
        let mut no_id = event("aws.rds", RDS_INSTANCE_EVENT, json!({}));
        no_id.as_object_mut().unwrap().remove("id");
        let err = classify("demo", &no_id, &[], &[]).unwrap_err();
        assert!(err.to_string().contains("`event.id`"), "{err}");
    }

    #[test]
    fn low_storage_only_for_our_postgres_raises_storage() {
        let detail = |id: &str, category: &str| {
            json!({"EventCategories": [category], "SourceType": "DB_INSTANCE",
                   "SourceIdentifier": id, "EventID": "RDS-EVENT-0007",
                   "Message": "Allocated storage has been exhausted."})
        };
        let ours = event(
            "aws.rds",
            RDS_INSTANCE_EVENT,
            detail("apiary-demo-postgres", "low storage"),
        );
        let alert = classify("demo", &ours, &[], &[]).unwrap();
        assert_eq!(alert.runbook, Runbook::RaiseStorage);
        assert!(alert.notify);
        for other in [
            detail("apiary-other-postgres", "low storage"),
            detail("apiary-demo-postgres", "failover"),
        ] {
            let alert = classify(
                "demo",
                &event("aws.rds", RDS_INSTANCE_EVENT, other),
                &[],
                &[],
            )
            .unwrap();
            assert_eq!(alert.runbook, Runbook::Record, "{alert:?}");
        }
    }

    #[test]
    fn the_free_storage_alarm_raises_storage_and_its_return_closes_it() {
        let alarm = |state: &str| {
            event(
                "aws.cloudwatch",
                ALARM_STATE_CHANGE,
                json!({"alarmName": "apiary-demo-dp-postgres-free-storage",
                       "state": {"value": state, "reason": "r", "timestamp": "2026-12-01T03:00:00.000+0000"},
                       "configuration": {}}),
            )
        };
        let fired = classify("demo", &alarm("ALARM"), &[], &[]).unwrap();
        assert_eq!(fired.runbook, Runbook::RaiseStorage);
        assert!(!fired.notify, "the alarm told the topic itself");
        assert_eq!(
            classify("demo", &alarm("OK"), &[], &[]).unwrap().runbook,
            Runbook::Close
        );
        assert_eq!(
            classify("demo", &alarm("INSUFFICIENT_DATA"), &[], &[])
                .unwrap()
                .runbook,
            Runbook::Record
        );
    }

    #[test]
    fn the_pool_at_limit_alarm_scales_the_pool_and_only_ours_does() {
        let alarm = |name: &str, state: &str| {
            event(
                "aws.cloudwatch",
                ALARM_STATE_CHANGE,
                json!({"alarmName": name,
                       "state": {"value": state, "reason": "r", "timestamp": "2026-12-01T03:00:00.000+0000"},
                       "configuration": {}}),
            )
        };
        let ours = "apiary-demo-pool-ingestion-at-limit";
        let fired = classify("demo", &alarm(ours, "ALARM"), &[], &[]).unwrap();
        assert_eq!(fired.runbook, Runbook::ScalePool);
        assert!(!fired.notify, "the alarm told the topic itself");
        assert_eq!(
            classify("demo", &alarm(ours, "OK"), &[], &[])
                .unwrap()
                .runbook,
            Runbook::Close
        );
        let theirs = classify(
            "demo",
            &alarm("apiary-demo-eu-pool-ingestion-at-limit", "ALARM"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(theirs.runbook, Runbook::Record);
        assert_eq!(
            serde_json::to_value(Runbook::ScalePool).unwrap(),
            "scale-pool",
            "the name handle-alert's Runbook? choice reads"
        );
    }

    #[test]
    fn another_deployment_sharing_the_name_prefix_is_not_ours() {
        // demo-eu's names start with demo's prefix.
        let prefix = "apiary-demo-";
        assert!(is_deployment_alarm("apiary-demo-backup-run-failed", prefix));
        assert!(is_deployment_alarm(
            "apiary-demo-dp-redis-002-evictions",
            prefix
        ));
        assert!(!is_deployment_alarm(
            "apiary-demo-eu-backup-run-failed",
            prefix
        ));
        assert!(!is_deployment_alarm(
            "apiary-demo-eu-dp-postgres-cpu",
            prefix
        ));
        assert!(!is_deployment_alarm(
            "apiary-demo-dp-dp-postgres-cpu",
            prefix
        ));
        for ours in [
            "apiary-demo-dp-lb-5xx",
            "apiary-demo-dp-lb-no-healthy-targets",
            "apiary-demo-dp-lb-unhealthy-targets-2",
        ] {
            assert!(is_deployment_alarm(ours, prefix), "{ours}");
        }
        for theirs in [
            "apiary-demo-eu-dp-lb-5xx",
            "apiary-demo-dp-lb-unhealthy-targets-",
            "apiary-demo-dp-lb-unhealthy-targets-x",
            "apiary-demo-dp-lb-unhealthy-targetsx",
        ] {
            assert!(!is_deployment_alarm(theirs, prefix), "{theirs}");
        }
        assert!(is_deployment_store("apiary-demo-postgres", prefix));
        assert!(is_deployment_store("apiary-demo-redis-001", prefix));
        assert!(is_deployment_store("apiary-demo-docdb-2", prefix));
        assert!(!is_deployment_store("apiary-demo-eu-postgres", prefix));
        assert!(!is_deployment_store("apiary-demo-redis-eu", prefix));

        let theirs = event(
            "aws.rds",
            RDS_INSTANCE_EVENT,
            json!({"EventCategories": ["low storage"], "SourceIdentifier": "apiary-demo-eu-postgres"}),
        );
        let alert = classify("demo", &theirs, &[], &[]).unwrap();
        assert_eq!(alert.runbook, Runbook::Record);
        assert!(!alert.notify && alert.quiet.is_some(), "{alert:?}");
        let alarm = event(
            "aws.cloudwatch",
            ALARM_STATE_CHANGE,
            json!({"alarmName": "apiary-demo-eu-dp-postgres-free-storage",
                   "state": {"value": "ALARM", "reason": "r", "timestamp": "2026-12-01T03:00:00.000+0000"},
                   "configuration": {}}),
        );
        let alert = classify("demo", &alarm, &[], &[]).unwrap();
        assert_eq!(alert.runbook, Runbook::Record);
        assert!(alert.alarm.is_none() && !alert.notify, "{alert:?}");
    }

    #[test]
    fn key_deletion_acts_only_on_our_keys() {
        let ours = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let call = |name: &str, key: &str| {
            event(
                "aws.kms",
                CLOUDTRAIL_CALL,
                json!({"eventSource": "kms.amazonaws.com", "eventName": name,
                       "userIdentity": {"arn": "arn:aws:iam::123456789012:user/Alice"},
                       "requestParameters": {"keyId": key.rsplit('/').next().unwrap()},
                       "responseElements": {"keyId": key}}),
            )
        };
        let keys = vec![ours.to_owned()];
        let alert = classify("demo", &call("ScheduleKeyDeletion", ours), &keys, &[]).unwrap();
        assert_eq!(alert.runbook, Runbook::KeyState);
        let disabled = classify("demo", &call("DisableKey", ours), &keys, &[]).unwrap();
        assert_eq!(disabled.runbook, Runbook::Record);
        assert!(disabled.notify && disabled.summary.contains("kill switch"));
        let theirs = classify(
            "demo",
            &call("ScheduleKeyDeletion", &ours.replace("1234abcd", "ffffffff")),
            &keys,
            &[],
        )
        .unwrap();
        assert_eq!(theirs.runbook, Runbook::Record);
        assert!(!theirs.notify);
    }

    #[test]
    fn an_unknown_event_is_recorded_and_notified() {
        let alert = classify(
            "demo",
            &event(
                "aws.ec2",
                "EC2 Instance State-change Notification",
                json!({}),
            ),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(alert.runbook, Runbook::Record);
        assert!(
            alert.notify && alert.summary.contains("no runbook"),
            "{alert:?}"
        );
    }

    #[test]
    fn a_store_secret_made_current_restarts_the_pods_and_no_other_secret_or_label_does() {
        let ours = "arn:aws:secretsmanager:us-west-2:123456789012:secret:rds!db-0f1e2d3c-AbCdEf";
        let rotated = |secret: &str, label: &str| {
            let mut e = event(
                "aws.secretsmanager",
                SECRET_LABEL_UPDATED,
                json!({"name": "rds!db-0f1e2d3c", "labelUpdated": label, "versionId": "v2"}),
            );
            e["resources"] = json!([secret]);
            e
        };
        let secrets = vec![ours.to_owned()];
        let alert = classify("demo", &rotated(ours, "AWSCURRENT"), &[], &secrets).unwrap();
        assert_eq!(alert.runbook, Runbook::RestartIngestion);
        assert_eq!(alert.subject, ours);
        assert!(alert.summary.contains("v2"), "{alert:?}");
        assert!(alert.notify);

        let theirs = ours.replace("0f1e2d3c", "99999999");
        let other = classify("demo", &rotated(&theirs, "AWSCURRENT"), &[], &secrets).unwrap();
        assert_eq!(other.runbook, Runbook::Record);
        assert!(other.summary.contains("not a store secret"), "{other:?}");
        let custom = classify("demo", &rotated(ours, "MYLABEL"), &[], &secrets).unwrap();
        assert_eq!(custom.runbook, Runbook::Record);
        assert!(!custom.notify);
    }
}
