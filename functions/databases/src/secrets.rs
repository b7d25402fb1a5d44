//! Credentials Apiary generates itself (the Redis auth token, the pods' own database
//! users' passwords): made with Secrets Manager's GetRandomPassword, stored in a secret
//! encrypted with the app key, read back when a store still has to be created with them.
//! The value never reaches a log.

use apiary_core::outputs::app_users;
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

/// The token stored under `name` in `field`, generating and storing a new one when there
/// is none. A secret an earlier teardown scheduled for deletion is restored, not replaced.
pub(crate) async fn ensure_token(
    step: &Work<'_>,
    name: &str,
    kms_key_arn: &str,
    role: &str,
    details: Value,
    field: &str,
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
        return read_token(step, name, field).await;
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
    value[field] = json!(token);
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
        None => read_token(step, name, field).await,
    }
}

async fn read_token(step: &Work<'_>, name: &str, field: &str) -> Result<Generated> {
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
        .and_then(|v| v.get(field).and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| {
            Error::fatal(format!(
                "secret {name} holds no {field} field; delete it or restore its value"
            ))
        })?;
    Ok(Generated { arn, token })
}

/// The secret of the pods' own user of `store` (`postgres`, `documentdb`; see
/// [`app_users`]): with `app_key_arn` (an `ensure`), made when missing, for the first
/// user with a generated password; without (a `status`), only found, and one that does
/// not show yet is something the store still waits for. The user itself is created in
/// the store by the verifier, which can reach it.
pub(crate) async fn app_secret(
    step: &Work<'_>,
    store: &str,
    app_key_arn: Option<&str>,
    pending: &mut Vec<String>,
) -> Result<Option<String>> {
    let name = app_users::secret_name(step.names, store);
    let arn = match app_key_arn {
        Some(key) => {
            let details = json!({
                "engine": store,
                "username": app_users::USERS[0],
                "dbname": app_users::DATABASE,
            });
            Some(
                ensure_token(
                    step,
                    &name,
                    key,
                    &format!("{store}-app"),
                    details,
                    "password",
                )
                .await?
                .arn,
            )
        }
        None => find(step, &name).await?,
    };
    match &arn {
        Some(arn) if !arn.is_empty() => {
            step.log
                .resource("secretsmanager:secret", &name, Some(arn))
                .await?;
        }
        // Secrets Manager is eventually consistent: a secret made a moment ago may not
        // show yet. The poll looks again.
        _ => pending.push(format!(
            "the pods' {store} credentials secret {name} does not show yet"
        )),
    }
    Ok(arn.filter(|a| !a.is_empty()))
}
