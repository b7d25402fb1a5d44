//! The control plane's state in one DynamoDB table (single-table design).
//!
//! | item | pk | sk |
//! |---|---|---|
//! | deployment record (spec, status, timestamps) | `DEPLOYMENT#<name>` | `META` |
//! | journal entry (append-only) | `DEPLOYMENT#<name>` | `JOURNAL#<rfc3339 µs>#<uuid>` |
//! | inventory resource | `DEPLOYMENT#<name>` | `RESOURCE#<layer>#<type>#<id>` |
//! | lock (owner + lease expiry) | `DEPLOYMENT#<name>` | `LOCK` |
//! | a step's saved output (what later steps read) | `DEPLOYMENT#<name>` | `OUTPUT#<slot>` |
//! | an event handle-alert acted on (who claimed it; expires after 30 days) | `DEPLOYMENT#<name>` | `EVENT#<event id>` |
//! | an alarm's last state change | `DEPLOYMENT#<name>` | `ALARM#<alarm name>` |
//! | a stack delete's answer, held while its teardown runs (expires) | `STACKDELETE#<name>` | `REQUEST#<request id>` |
//!
//! One partition per deployment: `apiary status` and the teardown read everything about a
//! deployment with one query.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::spec::DeploymentSpec;

pub const DEFAULT_TABLE: &str = "apiary";

/// The table's time-to-live attribute (epoch seconds): DynamoDB deletes an item carrying
/// it some time after that moment. Only event claims carry it.
pub const TTL_ATTRIBUTE: &str = "expires_at_epoch";

/// How long a claimed event id is kept: far past EventBridge's redelivery (at most 24
/// hours with the stack's retry policy), so a redelivered event still finds its claim.
pub const EVENT_CLAIM_DAYS: i64 = 30;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    Provisioning,
    Ready,
    /// Every layer is built, but ACM has not issued the certificate: its DNS validation
    /// records are not in public DNS yet (they are in the dns layer's output). The HTTPS
    /// ingress is applied once the certificate is issued.
    WaitingForDnsValidation,
    Failed,
    TearingDown,
    Deleted,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Provisioning => "PROVISIONING",
            DeploymentStatus::Ready => "READY",
            DeploymentStatus::WaitingForDnsValidation => "WAITING_FOR_DNS_VALIDATION",
            DeploymentStatus::Failed => "FAILED",
            DeploymentStatus::TearingDown => "TEARING_DOWN",
            DeploymentStatus::Deleted => "DELETED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            DeploymentStatus::Provisioning,
            DeploymentStatus::Ready,
            DeploymentStatus::WaitingForDnsValidation,
            DeploymentStatus::Failed,
            DeploymentStatus::TearingDown,
            DeploymentStatus::Deleted,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub name: String,
    pub spec: DeploymentSpec,
    pub status: DeploymentStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What one step did, appended to the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub deployment: String,
    pub execution_id: String,
    pub step: String,
    pub action: String,
    /// `succeeded`, `failed`, `unchanged`, `not-ready`, ...
    pub outcome: String,
    #[serde(default)]
    pub resource_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// A resource the control plane made, recorded so status and teardown know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub layer: String,
    /// e.g. `ec2:vpc`, `kms:key`, `s3:bucket`.
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

impl Resource {
    /// Whether this record is the resource `arn` names: the same ARN, or an id the ARN
    /// ends with (`…:security-group/sg-1`, `…:db:name`, `arn:aws:s3:::bucket`), since
    /// many records keep only the id.
    pub fn is(&self, arn: &str) -> bool {
        if self.arn.as_deref() == Some(arn) {
            return true;
        }
        if self.id.is_empty() {
            return false;
        }
        let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
        [
            resource,
            resource.rsplit('/').next().unwrap_or_default(),
            resource.rsplit(':').next().unwrap_or_default(),
        ]
        .contains(&self.id.as_str())
    }
}

/// What [`Store::claim_event`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    First,
    Again,
    /// Held by `by`; `done`: that execution finished handling it.
    Duplicate {
        by: String,
        done: bool,
    },
}

