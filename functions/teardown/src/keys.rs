//! Step 7, last: the deployment's KMS keys are scheduled for deletion with the longest
//! waiting period KMS allows (30 days, during which `CancelKeyDeletion` undoes it), and
//! their aliases deleted, so that a new provision of the same name makes new keys rather
//! than finding these (it would cancel their deletion and stop at the disabled key KMS
//! leaves), except the keys that protect what the teardown keeps: the final snapshots, the backup workflow's snapshots and DR copies
//! (unless `"delete_backups": true`, when they are deleted first, see [`crate::backups`])
//! and, unless deleted, the backups bucket. A kept key keeps its alias and tags, so that
//! a later teardown finds it and schedules it once nothing kept needs it.

use std::collections::BTreeSet;

use apiary_core::{Error, Result};
use aws_sdk_kms::types::{KeyMetadata, KeyState};

use crate::backups::Held;
use crate::{TeardownAction, Work, backups, report};

/// KMS's longest waiting period.
pub const PENDING_WINDOW_DAYS: i32 = 30;

/// Which key scope protects what a kept resource holds (none for what is encrypted
/// without the deployment's keys).
fn scope_of_kept(kept: &report::Kept) -> Option<&'static str> {
    if kept.keyless {
        return None;
    }
    let kind = kept.resource.split(' ').next().unwrap_or_default();
    match kind {
        "rds:snapshot" => Some("rds"),
        "docdb:cluster-snapshot" => Some("docdb"),
        "elasticache:snapshot" => Some("redis"),
        "s3:bucket" => Some("s3"),
        _ => None,
    }
}

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let mut pending = Vec::new();
    let held = backups::run(work, &mut pending).await?;
    if !pending.is_empty() {
        // The backups being deleted are still encrypted with their keys: no key is
        // scheduled before they are gone.
        return Ok(pending);
    }
    let deps = work.deps;
    let region = work.step.spec.region.clone();
    let mut protecting = BTreeSet::new();
    for (action, earlier) in report::all(deps.recorder.as_ref(), &work.owner.deployment).await? {
        // This step's own earlier list is recomputed above (`held`).
        if action == TeardownAction::Keys || earlier.incarnation != work.owner.incarnation {
            continue;
        }
        for kept in &earlier.kept {
            if let Some(scope) = scope_of_kept(kept) {
                protecting.insert((scope, kept.resource.clone()));
            }
        }
    }
    let alias_prefix = format!("{}/", work.step.names.key_alias("").trim_end_matches('/'));
    let mut aliases = Vec::new();
    let mut pages = deps.kms.list_aliases().into_paginator().items().send();
    while let Some(alias) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("ListAliases", e))?
    {
        if let (Some(name), Some(key)) = (alias.alias_name(), alias.target_key_id())
            && name.starts_with(&alias_prefix)
        {
            aliases.push((name.to_owned(), key.to_owned()));
        }
    }
    for (alias, key_id) in aliases {
        let scope = alias.trim_start_matches(&alias_prefix).to_owned();
        let described = deps
            .kms
            .describe_key()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|e| Error::aws(format!("DescribeKey {alias}"), e))?;
        let Some(meta) = described.key_metadata else {
            continue;
        };
        let mut kept_for: BTreeSet<String> = protecting
            .iter()
            .filter(|(s, _)| *s == scope)
            .map(|(_, r)| r.clone())
            .collect();
        kept_for.extend(encrypted_by(&held, &region, &meta, &scope));
        settle(work, &deps.kms, &alias, Some(&alias), &meta, &kept_for).await?;
    }
    // Keys no alias names (a keys run stopped between CreateKey and CreateAlias), found
    // by their tags with the keys function's own search.
    let finder = keys::Deps {
        kms: deps.kms.clone(),
        sts: deps.sts.clone(),
        recorder: deps.recorder.clone(),
    };
    let unnamed = keys::orphans::Unnamed::find(&finder, &work.step.names).await?;
    for (scope, key_id) in unnamed.keys() {
        let described = deps
            .kms
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| Error::aws(format!("DescribeKey {key_id}"), e))?;
        let Some(meta) = described.key_metadata else {
            continue;
        };
        let mut kept_for: BTreeSet<String> = protecting
            .iter()
            .filter(|(s, _)| *s == scope)
            .map(|(_, r)| r.clone())
            .collect();
        kept_for.extend(encrypted_by(&held, &region, &meta, scope));
        let name = format!("key {key_id} (no alias; tagged for scope {scope})");
        settle(work, &deps.kms, &name, None, &meta, &kept_for).await?;
    }
    // The DR region's backup key (functions/keys `ensure-dr`): it encrypts only the DR
    // copies.
    if let Some(dr_region) = work.step.spec.dr_region().map(str::to_owned) {
        let regional = (deps.regional)(&dr_region);
        let alias = work.step.names.key_alias(backup::DR_KEY_SCOPE);
        let described = apiary_core::aws::answer_or_none(
            format!("DescribeKey {alias} ({dr_region})"),
            regional.kms.describe_key().key_id(&alias).send(),
            |e| e.is_not_found_exception(),
        )
        .await?;
        if let Some(meta) = described.and_then(|out| out.key_metadata) {
            let kept_for: BTreeSet<String> =
                encrypted_by(&held, &dr_region, &meta, backup::DR_KEY_SCOPE).collect();
            let shown = format!("{alias} ({dr_region})");
            settle(work, &regional.kms, &shown, Some(&alias), &meta, &kept_for).await?;
        }
    }
    Ok(Vec::new())
}

