//! The keys layer: one customer-managed KMS key per scope, with automatic rotation and
//! an alias `alias/apiary/<deployment>/<scope>`, and a key policy that lets only this
//! account use it, and only through the AWS service the scope belongs to.

mod orphans;

use std::sync::Arc;

use apiary_core::naming::{Layer, Names};
use apiary_core::outputs::{KeyRef, KeysOutput};
use apiary_core::step::{Action, Done, Recorder, Step, StepContext, StepLog};
use apiary_core::{Error, Result};
use async_trait::async_trait;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, Tag};
use serde::Deserialize;
use serde_json::{Value, json};

/// Each scope, and the service whose `kms:ViaService` may use its key (None: direct use
/// by the account's principals, e.g. the ingestion pods' role for application data).
pub const SCOPES: &[(&str, Option<&str>)] = &[
    ("eks-secrets", Some("eks")),
    ("rds", Some("rds")),
    ("s3", Some("s3")),
    ("app", None),
    ("state", Some("dynamodb")),
    ("docdb", Some("rds")),
    ("redis", Some("elasticache")),
    // The nodes' EBS volumes: the eks-secrets key admits only EKS, so volumes get their
    // own key, used through EC2 (and by the roles that launch nodes; see `key_policy_for`).
    ("ebs", Some("ec2")),
];

/// Automatic rotation period.
pub const ROTATION_DAYS: i32 = 365;

pub struct Deps {
    pub kms: aws_sdk_kms::Client,
    pub sts: aws_sdk_sts::Client,
    pub recorder: Arc<dyn Recorder>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            kms: apiary_core::client!(aws_sdk_kms, config),
            sts: apiary_core::client!(aws_sdk_sts, config),
            recorder,
        }
    }
}

/// What the keys function does: `ensure` creates what is missing and converges the rest;
/// `status` only looks, and names the aliases it does not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeysAction {
    #[serde(rename = "ensure")]
    Ensure,
    #[serde(rename = "status")]
    Status,
}

impl Action for KeysAction {
    fn as_str(self) -> &'static str {
        match self {
            KeysAction::Ensure => "ensure",
            KeysAction::Status => "status",
        }
    }
    /// Only `ensure` keeps its output for later layers: a look changes nothing.
    fn slot(self) -> Option<&'static str> {
        (self == KeysAction::Ensure).then_some("keys")
    }
    fn mutates(self) -> bool {
        self == KeysAction::Ensure
    }
}

pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Keys;
    type Action = KeysAction;
    type Output = KeysOutput;

    async fn run(&self, step: &StepContext<'_, KeysAction>) -> Result<Done<KeysOutput>> {
        let create = step.action.mutates();
        let log = &step.log;
        let account = account_id(self).await?;
        let region = self
            .kms
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| step.spec.region.clone());

        let mut output = KeysOutput::default();
        let mut missing = Vec::new();
        // Keys no alias names, looked for once and only when an alias is missing.
        let mut unnamed: Option<orphans::Unnamed> = None;
        for (scope, service) in SCOPES {
            let alias = step.names.key_alias(scope);
            let policy = key_policy_for(&account, &region, scope, *service, &step.names);
            let key = match find_key(self, &alias, log).await? {
                Some(key) => {
                    if create {
                        ensure_policy(self, &key, &policy, log).await?;
                    }
                    Some(key)
                }
                None if create => {
                    let unnamed = match &mut unnamed {
                        Some(found) => found,
                        None => unnamed.insert(orphans::Unnamed::find(self, &step.names).await?),
                    };
                    match unnamed.take(self, scope).await? {
                        Some(key_id) => {
                            let key = name_key(self, &key_id, &alias, log).await?;
                            ensure_policy(self, &key, &policy, log).await?;
                            Some(key)
                        }
                        None => {
                            Some(create_key(self, &step.names, scope, &alias, &policy, log).await?)
                        }
                    }
                }
                None => None,
            };
            let Some(key) = key else {
                missing.push(alias);
                continue;
            };
            if create {
                ensure_rotation(self, &key).await?;
            }
            log.resource("kms:key", &key.key_id, Some(&key.arn)).await?;
            log.resource("kms:alias", &key.alias, None).await?;
            output.keys.insert((*scope).to_owned(), key);
        }
        Ok(Done::missing(output, missing))
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }
}

