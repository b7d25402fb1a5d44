//! A store's credentials, read from the Secrets Manager secret its output (or the test
//! restore's slot) names: never from the event, never logged.
//!
//! The shapes read: RDS's and DocumentDB's managed master secrets
//! (`{"username", "password"}`), the Redis auth token secret the databases layer writes
//! (`{"username": "default", "auth_token"}`), and the scratch secret a test restore
//! creates (`{"username", "password"}`, optionally `dbname`).

use apiary_core::{Error, Result};
use serde::Deserialize;

use crate::datastore::{StoreKind, Target};

#[derive(Deserialize)]
struct SecretFields {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth_token: Option<String>,
    #[serde(default)]
    dbname: Option<String>,
}

/// The target at `host:port` with the credentials of the secret's JSON text.
/// `secret` names the secret in errors; the value never appears in one.
pub fn target_from_secret(
    kind: StoreKind,
    secret: &str,
    text: &str,
    host: &str,
    port: u16,
) -> Result<Target> {
    let fields: SecretFields = serde_json::from_str(text).map_err(|_| {
        Error::fatal(format!(
            "secret {secret} is not a JSON object with the {kind} credentials \
             (`username`, `password` or `auth_token`)"
        ))
    })?;
    let password = fields
        .password
        .or(fields.auth_token)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Error::fatal(format!(
                "secret {secret} has no `password` (or `auth_token`) field for {kind}"
            ))
        })?;
    Ok(Target {
        host: host.to_owned(),
        port,
        username: fields
            .username
            .or_else(|| kind.default_username().map(str::to_owned)),
        password,
        database: fields.dbname,
    })
}

/// Reads the secret and returns the target it opens.
pub async fn read_target(
    client: &aws_sdk_secretsmanager::Client,
    kind: StoreKind,
    secret_arn: &str,
    host: &str,
    port: u16,
) -> Result<Target> {
    let value = client
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| {
            // A scratch secret created a moment ago may not be readable yet.
            Error::aws_transient_if(format!("GetSecretValue {secret_arn}"), e, |e| {
                e.is_resource_not_found_exception()
            })
        })?;
    let text = value
        .secret_string()
        .ok_or_else(|| Error::fatal(format!("secret {secret_arn} holds no string value")))?;
    target_from_secret(kind, secret_arn, text, host, port)
}

/// The secret's text: its current version, or the version `version_id` (a rotation's
/// staged one); `None` when that version does not exist.
pub async fn read_version(
    client: &aws_sdk_secretsmanager::Client,
    secret_arn: &str,
    version_id: Option<&str>,
) -> Result<Option<String>> {
    let Some(value) = apiary_core::aws::answer_or_none(
        format!("GetSecretValue {secret_arn}"),
        client
            .get_secret_value()
            .secret_id(secret_arn)
            .set_version_id(version_id.map(str::to_owned))
            // The label named, though it is the default: the local emulator keeps
            // returning the first version after a label moves.
            .set_version_stage(version_id.is_none().then(|| "AWSCURRENT".to_owned()))
            .send(),
        // Only a named version may be missing: a secret without its current one is an
        // error to report.
        |e| version_id.is_some() && e.is_resource_not_found_exception(),
    )
    .await?
    else {
        return Ok(None);
    };
    value
        .secret_string()
        .map(|s| Some(s.to_owned()))
        .ok_or_else(|| Error::fatal(format!("secret {secret_arn} holds no string value")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_secret_shape_and_never_shows_the_value() {
        let rds = target_from_secret(
            StoreKind::Postgres,
            "arn:rds",
            r#"{"username":"apiary","password":"s3cr3t-pw"}"#,
            "db.example",
            5432,
        )
        .unwrap();
        assert_eq!(rds.username.as_deref(), Some("apiary"));
        assert_eq!(rds.password, "s3cr3t-pw");
        assert!(!format!("{rds:?}").contains("s3cr3t-pw"));

        let redis = target_from_secret(
            StoreKind::Redis,
            "arn:redis",
            r#"{"engine":"redis","username":"default","auth_token":"tok-123","port":6379}"#,
            "redis.example",
            6379,
        )
        .unwrap();
        assert_eq!(redis.password, "tok-123");

        let scratch = target_from_secret(
            StoreKind::Postgres,
            "arn:scratch",
            r#"{"password":"pw","dbname":"honeyhive"}"#,
            "scratch.example",
            5432,
        )
        .unwrap();
        assert_eq!(
            scratch.username.as_deref(),
            Some("apiary"),
            "the default user"
        );
        assert_eq!(scratch.database.as_deref(), Some("honeyhive"));
    }

    #[test]
    fn a_secret_without_a_password_is_named_without_its_content() {
        let err = target_from_secret(
            StoreKind::DocumentDb,
            "arn:docdb",
            r#"{"username":"apiary","pass":"leaked?"}"#,
            "h",
            27017,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("arn:docdb") && text.contains("`password`"),
            "{text}"
        );
        assert!(!text.contains("leaked?"), "{text}");
        let err =
            target_from_secret(StoreKind::Postgres, "arn:x", "not json pw=1", "h", 1).unwrap_err();
        assert!(!err.to_string().contains("pw=1"));
    }
}
