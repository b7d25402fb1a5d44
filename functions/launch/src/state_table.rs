//! `Custom::ApiaryStateTable`: the state table's fate, decided in one place.
//!
//! The table holds the deployment's record, its journal, the inventory a teardown works
//! from and the backup ledger, so it must outlive a stack deleted with the data plane
//! kept, and a new stack of the same name must take it over rather than fail on the
//! name. CloudFormation can do neither with a table it owns (a retained table blocks a
//! new stack's CreateTable, and no template can adopt one), hence this resource, served
//! by the `state-table` function:
//!
//! - **Create and Update**: make the table (encrypted with the stack's state key,
//!   deletion protection on, point-in-time recovery, the TTL attribute), or adopt the
//!   one a previous stack of this deployment left: checked by its `apiary:bootstrap`
//!   tag, re-keyed to this stack's state key, its items untouched. A table of the same
//!   name that is not this deployment's is refused, naming it, with nothing changed.
//! - **Delete**, only while CloudFormation deletes this very stack:
//!   - the rollback of a failed stack create deletes the table when this stack made it
//!     and no provision ever recorded the deployment in it;
//!   - a stack delete after the data plane is gone (the deployment is DELETED, or was
//!     never recorded) takes a final on-demand backup (the journal, inventory, ledger
//!     and the teardown's receipt, kept until someone deletes it) and then deletes the
//!     table;
//!   - otherwise (the data plane kept, `OnStackDelete=Retain`) the table stays, for the
//!     next stack of this name to adopt.
//!   - in any other stack state (an update rolling back, a Delete not sent by
//!     CloudFormation) nothing is deleted.
//!
//! The table's name, the deployment and the key come from the function's environment,
//! never from the request: a forged request cannot point it at another table or key.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use apiary_core::aws::Env;
use apiary_core::store::{DeploymentStatus, Store, TTL_ATTRIBUTE, table_layout};
use apiary_core::{Error, Result};
use aws_sdk_cloudformation::types::StackStatus;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    BackupStatus, BackupTypeFilter, PointInTimeRecoverySpecification, PointInTimeRecoveryStatus,
    SseSpecification, SseType, TableDescription, TableStatus, Tag, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use sha2::{Digest, Sha256};

use crate::request::{Request, RequestType};

/// The `ResourceType` of the state table resource.
pub const STATE_TABLE_TYPE: &str = "Custom::ApiaryStateTable";

/// The tag naming the stack that created the table (a stack id). Set once, at creation:
/// an adopting stack never changes it, so its own failed create never deletes a table
/// an earlier stack made.
pub const CREATED_BY_TAG: &str = "apiary:created-by-stack";
/// The tag that makes a table this deployment's (as on every bootstrap resource).
pub const BOOTSTRAP_TAG: &str = "apiary:bootstrap";

/// How often a wait asks again.
const POLL: Duration = Duration::from_secs(2);

/// What the `state-table` function's environment says (the template sets it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateTableConfig {
    pub table: String,
    pub deployment: String,
    /// The stack's state key (`StateKey`), which encrypts the table.
    pub key_arn: String,
    /// The function's own stack: only its deletion deletes anything.
    pub stack_id: String,
}

impl StateTableConfig {
    pub fn from_env(env: &dyn Env) -> Result<StateTableConfig> {
        let required = |key: &str| {
            env.var(key).filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::invalid_input(format!(
                    "the state-table function's environment has no {key}"
                ))
            })
        };
        Ok(StateTableConfig {
            table: required("APIARY_TABLE")?,
            deployment: required("APIARY_DEPLOYMENT")?,
            key_arn: required("APIARY_STATE_KEY_ARN")?,
            stack_id: required("APIARY_STACK_ID")?,
        })
    }
}

/// What a request did: the message for CloudFormation (and the log), and the table's ARN
/// for `Fn::GetAtt [StateTable, Arn]` on Create and Update.
#[derive(Debug)]
pub(crate) struct Done {
    pub message: String,
    pub arn: Option<String>,
}