async fn account_id(deps: &Deps) -> Result<String> {
    let identity = deps
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| Error::aws("GetCallerIdentity", e))?;
    identity
        .account
        .ok_or_else(|| Error::fatal("GetCallerIdentity returned no account"))
}

/// Finds the key behind an alias. A key left pending deletion by an earlier teardown is
/// brought back rather than replaced, so data encrypted with it stays readable.
async fn find_key(deps: &Deps, alias: &str, log: &StepLog<'_>) -> Result<Option<KeyRef>> {
    let Some(described) = apiary_core::aws::answer_or_none(
        format!("DescribeKey {alias}"),
        deps.kms.describe_key().key_id(alias).send(),
        |e| e.is_not_found_exception(),
    )
    .await?
    else {
        return Ok(None);
    };
    let Some(meta) = described.key_metadata else {
        return Ok(None);
    };
    let key_id = meta.key_id.clone();
    match meta.key_state {
        Some(KeyState::PendingDeletion) => {
            deps.kms
                .cancel_key_deletion()
                .key_id(&key_id)
                .send()
                .await
                .map_err(|e| Error::aws(format!("CancelKeyDeletion {alias}"), e))?;
            enable_key(deps, &key_id, alias).await?;
            log.created(&key_id);
        }
        Some(KeyState::Disabled) => {
            enable_key(deps, &key_id, alias).await?;
            log.created(&key_id);
        }
        _ => {}
    }
    Ok(Some(KeyRef {
        arn: meta.arn.unwrap_or_default(),
        key_id,
        alias: alias.to_owned(),
    }))
}

async fn enable_key(deps: &Deps, key_id: &str, alias: &str) -> Result<()> {
    deps.kms
        .enable_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|e| Error::aws(format!("EnableKey {alias}"), e))?;
    Ok(())
}

