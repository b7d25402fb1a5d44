//! The way Redis backups reach the DR region (only when `backup.dr_region` is set).
//!
//! ElastiCache has no cross-region snapshot copy. What it has is an export: `CopySnapshot`
//! with a `TargetBucket` writes the snapshot's `.rdb` files into an S3 bucket of the same
//! region, as ElastiCache's own principal. So the layer makes two buckets:
//!
//! - **exports** in the deployment's region, which grants ElastiCache what AWS's guide
//!   ("Exporting a backup", step 2) asks: in a region enabled by default an ACL grant to
//!   ElastiCache's canonical user (list objects, write objects, read bucket permissions,
//!   so the bucket's Object Ownership is *bucket owner preferred*: ACLs must be on for
//!   the grant, and objects written with `bucket-owner-full-control` become the account's);
//!   in an opt-in region a bucket-policy statement for
//!   `<region>.elasticache-snapshot.amazonaws.com`. It replicates everything to the DR
//!   bucket; its own copies are staging and expire after [`STAGING_DAYS`].
//! - **the DR bucket** of the same purpose in `backup.dr_region` (ACLs off), where the
//!   replicas stay until the backup workflow prunes them by `backup.retention_days`, like
//!   the RDS and DocumentDB copies.
//!
//! Both have SSE-S3 default encryption: ElastiCache writes the export as its own
//! principal, which no key policy of this deployment names, and S3 replicates an object
//! with the encryption it has (a destination bucket's default encryption does not apply
//! to a replica of an encrypted object). So the primary bucket's staging copies stay
//! SSE-S3 for their few days, and the backup workflow re-encrypts each replica in the DR
//! bucket in place with the DR key (`alias/apiary/<deployment>/dr`, used through S3 of
//! that region) and deletes the SSE-S3 version (see the backup function's `copy`). The
//! snapshots themselves, in ElastiCache, stay encrypted with the redis key. Replication runs as the stack's
//! `apiary-<deployment>-s3-replication` role (made by the bootstrap template, only these
//! two buckets); deletes are not replicated, so pruning each region is its own decision.

use apiary_core::aws::{arn, partition};
use apiary_core::outputs::ExportBuckets;
use apiary_core::{Error, Result};
use aws_sdk_s3::types::{
    AccessControlPolicy, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination,
    Grant, Grantee, Owner, Permission, ReplicationConfiguration, ReplicationRule,
    ReplicationRuleFilter, ReplicationRuleStatus, Type,
};
use serde_json::{Value, json};

use crate::{Deps, Run, bucket, policy};

/// The purpose both buckets are named by (`apiary-<deployment>-exports-<account>-<region>`).
pub const EXPORTS: &str = "exports";
/// How the DR bucket is configured (its name uses [`EXPORTS`] with the DR region).
pub const DR_EXPORTS: &str = "exports-dr";
pub use apiary_core::outputs::EXPORT_STAGING_DAYS as STAGING_DAYS;
/// The replication role's name after `apiary-<deployment>-` (bootstrap template).
pub const REPLICATION_ROLE: &str = "s3-replication";
/// The id of the bucket's one replication rule.
pub const REPLICATION_RULE: &str = "apiary-redis-exports";

/// ElastiCache's canonical user in AWS regions enabled by default.
pub const ELASTICACHE_CANONICAL_ID: &str =
    "540804c33a284a299d2547575ce1010f2312ef3da9b3a053c8bc45bf233e4353";
/// ElastiCache's canonical user in AWS GovCloud (US-West).
pub const ELASTICACHE_CANONICAL_ID_GOV_WEST: &str =
    "40fa568277ad703bd160f66ae4f83fc9dfdfd06c2f1b5060ca22442ac3ef8be6";

/// The commercial regions introduced before 20 March 2019, which are enabled by default;
/// every later one is opt-in, where the grant is a bucket policy instead.
pub const DEFAULT_REGIONS: [&str; 17] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
];

/// How ElastiCache is allowed to write exports into a bucket of `region`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElastiCacheGrant {
    /// An ACL grant to this canonical user.
    Acl(&'static str),
    /// A bucket-policy statement for this service principal.
    Policy(String),
}

