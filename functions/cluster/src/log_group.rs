//! The control plane's log group, `/aws/eks/<cluster>/cluster`.
//!
//! EKS writes the control plane's logs (the cluster is created with every log type on)
//! to this group and creates it when it is missing: with no retention, so the logs are
//! kept and billed forever, and untagged, so nothing finds it as this deployment's. The
//! step makes it first, tagged, with a retention, and on every run gives a group with no
//! retention or a shorter one (EKS made it before this existed, or someone shortened it)
//! this one; a longer retention a customer set for compliance is left alone (lowering it
//! would delete older events). It is encrypted with the bootstrap stack's state key,
//! whose policy admits CloudWatch Logs for `/aws/*/apiary-<name>-*` log groups; a group
//! found unencrypted (EKS made it) gets that key associated, which encrypts what is
//! written from then on; one a customer encrypted with a key of their own keeps it. The
//! teardown deletes it once the cluster is gone (EKS may still write its last lines
//! while the cluster deletes).

use apiary_core::{Error, Result};

use crate::Work;

/// How long the control plane's logs are kept: as long as this stack's own log groups.
pub const RETENTION_DAYS: i32 = 365;

pub(crate) async fn ensure(step: &Work<'_>) -> Result<()> {
    let logs = &step.deps.logs;
    let group = apiary_core::naming::eks_log_group(&step.resources.cluster);
    let key = step.deps.log_key.as_deref();
    let created = logs
        .create_log_group()
        .log_group_name(&group)
        .set_kms_key_id(key.map(str::to_owned))
        .set_tags(Some(step.tags("control-plane-logs").into_iter().collect()))
        .send()
        .await;
    match created {
        Ok(_) => step.log.created(&group),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_already_exists_exception()) => {}
        Err(err) => return Err(Error::aws(format!("CreateLogGroup {group}"), err)),
    }
    let described = logs
        .describe_log_groups()
        .log_group_name_prefix(&group)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeLogGroups {group}"), e))?;
    let found = described
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(group.as_str()));
    let retention = found.and_then(|g| g.retention_in_days());
    if let Some(key) = key
        && found.is_some_and(|g| g.kms_key_id().is_none())
    {
        logs.associate_kms_key()
            .log_group_name(&group)
            .kms_key_id(key)
            .send()
            .await
            .map_err(|e| Error::aws(format!("AssociateKmsKey {group}"), e))?;
        step.log.created(&format!("{group}:encrypted"));
    }
    if retention.is_none_or(|days| days < RETENTION_DAYS) {
        logs.put_retention_policy()
            .log_group_name(&group)
            .retention_in_days(RETENTION_DAYS)
            .send()
            .await
            .map_err(|e| Error::aws(format!("PutRetentionPolicy {group}"), e))?;
    }
    step.log.resource("logs:log-group", &group, None).await
}