/// An alarm's last state change, as handle-alert recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmRecord {
    pub name: String,
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub summary: String,
    pub changed_at: DateTime<Utc>,
}

/// A phone-home report kept in the outbox until it is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptReport {
    pub seq: u64,
    /// The exact body to send and sign.
    pub body: String,
    pub made_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub deployment: String,
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
}

fn pk(deployment: &str) -> AttributeValue {
    AttributeValue::S(format!("DEPLOYMENT#{deployment}"))
}

/// The partition of a deployment's phone-home outbox (reports, counter, marker, lease):
/// apart from the deployment's own, so the report function's role may write and delete
/// only there.
pub fn outbox_pk(deployment: &str) -> AttributeValue {
    AttributeValue::S(format!("{OUTBOX_PARTITION}{deployment}"))
}

/// The prefix of the outbox partition's key (`PHONEHOME#<name>`), as the template's IAM
/// condition names it.
pub const OUTBOX_PARTITION: &str = "PHONEHOME#";

/// The prefix of the partition that holds a stack delete's pending answer to
/// CloudFormation while the teardown it started runs (`STACKDELETE#<name>`): apart from
/// the deployment's own, so the launch function's role may write there and nowhere else.
pub const STACK_DELETE_PARTITION: &str = "STACKDELETE#";

fn stack_delete_pk(deployment: &str) -> AttributeValue {
    AttributeValue::S(format!("{STACK_DELETE_PARTITION}{deployment}"))
}

/// A custom resource Delete that waits for a teardown: everything needed to answer
/// CloudFormation later, from another invocation. `response_url` is a presigned URL, a
/// credential: it lives only here (the table is encrypted with the stack's key) and is
/// never logged or passed in an event.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAnswer {
    pub request_id: String,
    pub response_url: String,
    pub stack_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: String,
    /// The teardown execution the answer waits for.
    pub execution_arn: String,
    /// Past this, the answer is FAILED with the execution's link (CloudFormation waits
    /// for a custom resource at most an hour).
    pub deadline: DateTime<Utc>,
}

impl std::fmt::Debug for PendingAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAnswer")
            .field("request_id", &self.request_id)
            .field("stack_id", &self.stack_id)
            .field("execution_arn", &self.execution_arn)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// How long a pending answer is kept past its deadline before the table's time to live
/// removes it (the presigned URL is dead by then anyway).
pub const PENDING_ANSWER_GRACE_HOURS: i64 = 2;

fn outbox_key(seq: u64) -> String {
    format!("OUTBOX#{seq:020}")
}

/// The state table's keys and billing, for every CreateTable of it: the local runner's
/// ([`Store::ensure_table`]) and the stack's (the `state-table` custom resource).
pub fn table_layout(
    create: aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
) -> aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder {
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key schema fields are set")
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute fields are set")
    };
    create
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn get_s<'a>(item: &'a Item, key: &str) -> Result<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| Error::fatal(format!("store item is missing string attribute {key}")))
}

fn get_time(item: &Item, key: &str) -> Result<DateTime<Utc>> {
    let text = get_s(item, key)?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::fatal(format!("store attribute {key} is not a timestamp: {e}")))
}

