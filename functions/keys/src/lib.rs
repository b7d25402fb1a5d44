//! The keys layer: one customer-managed KMS key per scope, with automatic rotation and
//! an alias `alias/apiary/<deployment>/<scope>`, and a key policy that lets only this
//! account use it, and only through the AWS service the scope belongs to.

pub mod orphans;

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
    // No key for the control plane's state: the stack's own StateKey encrypts the state
    // table and its logs (it must exist before any function runs), so a second one here
    // would protect nothing.
    ("docdb", Some("rds")),
    ("redis", Some("elasticache")),
    // The nodes' EBS volumes: the eks-secrets key admits only EKS, so volumes get their
    // own key, used through EC2 (and by the roles that launch nodes; see `key_policy_for`).
    ("ebs", Some("ec2")),
];

/// The spec's automatic rotation period (validated to 90-2560 days).
pub fn rotation_days(spec: &apiary_core::spec::DeploymentSpec) -> i32 {
    i32::try_from(spec.keys.rotation_days).unwrap_or(i32::MAX)
}

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
    /// The key of the DR region (`backup.dr_region`) that cross-region backup copies are
    /// encrypted with: `alias/apiary/<deployment>/dr`, made in that region. Run by the
    /// backup workflow before its copies; ready with no key when no DR region is set.
    #[serde(rename = "ensure-dr")]
    EnsureDr,
}

/// The scope of the DR-region key.
pub const DR_SCOPE: &str = "dr";
/// What the DR key is used through: RDS (RDS and DocumentDB copies) and S3 (the Redis
/// exports' replicas).
pub const DR_SERVICES: [&str; 2] = ["rds", "s3"];

impl Action for KeysAction {
    fn as_str(self) -> &'static str {
        match self {
            KeysAction::Ensure => "ensure",
            KeysAction::Status => "status",
            KeysAction::EnsureDr => "ensure-dr",
        }
    }
    /// Only `ensure` keeps its output for later layers: a look changes nothing.
    fn slot(self) -> Option<&'static str> {
        (self == KeysAction::Ensure).then_some("keys")
    }
    fn mutates(self) -> bool {
        self != KeysAction::Status
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
        if step.action == KeysAction::EnsureDr {
            return Box::pin(ensure_dr(self, step)).await;
        }
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
        let mut refusals = Vec::new();
        for (scope, service) in SCOPES {
            let alias = step.names.key_alias(scope);
            let policy = key_policy_for(&account, &region, scope, *service, &step.names);
            // Every key is looked at before a refusal fails the step: after a teardown
            // every key is pending deletion, and each one's deletion must be cancelled in
            // this run, not one per run while the others' windows run out.
            let found = match find_key(self, &alias, create).await {
                Ok(found) => found,
                Err(refused @ Error::Conflict(_)) => {
                    refusals.push(refused.to_string());
                    continue;
                }
                Err(err) => return Err(err),
            };
            let key = match found {
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
                ensure_rotation_period(&self.kms, &key, rotation_days(&step.spec)).await?;
            }
            log.resource("kms:key", &key.key_id, Some(&key.arn)).await?;
            log.resource("kms:alias", &key.alias, None).await?;
            output.keys.insert((*scope).to_owned(), key);
        }
        if !refusals.is_empty() {
            return Err(Error::Conflict(refusals.join("; ")));
        }
        Ok(Done::missing(output, missing))
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }
}