pub(crate) async fn act(
    client: &aws_sdk_dynamodb::Client,
    cloudformation: &aws_sdk_cloudformation::Client,
    config: &StateTableConfig,
    request: &Request,
    deadline: Instant,
) -> Result<Done> {
    match request.kind()? {
        RequestType::Create | RequestType::Update => {
            ensure(client, config, request, deadline).await
        }
        RequestType::Delete => {
            let status =
                crate::stack_delete::stack_status(cloudformation, &config.stack_id, request)
                    .await?;
            delete(client, config, &status, deadline).await
        }
    }
}

/// DynamoDB refuses a call for a while for reasons that pass: a table that just turned
/// ACTIVE refuses point-in-time recovery and backups ("Backups are being enabled for the
/// table"), a table CREATING or UPDATING refuses another update or its deletion, and a
/// backup being made refuses another.
fn busy<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    matches!(
        err.code(),
        Some(
            "ContinuousBackupsUnavailableException"
                | "ResourceInUseException"
                | "BackupInUseException"
        )
    )
}

/// Sends `call` again while DynamoDB says the table is [`busy`] and the deadline allows;
/// `what` names the call in an error. Still busy at the deadline is `Apiary.Retryable`.
async fn while_busy<T, E, F, Fut>(what: String, deadline: Instant, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, SdkError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(err) if busy(&err) && Instant::now() + POLL <= deadline => {
                tracing::info!(call = what, "table busy; asking again");
                tokio::time::sleep(POLL).await;
            }
            // Still busy at the deadline: worth another try later.
            Err(err) if busy(&err) => return Err(Error::aws_transient_if(what, err, |_| true)),
            Err(err) => return Err(Error::aws(what, err)),
        }
    }
}

/// Create and Update: the table exists, is this deployment's, and is set as the stack
/// says.
async fn ensure(
    client: &aws_sdk_dynamodb::Client,
    config: &StateTableConfig,
    request: &Request,
    deadline: Instant,
) -> Result<Done> {
    let table = &config.table;
    let (described, made) = match describe(client, table).await? {
        Some(found) => (found, false),
        None => (create(client, config, request).await?, true),
    };
    let arn = described
        .table_arn()
        .ok_or_else(|| Error::fatal(format!("DescribeTable {table} returned no ARN")))?
        .to_owned();
    if !made {
        check_ours(client, config, &arn).await?;
    }
    let active = wait_active(client, table, deadline).await?;
    let mut changed = Vec::new();
    let backups = client
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeContinuousBackups {table}"), e))?;
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status());
    if pitr != Some(&PointInTimeRecoveryStatus::Enabled) {
        let spec = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
            .map_err(|e| Error::fatal(e.to_string()))?;
        while_busy(format!("UpdateContinuousBackups {table}"), deadline, || {
            client
                .update_continuous_backups()
                .table_name(table)
                .point_in_time_recovery_specification(spec.clone())
                .send()
        })
        .await?;
        changed.push("point-in-time recovery on");
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeTimeToLive {table}"), e))?;
    let ttl = ttl.time_to_live_description();
    let ttl_on = matches!(
        ttl.and_then(|t| t.time_to_live_status()),
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    if !ttl_on {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| Error::fatal(e.to_string()))?;
        while_busy(format!("UpdateTimeToLive {table}"), deadline, || {
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(spec.clone())
                .send()
        })
        .await?;
        changed.push("TTL on expires_at_epoch");
    } else if let Some(name) = ttl.and_then(|t| t.attribute_name())
        && name != TTL_ATTRIBUTE
    {
        return Err(Error::invalid_input(format!(
            "state table {table} expires items by {name:?}, not {TTL_ATTRIBUTE:?}: a table \
             can have one TTL attribute and changing it takes an hour; disable its TTL and \
             update the stack again"
        )));
    }
    // Last: an adopted table takes this stack's key (the old stack's key stays enabled,
    // as DynamoDB needs while it re-encrypts), and deletion protection. The update puts
    // the table in UPDATING for a while; reads and writes go on meanwhile.
    let key_now = active
        .sse_description()
        .and_then(|d| d.kms_master_key_arn())
        .map(str::to_owned);
    let rekey = key_now.as_deref() != Some(config.key_arn.as_str());
    let protect = active.deletion_protection_enabled() != Some(true);
    if rekey || protect {
        while_busy(format!("UpdateTable {table}"), deadline, || {
            let update = client
                .update_table()
                .table_name(table)
                .deletion_protection_enabled(true);
            if rekey {
                update.sse_specification(sse(&config.key_arn))
            } else {
                update
            }
            .send()
        })
        .await?;
        if rekey {
            changed.push("encrypted with this stack's state key");
        }
        if protect {
            changed.push("deletion protection on");
        }
    }
    let store = Store::new(client.clone(), table.clone());
    let record = store.get_deployment(&config.deployment).await?;
    let what = if made {
        format!("created state table {table}")
    } else {
        match &record {
            Some(record) => format!(
                "state table {table} is in place with deployment {} ({}); its journal and \
                 inventory are kept",
                config.deployment,
                record.status.as_str()
            ),
            None => format!("state table {table} is in place"),
        }
    };
    let message = if changed.is_empty() {
        what
    } else {
        format!("{what}; {}", changed.join(", "))
    };
    tracing::info!(table, made, message, "state table ensured");
    Ok(Done {
        message,
        arn: Some(arn),
    })
}