/// The kept snapshots in `region` that `meta`'s key encrypts.
fn encrypted_by<'a>(
    held: &'a [Held],
    region: &'a str,
    meta: &'a KeyMetadata,
    scope: &'a str,
) -> impl Iterator<Item = String> + 'a {
    held.iter()
        .filter(move |h| h.needs(region, meta.arn(), meta.key_id(), scope))
        .map(|h| h.resource.clone())
}

/// Keeps a key that encrypts something kept (and says so), or schedules its deletion.
async fn settle(
    work: &mut Work<'_>,
    kms: &aws_sdk_kms::Client,
    alias: &str,
    alias_name: Option<&str>,
    meta: &KeyMetadata,
    kept_for: &BTreeSet<String>,
) -> Result<()> {
    let key_id = meta.key_id();
    let arn = meta.arn();
    let pending_deletion = meta.key_state() == Some(&KeyState::PendingDeletion);
    if !kept_for.is_empty() {
        let list: Vec<&str> = kept_for.iter().map(String::as_str).collect();
        let why = if pending_deletion {
            format!(
                "{alias} encrypts what is kept ({}) but was already scheduled for deletion: cancel it (aws kms cancel-key-deletion --key-id {key_id}) or those snapshots become unrecoverable",
                list.join(", ")
            )
        } else {
            format!(
                "{alias} encrypts what is kept: {}; not scheduled for deletion (its alias and tags stay, so a later teardown schedules it once nothing kept needs it)",
                list.join(", ")
            )
        };
        work.report.kept("kms:key", key_id, arn, why);
        return Ok(());
    }
    if !pending_deletion {
        match kms
            .schedule_key_deletion()
            .key_id(key_id)
            .pending_window_in_days(PENDING_WINDOW_DAYS)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_kms_invalid_state_exception()) => {}
            Err(err) => return Err(Error::aws(format!("ScheduleKeyDeletion {alias}"), err)),
        }
    }
    if let Some(name) = alias_name {
        match kms.delete_alias().alias_name(name).send().await {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_not_found_exception()) => {}
            // A key whose policy predates this grant: the teardown still succeeds, and
            // says what a new provision of the name would meet.
            Err(err) => work.report.note(format!(
                "the alias {name} of the key scheduled for deletion was not deleted ({}): \
                 delete it (aws kms delete-alias --alias-name {name}) before provisioning \
                 this deployment again, or that provision cancels the key's deletion and \
                 stops at the disabled key",
                aws_sdk_kms::error::DisplayErrorContext(&err)
            )),
        }
    }
    work.report.kept(
        "kms:key",
        key_id,
        arn,
        format!(
            "{alias} is scheduled for deletion: KMS deletes it after {PENDING_WINDOW_DAYS} days (CancelKeyDeletion undoes it until then)"
        ),
    );
    Ok(())
}