/// `ensure-dr`: the DR region's backup key, made, named and rotated like the others
/// (through a client of that region), used through RDS there (RDS and DocumentDB copies)
/// and S3 (the Redis exports' replicas, re-encrypted with it in the DR bucket).
async fn ensure_dr(deps: &Deps, step: &StepContext<'_, KeysAction>) -> Result<Done<KeysOutput>> {
    let Some(region) = step.spec.dr_region().map(str::to_owned) else {
        return Ok(Done::ready(KeysOutput::default())
            .with_detail("backup.dr_region is not set: no DR key"));
    };
    let dr = Deps {
        kms: aws_sdk_kms::Client::from_conf(
            deps.kms
                .config()
                .to_builder()
                .region(aws_sdk_kms::config::Region::new(region.clone()))
                .build(),
        ),
        sts: deps.sts.clone(),
        recorder: deps.recorder.clone(),
    };
    let log = &step.log;
    let account = account_id(deps).await?;
    let alias = step.names.key_alias(DR_SCOPE);
    let policy = with_statements(
        &key_policy_via(&account, &region, &DR_SERVICES),
        deployment_role_statements(&account, &region, &step.names),
    );
    let key = match find_key(&dr, &alias, true).await? {
        Some(key) => {
            ensure_policy(&dr, &key, &policy, log).await?;
            key
        }
        None => {
            let mut unnamed = orphans::Unnamed::find(&dr, &step.names).await?;
            match unnamed.take(&dr, DR_SCOPE).await? {
                Some(key_id) => {
                    let key = name_key(&dr, &key_id, &alias, log).await?;
                    ensure_policy(&dr, &key, &policy, log).await?;
                    key
                }
                None => create_key(&dr, &step.names, DR_SCOPE, &alias, &policy, log).await?,
            }
        }
    };
    ensure_rotation_period(&dr.kms, &key, rotation_days(&step.spec)).await?;
    log.resource("kms:key", &key.key_id, Some(&key.arn)).await?;
    log.resource("kms:alias", &format!("{region}/{}", key.alias), None)
        .await?;
    let mut output = KeysOutput::default();
    output.keys.insert(DR_SCOPE.to_owned(), key);
    Ok(Done::ready(output).with_detail(format!("DR key in {region}")))
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

/// Finds the key behind an alias and applies [`key_state_policy`] to it.
/// The key `alias` names. With `enforce`, the key-state policy applies to it (a read-only
/// status leaves a key as it finds it).
async fn find_key(deps: &Deps, alias: &str, enforce: bool) -> Result<Option<KeyRef>> {
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
    if !enforce {
        return Ok(Some(KeyRef {
            arn: meta.arn.unwrap_or_default(),
            key_id,
            alias: alias.to_owned(),
        }));
    }
    if let Err(refused) = key_state_policy(&deps.kms, &key_id, alias, meta.key_state.as_ref()).await
    {
        tracing::warn!(key = %key_id, alias, error = %refused, "key state refused");
        return Err(refused);
    }
    Ok(Some(KeyRef {
        arn: meta.arn.unwrap_or_default(),
        key_id,
        alias: alias.to_owned(),
    }))
}

/// The one key-state policy of every workflow (provision's keys layer, rotate-keys,
/// handle-alert's runbook), for a key this deployment owns:
/// - enabled: usable, nothing to do;
/// - pending deletion: the deletion is cancelled, since destroying the key would make
///   every byte encrypted with it unreadable. KMS leaves a cancelled key disabled, so
///   the step then refuses as for a disabled key: the operator decides to enable it;
/// - disabled: refused with `Apiary.Conflict` naming the key. Disabling a key is the
///   customer's kill switch, never undone by Apiary on its own;
/// - any other state (being created, imported without material, unavailable in its
///   custom key store): refused with `Apiary.Conflict` naming the key and the state.
///
/// The refusal is the notification: the workflow fails with it, the journal records it,
/// and the failed-executions alarm (with handle-alert's runbooks) tells the operator.
pub async fn key_state_policy(
    kms: &aws_sdk_kms::Client,
    key_id: &str,
    alias: &str,
    state: Option<&KeyState>,
) -> Result<KeyStateAction> {
    let enable_hint = format!(
        "Apiary never re-enables a key on its own: if the key should be used again, enable \
         it (aws kms enable-key --key-id {key_id}) and run the workflow again"
    );
    match state {
        None | Some(KeyState::Enabled) => Ok(KeyStateAction::Usable),
        Some(KeyState::PendingDeletion | KeyState::PendingReplicaDeletion) => {
            kms.cancel_key_deletion()
                .key_id(key_id)
                .send()
                .await
                .map_err(|e| Error::aws(format!("CancelKeyDeletion {alias}"), e))?;
            Err(Error::Conflict(format!(
                "KMS key {key_id} ({alias}) was pending deletion: its deletion is cancelled \
                 and it is left disabled, as KMS leaves a cancelled key. {enable_hint}"
            )))
        }
        Some(KeyState::Disabled) => Err(Error::Conflict(format!(
            "KMS key {key_id} ({alias}) is disabled. {enable_hint}"
        ))),
        Some(other) => Err(Error::Conflict(format!(
            "KMS key {key_id} ({alias}) is in state {}, in which it cannot be used",
            other.as_str()
        ))),
    }
}

/// What [`key_state_policy`] found a key fit for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStateAction {
    Usable,
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
        let winner = find_key(deps, alias, true).await?;
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
    find_key(deps, alias, true)
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

/// Turns automatic rotation on with the spec's period (`keys.rotation_days`), or brings
/// the period to it. Returns whether anything changed.
pub async fn ensure_rotation_period(
    kms: &aws_sdk_kms::Client,
    key: &KeyRef,
    days: i32,
) -> Result<bool> {
    let status = kms
        .get_key_rotation_status()
        .key_id(&key.key_id)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetKeyRotationStatus {}", key.alias), e))?;
    // KMS reports the period while rotation is on; a status without one (the emulator
    // stores none) is taken as current rather than rewritten on every run.
    if status.key_rotation_enabled()
        && status
            .rotation_period_in_days()
            .is_none_or(|period| period == days)
    {
        return Ok(false);
    }
    kms.enable_key_rotation()
        .key_id(&key.key_id)
        .rotation_period_in_days(days)
        .send()
        .await
        .map_err(|e| Error::aws(format!("EnableKeyRotation {}", key.alias), e))?;
    Ok(true)
}

/// What the deployment's own function roles may do with its keys, granted by each key's
/// policy and by no IAM policy: `(function, actions)`; the role is
/// `apiary-<deployment>-fn-<function>`.
///
/// Why the key policy: tagging a key while creating it needs `kms:TagResource` in IAM on
/// every key of the account (the key and its policy do not exist yet), so a role that
/// creates tagged keys can tag anyone's key as this deployment's; IAM statements
/// conditioned on that tag would then reach the stranger's key. A key's own policy names
/// who may change it, so another key's policy never names these roles, whatever its tags.
/// `ScheduleKeyDeletion` is teardown's (keys last), and the keys function's only for the
/// key it has just made when another run won the alias race (so nothing leaks).
pub const KEY_POLICY_GRANTS: &[(&str, &[&str])] = &[
    (
        "keys",
        &[
            "kms:CancelKeyDeletion",
            "kms:CreateAlias",
            "kms:EnableKeyRotation",
            "kms:PutKeyPolicy",
            "kms:ScheduleKeyDeletion",
        ],
    ),
    (
        "operate",
        &[
            "kms:CancelKeyDeletion",
            "kms:EnableKeyRotation",
            "kms:RotateKeyOnDemand",
        ],
    ),
    // The alias goes with the scheduled key, so that a new provision of the same name
    // makes new keys instead of finding the torn-down ones.
    ("teardown", &["kms:DeleteAlias", "kms:ScheduleKeyDeletion"]),
];

/// The statements of [`KEY_POLICY_GRANTS`]: one per function role, named by
/// `aws:PrincipalArn` (KMS refuses a policy whose principal does not exist yet, and the
/// keys layer may run before a role is made) and limited to this account.
pub fn deployment_role_statements(account: &str, region: &str, names: &Names) -> Vec<Value> {
    let partition = apiary_core::aws::partition(region);
    KEY_POLICY_GRANTS
        .iter()
        .map(|(function, actions)| {
            let role = apiary_core::aws::arn(
                partition,
                "iam",
                "",
                account,
                &format!("role/{}", names.resource(&format!("fn-{function}"))),
            );
            let mut sid: String = function[..1].to_ascii_uppercase();
            sid.push_str(&function[1..]);
            json!({
                "Sid": format!("{sid}FunctionManagesKey"),
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": actions,
                "Resource": "*",
                "Condition": {
                    "ArnEquals": {"aws:PrincipalArn": role},
                    "StringEquals": {"kms:CallerAccount": account}
                }
            })
        })
        .collect()
}

/// The key policy: the account administers the key (without this statement a key can
/// become unmanageable); use for encryption is limited to this account's principals and,
/// for service scopes, to requests that come through that service in this region; grants
/// only for AWS resources (so no grant gives a principal the key outside that service),
/// and never through the administrators' statement.
pub fn key_policy(account: &str, region: &str, service: Option<&str>) -> String {
    key_policy_via(account, region, service.as_slice())
}

/// [`key_policy`] for a key used through any of `services` (none: any use within the
/// account).
pub fn key_policy_via(account: &str, region: &str, services: &[&str]) -> String {
    let partition = apiary_core::aws::partition(region);
    let root = apiary_core::aws::arn(partition, "iam", "", account, "root");
    let mut usage = json!({
        "Sid": "UseWithinAccount",
        "Effect": "Allow",
        "Principal": {"AWS": root},
        "Action": [
            "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*",
            "kms:GenerateDataKey*", "kms:DescribeKey"
        ],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:CallerAccount": account}}
    });
    match services {
        [] => {}
        [service] => {
            usage["Condition"]["StringEquals"]["kms:ViaService"] =
                json!(format!("{service}.{region}.amazonaws.com"));
        }
        several => {
            let via: Vec<String> = several
                .iter()
                .map(|s| format!("{s}.{region}.amazonaws.com"))
                .collect();
            usage["Condition"]["StringEquals"]["kms:ViaService"] = json!(via);
        }
    }
    // A grant is how a service uses the key for a resource (EKS, RDS, EBS); one made for
    // a principal instead would let it use the key outside the service, around
    // kms:ViaService.
    let mut grants = json!({
        "Sid": "GrantsForAwsResourcesOnly",
        "Effect": "Allow",
        "Principal": {"AWS": root},
        "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
        "Resource": "*",
        "Condition": {
            "StringEquals": usage["Condition"]["StringEquals"].clone(),
            "Bool": {"kms:GrantIsForAWSResource": "true"}
        }
    });
    if services.is_empty() {
        grants["Condition"]["StringEquals"] = json!({"kms:CallerAccount": account});
    }
    // The customer's administrators keep every right over the key (IAM decides who they
    // are), except making grants: kms:CreateGrant is only in the statement above.
    let mut statements = vec![json!({
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": root},
        "Action": [
            "kms:CreateAlias", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
            "kms:Update*", "kms:Disable*", "kms:Get*", "kms:Delete*",
            "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
            "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"
        ],
        "Resource": "*"
    })];
    statements.push(usage);
    statements.push(grants);
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
    let policy = with_statements(
        &key_policy(account, region, service),
        deployment_role_statements(account, region, names),
    );
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