fn is_condition_failure(
    err: &SdkError<PutItemError, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> bool {
    matches!(
        err.as_service_error(),
        Some(PutItemError::ConditionalCheckFailedException(_))
    )
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Store {
            client,
            table: table.into(),
        }
    }

    /// The store a Lambda uses: table name from `APIARY_TABLE` (set by the bootstrap
    /// stack), else the default.
    pub fn from_env(config: &aws_config::SdkConfig) -> Self {
        use crate::aws::{Env, ProcessEnv};
        let table = ProcessEnv
            .var("APIARY_TABLE")
            .unwrap_or_else(|| DEFAULT_TABLE.to_owned());
        Store::new(crate::client!(aws_sdk_dynamodb, config), table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table if it does not exist (local mode; on AWS the bootstrap stack
    /// owns the table) and waits until it is active.
    pub async fn ensure_table(&self) -> Result<()> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(err) => return Err(Error::aws(format!("DescribeTable {}", self.table), err)),
        }
        let created = table_layout(self.client.create_table().table_name(&self.table))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(err) => return Err(Error::aws(format!("CreateTable {}", self.table), err)),
        }
        self.client
            .wait_until_table_exists()
            .table_name(&self.table)
            .wait(std::time::Duration::from_secs(60))
            .await
            .map_err(|e| {
                Error::fatal(format!("table {} did not become active: {e}", self.table))
            })?;
        Ok(())
    }

    /// Creates or replaces the deployment record, keeping its creation time.
    pub async fn put_deployment(
        &self,
        spec: &DeploymentSpec,
        status: DeploymentStatus,
        now: DateTime<Utc>,
    ) -> Result<DeploymentRecord> {
        let existing = self.get_deployment(&spec.name).await?;
        let created_at = existing.map(|r| r.created_at).unwrap_or(now);
        let spec_json = serde_json::to_string(spec).map_err(|e| Error::fatal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(&spec.name))
            .item("sk", s("META"))
            .item("name", s(&spec.name))
            .item("spec", s(spec_json))
            .item("status", s(status.as_str()))
            .item("created_at", s(timestamp(created_at)))
            .item("updated_at", s(timestamp(now)))
            .send()
            .await
            .map_err(|e| Error::aws(format!("PutItem deployment {}", spec.name), e))?;
        Ok(DeploymentRecord {
            name: spec.name.clone(),
            spec: spec.clone(),
            status,
            created_at,
            updated_at: now,
        })
    }

    pub async fn get_deployment(&self, name: &str) -> Result<Option<DeploymentRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(name))
            .key("sk", s("META"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws(format!("GetItem deployment {name}"), e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let spec: DeploymentSpec = serde_json::from_str(get_s(&item, "spec")?)
            .map_err(|e| Error::fatal(format!("stored spec of {name} is unreadable: {e}")))?;
        let status_text = get_s(&item, "status")?;
        let status = DeploymentStatus::parse(status_text)
            .ok_or_else(|| Error::fatal(format!("unknown deployment status {status_text}")))?;
        Ok(Some(DeploymentRecord {
            name: name.to_owned(),
            spec,
            status,
            created_at: get_time(&item, "created_at")?,
            updated_at: get_time(&item, "updated_at")?,
        }))
    }

    /// Sets the status of an existing deployment record.
    pub async fn set_status(
        &self,
        name: &str,
        status: DeploymentStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(name))
            .key("sk", s("META"))
            .update_expression("SET #status = :status, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":now", s(timestamp(now)))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    Error::invalid_input(format!("deployment {name} has no record"))
                } else {
                    Error::aws(format!("UpdateItem deployment {name}"), e)
                }
            })?;
        Ok(())
    }

    /// Appends to the journal. Entries are never overwritten.
    pub async fn append_journal(&self, entry: &JournalEntry) -> Result<()> {
        let sk = format!("JOURNAL#{}#{}", timestamp(entry.at), uuid::Uuid::new_v4());
        let body = serde_json::to_string(entry).map_err(|e| Error::fatal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(&entry.deployment))
            .item("sk", s(sk))
            .item("entry", s(body))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await
            .map_err(|e| Error::aws(format!("PutItem journal {}", entry.deployment), e))?;
        Ok(())
    }

    /// The journal in the order it was written.
    pub async fn journal(&self, deployment: &str) -> Result<Vec<JournalEntry>> {
        self.query_prefix(deployment, "JOURNAL#")
            .await?
            .iter()
            .map(|item| {
                serde_json::from_str(get_s(item, "entry")?)
                    .map_err(|e| Error::fatal(format!("journal entry unreadable: {e}")))
            })
            .collect()
    }

    /// Records a resource in the inventory (idempotent: same key, same item).
    pub async fn record_resource(&self, deployment: &str, resource: &Resource) -> Result<()> {
        let sk = format!(
            "RESOURCE#{}#{}#{}",
            resource.layer, resource.kind, resource.id
        );
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(deployment))
            .item("sk", s(sk))
            .item("layer", s(&resource.layer))
            .item("kind", s(&resource.kind))
            .item("id", s(&resource.id));
        if let Some(arn) = &resource.arn {
            put = put.item("arn", s(arn));
        }
        put.send().await.map_err(|e| {
            Error::aws(format!("PutItem inventory {deployment} {}", resource.id), e)
        })?;
        Ok(())
    }

    /// Removes a resource from the inventory (absent is fine).
    pub async fn forget_resource(&self, deployment: &str, resource: &Resource) -> Result<()> {
        let sk = format!(
            "RESOURCE#{}#{}#{}",
            resource.layer, resource.kind, resource.id
        );
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", pk(deployment))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    format!("DeleteItem inventory {deployment} {}", resource.id),
                    e,
                )
            })?;
        Ok(())
    }

    /// Keeps a step's output for the steps after it (`slot`: `network`,
    /// `databases.postgres`). The last write of a slot wins.
    pub async fn put_output(&self, deployment: &str, slot: &str, output: &Value) -> Result<()> {
        let body = serde_json::to_string(output).map_err(|e| Error::fatal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(deployment))
            .item("sk", s(format!("OUTPUT#{slot}")))
            .item("output", s(body))
            .send()
            .await
            .map_err(|e| Error::aws(format!("PutItem output {slot} of {deployment}"), e))?;
        Ok(())
    }

    /// Every saved step output of the deployment, by slot.
    pub async fn layer_outputs(&self, deployment: &str) -> Result<BTreeMap<String, Value>> {
        self.query_prefix(deployment, "OUTPUT#")
            .await?
            .iter()
            .map(|item| {
                let sk = get_s(item, "sk")?;
                let slot = sk.trim_start_matches("OUTPUT#").to_owned();
                let value = serde_json::from_str(get_s(item, "output")?).map_err(|e| {
                    Error::fatal(format!(
                        "saved output {slot} of {deployment} is unreadable: {e}"
                    ))
                })?;
                Ok((slot, value))
            })
            .collect()
    }

    pub async fn inventory(&self, deployment: &str) -> Result<Vec<Resource>> {
        self.query_prefix(deployment, "RESOURCE#")
            .await?
            .iter()
            .map(|item| {
                Ok(Resource {
                    layer: get_s(item, "layer")?.to_owned(),
                    kind: get_s(item, "kind")?.to_owned(),
                    id: get_s(item, "id")?.to_owned(),
                    arn: item.get("arn").and_then(|v| v.as_s().ok()).cloned(),
                })
            })
            .collect()
    }

    /// Takes the deployment's lock for `owner` until `now + lease`. Succeeds when the lock
    /// is free, expired, or already held by the same owner (renewal); otherwise fails with
    /// `Apiary.Conflict` naming the holder.
    pub async fn acquire_lock(
        &self,
        deployment: &str,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Lock> {
        self.acquire(
            deployment,
            pk(deployment),
            "LOCK",
            "locked",
            owner,
            lease,
            now,
        )
        .await
    }

    /// Takes the phone-home delivery lease of a deployment for `owner` until `now +
    /// lease`, on the same terms as [`Store::acquire_lock`] (free, expired or already
    /// `owner`'s), but in the deployment's outbox partition, never its lock: it keeps
    /// two report runs from numbering and sending at once without ever conflicting with
    /// a workflow.
    pub async fn acquire_outbox_lease(
        &self,
        deployment: &str,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Lock> {
        self.acquire(
            deployment,
            outbox_pk(deployment),
            "LEASE",
            "held for phone-home",
            owner,
            lease,
            now,
        )
        .await
    }

    /// Ends `owner`'s outbox lease; a no-op when it no longer holds it (it expired and
    /// another took it, or it was released).
    pub async fn release_outbox_lease(&self, deployment: &str, owner: &str) -> Result<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", outbox_pk(deployment))
            .key("sk", s("LEASE"))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(Error::aws(
                format!("DeleteItem outbox lease of {deployment}"),
                err,
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn acquire(
        &self,
        deployment: &str,
        partition: AttributeValue,
        sk: &str,
        what: &str,
        owner: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Lock> {
        let expires_at = now + lease;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", partition.clone())
            .item("sk", s(sk))
            .item("owner", s(owner))
            .item("expires_at", s(timestamp(expires_at)))
            .item("acquired_at", s(timestamp(now)))
            .condition_expression(
                "attribute_not_exists(pk) OR #owner = :owner OR expires_at < :now",
            )
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", s(timestamp(now)))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lock {
                deployment: deployment.to_owned(),
                owner: owner.to_owned(),
                expires_at,
            }),
            Err(err) if is_condition_failure(&err) => {
                let holder = match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(e)) => e.item().cloned(),
                    _ => None,
                };
                // The item as the failed write found it; read it when the answer does not
                // carry it.
                let holder = match holder {
                    Some(item) => Some(item),
                    None => {
                        self.client
                            .get_item()
                            .table_name(&self.table)
                            .key("pk", partition.clone())
                            .key("sk", s(sk))
                            .consistent_read(true)
                            .send()
                            .await
                            .map_err(|e| Error::aws(format!("GetItem {sk} {deployment}"), e))?
                            .item
                    }
                };
                let holder = holder.as_ref().and_then(|item| {
                    Some((get_s(item, "owner").ok()?, get_s(item, "expires_at").ok()?))
                });
                Err(Error::Conflict(match holder {
                    Some((owner, until)) => {
                        format!("deployment {deployment} is {what} by {owner} until {until}")
                    }
                    None => format!("deployment {deployment} is {what} by another workflow"),
                }))
            }
            Err(err) => Err(Error::aws(format!("PutItem {sk} {deployment}"), err)),
        }
    }

    /// Hands the lock from `from` to `to` in one conditional write: it succeeds only while
    /// `from` holds it, so there is no moment when the lock is free between the two
    /// owners (a crash between a release and an acquire would leave it free, or lose the
    /// step that was to follow). `Apiary.Conflict` when `from` no longer holds it.
    pub async fn transfer_lock(
        &self,
        deployment: &str,
        from: &str,
        to: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Lock> {
        let expires_at = now + lease;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(deployment))
            .item("sk", s("LOCK"))
            .item("owner", s(to))
            .item("expires_at", s(timestamp(expires_at)))
            .item("acquired_at", s(timestamp(now)))
            .condition_expression("#owner = :from")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":from", s(from))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lock {
                deployment: deployment.to_owned(),
                owner: to.to_owned(),
                expires_at,
            }),
            Err(err) if is_condition_failure(&err) => Err(Error::Conflict(format!(
                "the lock of deployment {deployment} is no longer held by {from}"
            ))),
            Err(err) => Err(Error::aws(format!("PutItem lock {deployment}"), err)),
        }
    }

    /// Releases the lock. Only its owner may; releasing a lock nobody holds is a no-op.
    pub async fn release_lock(&self, deployment: &str, owner: &str) -> Result<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", pk(deployment))
            .key("sk", s("LOCK"))
            .condition_expression("attribute_not_exists(pk) OR #owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let holder = self.current_lock(deployment).await?;
                Err(Error::Conflict(format!(
                    "{owner} cannot release the lock of deployment {deployment}: it is held by {}",
                    holder
                        .map(|l| l.owner)
                        .unwrap_or_else(|| "another workflow".into())
                )))
            }
            Err(err) => Err(Error::aws(format!("DeleteItem lock {deployment}"), err)),
        }
    }

    pub async fn current_lock(&self, deployment: &str) -> Result<Option<Lock>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(deployment))
            .key("sk", s("LOCK"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws(format!("GetItem lock {deployment}"), e))?;
        out.item
            .map(|item| {
                Ok(Lock {
                    deployment: deployment.to_owned(),
                    owner: get_s(&item, "owner")?.to_owned(),
                    expires_at: get_time(&item, "expires_at")?,
                })
            })
            .transpose()
    }

    /// Claims an EventBridge event for the execution that handles it, so that a
    /// redelivered event acts once: the first execution to claim an event id holds it
    /// ([`Claim::First`]); the same execution claiming again (its step retried) still
    /// holds it ([`Claim::Again`]); any other execution finds it taken.
    pub async fn claim_event(
        &self,
        deployment: &str,
        event_id: &str,
        execution: &str,
        summary: &str,
        at: DateTime<Utc>,
    ) -> Result<Claim> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(deployment))
            .item("sk", s(format!("EVENT#{event_id}")))
            .item("owner", s(execution))
            .item("summary", s(summary))
            .item("at", s(timestamp(at)))
            .item(
                TTL_ATTRIBUTE,
                AttributeValue::N(
                    (at + chrono::Duration::days(EVENT_CLAIM_DAYS))
                        .timestamp()
                        .to_string(),
                ),
            )
            .condition_expression("attribute_not_exists(sk) OR #owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(execution))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(out) => Ok(match out.attributes {
                Some(old) if old.contains_key("owner") => Claim::Again,
                _ => Claim::First,
            }),
            Err(err) if is_condition_failure(&err) => {
                let old = match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(e)) => e.item().cloned(),
                    _ => None,
                };
                let by = old
                    .as_ref()
                    .and_then(|item| get_s(item, "owner").ok())
                    .unwrap_or("another execution")
                    .to_owned();
                let done = old
                    .as_ref()
                    .is_some_and(|item| item.contains_key("done_at"));
                Ok(Claim::Duplicate { by, done })
            }
            Err(err) => Err(Error::aws(
                format!("PutItem event {event_id} of {deployment}"),
                err,
            )),
        }
    }

    /// Hands the claim of an event from `from` (an execution that ended without finishing
    /// it: stopped, timed out, failed before its runbook) to `to`, in one conditional
    /// write; false when `from` no longer holds it or it was finished.
    pub async fn take_over_event(
        &self,
        deployment: &str,
        event_id: &str,
        from: &str,
        to: &str,
    ) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(deployment))
            .key("sk", s(format!("EVENT#{event_id}")))
            .update_expression("SET #owner = :to")
            .condition_expression("#owner = :from AND attribute_not_exists(done_at)")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(Error::aws(
                format!("UpdateItem event {event_id} of {deployment}"),
                err,
            )),
        }
    }

    /// Marks an event handled: its claim is never taken over after this.
    pub async fn finish_event(
        &self,
        deployment: &str,
        event_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(deployment))
            .key("sk", s(format!("EVENT#{event_id}")))
            .update_expression("SET done_at = :at")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":at", s(timestamp(at)))
            .send()
            .await
            .map_err(|e| Error::aws(format!("UpdateItem event {event_id} of {deployment}"), e))?;
        Ok(())
    }

    /// Records an alarm's state change. EventBridge does not promise order: a change
    /// older than the one recorded is ignored (returns false), so a late ALARM never
    /// reopens an alarm that has since returned to OK.
    pub async fn record_alarm(&self, deployment: &str, alarm: &AlarmRecord) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(deployment))
            .item("sk", s(format!("ALARM#{}", alarm.name)))
            .item("state", s(&alarm.state))
            .item("summary", s(&alarm.summary))
            .item("changed_at", s(timestamp(alarm.changed_at)))
            .condition_expression("attribute_not_exists(sk) OR changed_at <= :at")
            .expression_attribute_values(":at", s(timestamp(alarm.changed_at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(Error::aws(
                format!("PutItem alarm {} of {deployment}", alarm.name),
                err,
            )),
        }
    }

    /// Every alarm's last recorded state change, by name.
    pub async fn alarms(&self, deployment: &str) -> Result<Vec<AlarmRecord>> {
        self.query_prefix(deployment, "ALARM#")
            .await?
            .iter()
            .map(|item| {
                Ok(AlarmRecord {
                    name: get_s(item, "sk")?.trim_start_matches("ALARM#").to_owned(),
                    state: get_s(item, "state")?.to_owned(),
                    summary: get_s(item, "summary")?.to_owned(),
                    changed_at: get_time(item, "changed_at")?,
                })
            })
            .collect()
    }

    /// The next phone-home report number of a deployment: 1, 2, 3, ... (an atomic
    /// counter, so two runs never number two reports alike).
    pub async fn next_report_seq(&self, deployment: &str) -> Result<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", outbox_pk(deployment))
            .key("sk", s("OUTBOX-SEQ"))
            .update_expression("ADD seq :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| Error::aws(format!("UpdateItem report counter of {deployment}"), e))?;
        out.attributes
            .as_ref()
            .and_then(|a| a.get("seq"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::fatal("the report counter returned no number"))
    }

    /// Keeps report `seq` in the outbox until it is delivered or `expires_at` passes (the
    /// table's time to live removes it then). Keeping the same report again is a no-op.
    pub async fn put_report(
        &self,
        deployment: &str,
        seq: u64,
        body: &str,
        made_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", outbox_pk(deployment))
            .item("sk", s(outbox_key(seq)))
            .item("body", s(body))
            .item("made_at", s(timestamp(made_at)))
            .item("expires_at", s(timestamp(expires_at)))
            .item(
                TTL_ATTRIBUTE,
                AttributeValue::N(expires_at.timestamp().to_string()),
            )
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(Error::aws(
                format!("PutItem report {seq} of {deployment}"),
                err,
            )),
        }
    }

    /// The reports still to deliver, oldest first, leaving out any past its expiry that
    /// the time to live has not removed yet (it may take days to).
    pub async fn pending_reports(
        &self,
        deployment: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeptReport>> {
        let mut reports = Vec::new();
        for item in self
            .query_partition(outbox_pk(deployment), "OUTBOX#")
            .await?
        {
            let seq = get_s(&item, "sk")?
                .trim_start_matches("OUTBOX#")
                .parse::<u64>()
                .map_err(|e| Error::fatal(format!("outbox key unreadable: {e}")))?;
            if get_time(&item, "expires_at")? <= now {
                continue;
            }
            reports.push(KeptReport {
                seq,
                body: get_s(&item, "body")?.to_owned(),
                made_at: get_time(&item, "made_at")?,
            });
        }
        // The keys are zero-padded, so the table's order is already by number.
        reports.sort_by_key(|r| r.seq);
        Ok(reports)
    }

    /// Removes a delivered report.
    pub async fn delete_report(&self, deployment: &str, seq: u64) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", outbox_pk(deployment))
            .key("sk", s(outbox_key(seq)))
            .send()
            .await
            .map_err(|e| Error::aws(format!("DeleteItem report {seq} of {deployment}"), e))?;
        Ok(())
    }

    /// Records that `execution` numbered report `seq`, before the report is kept: a
    /// retried attempt of the same execution keeps that number instead of taking another.
    pub async fn set_report_made(&self, deployment: &str, execution: &str, seq: u64) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", outbox_pk(deployment))
            .item("sk", s("MADE"))
            .item("execution", s(execution))
            .item("seq", AttributeValue::N(seq.to_string()))
            .send()
            .await
            .map_err(|e| Error::aws(format!("PutItem report marker of {deployment}"), e))?;
        Ok(())
    }

    /// The execution that numbered the last report, and its number.
    pub async fn report_made(&self, deployment: &str) -> Result<Option<(String, u64)>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", outbox_pk(deployment))
            .key("sk", s("MADE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws(format!("GetItem report marker of {deployment}"), e))?;
        Ok(out.item.and_then(|item| {
            let execution = get_s(&item, "execution").ok()?.to_owned();
            let seq = item.get("seq")?.as_n().ok()?.parse().ok()?;
            Some((execution, seq))
        }))
    }

    async fn query_prefix(&self, deployment: &str, prefix: &str) -> Result<Vec<Item>> {
        self.query_partition(pk(deployment), prefix).await
    }

    /// Keeps `answer` unless one is already kept for its request (a redelivered Delete
    /// keeps the first one's deadline); returns the one kept.
    pub async fn hold_answer(
        &self,
        deployment: &str,
        answer: &PendingAnswer,
    ) -> Result<PendingAnswer> {
        let body = serde_json::to_string(answer).map_err(|e| Error::fatal(e.to_string()))?;
        let expires = answer.deadline + chrono::Duration::hours(PENDING_ANSWER_GRACE_HOURS);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", stack_delete_pk(deployment))
            .item("sk", s(format!("REQUEST#{}", answer.request_id)))
            .item("answer", s(body))
            .item(
                TTL_ATTRIBUTE,
                AttributeValue::N(expires.timestamp().to_string()),
            )
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(answer.clone()),
            Err(err) if is_condition_failure(&err) => self
                .held_answer(deployment, &answer.request_id)
                .await?
                .ok_or_else(|| Error::NotReady {
                    resource: format!("the pending answer to request {}", answer.request_id),
                    detail: "it was there and then gone: another invocation answered it".into(),
                }),
            Err(err) => Err(Error::aws(
                format!("PutItem pending answer of {deployment}"),
                err,
            )),
        }
    }

    /// The answer kept for `request_id`, if it has not been given yet.
    pub async fn held_answer(
        &self,
        deployment: &str,
        request_id: &str,
    ) -> Result<Option<PendingAnswer>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", stack_delete_pk(deployment))
            .key("sk", s(format!("REQUEST#{request_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws(format!("GetItem pending answer of {deployment}"), e))?;
        out.item
            .map(|item| {
                serde_json::from_str(get_s(&item, "answer")?)
                    .map_err(|e| Error::fatal(format!("pending answer unreadable: {e}")))
            })
            .transpose()
    }

    /// Forgets an answer once it has been given.
    pub async fn release_answer(&self, deployment: &str, request_id: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", stack_delete_pk(deployment))
            .key("sk", s(format!("REQUEST#{request_id}")))
            .send()
            .await
            .map_err(|e| Error::aws(format!("DeleteItem pending answer of {deployment}"), e))?;
        Ok(())
    }

    async fn query_partition(&self, partition: AttributeValue, prefix: &str) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", partition.clone())
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    Error::aws(
                        format!(
                            "Query {prefix} {}",
                            partition.as_s().map(String::as_str).unwrap_or("?")
                        ),
                        e,
                    )
                })?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DeploymentStatus, Resource};

    #[test]
    fn a_record_is_the_resource_its_arn_or_the_id_an_arn_ends_with_names() {
        let record = |id: &str, arn: Option<&str>| Resource {
            layer: "network".into(),
            kind: "ec2:security-group".into(),
            id: id.into(),
            arn: arn.map(str::to_owned),
        };
        let group = "arn:aws:ec2:us-west-2:123456789012:security-group/sg-1";
        assert!(record("sg-1", None).is(group));
        assert!(record("other", Some(group)).is(group));
        assert!(!record("sg-12", None).is(group), "a longer id is another");
        assert!(!record("sg", None).is(group));
        assert!(!record("", None).is(group));
        assert!(record("apiary-d-pg", None).is("arn:aws:rds:us-west-2:1:db:apiary-d-pg"));
        assert!(record("apiary-d-logs", None).is("arn:aws:s3:::apiary-d-logs"));
        assert!(!record("apiary-d-logs", None).is("arn:aws:s3:::apiary-d-logs-2"));
    }

    #[test]
    fn every_status_reads_back_from_the_string_the_table_and_serde_use() {
        for status in [
            DeploymentStatus::Provisioning,
            DeploymentStatus::Ready,
            DeploymentStatus::WaitingForDnsValidation,
            DeploymentStatus::Failed,
            DeploymentStatus::TearingDown,
            DeploymentStatus::Deleted,
        ] {
            assert_eq!(DeploymentStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(
            DeploymentStatus::WaitingForDnsValidation.as_str(),
            "WAITING_FOR_DNS_VALIDATION"
        );
    }
}