async fn create_key(
    deps: &Deps,
    names: &Names,
    scope: &str,
    alias: &str,
    policy: &str,
    log: &StepLog<'_>,
) -> Result<KeyRef> {
    let mut request = deps
        .kms
        .create_key()
        .description(format!("Apiary {} {scope}", names.deployment()))
        .key_usage(KeyUsageType::EncryptDecrypt)
        .key_spec(KeySpec::SymmetricDefault)
        .policy(policy);
    let mut tags = names.tags(Layer::Keys);
    tags.push((apiary_core::naming::TAG_ROLE.to_owned(), scope.to_owned()));
    for (key, value) in tags {
        request = request.tags(
            Tag::builder()
                .tag_key(key)
                .tag_value(value)
                .build()
                .map_err(|e| Error::fatal(e.to_string()))?,
        );
    }
    // CreateKey takes no idempotency token: an SDK retry after a lost answer would make a
    // second key. Without it, a failure goes back to the workflow, whose retry finds the
    // first key by its tags (see `orphans`).
    let created = request
        .customize()
        .config_override(
            aws_sdk_kms::config::Builder::default()
                .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
        .map_err(|e| Error::aws(format!("CreateKey {alias}"), e))?;
    let meta = created
        .key_metadata
        .ok_or_else(|| Error::fatal(format!("CreateKey {alias} returned no key")))?;
    log.created(&meta.key_id);
    if apiary_core::aws::answer_or_none(
        format!("CreateAlias {alias}"),
        deps.kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(&meta.key_id)
            .send(),
        |e| e.is_already_exists_exception(),
    )
    .await?
    .is_none()
    {
        // Another run created the alias between our lookup and now: use its key and
        // schedule ours for deletion so nothing is leaked.
        let winner = find_key(deps, alias, log).await?;
        deps.kms
            .schedule_key_deletion()
            .key_id(&meta.key_id)
            .pending_window_in_days(7)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ScheduleKeyDeletion {}", meta.key_id), e))?;
        return winner
            .ok_or_else(|| Error::Conflict(format!("alias {alias} exists but names no key")));
    }
    Ok(KeyRef {
        arn: meta.arn.unwrap_or_default(),
        key_id: meta.key_id,
        alias: alias.to_owned(),
    })
}

/// Names a key an interrupted run created but never aliased.
async fn name_key(deps: &Deps, key_id: &str, alias: &str, log: &StepLog<'_>) -> Result<KeyRef> {
    let named = apiary_core::aws::answer_or_none(
        format!("CreateAlias {alias}"),
        deps.kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send(),
        |e| e.is_already_exists_exception(),
    )
    .await?;
    if named.is_some() {
        log.created(alias);
    }
    // Another run may have named a key meanwhile: the alias decides.
    find_key(deps, alias, log)
        .await?
        .ok_or_else(|| Error::NotReady {
            resource: format!("KMS alias {alias}"),
            detail: format!("created for key {key_id}, but KMS does not resolve it yet"),
        })
}

/// Brings an existing key's policy to what this version of Apiary writes (compared as
/// JSON, so formatting differences are no change).
async fn ensure_policy(deps: &Deps, key: &KeyRef, policy: &str, log: &StepLog<'_>) -> Result<()> {
    let current = deps
        .kms
        .get_key_policy()
        .key_id(&key.key_id)
        .policy_name("default")
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetKeyPolicy {}", key.alias), e))?;
    let parse = |text: &str| serde_json::from_str::<Value>(text).ok();
    if current.policy().and_then(parse) == parse(policy) {
        return Ok(());
    }
    deps.kms
        .put_key_policy()
        .key_id(&key.key_id)
        .policy_name("default")
        .policy(policy)
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutKeyPolicy {}", key.alias), e))?;
    log.created(&format!("{}:policy", key.key_id));
    Ok(())
}

async fn ensure_rotation(deps: &Deps, key: &KeyRef) -> Result<()> {
    let status = deps
        .kms
        .get_key_rotation_status()
        .key_id(&key.key_id)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetKeyRotationStatus {}", key.alias), e))?;
    if !status.key_rotation_enabled() {
        deps.kms
            .enable_key_rotation()
            .key_id(&key.key_id)
            .rotation_period_in_days(ROTATION_DAYS)
            .send()
            .await
            .map_err(|e| Error::aws(format!("EnableKeyRotation {}", key.alias), e))?;
    }
    Ok(())
}

/// The key policy: the account administers the key (without this statement a key can
/// become unmanageable); use for encryption is limited to this account's principals and,
/// for service scopes, to requests that come through that service in this region.
pub fn key_policy(account: &str, region: &str, service: Option<&str>) -> String {
    let partition = apiary_core::aws::partition(region);
    let root = apiary_core::aws::arn(partition, "iam", "", account, "root");
    let mut usage = json!({
        "Sid": "UseWithinAccount",
        "Effect": "Allow",
        "Principal": {"AWS": root},
        "Action": [
            "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*",
            "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant"
        ],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:CallerAccount": account}}
    });
    if let Some(service) = service {
        usage["Condition"]["StringEquals"]["kms:ViaService"] =
            json!(format!("{service}.{region}.amazonaws.com"));
    }
    let mut statements = vec![json!({
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": root},
        "Action": [
            "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
            "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
            "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
            "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"
        ],
        "Resource": "*"
    })];
    statements.push(usage);
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// The key policy of one scope: [`key_policy`], plus for the `ebs` key the roles that
/// launch nodes with encrypted volumes and use the key themselves rather than through a
/// `kms:ViaService` request of this account's principals:
/// - the Auto Scaling service-linked role, which launches the managed node group's
///   instances ("Required AWS KMS key policy for use with encrypted volumes");
/// - the EKS Auto Mode cluster role, which launches the NodeClass's nodes with the key as
///   `kmsKeyID` ("Enable EBS Volume Encryption with Customer Managed KMS Keys for EKS
///   Auto Mode").
///
/// Each gets use of the key and grants for AWS resources only. They are named by
/// `aws:PrincipalArn` rather than as principals: KMS refuses a policy naming a role that
/// does not exist yet, and neither does when the keys layer runs (the service-linked role
/// appears with the account's first Auto Scaling group, the cluster role with the
/// cluster layer).
pub fn key_policy_for(
    account: &str,
    region: &str,
    scope: &str,
    service: Option<&str>,
    names: &Names,
) -> String {
    let policy = key_policy(account, region, service);
    if scope == "s3" {
        return with_statements(&policy, audit_delivery(account, region, names));
    }
    if scope != "ebs" {
        return policy;
    }
    let partition = apiary_core::aws::partition(region);
    let launchers = json!([
        apiary_core::aws::arn(
            partition,
            "iam",
            "",
            account,
            "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
        ),
        apiary_core::aws::arn(
            partition,
            "iam",
            "",
            account,
            &format!("role/{}", names.resource("eks-cluster")),
        ),
    ]);
    let mut policy: Value = serde_json::from_str(&policy).expect("key_policy writes JSON");
    let statements = policy["Statement"]
        .as_array_mut()
        .expect("key_policy writes a statement list");
    statements.push(json!({
        "Sid": "NodeLaunchersUseKey",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": [
            "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*",
            "kms:GenerateDataKey*", "kms:DescribeKey"
        ],
        "Resource": "*",
        "Condition": {
            "ArnEquals": {"aws:PrincipalArn": launchers.clone()},
            "StringEquals": {"kms:CallerAccount": account}
        }
    }));
    statements.push(json!({
        "Sid": "NodeLaunchersGrantForVolumes",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
        "Resource": "*",
        "Condition": {
            "ArnEquals": {"aws:PrincipalArn": launchers},
            "StringEquals": {"kms:CallerAccount": account},
            "Bool": {"kms:GrantIsForAWSResource": "true"}
        }
    }));
    policy.to_string()
}

/// The trail the storage layer makes (`apiary-<deployment>-trail`, see
/// `storage::audit::trail_name`), named in the s3 key's CloudTrail statements.
pub fn trail_arn(account: &str, region: &str, names: &Names) -> String {
    apiary_core::aws::arn(
        apiary_core::aws::partition(region),
        "cloudtrail",
        region,
        account,
        &format!("trail/{}", names.resource("trail")),
    )
}

/// The s3 key's statements for the audit logs the storage layer delivers into the logs
/// bucket, as the CloudTrail and CloudWatch Logs guides document them:
/// - CloudTrail encrypts the trail's log and digest files (`kms:GenerateDataKey*`) and
///   describes the key, only for this deployment's trail (`aws:SourceArn`) and only with
///   a trail of this account in the encryption context;
/// - this account's principals decrypt CloudTrail log files (the guide's decrypt
///   statement: CloudTrail asks for it when the bucket uses an S3 Bucket Key, and readers
///   need it), only with a CloudTrail encryption context;
/// - log delivery (`delivery.logs.amazonaws.com`, which writes VPC flow logs) uses the
///   key only for log sources of this account in this region.
///
/// An organisation trail writes into the organisation's bucket with its own key: the
/// CloudTrail statements then name a trail that does not exist, and grant nothing.
pub fn audit_delivery(account: &str, region: &str, names: &Names) -> Vec<Value> {
    let partition = apiary_core::aws::partition(region);
    let trail = trail_arn(account, region, names);
    let account_trails = apiary_core::aws::arn(partition, "cloudtrail", "*", account, "trail/*");
    let root = apiary_core::aws::arn(partition, "iam", "", account, "root");
    vec![
        json!({
            "Sid": "CloudTrailEncryptLogs",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:GenerateDataKey*",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:SourceArn": trail},
                "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": account_trails}
            }
        }),
        json!({
            "Sid": "CloudTrailDescribeKey",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": trail}}
        }),
        json!({
            "Sid": "CloudTrailLogDecrypt",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:CallerAccount": account},
                "Null": {"kms:EncryptionContext:aws:cloudtrail:arn": "false"}
            }
        }),
        json!({
            "Sid": "LogDeliveryUseKey",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": [
                "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*",
                "kms:GenerateDataKey*", "kms:DescribeKey"
            ],
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account},
                "ArnLike": {"aws:SourceArn": apiary_core::aws::arn(partition, "logs", region, account, "*")}
            }
        }),
    ]
}

/// `policy` (a key policy [`key_policy`] wrote) with `extra` statements appended.
fn with_statements(policy: &str, extra: Vec<Value>) -> String {
    let mut policy: Value = serde_json::from_str(policy).expect("key_policy writes JSON");
    policy["Statement"]
        .as_array_mut()
        .expect("key_policy writes a statement list")
        .extend(extra);
    policy.to_string()
}

#[cfg(test)]
mod tests;
