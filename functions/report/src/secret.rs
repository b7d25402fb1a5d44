//! The signing key in Secrets Manager: made once (at install, by the bootstrap stack's
//! `SigningKey` resource; locally by `apiary local`), read by every report.

use apiary_core::phone_home::SigningKey;
use apiary_core::{Error, Result};
use aws_sdk_secretsmanager::Client;
use sha2::{Digest, Sha256};

/// The key kept in `secret`. A secret with no value, or with one that is not a key,
/// is an error naming it: the report function never makes a key (a new key would not be
/// the one the vendor pinned).
pub async fn load_signing_key(secrets: &Client, secret: &str) -> Result<SigningKey> {
    match read(secrets, secret).await? {
        Some(text) => SigningKey::from_secret(secret, &text),
        None => Err(Error::fatal(format!(
            "secret {secret} holds no signing key yet: the bootstrap stack's SigningKey \
             resource makes it at install"
        ))),
    }
}

/// The key kept in `secret`, made and kept there first when it holds none (no value
/// yet, or a value that is not a key, such as a generated placeholder). `token` makes
/// the write idempotent: a retried request with the same token never makes a second
/// key, and when two requests race, both return the key that was kept.
pub async fn ensure_signing_key(secrets: &Client, secret: &str, token: &str) -> Result<SigningKey> {
    if let Some(text) = read(secrets, secret).await?
        && let Ok(key) = SigningKey::from_secret(secret, &text)
    {
        return Ok(key);
    }
    let key = SigningKey::generate()?;
    let written = secrets
        .put_secret_value()
        .secret_id(secret)
        .secret_string(key.to_secret())
        .client_request_token(request_token(token))
        .send()
        .await;
    match written {
        Ok(_) => Ok(key),
        // The same token already wrote another value: an earlier attempt of this request
        // made the key. That one is the key.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_exists_exception()) =>
        {
            load_signing_key(secrets, secret).await
        }
        Err(err) => Err(Error::aws(format!("PutSecretValue {secret}"), err)),
    }
}

/// Secrets Manager's ClientRequestToken (32 to 64 characters) from any string.
fn request_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest[..20].iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret's current text; `None` when it has no value yet.
async fn read(secrets: &Client, secret: &str) -> Result<Option<String>> {
    let answer = apiary_core::aws::answer_or_none(
        format!("GetSecretValue {secret}"),
        secrets.get_secret_value().secret_id(secret).send(),
        // A secret made without a value has no AWSCURRENT version yet.
        |e| e.is_resource_not_found_exception(),
    )
    .await?;
    Ok(answer.and_then(|out| out.secret_string))
}