fn sse(key_arn: &str) -> SseSpecification {
    SseSpecification::builder()
        .enabled(true)
        .sse_type(SseType::Kms)
        .kms_master_key_id(key_arn)
        .build()
}

async fn describe(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Option<TableDescription>> {
    Ok(apiary_core::aws::answer_or_none(
        format!("DescribeTable {table}"),
        client.describe_table().table_name(table).send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?
    .and_then(|out| out.table))
}

async fn create(
    client: &aws_sdk_dynamodb::Client,
    config: &StateTableConfig,
    request: &Request,
) -> Result<TableDescription> {
    let table = &config.table;
    let tag = |key: &str, value: &str| {
        Tag::builder()
            .key(key)
            .value(value)
            .build()
            .map_err(|e| Error::fatal(e.to_string()))
    };
    let created = table_layout(client.create_table().table_name(table))
        .sse_specification(sse(&config.key_arn))
        .deletion_protection_enabled(true)
        .tags(tag(BOOTSTRAP_TAG, &config.deployment)?)
        .tags(tag("apiary:managed-by", "apiary")?)
        .tags(tag(CREATED_BY_TAG, &request.stack_id)?)
        .send()
        .await;
    match created {
        Ok(out) => {
            tracing::info!(table, "state table created");
            out.table_description
                .ok_or_else(|| Error::fatal(format!("CreateTable {table} returned no table")))
        }
        // A redelivered Create, or one racing it: the table is there now. Whose it is
        // is checked like any found table's.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            describe(client, table)
                .await?
                .ok_or_else(|| Error::fatal(format!("table {table} is in use but not found")))
        }
        Err(err) => Err(Error::aws(format!("CreateTable {table}"), err)),
    }
}

async fn tags(client: &aws_sdk_dynamodb::Client, arn: &str) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_tags_of_resource()
            .resource_arn(arn)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListTagsOfResource {arn}"), e))?;
        found.extend(
            page.tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned())),
        );
        token = page.next_token;
        if token.is_none() {
            return Ok(found);
        }
    }
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A table found under the name is adopted only when it is tagged as this deployment's.
async fn check_ours(
    client: &aws_sdk_dynamodb::Client,
    config: &StateTableConfig,
    arn: &str,
) -> Result<()> {
    let tags = tags(client, arn).await?;
    match tag(&tags, BOOTSTRAP_TAG) {
        Some(owner) if owner == config.deployment => Ok(()),
        owner => Err(Error::invalid_input(format!(
            "DynamoDB table {} already exists and is not deployment {}'s state table (its \
             {BOOTSTRAP_TAG} tag is {}): nothing was changed. Choose another DeploymentName, \
             or rename or delete that table",
            config.table,
            config.deployment,
            owner.map_or("missing".to_owned(), |o| format!("{o:?}"))
        ))),
    }
}

