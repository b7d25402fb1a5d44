//! Step 7, last: the deployment's KMS keys are scheduled for deletion with the longest
//! waiting period KMS allows (30 days, during which `CancelKeyDeletion` undoes it and a
//! new provision of the same name does so itself), except the keys that protect what the
//! teardown keeps: the final snapshots and, unless deleted, the backups bucket.

use std::collections::BTreeSet;

use apiary_core::{Error, Result};
use aws_sdk_kms::types::KeyState;

use crate::{Work, report};

/// KMS's longest waiting period.
pub const PENDING_WINDOW_DAYS: i32 = 30;

/// Which key scope protects what each kept resource kind holds.
fn scope_of_kept(resource: &str) -> Option<&'static str> {
    let kind = resource.split(' ').next().unwrap_or_default();
    match kind {
        "rds:snapshot" => Some("rds"),
        "docdb:cluster-snapshot" => Some("docdb"),
        "elasticache:snapshot" => Some("redis"),
        "s3:bucket" => Some("s3"),
        _ => None,
    }
}

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let deps = work.deps;
    let mut protecting = BTreeSet::new();
    for (_, earlier) in report::all(deps.recorder.as_ref(), &work.owner.deployment).await? {
        if earlier.incarnation != work.owner.incarnation {
            continue;
        }
        for kept in &earlier.kept {
            if let Some(scope) = scope_of_kept(&kept.resource) {
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
        let arn = meta.arn.clone();
        let kept_for: Vec<&String> = protecting
            .iter()
            .filter(|(s, _)| *s == scope)
            .map(|(_, r)| r)
            .collect();
        if !kept_for.is_empty() {
            let list: Vec<&str> = kept_for.iter().map(|s| s.as_str()).collect();
            work.report.kept(
                "kms:key",
                &key_id,
                arn.as_deref(),
                format!("{alias} protects what is kept: {}", list.join(", ")),
            );
            continue;
        }
        match meta.key_state {
            Some(KeyState::PendingDeletion) => {}
            _ => match deps
                .kms
                .schedule_key_deletion()
                .key_id(&key_id)
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
            },
        }
        work.report.kept(
            "kms:key",
            &key_id,
            arn.as_deref(),
            format!(
                "{alias} is scheduled for deletion: KMS deletes it after {PENDING_WINDOW_DAYS} days (CancelKeyDeletion undoes it until then)"
            ),
        );
    }
    Ok(Vec::new())
}