/// The grant AWS documents for `region`, or why there is none this code knows.
pub fn elasticache_grant(region: &str) -> std::result::Result<ElastiCacheGrant, String> {
    match partition(region) {
        "aws" if DEFAULT_REGIONS.contains(&region) => {
            Ok(ElastiCacheGrant::Acl(ELASTICACHE_CANONICAL_ID))
        }
        "aws" => Ok(ElastiCacheGrant::Policy(format!(
            "{region}.elasticache-snapshot.amazonaws.com"
        ))),
        "aws-us-gov" if region == "us-gov-west-1" => {
            Ok(ElastiCacheGrant::Acl(ELASTICACHE_CANONICAL_ID_GOV_WEST))
        }
        other => Err(format!(
            "AWS documents no way to grant ElastiCache write access to an S3 bucket in {region} (partition {other}), so Redis snapshots cannot be exported there and reach the DR region only if someone copies them"
        )),
    }
}

/// The replication role's ARN.
pub fn replication_role_arn(region: &str, account: &str, names: &apiary_core::Names) -> String {
    arn(
        partition(region),
        "iam",
        "",
        account,
        &format!("role/{}", names.resource(REPLICATION_ROLE)),
    )
}

/// The primary bucket's policy: TLS only, and (in an opt-in region) ElastiCache's write.
pub fn primary_policy(region: &str, bucket: &str, grant: &ElastiCacheGrant) -> String {
    let mut statements: Vec<Value> =
        serde_json::from_str::<Value>(&policy::tls_only_policy(region, bucket))
            .ok()
            .and_then(|p| p["Statement"].as_array().cloned())
            .unwrap_or_default();
    if let ElastiCacheGrant::Policy(service) = grant {
        let arn = policy::bucket_arn(region, bucket);
        statements.push(json!({
            "Sid": "ElastiCacheExport",
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": [
                "s3:PutObject",
                "s3:GetObject",
                "s3:ListBucket",
                "s3:GetBucketAcl",
                "s3:ListMultipartUploadParts",
                "s3:ListBucketMultipartUploads"
            ],
            "Resource": [arn.clone(), format!("{arn}/*")]
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// Both buckets, configured, and the replication between them, with the primary bucket's
/// policy for the caller to put last (with the other policies). `None` when the region
/// has no documented grant: the backup workflow then reports Redis without a DR copy.
pub(crate) async fn ensure(
    run: &Run<'_>,
    dr_region: &str,
) -> Result<Option<(ExportBuckets, String)>> {
    let names = run.names;
    let primary = names.bucket(EXPORTS, &run.account, &run.region);
    let dr = names.bucket(EXPORTS, &run.account, dr_region);
    if dr_region == run.region {
        return Err(Error::invalid_input(format!(
            "backup.dr_region {dr_region} is the deployment's own region"
        )));
    }
    let grant = match elasticache_grant(&run.region) {
        Ok(grant) => grant,
        Err(why) => {
            tracing::warn!(region = %run.region, "{why}");
            return Ok(None);
        }
    };

    // The DR bucket first: replication names it, and S3 checks that it exists and is
    // versioned when the rule is put.
    let dr_deps = Deps {
        s3: aws_sdk_s3::Client::from_conf(
            run.deps
                .s3
                .config()
                .to_builder()
                .region(aws_sdk_s3::config::Region::new(dr_region.to_owned()))
                .build(),
        ),
        sts: run.deps.sts.clone(),
        ec2: run.deps.ec2.clone(),
        cloudtrail: run.deps.cloudtrail.clone(),
        recorder: run.deps.recorder.clone(),
        trail: run.deps.trail.clone(),
    };
    let dr_run = Run {
        deps: &dr_deps,
        names,
        log: run.log,
        account: run.account.clone(),
        region: dr_region.to_owned(),
        key_arn: run.key_arn.clone(),
        retention_days: run.retention_days,
    };
    bucket::ensure_exists(&dr_run, DR_EXPORTS, &dr).await?;
    bucket::configure(&dr_run, DR_EXPORTS, &dr).await?;
    bucket::put_policy(&dr_run, &dr, &policy::tls_only_policy(dr_region, &dr)).await?;
    run.log
        .resource(
            "s3:bucket",
            &format!("{dr_region}/{dr}"),
            Some(&policy::bucket_arn(dr_region, &dr)),
        )
        .await?;

    bucket::ensure_exists(run, EXPORTS, &primary).await?;
    bucket::configure(run, EXPORTS, &primary).await?;
    if let ElastiCacheGrant::Acl(canonical) = grant {
        ensure_acl(run, &primary, canonical).await?;
    }
    ensure_replication(run, &primary, dr_region, &dr).await?;
    run.log
        .resource(
            "s3:bucket",
            &primary,
            Some(&policy::bucket_arn(&run.region, &primary)),
        )
        .await?;
    let policy = primary_policy(&run.region, &primary, &grant);
    Ok(Some((
        ExportBuckets {
            primary,
            dr,
            dr_region: dr_region.to_owned(),
        },
        policy,
    )))
}

/// The bucket's ACL: the owner's full control and ElastiCache's three permissions. Read
/// first (the owner's id is part of the ACL put back) and written only when it differs.
async fn ensure_acl(run: &Run<'_>, name: &str, canonical: &str) -> Result<()> {
    let s3 = &run.deps.s3;
    let current = s3
        .get_bucket_acl()
        .bucket(name)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetBucketAcl {name}"), e))?;
    let owner = current
        .owner()
        .and_then(|o| o.id())
        .ok_or_else(|| Error::fatal(format!("GetBucketAcl {name} named no owner")))?
        .to_owned();
    let wanted = acl_grants(&owner, canonical)?;
    let has = |grant: &Grant| {
        current.grants().iter().any(|g| {
            g.permission() == grant.permission()
                && g.grantee().and_then(|e| e.id()) == grant.grantee().and_then(|e| e.id())
        })
    };
    if wanted.iter().all(has) && current.grants().len() == wanted.len() {
        return Ok(());
    }
    s3.put_bucket_acl()
        .bucket(name)
        .access_control_policy(
            AccessControlPolicy::builder()
                .owner(Owner::builder().id(&owner).build())
                .set_grants(Some(wanted))
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutBucketAcl {name}"), e))?;
    Ok(())
}

/// The owner's full control, and what ElastiCache's export needs: READ (list objects),
/// WRITE (write objects), READ_ACP (read bucket permissions).
pub fn acl_grants(owner: &str, canonical: &str) -> Result<Vec<Grant>> {
    let user = |id: &str| {
        Grantee::builder()
            .r#type(Type::CanonicalUser)
            .id(id)
            .build()
            .map_err(|e| Error::fatal(e.to_string()))
    };
    let mut grants = vec![
        Grant::builder()
            .grantee(user(owner)?)
            .permission(Permission::FullControl)
            .build(),
    ];
    for permission in [Permission::Read, Permission::Write, Permission::ReadAcp] {
        grants.push(
            Grant::builder()
                .grantee(user(canonical)?)
                .permission(permission)
                .build(),
        );
    }
    Ok(grants)
}

/// One rule: every object to the DR bucket, delete markers not replicated (a staging
/// object expiring here must not remove the replica).
async fn ensure_replication(run: &Run<'_>, name: &str, dr_region: &str, dr: &str) -> Result<()> {
    let role = replication_role_arn(&run.region, &run.account, run.names);
    let rule = ReplicationRule::builder()
        .id(REPLICATION_RULE)
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("").build())
        .delete_marker_replication(
            DeleteMarkerReplication::builder()
                .status(DeleteMarkerReplicationStatus::Disabled)
                .build(),
        )
        .destination(
            Destination::builder()
                .bucket(policy::bucket_arn(dr_region, dr))
                .build()
                .map_err(|e| Error::fatal(e.to_string()))?,
        )
        .build()
        .map_err(|e| Error::fatal(e.to_string()))?;
    run.deps
        .s3
        .put_bucket_replication()
        .bucket(name)
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role(role)
                .rules(rule)
                .build()
                .map_err(|e| Error::fatal(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| {
            Error::aws_transient_if(format!("PutBucketReplication {name} to {dr}"), e, |e| {
                use aws_sdk_s3::error::ProvideErrorMetadata;
                versioning_not_yet_seen(e.code(), e.message())
            })
        })?;
    Ok(())
}

/// S3's refusal of a replication rule while a bucket's versioning, turned on moments
/// before, has not reached every part of S3 yet ("may take up to 15 minutes to
/// propagate"; S3 user guide): retried by the workflow, and converged by the next
/// provision should it outlast the retries.
pub fn versioning_not_yet_seen(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("InvalidRequest")
        && message.is_some_and(|m| m.to_ascii_lowercase().contains("versioning"))
}
