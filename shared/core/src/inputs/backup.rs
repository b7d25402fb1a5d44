//! The backup input: which data stores a run backs up.
//!
//! - `{}` (the schedule's input): every store the spec enables;
//! - `{"stores": ["postgres", "redis"]}`: only these (each at most once; a store the spec
//!   turns off is reported as skipped, not an error).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const WORKFLOW: &str = "backup";

/// A data store that has native snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreName {
    Postgres,
    Documentdb,
    Redis,
}

impl StoreName {
    pub const ALL: [StoreName; 3] = [StoreName::Postgres, StoreName::Documentdb, StoreName::Redis];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreName::Postgres => "postgres",
            StoreName::Documentdb => "documentdb",
            StoreName::Redis => "redis",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupInput {
    /// The stores to back up; absent: every store the spec enables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<Vec<StoreName>>,
}

impl BackupInput {
    /// The stores of this run, in a fixed order.
    pub fn stores(&self) -> Vec<StoreName> {
        match &self.stores {
            Some(stores) => StoreName::ALL
                .into_iter()
                .filter(|s| stores.contains(s))
                .collect(),
            None => StoreName::ALL.to_vec(),
        }
    }
}

/// Checks a store list: not empty, no store twice; returns it in a fixed order.
pub(crate) fn check_stores(
    workflow: &str,
    stores: Option<Vec<StoreName>>,
) -> Result<Option<Vec<StoreName>>> {
    let Some(stores) = stores else {
        return Ok(None);
    };
    if stores.is_empty() {
        return Err(Error::invalid_input(format!(
            "{workflow} input field `stores`: empty; leave it out to include every store"
        )));
    }
    for (i, store) in stores.iter().enumerate() {
        if stores[..i].contains(store) {
            return Err(Error::invalid_input(format!(
                "{workflow} input field `stores`: {} is listed twice",
                store.as_str()
            )));
        }
    }
    Ok(Some(
        StoreName::ALL
            .into_iter()
            .filter(|s| stores.contains(s))
            .collect(),
    ))
}

/// Reads and normalizes a backup input.
pub fn parse(input: serde_json::Value) -> Result<serde_json::Value> {
    let mut parsed: BackupInput = super::read(WORKFLOW, input)?;
    parsed.stores = check_stores(WORKFLOW, parsed.stores)?;
    super::normalized(WORKFLOW, parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stores_default_to_all_and_are_normalized() {
        assert_eq!(parse(json!({})).unwrap(), json!({}));
        let input = parse(json!({"stores": ["redis", "postgres"]})).unwrap();
        assert_eq!(input, json!({"stores": ["postgres", "redis"]}));
        let typed: BackupInput = serde_json::from_value(input).unwrap();
        assert_eq!(typed.stores(), vec![StoreName::Postgres, StoreName::Redis]);
        assert_eq!(BackupInput::default().stores(), StoreName::ALL.to_vec());
    }

    #[test]
    fn bad_inputs_name_the_field() {
        for (input, expected) in [
            (json!({"stores": []}), "field `stores`: empty"),
            (
                json!({"stores": ["postgres", "postgres"]}),
                "postgres is listed twice",
            ),
            (json!({"stores": ["mysql"]}), "field `stores[0]`"),
            (json!({"store": ["redis"]}), "unknown field `store`"),
        ] {
            let err = parse(input.clone()).unwrap_err();
            assert_eq!(err.name(), crate::ErrorName::InvalidInput, "{input}");
            assert!(err.to_string().contains(expected), "{input}: {err}");
        }
    }
}
