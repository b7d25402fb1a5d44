//! The rotate-keys input: which keys and secrets a run rotates.
//!
//! - `{}` or `{"scope": "all"}`: every key's state and rotation settings, then every
//!   secret (the database master passwords and the Redis AUTH token);
//! - `{"on_demand": true}`: the same, and every key is also rotated on demand now
//!   (`RotateKeyOnDemand`);
//! - `{"scope": "keys-check"}` (the monthly schedule): key state and rotation settings
//!   only, nothing rotated;
//! - `{"scope": "secrets"}` (the quarterly schedule): the secrets only.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const WORKFLOW: &str = "rotate-keys";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Keys and secrets.
    #[default]
    All,
    /// Key state and rotation settings only.
    KeysCheck,
    /// The secrets only.
    Secrets,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeysInput {
    #[serde(default)]
    pub scope: Scope,
    /// Rotate every key's material now as well (`RotateKeyOnDemand`).
    #[serde(default)]
    pub on_demand: bool,
}

impl RotateKeysInput {
    /// Whether the run looks at the keys.
    pub fn keys(&self) -> bool {
        self.scope != Scope::Secrets
    }

    /// Whether the run rotates the secrets.
    pub fn secrets(&self) -> bool {
        self.scope != Scope::KeysCheck
    }

    /// Checks what the types cannot say: an on-demand rotation needs the keys in scope.
    pub fn check(self) -> Result<Self> {
        if self.on_demand && !self.keys() {
            return Err(Error::invalid_input(
                "rotate-keys input field `on_demand`: true rotates the keys, which scope \
                 `secrets` leaves out; use scope `all` (the default)",
            ));
        }
        if self.on_demand && self.scope == Scope::KeysCheck {
            return Err(Error::invalid_input(
                "rotate-keys input field `on_demand`: scope `keys-check` only looks; use \
                 scope `all` (the default) to rotate on demand",
            ));
        }
        Ok(self)
    }
}

/// Reads and normalizes a rotate-keys input.
pub fn parse(input: serde_json::Value) -> Result<serde_json::Value> {
    let parsed: RotateKeysInput = super::read(WORKFLOW, input)?;
    super::normalized(WORKFLOW, parsed.check()?)
}

/// What rotate-keys' `pods-credentials` step found (`$.result.pods_credentials`), read by
/// the pods' users steps from `options.pods`: when the pods do not all read the
/// credentials' current versions, an earlier run stopped between making a user current
/// and restarting the pods, and changing a user now would lock out the pods still using
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodsCredentials {
    pub current: bool,
    pub verified: bool,
    pub detail: String,
}

/// Why the pods' users must not change in this run (`options.pods` says the pods are not
/// on the current credentials), or `None`. A missing `options.pods` is refused: the
/// users steps never run without the check.
pub fn users_held_back(
    options: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<String>> {
    let pods = options.get("pods").cloned().ok_or_else(|| {
        Error::invalid_input(
            "step input field `options.pods`: the pods' users steps need what the \
             pods-credentials step found",
        )
    })?;
    let pods: PodsCredentials = serde_json::from_value(pods)
        .map_err(|e| Error::invalid_input(format!("step input field `options.pods`: {e}")))?;
    Ok((!pods.current).then(|| {
        format!(
            "held back, the users unchanged: {} (the restart later in this run puts the pods \
             on the current versions)",
            pods.detail
        )
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_fill_in() {
        assert_eq!(
            parse(json!({})).unwrap(),
            json!({"scope": "all", "on_demand": false})
        );
        assert_eq!(
            parse(json!({"on_demand": true})).unwrap(),
            json!({"scope": "all", "on_demand": true})
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = parse(json!({"scope": "everything"})).unwrap_err();
        assert!(err.to_string().contains("field `scope`"), "{err}");
        let err = parse(json!({"ondemand": true})).unwrap_err();
        assert!(err.to_string().contains("ondemand"), "{err}");
        let err = parse(json!({"scope": "secrets", "on_demand": true})).unwrap_err();
        assert!(err.to_string().contains("field `on_demand`"), "{err}");
        let err = parse(json!({"scope": "keys-check", "on_demand": true})).unwrap_err();
        assert!(err.to_string().contains("field `on_demand`"), "{err}");
    }

    #[test]
    fn scopes_select_the_work() {
        let secrets: RotateKeysInput = serde_json::from_value(json!({"scope": "secrets"})).unwrap();
        assert!(secrets.secrets() && !secrets.keys());
        let check: RotateKeysInput =
            serde_json::from_value(json!({"scope": "keys-check"})).unwrap();
        assert!(check.keys() && !check.secrets());
    }
}
