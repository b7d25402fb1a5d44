//! Credentials Apiary generates itself (the Redis auth token): made with Secrets
//! Manager's GetRandomPassword, stored in a secret encrypted with the app key, read back
//! when a store still has to be created with them. The value never reaches a log.

use apiary_core::{Error, Result};
use aws_sdk_secretsmanager::types::Tag;
use serde_json::{Value, json};

use crate::{Work, tag_pairs};

/// ElastiCache accepts 16-128 printable characters without `@`, `"` and `/`;
/// letters and digits only keeps every client's connection string simple.
const TOKEN_LENGTH: i64 = 64;

/// The ARN of a secret, when it exists.
pub(crate) async fn find(step: &Work<'_>, name: &str) -> Result<Option<String>> {
    Ok(apiary_core::aws::answer_or_none(
        format!("DescribeSecret {name}"),
        step.deps.secrets.describe_secret().secret_id(name).send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?
    .and_then(|out| out.arn))
}

/// A secret holding a generated token, and the token.
pub(crate) struct Generated {
    pub arn: String,
    pub token: String,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("arn", &self.arn)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The token stored under `name`, generating and storing a new one when there is none.
/// A secret an earlier teardown scheduled for deletion is restored, not replaced.
pub(crate) async fn ensure_token(
    step: &Work<'_>,
    name: &str,
    kms_key_arn: &str,
    role: &str,
    details: Value,
) -> Result<Generated> {
    let secrets = &step.deps.secrets;
    if let Some(found) = apiary_core::aws::answer_or_none(
        format!("DescribeSecret {name}"),
        secrets.describe_secret().secret_id(name).send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?
    {
        if found.deleted_date.is_some() {
            secrets
                .restore_secret()
                .secret_id(name)
                .send()
                .await
                .map_err(|e| Error::aws(format!("RestoreSecret {name}"), e))?;
        }
        return read_token(step, name).await;
    }

    let token = secrets
        .get_random_password()
        .password_length(TOKEN_LENGTH)
        .exclude_punctuation(true)
        .send()
        .await
        .map_err(|e| Error::aws("GetRandomPassword", e))?
        .random_password
        .ok_or_else(|| Error::fatal("GetRandomPassword returned no password"))?;
    let mut value = details;
    value["auth_token"] = json!(token);
    let tags = tag_pairs(step.names, role)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect();
    match apiary_core::aws::answer_or_none(
        format!("CreateSecret {name}"),
        secrets
            .create_secret()
            .name(name)
            .description(format!(
                "Apiary {}: {role} credentials",
                step.names.deployment()
            ))
            .kms_key_id(kms_key_arn)
            .secret_string(value.to_string())
            .set_tags(Some(tags))
            .send(),
        |e| e.is_resource_exists_exception(),
    )
    .await?
    {
        Some(out) => {
            step.log.created(name);
            let arn = out
                .arn
                .ok_or_else(|| Error::fatal(format!("CreateSecret {name} returned no ARN")))?;
            Ok(Generated { arn, token })
        }
        // A parallel run stored its token first: use that one, so both agree.
        None => read_token(step, name).await,
    }
}

async fn read_token(step: &Work<'_>, name: &str) -> Result<Generated> {
    let value = step
        .deps
        .secrets
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetSecretValue {name}"), e))?;
    let arn = value.arn.clone().unwrap_or_default();
    let token = value
        .secret_string()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| {
            v.get("auth_token")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            Error::fatal(format!(
                "secret {name} holds no auth_token field; delete it or restore its value"
            ))
        })?;
    Ok(Generated { arn, token })
}
