//! Keys whose alias is missing: a run that stopped between CreateKey and CreateAlias (a
//! timeout, a crash) leaves a key that no alias names. The next run finds it by the tags
//! CreateKey gave it and names it, instead of making a second key.
//!
//! KMS cannot list keys by tag, so this lists every key of the account once per run, and
//! only when an alias is missing (a first provision, or such a crash): ListAliases to
//! skip the keys an alias already names, then ListResourceTags on the others, at most
//! [`MAX_UNNAMED_KEYS`] of them.

use std::collections::{BTreeMap, BTreeSet};

use apiary_core::naming::{Names, TAG_DEPLOYMENT, TAG_LAYER, TAG_ROLE};
use apiary_core::{Error, Layer, Result};
use aws_sdk_kms::types::KeyState;

use crate::Deps;

/// How many keys without an alias one run inspects before it gives up looking (and
/// creates the key). Each costs one ListResourceTags call.
pub const MAX_UNNAMED_KEYS: usize = 500;

/// This deployment's keys that no alias names, by scope (the `apiary:role` tag).
#[derive(Debug, Default)]
pub struct Unnamed {
    by_scope: BTreeMap<String, Vec<String>>,
}

impl Unnamed {
    /// Lists the account's keys and keeps those tagged for this deployment's keys layer.
    pub async fn find(deps: &Deps, names: &Names) -> Result<Self> {
        let mut named = BTreeSet::new();
        let mut aliases = deps.kms.list_aliases().into_paginator().items().send();
        while let Some(alias) = aliases
            .try_next()
            .await
            .map_err(|e| Error::aws("ListAliases", e))?
        {
            if let Some(key) = alias.target_key_id {
                named.insert(key);
            }
        }
        let mut unnamed = Vec::new();
        let mut keys = deps.kms.list_keys().into_paginator().items().send();
        while let Some(key) = keys
            .try_next()
            .await
            .map_err(|e| Error::aws("ListKeys", e))?
        {
            if let Some(id) = key.key_id
                && !named.contains(&id)
            {
                unnamed.push(id);
            }
            // Beyond the bound a key left by an interrupted run may be missed: the cost
            // is then one unused key, as before this search existed.
            if unnamed.len() >= MAX_UNNAMED_KEYS {
                break;
            }
        }
        let mut found = Unnamed::default();
        for key_id in unnamed {
            if let Some(scope) = scope_of(deps, names, &key_id).await? {
                found.by_scope.entry(scope).or_default().push(key_id);
            }
        }
        Ok(found)
    }

    /// Every key found, as (scope, key id): what a teardown schedules for deletion
    /// along with the named keys.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_scope
            .iter()
            .flat_map(|(scope, keys)| keys.iter().map(move |key| (scope.as_str(), key.as_str())))
    }

    /// The key of `scope` to name, if one is usable: enabled (or disabled, which
    /// `find_key` enables once the alias names it). A key pending deletion was given up
    /// on purpose (the loser of a race for the alias) and is left alone.
    pub async fn take(&mut self, deps: &Deps, scope: &str) -> Result<Option<String>> {
        for key_id in self.by_scope.remove(scope).unwrap_or_default() {
            let described = deps
                .kms
                .describe_key()
                .key_id(&key_id)
                .send()
                .await
                // The key was just listed: KMS not finding it by id yet is its eventual
                // consistency (found by the chaos suite), retried.
                .map_err(|e| {
                    Error::aws_transient_if(format!("DescribeKey {key_id}"), e, |e| {
                        e.is_not_found_exception()
                    })
                })?;
            let usable = described.key_metadata().is_some_and(|m| {
                matches!(m.key_state(), Some(KeyState::Enabled | KeyState::Disabled))
            });
            if usable {
                return Ok(Some(key_id));
            }
        }
        Ok(None)
    }
}

/// The scope a key was created for, when its tags say it belongs to this deployment's
/// keys layer. A key this role may not read the tags of is not one of ours.
async fn scope_of(deps: &Deps, names: &Names, key_id: &str) -> Result<Option<String>> {
    let tags = match deps.kms.list_resource_tags().key_id(key_id).send().await {
        Ok(out) => out.tags.unwrap_or_default(),
        Err(err)
            if err.as_service_error().is_some_and(|e| {
                e.is_not_found_exception()
                    || aws_sdk_kms::error::ProvideErrorMetadata::code(e)
                        == Some("AccessDeniedException")
            }) =>
        {
            return Ok(None);
        }
        Err(err) => return Err(Error::aws(format!("ListResourceTags {key_id}"), err)),
    };
    let tag = |key: &str| {
        tags.iter()
            .find(|t| t.tag_key() == key)
            .map(|t| t.tag_value())
    };
    let ours = tag(TAG_DEPLOYMENT) == Some(names.deployment())
        && tag(TAG_LAYER) == Some(Layer::Keys.as_str());
    Ok(ours.then(|| tag(TAG_ROLE).map(str::to_owned)).flatten())
}
