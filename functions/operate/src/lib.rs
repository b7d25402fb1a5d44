//! The day-2 operations on a built data plane: the rotate-keys workflow's steps.
//!
//! - `keys`: every customer key of the deployment through the one key-state policy
//!   ([`keys::key_state_policy`]), automatic rotation on with the spec's period
//!   (`keys.rotation_days`), and with `on_demand` a rotation now (`RotateKeyOnDemand`);
//! - `database-secrets`: the RDS and DocumentDB master passwords, which RDS manages in
//!   Secrets Manager, rotated now with `RotateSecret` and their schedule set explicitly;
//!   `database-secrets-status` waits until each new password is current;
//! - `app-users-stage`, `app-users-promote`: the pods' own database users' passwords,
//!   rotated by alternating users (see [`app_users`]); between them the verifier sets
//!   the staged password in each store from inside the VPC;
//! - `redis-rotate`, `redis-status`, `redis-set`: the Redis AUTH token in two phases with
//!   no downtime (see [`redis`]); between them the workloads function restarts the
//!   ingestion pods so that they read the new token.
//!
//! Every step reads the workflow's validated input from `options.input`
//! (`apiary_core::inputs::rotate_keys`) and skips what the input's scope leaves out, so
//! one state machine serves the monthly keys check, the quarterly secrets rotation and
//! the console's on-demand run.

pub mod app_users;
pub mod keys_check;
pub mod redis;
pub mod secrets;

use std::sync::Arc;

use apiary_core::Result;
use apiary_core::inputs::rotate_keys::{self, RotateKeysInput};
use apiary_core::naming::Layer;
use apiary_core::step::{Action, Done, Recorder, Step, StepContext};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub struct Deps {
    pub kms: aws_sdk_kms::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub recorder: Arc<dyn Recorder>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            kms: apiary_core::client!(aws_sdk_kms, config),
            secrets: apiary_core::client!(aws_sdk_secretsmanager, config),
            elasticache: apiary_core::client!(aws_sdk_elasticache, config),
            recorder,
        }
    }
}

/// The actions, as the state machines spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OperateAction {
    #[serde(rename = "keys")]
    Keys,
    #[serde(rename = "database-secrets")]
    DatabaseSecrets,
    #[serde(rename = "database-secrets-status")]
    DatabaseSecretsStatus,
    #[serde(rename = "redis-rotate")]
    RedisRotate,
    #[serde(rename = "redis-status")]
    RedisStatus,
    #[serde(rename = "redis-set")]
    RedisSet,
    #[serde(rename = "app-users-stage")]
    AppUsersStage,
    #[serde(rename = "app-users-promote")]
    AppUsersPromote,
}

impl Action for OperateAction {
    fn as_str(self) -> &'static str {
        match self {
            OperateAction::Keys => "keys",
            OperateAction::DatabaseSecrets => "database-secrets",
            OperateAction::DatabaseSecretsStatus => "database-secrets-status",
            OperateAction::RedisRotate => "redis-rotate",
            OperateAction::RedisStatus => "redis-status",
            OperateAction::RedisSet => "redis-set",
            OperateAction::AppUsersStage => "app-users-stage",
            OperateAction::AppUsersPromote => "app-users-promote",
        }
    }
}

impl OperateAction {
    /// The workflow whose journal the action's entries belong to.
    fn workflow(self) -> &'static str {
        rotate_keys::WORKFLOW
    }
}

/// What each action returns (besides the kit's `ready`, `created`, `pending`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Output {
    Keys(keys_check::KeysReport),
    Secrets(secrets::SecretsReport),
    Redis(redis::RedisReport),
    AppUsers(app_users::AppUsersReport),
}

pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Control;
    type Action = OperateAction;
    type Output = Output;

    async fn run(&self, step: &StepContext<'_, OperateAction>) -> Result<Done<Output>> {
        let input: RotateKeysInput =
            apiary_core::inputs::from_options(rotate_keys::WORKFLOW, &step.options)?;
        let input = input.check()?;
        match step.action {
            OperateAction::Keys if !input.keys() => Ok(skipped(
                Output::Keys(keys_check::KeysReport::skipped(SKIP_KEYS)),
                SKIP_KEYS,
            )),
            OperateAction::Keys => Ok(keys_check::run(self, step, &input).await?.map(Output::Keys)),
            OperateAction::DatabaseSecrets | OperateAction::DatabaseSecretsStatus
                if !input.secrets() =>
            {
                Ok(skipped(
                    Output::Secrets(secrets::SecretsReport::skipped(SKIP_SECRETS)),
                    SKIP_SECRETS,
                ))
            }
            OperateAction::RedisRotate | OperateAction::RedisSet if !input.secrets() => Ok(
                skipped(Output::Redis(redis::RedisReport::skipped()), SKIP_SECRETS),
            ),
            OperateAction::AppUsersStage | OperateAction::AppUsersPromote if !input.secrets() => {
                Ok(skipped(
                    Output::AppUsers(app_users::AppUsersReport::skipped(SKIP_SECRETS)),
                    SKIP_SECRETS,
                ))
            }
            OperateAction::AppUsersStage | OperateAction::AppUsersPromote
                if let Some(reason) = rotate_keys::users_held_back(&step.options)? =>
            {
                Ok(skipped(
                    Output::AppUsers(app_users::AppUsersReport::skipped(&reason)),
                    &reason,
                ))
            }
            OperateAction::AppUsersStage => {
                Ok(app_users::stage(self, step).await?.map(Output::AppUsers))
            }
            OperateAction::AppUsersPromote => {
                Ok(app_users::promote(self, step).await?.map(Output::AppUsers))
            }
            OperateAction::DatabaseSecrets => {
                Ok(secrets::run(self, step).await?.map(Output::Secrets))
            }
            OperateAction::DatabaseSecretsStatus => {
                Ok(secrets::status(self, step).await?.map(Output::Secrets))
            }
            OperateAction::RedisRotate => Ok(redis::rotate(self, step).await?.map(Output::Redis)),
            OperateAction::RedisStatus => Ok(redis::status(self, step).await?.map(Output::Redis)),
            OperateAction::RedisSet => Ok(redis::set(self, step).await?.map(Output::Redis)),
        }
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }

    fn journal_step(&self, _options: &Map<String, Value>) -> String {
        // Every action belongs to rotate-keys today; the journal files it there.
        OperateAction::Keys.workflow().to_owned()
    }
}

const SKIP_KEYS: &str = "scope `secrets` leaves the keys out";
const SKIP_SECRETS: &str = "scope `keys-check` rotates no secret";

fn skipped(output: Output, reason: &str) -> Done<Output> {
    Done::ready(output).with_detail(format!("skipped: {reason}"))
}

#[cfg(test)]
mod tests;