/// Waits, until `deadline`, for the table to be ACTIVE (a new table takes seconds; one
/// being re-keyed stays UPDATING longer, which is as good: the calls after retry while
/// it is busy).
async fn wait_active(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    deadline: Instant,
) -> Result<TableDescription> {
    loop {
        let described = describe(client, table)
            .await?
            .ok_or_else(|| Error::fatal(format!("state table {table} disappeared")))?;
        match described.table_status() {
            Some(TableStatus::Active | TableStatus::Updating) => return Ok(described),
            Some(TableStatus::Creating) | None => {}
            Some(other) => {
                return Err(Error::invalid_input(format!(
                    "state table {table} is {}: it cannot be used; nothing was changed",
                    other.as_str()
                )));
            }
        }
        if Instant::now() + POLL > deadline {
            return Err(Error::Timeout {
                resource: format!("state table {table}"),
                detail: "still CREATING; the stack's rollback deletes it once it is ACTIVE \
                         (it holds nothing yet), and creating the stack again makes it anew"
                    .to_owned(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What a Delete does, by the stack's state and the deployment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// The table stays; why.
    Keep(String),
    /// Nothing in it worth keeping: delete it outright.
    Delete,
    /// The data plane is gone: back it up, then delete it.
    BackUpAndDelete,
}

/// The decision, apart from the calls that carry it out.
pub(crate) fn fate(
    stack_status: &StackStatus,
    created_by_this_stack: bool,
    deployment: Option<DeploymentStatus>,
) -> Fate {
    match stack_status {
        StackStatus::DeleteInProgress => match deployment {
            // This stack's own table, never used by a provision (a create with
            // OnFailure=DELETE ends here too): nothing to keep.
            None if created_by_this_stack => Fate::Delete,
            None | Some(DeploymentStatus::Deleted) => Fate::BackUpAndDelete,
            Some(status) => Fate::Keep(format!(
                "the deployment is {} (its data plane was kept), so the table stays: a new \
                 stack of the same name adopts it, and the teardown workflow of that stack \
                 removes the data plane",
                status.as_str()
            )),
        },
        StackStatus::RollbackInProgress => match (created_by_this_stack, deployment) {
            (true, None) => Fate::Delete,
            (false, _) => Fate::Keep(
                "the stack's create failed, but the table was made by an earlier stack of \
                 this deployment and adopted"
                    .to_owned(),
            ),
            (true, Some(status)) => Fate::Keep(format!(
                "the stack's create failed after provision recorded the deployment ({}): \
                 its inventory is what a teardown needs",
                status.as_str()
            )),
        },
        other => Fate::Keep(format!(
            "the stack is {}, not being deleted (an update's rollback or cleanup, or a \
             Delete CloudFormation did not send)",
            other.as_str()
        )),
    }
}

async fn delete(
    client: &aws_sdk_dynamodb::Client,
    config: &StateTableConfig,
    stack_status: &StackStatus,
    deadline: Instant,
) -> Result<Done> {
    let table = &config.table;
    let described = match describe(client, table).await? {
        // A redelivered Delete after the table went.
        None => None,
        Some(t) if t.table_status() == Some(&TableStatus::Deleting) => None,
        Some(t) => Some(t),
    };
    let Some(described) = described else {
        return Ok(Done {
            message: format!("state table {table} is already gone"),
            arn: None,
        });
    };
    let arn = described.table_arn().unwrap_or_default().to_owned();
    let tags = tags(client, &arn).await?;
    if tag(&tags, BOOTSTRAP_TAG) != Some(config.deployment.as_str()) {
        return Ok(Done {
            message: format!(
                "table {table} is not tagged {BOOTSTRAP_TAG}={}: not this deployment's, left alone",
                config.deployment
            ),
            arn: None,
        });
    }
    let created_by_this_stack = tag(&tags, CREATED_BY_TAG) == Some(config.stack_id.as_str());
    let record = Store::new(client.clone(), table.clone())
        .get_deployment(&config.deployment)
        .await?
        .map(|r| r.status);
    let backup = match fate(stack_status, created_by_this_stack, record) {
        Fate::Keep(why) => {
            tracing::info!(table, why, "state table kept");
            return Ok(Done {
                message: format!("state table {table} kept: {why}"),
                arn: None,
            });
        }
        Fate::Delete => None,
        Fate::BackUpAndDelete => Some(final_backup(client, config, deadline).await?),
    };
    // Both refused while the table is CREATING (a create that timed out and is rolled
    // back) or UPDATING (just re-keyed): asked again until the deadline.
    if described.deletion_protection_enabled() == Some(true) {
        while_busy(
            format!("UpdateTable {table} (deletion protection off)"),
            deadline,
            || {
                client
                    .update_table()
                    .table_name(table)
                    .deletion_protection_enabled(false)
                    .send()
            },
        )
        .await?;
    }
    match while_busy(format!("DeleteTable {table}"), deadline, || {
        client.delete_table().table_name(table).send()
    })
    .await
    {
        Ok(_) => {}
        Err(err) if err.aws_code() == Some("ResourceNotFoundException") => {}
        Err(err) => return Err(err),
    }
    let message = match backup {
        Some(backup) => format!(
            "deployment {} is torn down: state table {table} deleted after its final backup \
             {backup} (the journal, inventory, backup ledger and the teardown's receipt), \
             which is kept until you delete it; RestoreTableFromBackup reads it back",
            config.deployment
        ),
        None => format!(
            "no provision ever recorded deployment {} in it: state table {table}, made by \
             this stack, deleted",
            config.deployment
        ),
    };
    tracing::info!(table, message, "state table deleted");
    Ok(Done { message, arn: None })
}

/// The final backup's name: the same for every delete of this stack (a redelivery, or a
/// second delete after the first ran out of time), so it is found, not made twice.
fn backup_name(table: &str, stack_id: &str) -> String {
    let digest = Sha256::digest(stack_id);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{table}-final-{hex}")
}

/// Makes (or finds) the final backup and waits until it is AVAILABLE: DynamoDB refuses
/// to delete a table while a backup of it is being made. A backup still CREATING when
/// time runs out fails the Delete with what to do; nothing is lost (the table stays).
async fn final_backup(
    client: &aws_sdk_dynamodb::Client,
    config: &StateTableConfig,
    deadline: Instant,
) -> Result<String> {
    let table = &config.table;
    let name = backup_name(table, &config.stack_id);
    let mut existing = None;
    let mut start = None;
    loop {
        let page = client
            .list_backups()
            .table_name(table)
            .backup_type(BackupTypeFilter::User)
            .set_exclusive_start_backup_arn(start)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListBackups {table}"), e))?;
        existing = existing.or_else(|| {
            page.backup_summaries()
                .iter()
                .find(|b| b.backup_name() == Some(name.as_str()))
                .and_then(|b| b.backup_arn().map(str::to_owned))
        });
        start = page.last_evaluated_backup_arn;
        if existing.is_some() || start.is_none() {
            break;
        }
    }
    let arn = match existing {
        Some(arn) => arn,
        None => while_busy(format!("CreateBackup {table}"), deadline, || {
            client
                .create_backup()
                .table_name(table)
                .backup_name(&name)
                .send()
        })
        .await?
        .backup_details
        .map(|d| d.backup_arn)
        .ok_or_else(|| Error::fatal(format!("CreateBackup {table} returned no backup")))?,
    };
    loop {
        let status = client
            .describe_backup()
            .backup_arn(&arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("DescribeBackup {arn}"), e))?
            .backup_description
            .and_then(|d| d.backup_details)
            .map(|d| d.backup_status);
        match status {
            Some(BackupStatus::Available) => return Ok(arn),
            Some(BackupStatus::Creating) | None => {}
            Some(other) => {
                return Err(Error::fatal(format!(
                    "the final backup {arn} of state table {table} is {}: the table was not \
                     deleted",
                    other.as_str()
                )));
            }
        }
        if Instant::now() + POLL > deadline {
            return Err(Error::Timeout {
                resource: format!("the final backup {arn} of state table {table}"),
                detail: "still CREATING, and DynamoDB does not delete a table while its \
                         backup is made. Nothing was deleted: delete the stack again in a \
                         few minutes (it finds this backup rather than making another)"
                    .to_owned(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::create_backup::CreateBackupOutput;
    use aws_sdk_dynamodb::operation::describe_backup::DescribeBackupOutput;
    use aws_sdk_dynamodb::operation::describe_continuous_backups::DescribeContinuousBackupsOutput;
    use aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput;
    use aws_sdk_dynamodb::operation::describe_time_to_live::DescribeTimeToLiveOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::list_backups::ListBackupsOutput;
    use aws_sdk_dynamodb::operation::list_tags_of_resource::ListTagsOfResourceOutput;
    use aws_sdk_dynamodb::operation::update_table::UpdateTableOutput;
    use aws_sdk_dynamodb::primitives::DateTime;
    use aws_sdk_dynamodb::types::{
        BackupDescription, BackupDetails, BackupType, ContinuousBackupsDescription,
        ContinuousBackupsStatus, PointInTimeRecoveryDescription, SseDescription,
        TimeToLiveDescription,
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use serde_json::json;

    use super::*;

    const STACK: &str = "arn:aws:cloudformation:us-west-2:123456789012:stack/apiary-acme/1";
    const TABLE_ARN: &str = "arn:aws:dynamodb:us-west-2:123456789012:table/apiary-acme";
    const OURS: &str = "arn:aws:kms:us-west-2:123456789012:key/new";

    fn config() -> StateTableConfig {
        StateTableConfig {
            table: "apiary-acme".into(),
            deployment: "acme".into(),
            key_arn: OURS.into(),
            stack_id: STACK.into(),
        }
    }

    fn request(kind: &str) -> Request {
        Request::from_event(json!({
            "RequestType": kind,
            "ResponseURL": "https://example.invalid/answer",
            "StackId": STACK,
            "RequestId": "r-1",
            "LogicalResourceId": "StateStore",
            "ResourceType": STATE_TABLE_TYPE,
            "PhysicalResourceId": "apiary-acme",
        }))
        .expect("a request")
    }

    fn table_with_key(key: &str) -> Rule {
        let key = key.to_owned();
        mock!(aws_sdk_dynamodb::Client::describe_table).then_output(move || {
            DescribeTableOutput::builder()
                .table(
                    TableDescription::builder()
                        .table_name("apiary-acme")
                        .table_arn(TABLE_ARN)
                        .table_status(TableStatus::Active)
                        .deletion_protection_enabled(true)
                        .sse_description(SseDescription::builder().kms_master_key_arn(&key).build())
                        .build(),
                )
                .build()
        })
    }

    fn tagged_ours() -> Rule {
        mock!(aws_sdk_dynamodb::Client::list_tags_of_resource).then_output(|| {
            ListTagsOfResourceOutput::builder()
                .tags(
                    Tag::builder()
                        .key(BOOTSTRAP_TAG)
                        .value("acme")
                        .build()
                        .unwrap(),
                )
                .tags(
                    Tag::builder()
                        .key(CREATED_BY_TAG)
                        .value("arn:earlier")
                        .build()
                        .unwrap(),
                )
                .build()
        })
    }

    fn no_record() -> Rule {
        mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build())
    }

    #[test]
    fn each_stack_state_and_deployment_state_decides_the_tables_fate() {
        use DeploymentStatus::*;
        let keep = |f: &Fate| matches!(f, Fate::Keep(_));
        // The stack's delete: gone only when the data plane is.
        // This stack's table, never used: nothing to back up (a create with
        // OnFailure=DELETE); an adopted one never recorded is backed up.
        assert_eq!(
            fate(&StackStatus::DeleteInProgress, true, None),
            Fate::Delete
        );
        assert_eq!(
            fate(&StackStatus::DeleteInProgress, false, None),
            Fate::BackUpAndDelete
        );
        assert_eq!(
            fate(&StackStatus::DeleteInProgress, false, Some(Deleted)),
            Fate::BackUpAndDelete
        );
        for status in [
            Ready,
            Failed,
            Provisioning,
            TearingDown,
            WaitingForDnsValidation,
        ] {
            assert!(
                keep(&fate(&StackStatus::DeleteInProgress, true, Some(status))),
                "{status:?}"
            );
        }
        // A failed create: only an empty table this stack made.
        assert_eq!(
            fate(&StackStatus::RollbackInProgress, true, None),
            Fate::Delete
        );
        assert!(keep(&fate(&StackStatus::RollbackInProgress, false, None)));
        assert!(keep(&fate(
            &StackStatus::RollbackInProgress,
            true,
            Some(Failed)
        )));
        // Anything else deletes nothing, whatever the deployment.
        for status in [
            StackStatus::UpdateRollbackInProgress,
            StackStatus::UpdateCompleteCleanupInProgress,
            StackStatus::CreateComplete,
            StackStatus::DeleteFailed,
        ] {
            assert!(keep(&fate(&status, true, None)), "{status:?}");
            assert!(keep(&fate(&status, true, Some(Deleted))), "{status:?}");
        }
    }

    /// The emulator ignores a key change in UpdateTable, so the adoption's re-key is
    /// checked on the request sent.
    #[tokio::test]
    async fn an_adopted_table_is_re_keyed_to_this_stacks_key() {
        let rekey = mock!(aws_sdk_dynamodb::Client::update_table)
            .match_requests(|r| {
                r.table_name() == Some("apiary-acme")
                    && r.sse_specification().and_then(|s| s.kms_master_key_id()) == Some(OURS)
                    && r.sse_specification().and_then(|s| s.sse_type()) == Some(&SseType::Kms)
                    && r.deletion_protection_enabled() == Some(true)
            })
            .then_output(|| UpdateTableOutput::builder().build());
        let pitr = mock!(aws_sdk_dynamodb::Client::describe_continuous_backups).then_output(|| {
            DescribeContinuousBackupsOutput::builder()
                .continuous_backups_description(
                    ContinuousBackupsDescription::builder()
                        .continuous_backups_status(ContinuousBackupsStatus::Enabled)
                        .point_in_time_recovery_description(
                            PointInTimeRecoveryDescription::builder()
                                .point_in_time_recovery_status(PointInTimeRecoveryStatus::Enabled)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let ttl = mock!(aws_sdk_dynamodb::Client::describe_time_to_live).then_output(|| {
            DescribeTimeToLiveOutput::builder()
                .time_to_live_description(
                    TimeToLiveDescription::builder()
                        .time_to_live_status(TimeToLiveStatus::Enabled)
                        .attribute_name(TTL_ATTRIBUTE)
                        .build(),
                )
                .build()
        });
        let described = table_with_key("arn:aws:kms:us-west-2:123456789012:key/old");
        let tags = tagged_ours();
        let record = no_record();
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            &[&described, &tags, &pitr, &ttl, &rekey, &record]
        );
        let done = ensure(&client, &config(), &request("Create"), Instant::now())
            .await
            .expect("adopted");
        assert_eq!(
            rekey.num_calls(),
            1,
            "one UpdateTable with this stack's key"
        );
        assert!(
            done.message.contains("this stack's state key"),
            "{}",
            done.message
        );
        assert_eq!(done.arn.as_deref(), Some(TABLE_ARN));
    }

    /// DynamoDB does not delete a table while its backup is being made: a backup still
    /// CREATING when time is up fails the Delete, saying what to do, and deletes nothing.
    #[tokio::test]
    async fn a_final_backup_not_ready_in_time_deletes_nothing_and_says_what_to_do() {
        let details = || {
            BackupDetails::builder()
                .backup_arn(format!("{TABLE_ARN}/backup/1"))
                .backup_name("apiary-acme-final-x")
                .backup_status(BackupStatus::Creating)
                .backup_type(BackupType::User)
                .backup_creation_date_time(DateTime::from_secs(0))
                .build()
                .unwrap()
        };
        let list = mock!(aws_sdk_dynamodb::Client::list_backups)
            .then_output(|| ListBackupsOutput::builder().build());
        let create = mock!(aws_sdk_dynamodb::Client::create_backup).then_output(move || {
            CreateBackupOutput::builder()
                .backup_details(details())
                .build()
        });
        let follow = mock!(aws_sdk_dynamodb::Client::describe_backup).then_output(move || {
            DescribeBackupOutput::builder()
                .backup_description(
                    BackupDescription::builder()
                        .backup_details(details())
                        .build(),
                )
                .build()
        });
        let described = table_with_key(OURS);
        let tags = tagged_ours();
        let record = no_record();
        // No rule for UpdateTable or DeleteTable: either call fails the test.
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            &[&described, &tags, &record, &list, &create, &follow]
        );
        let err = delete(
            &client,
            &config(),
            &StackStatus::DeleteInProgress,
            Instant::now(),
        )
        .await
        .expect_err("the backup is not ready");
        let text = err.to_string();
        assert!(text.contains("still CREATING"), "{text}");
        assert!(text.contains("delete the stack again"), "{text}");
        assert_eq!(create.num_calls(), 1);
    }

    /// DynamoDB refuses point-in-time recovery for a while after a new table turns
    /// ACTIVE ("Backups are being enabled for the table"): asked again, not a failed
    /// stack create. The emulator never says so.
    #[tokio::test(start_paused = true)]
    async fn point_in_time_recovery_refused_just_after_creation_is_asked_again() {
        use aws_sdk_dynamodb::operation::update_continuous_backups::{
            UpdateContinuousBackupsError, UpdateContinuousBackupsOutput,
        };
        use aws_sdk_dynamodb::types::error::ContinuousBackupsUnavailableException;
        let described = table_with_key(OURS);
        let tags = tagged_ours();
        let record = no_record();
        let off = mock!(aws_sdk_dynamodb::Client::describe_continuous_backups).then_output(|| {
            DescribeContinuousBackupsOutput::builder()
                .continuous_backups_description(
                    ContinuousBackupsDescription::builder()
                        .continuous_backups_status(ContinuousBackupsStatus::Enabled)
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let enable = mock!(aws_sdk_dynamodb::Client::update_continuous_backups)
            .sequence()
            .error(|| {
                UpdateContinuousBackupsError::ContinuousBackupsUnavailableException(
                    ContinuousBackupsUnavailableException::builder()
                        .message("Backups are being enabled for the table")
                        .meta(
                            aws_sdk_dynamodb::error::ErrorMetadata::builder()
                                .code("ContinuousBackupsUnavailableException")
                                .build(),
                        )
                        .build(),
                )
            })
            .times(2)
            .output(|| UpdateContinuousBackupsOutput::builder().build())
            .build();
        let ttl = mock!(aws_sdk_dynamodb::Client::describe_time_to_live).then_output(|| {
            DescribeTimeToLiveOutput::builder()
                .time_to_live_description(
                    TimeToLiveDescription::builder()
                        .time_to_live_status(TimeToLiveStatus::Enabled)
                        .attribute_name(TTL_ATTRIBUTE)
                        .build(),
                )
                .build()
        });
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            &[&described, &tags, &off, &enable, &ttl, &record]
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let done = ensure(&client, &config(), &request("Create"), deadline)
            .await
            .expect("enabled on the third try");
        assert_eq!(enable.num_calls(), 3);
        assert!(
            done.message.contains("point-in-time recovery on"),
            "{}",
            done.message
        );

        // Still refused at the deadline: a retryable failure naming the call.
        let refused = mock!(aws_sdk_dynamodb::Client::update_continuous_backups).then_error(|| {
            UpdateContinuousBackupsError::ContinuousBackupsUnavailableException(
                ContinuousBackupsUnavailableException::builder()
                    .meta(
                        aws_sdk_dynamodb::error::ErrorMetadata::builder()
                            .code("ContinuousBackupsUnavailableException")
                            .build(),
                    )
                    .build(),
            )
        });
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            &[&described, &tags, &off, &refused, &ttl, &record]
        );
        let err = ensure(
            &client,
            &config(),
            &request("Create"),
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .expect_err("still refused");
        assert!(err.is_retryable(), "{err}");
        assert!(
            err.to_string()
                .contains("UpdateContinuousBackups apiary-acme"),
            "{err}"
        );
    }
}
