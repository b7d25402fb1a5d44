//! The keys of a deployment: their state through the one key-state policy, automatic
//! rotation with the spec's period, and on demand a rotation now.
//!
//! What the emulator cannot show, tested with mocks: KMS stores the rotation period
//! (moto accepts it and forgets it), and `RotateKeyOnDemand` has a per-key quota that no
//! API reads (moto has none). A refusal for the quota (`LimitExceededException`) can
//! never succeed on retry, so it fails the step as `Apiary.Fatal`, naming the key and the
//! on-demand rotations `ListKeyRotations` shows.

use apiary_core::inputs::rotate_keys::RotateKeysInput;
use apiary_core::outputs::KeyRef;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use aws_sdk_kms::types::{KeyState, RotationType};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Deps, OperateAction};

/// What the step did with each key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeysReport {
    pub keys: Vec<KeyReport>,
    /// Why the step did nothing (`null` when it ran).
    pub skipped: Option<String>,
}

impl KeysReport {
    pub fn skipped(reason: &str) -> Self {
        KeysReport {
            keys: Vec::new(),
            skipped: Some(reason.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    pub scope: String,
    pub key_id: String,
    pub alias: String,
    /// The rotation period the key now has.
    pub rotation_period_days: i32,
    /// Whether this run changed the rotation settings.
    pub rotation_changed: bool,
    /// When the key was rotated on demand for this run (`None`: not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_on_demand_at: Option<DateTime<Utc>>,
}

pub(crate) async fn run(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
    input: &RotateKeysInput,
) -> Result<Done<KeysReport>> {
    let keys = step.layers.keys()?;
    let days = keys::rotation_days(&step.spec);
    let started = started_at(step)?;
    let mut report = KeysReport::default();
    let mut refused = Vec::new();
    for (scope, key) in &keys.keys {
        let state = describe_state(deps, key).await?;
        match keys::key_state_policy(&deps.kms, &key.key_id, &key.alias, state.as_ref()).await {
            Ok(keys::KeyStateAction::Usable) => {}
            Err(err @ Error::Conflict(_)) => {
                tracing::warn!(key = %key.key_id, alias = %key.alias, error = %err, "key refused");
                refused.push(err.to_string());
                continue;
            }
            Err(other) => return Err(other),
        }
        let rotation_changed = keys::ensure_rotation_period(&deps.kms, key, days).await?;
        if rotation_changed {
            step.log.created(&format!("{}:rotation", key.key_id));
        }
        let rotated_on_demand_at = if input.on_demand {
            Some(rotate_on_demand(deps, step, key, started).await?)
        } else {
            None
        };
        step.log
            .resource("kms:key", &key.key_id, Some(&key.arn))
            .await?;
        report.keys.push(KeyReport {
            scope: scope.clone(),
            key_id: key.key_id.clone(),
            alias: key.alias.clone(),
            rotation_period_days: days,
            rotation_changed,
            rotated_on_demand_at,
        });
    }
    if !refused.is_empty() {
        // Every usable key was still checked and rotated; the refusals fail the run so
        // that the operator hears of them (journal, failed execution, its alarm).
        return Err(Error::Conflict(refused.join("; ")));
    }
    Ok(Done::ready(report))
}

/// When the execution started (`options.started_at`, the state machine's
/// `$$.Execution.StartTime`): an on-demand rotation KMS lists after it was made by this
/// run, so a step run again after a crash does not rotate a second time.
fn started_at(step: &StepContext<'_, OperateAction>) -> Result<Option<DateTime<Utc>>> {
    match step.options.get("started_at").and_then(|v| v.as_str()) {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                Error::invalid_input(format!(
                    "step input field `options.started_at`: {text:?} is not an RFC 3339 time: {e}"
                ))
            }),
    }
}

async fn describe_state(deps: &Deps, key: &KeyRef) -> Result<Option<KeyState>> {
    let described = deps
        .kms
        .describe_key()
        .key_id(&key.key_id)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeKey {}", key.alias), e))?;
    Ok(described.key_metadata.and_then(|m| m.key_state))
}

/// The key's on-demand rotations as `ListKeyRotations` shows them (every page).
async fn on_demand_rotations(deps: &Deps, key: &KeyRef) -> Result<Vec<DateTime<Utc>>> {
    let mut dates = Vec::new();
    let mut marker = None;
    loop {
        let page = deps
            .kms
            .list_key_rotations()
            .key_id(&key.key_id)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListKeyRotations {}", key.alias), e))?;
        for rotation in page.rotations() {
            if rotation.rotation_type() == Some(&RotationType::OnDemand) {
                let date = rotation
                    .rotation_date()
                    .and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
                    .unwrap_or_default();
                dates.push(date);
            }
        }
        if !page.truncated() {
            return Ok(dates);
        }
        marker = page.next_marker;
    }
}

async fn rotate_on_demand(
    deps: &Deps,
    step: &StepContext<'_, OperateAction>,
    key: &KeyRef,
    started: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>> {
    if let Some(started) = started {
        let done = on_demand_rotations(deps, key).await?;
        if let Some(at) = done.into_iter().filter(|at| *at >= started).max() {
            return Ok(at);
        }
    }
    match deps
        .kms
        .rotate_key_on_demand()
        .key_id(&key.key_id)
        // The SDK takes LimitExceededException for throttling and would retry a quota
        // that never clears; the workflow's Retry handles the transient failures.
        .customize()
        .config_override(
            aws_sdk_kms::config::Builder::default()
                .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
    {
        Ok(_) => {
            step.log
                .created(&format!("{}:on-demand-rotation", key.key_id));
            Ok(Utc::now())
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_limit_exceeded_exception()) =>
        {
            let count = on_demand_rotations(deps, key).await?.len();
            Err(Error::fatal(format!(
                "RotateKeyOnDemand {} ({}) refused (LimitExceededException): ListKeyRotations \
                 shows {count} on-demand rotations of this key, and KMS allows only a fixed \
                 number per key (a quota no API reads); the key keeps rotating automatically. \
                 Not retried",
                key.key_id, key.alias
            )))
        }
        // A rotation of this key still running: KMS answers ConflictException.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_conflict_exception()) =>
        {
            Err(Error::NotReady {
                resource: format!("KMS key {} ({})", key.key_id, key.alias),
                detail: "an earlier rotation is still in progress".to_owned(),
            })
        }
        Err(err) => Err(Error::aws(format!("RotateKeyOnDemand {}", key.alias), err)),
    }
}
