//! The receipt: every resource removed, every resource kept and why, and a final scan by
//! tag (the Resource Groups Tagging API, for `apiary:deployment` and the cluster's
//! controller tags) proving that nothing else of the deployment remains.
//!
//! The Tagging API is eventually consistent and lists a terminated instance for about an
//! hour: a resource it still lists is explained when it is kept, or when its own service
//! says it is gone (terminated, pending deletion). Anything else is unexplained, and the
//! receipt reports it as pending so that the workflow asks again, bounded; past the bound
//! the teardown fails naming what remains.

use apiary_core::step::Done;
use apiary_core::{Error, Result};
use aws_sdk_resourcegroupstagging::types::TagFilter;
use serde::Serialize;
use serde_json::Value;

use crate::Work;
use crate::report::{self, Kept};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Receipt {
    pub deployment: String,
    pub removed: Vec<String>,
    pub kept: Vec<Kept>,
    pub notes: Vec<String>,
    pub scan: Scan,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Scan {
    /// What the scan asked for.
    pub tags: Vec<String>,
    /// ARNs found, each with why it may still be there.
    pub explained: Vec<Explained>,
    /// ARNs found that nothing explains: 0 when the teardown is complete.
    pub unexplained: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub arn: String,
    pub why: String,
}

pub async fn run(work: &mut Work<'_>) -> Result<Done<Value>> {
    let deps = work.deps;
    let mut receipt = Receipt {
        deployment: work.owner.deployment.clone(),
        ..Receipt::default()
    };
    for (_, part) in report::all(deps.recorder.as_ref(), &work.owner.deployment).await? {
        if part.incarnation != work.owner.incarnation {
            continue;
        }
        receipt.removed.extend(part.removed);
        receipt.kept.extend(part.kept);
        receipt.notes.extend(part.notes);
    }
    let mut filters = vec![(
        apiary_core::naming::TAG_DEPLOYMENT.to_owned(),
        Some(work.owner.deployment.clone()),
    )];
    filters.extend(work.owner.cluster_tag_filters());
    let mut found = Vec::new();
    for (key, value) in &filters {
        receipt.scan.tags.push(match value {
            Some(v) => format!("{key}={v}"),
            None => key.clone(),
        });
        let filter = TagFilter::builder()
            .key(key)
            .set_values(value.clone().map(|v| vec![v]))
            .build();
        let mut pages = deps
            .tagging
            .get_resources()
            .tag_filters(filter)
            .into_paginator()
            .send();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| Error::aws("GetResources", e))?
        {
            for mapping in page.resource_tag_mapping_list() {
                if let Some(arn) = mapping.resource_arn()
                    && !found.contains(&arn.to_owned())
                {
                    found.push(arn.to_owned());
                }
            }
        }
    }
    for arn in found {
        match explain(work, &receipt.kept, &arn).await? {
            Some(why) => receipt.scan.explained.push(Explained { arn, why }),
            None => receipt.scan.unexplained.push(arn),
        }
    }
    let pending: Vec<String> = receipt
        .scan
        .unexplained
        .iter()
        .map(|arn| format!("{arn} is still there and nothing in the receipt explains it"))
        .collect();
    let summary = format!(
        "removed {}, kept {}, scan found {} explained and {} unexplained",
        receipt.removed.len(),
        receipt.kept.len(),
        receipt.scan.explained.len(),
        receipt.scan.unexplained.len()
    );
    let value = serde_json::to_value(&receipt)
        .map_err(|e| Error::fatal(format!("the receipt does not serialise: {e}")))?;
    Ok(Done::pending(value, pending).with_detail(summary))
}

/// Why `arn` may still be listed, or `None`.
async fn explain(work: &Work<'_>, kept: &[Kept], arn: &str) -> Result<Option<String>> {
    for k in kept {
        let id = k
            .resource
            .split_once(' ')
            .map(|(_, id)| id)
            .unwrap_or_default();
        if k.arn.as_deref() == Some(arn) || (!id.is_empty() && arn.ends_with(id)) {
            return Ok(Some(format!("kept: {}", k.why)));
        }
    }
    let deps = work.deps;
    if let Some(id) = arn.split(":instance/").nth(1) {
        let described = deps.ec2.describe_instances().instance_ids(id).send().await;
        if let Ok(out) = described {
            let terminated = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .all(|i| {
                    i.state().and_then(|s| s.name())
                        == Some(&aws_sdk_ec2::types::InstanceStateName::Terminated)
                });
            if terminated {
                return Ok(Some(
                    "terminated: EC2 lists a terminated instance for about an hour".into(),
                ));
            }
        }
    }
    if let Some(id) = arn.split(":natgateway/").nth(1) {
        let described = deps
            .ec2
            .describe_nat_gateways()
            .nat_gateway_ids(id)
            .send()
            .await;
        if let Ok(out) = described
            && out
                .nat_gateways()
                .iter()
                .all(|g| g.state() == Some(&aws_sdk_ec2::types::NatGatewayState::Deleted))
        {
            return Ok(Some(
                "deleted: EC2 lists a deleted NAT gateway for about an hour".into(),
            ));
        }
    }
    if arn.contains(":kms:") && arn.contains(":key/") {
        let key = deps.kms.describe_key().key_id(arn).send().await;
        if let Ok(out) = key
            && out.key_metadata().and_then(|m| m.key_state())
                == Some(&aws_sdk_kms::types::KeyState::PendingDeletion)
        {
            return Ok(Some("pending deletion".into()));
        }
    }
    if let Some(id) = arn.split(":replicationgroup:").nth(1) {
        let group = deps
            .elasticache
            .describe_replication_groups()
            .replication_group_id(id)
            .send()
            .await;
        if let Ok(out) = group
            && out
                .replication_groups()
                .iter()
                .all(|g| g.status() == Some("deleting"))
        {
            return Ok(Some("being deleted by ElastiCache".into()));
        }
    }
    // A backup snapshot deleted with `delete_backups`, still listed by the Tagging API.
    if arn.contains(":rds:")
        && let Some(id) = arn.split(":snapshot:").nth(1)
    {
        let snapshot = deps
            .rds
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await;
        if let Err(err) = snapshot
            && err
                .as_service_error()
                .is_some_and(|e| e.is_db_snapshot_not_found_fault())
        {
            return Ok(Some("deleted; the Tagging API has not caught up".into()));
        }
    }
    if arn.contains(":secretsmanager:") {
        let secret = deps.secrets.describe_secret().secret_id(arn).send().await;
        match secret {
            Ok(out) if out.deleted_date().is_some() => {
                return Ok(Some("scheduled for deletion by Secrets Manager".into()));
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(Some("deleted; the Tagging API has not caught up".into()));
            }
            _ => {}
        }
    }
    Ok(None)
}
