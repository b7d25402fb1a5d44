//! The state table's custom resource against the emulator's DynamoDB and KMS: the table
//! made, adopted by a later stack of the same deployment, refused when it is someone
//! else's, and deleted or kept on the stack's delete as `launch::state_table` decides.
//! DescribeStacks is the one mocked call: the emulator cannot hold a stack in
//! DELETE_IN_PROGRESS or ROLLBACK_IN_PROGRESS.

use std::collections::HashMap;

use apiary_core::store::{DeploymentStatus, Store};
use aws_sdk_cloudformation::types::StackStatus;
use launch::test_support::{CaptureServer, stack_client};
use serde_json::{Value, json};

struct Stack {
    config: aws_config::SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    deployment: String,
    table: String,
    stack_id: String,
    key_arn: String,
}

async fn key(config: &aws_config::SdkConfig) -> String {
    aws_sdk_kms::Client::new(config)
        .create_key()
        .description("state key")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("key metadata")
        .arn
        .expect("key ARN")
}

impl Stack {
    /// A fresh stack of a new deployment, with its own state key.
    async fn new() -> Stack {
        let deployment = apiary_e2e::unique_name("table");
        Stack::of(&deployment).await
    }

    /// Another stack of `deployment` (a new stack id and key, the same table name).
    async fn of(deployment: &str) -> Stack {
        let config = apiary_e2e::sdk_config().await;
        Stack {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            key_arn: key(&config).await,
            stack_id: format!(
                "arn:aws:cloudformation:us-west-2:123456789012:stack/apiary-{deployment}/{}",
                uuid::Uuid::new_v4()
            ),
            table: format!("apiary-{deployment}"),
            deployment: deployment.to_owned(),
            config,
        }
    }

    /// The state-table function as the template sets it up, its stack in `status`.
    fn deps(&self, status: StackStatus) -> launch::Deps {
        let env = HashMap::from([
            ("APIARY_TABLE", self.table.as_str()),
            ("APIARY_DEPLOYMENT", self.deployment.as_str()),
            ("APIARY_STATE_KEY_ARN", self.key_arn.as_str()),
            ("APIARY_STACK_ID", self.stack_id.as_str()),
        ]);
        let mut deps = launch::Deps::new(&self.config, &env).expect("state-table deps");
        deps.cloudformation = stack_client(&self.stack_id, status);
        deps
    }

    fn event(&self, request_type: &str, url: &str, request_id: &str) -> Value {
        json!({
            "RequestType": request_type,
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:state-table",
            "ResponseURL": url,
            "StackId": self.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": "StateStore",
            "ResourceType": launch::STATE_TABLE_TYPE,
            "PhysicalResourceId": self.table,
            "ResourceProperties": {
                "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:state-table",
                "ServiceTimeout": "420"
            }
        })
    }

    /// Sends one request in `status`; CloudFormation's answer.
    async fn send(&self, request_type: &str, status: StackStatus) -> Value {
        let server = CaptureServer::start(&[]).await;
        let request_id = uuid::Uuid::new_v4().to_string();
        launch::handle(
            &self.deps(status),
            self.event(request_type, &server.url(), &request_id),
        )
        .await
        .expect("answered");
        server.last_json()
    }

    async fn described(&self) -> Option<aws_sdk_dynamodb::types::TableDescription> {
        match self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(out) => out.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => panic!("DescribeTable: {e:?}"),
        }
    }

    async fn tags(&self) -> Vec<(String, String)> {
        let arn = self
            .described()
            .await
            .expect("the table")
            .table_arn
            .expect("ARN");
        self.dynamodb
            .list_tags_of_resource()
            .resource_arn(arn)
            .send()
            .await
            .expect("ListTagsOfResource")
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect()
    }

    fn store(&self) -> Store {
        Store::new(self.dynamodb.clone(), self.table.clone())
    }

    async fn record(&self, status: DeploymentStatus) {
        let spec = apiary_core::fixtures::Fixture::named(&self.deployment).spec();
        self.store()
            .put_deployment(&spec, status, chrono::Utc::now())
            .await
            .expect("the deployment's record");
    }

    async fn final_backups(&self) -> Vec<String> {
        self.dynamodb
            .list_backups()
            .table_name(&self.table)
            .send()
            .await
            .expect("ListBackups")
            .backup_summaries()
            .iter()
            .filter_map(|b| b.backup_name().map(str::to_owned))
            .collect()
    }
}

fn succeeded(answer: &Value) -> &str {
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    answer["Reason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_new_stack_makes_the_table_encrypted_protected_recoverable_and_expiring() {
    let stack = Stack::new().await;
    let answer = stack.send("Create", StackStatus::CreateInProgress).await;
    succeeded(&answer);
    assert_eq!(answer["PhysicalResourceId"], stack.table.as_str());
    let table = stack.described().await.expect("the table was made");
    assert_eq!(answer["Data"]["Arn"], table.table_arn().unwrap());
    assert_eq!(
        table.sse_description().and_then(|s| s.kms_master_key_arn()),
        Some(stack.key_arn.as_str()),
        "encrypted with the stack's state key"
    );
    assert_eq!(table.deletion_protection_enabled(), Some(true));
    let tags = stack.tags().await;
    for (key, value) in [
        ("apiary:bootstrap", stack.deployment.as_str()),
        ("apiary:managed-by", "apiary"),
        (launch::state_table::CREATED_BY_TAG, stack.stack_id.as_str()),
    ] {
        assert!(
            tags.contains(&(key.to_owned(), value.to_owned())),
            "{key}={value} in {tags:?}"
        );
    }
    let pitr = stack
        .dynamodb
        .describe_continuous_backups()
        .table_name(&stack.table)
        .send()
        .await
        .expect("DescribeContinuousBackups");
    assert_eq!(
        pitr.continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            .map(|s| s.as_str()),
        Some("ENABLED")
    );
    let ttl = stack
        .dynamodb
        .describe_time_to_live()
        .table_name(&stack.table)
        .send()
        .await
        .expect("DescribeTimeToLive");
    let ttl = ttl.time_to_live_description().expect("TTL");
    assert_eq!(
        ttl.attribute_name(),
        Some(apiary_core::store::TTL_ATTRIBUTE)
    );
    assert_eq!(
        ttl.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );

    // A redelivered Create, and an Update, change nothing and answer the same ARN.
    for kind in ["Create", "Update"] {
        let again = stack.send(kind, StackStatus::UpdateInProgress).await;
        succeeded(&again);
        assert_eq!(again["Data"]["Arn"], answer["Data"]["Arn"], "{kind}");
    }

    // The create failed (its rollback): the table holds nothing and this stack made it,
    // so it goes, deletion protection and all.
    let rolled_back = stack.send("Delete", StackStatus::RollbackInProgress).await;
    assert!(succeeded(&rolled_back).contains("deleted"), "{rolled_back}");
    assert!(stack.described().await.is_none(), "the table is gone");
    assert!(stack.final_backups().await.is_empty(), "nothing to back up");
}

#[tokio::test]
async fn a_later_stack_of_the_deployment_adopts_the_table_with_everything_in_it() {
    let first = Stack::new().await;
    succeeded(&first.send("Create", StackStatus::CreateInProgress).await);
    first.record(DeploymentStatus::Ready).await;
    // What provision and the backup workflow wrote: a journal entry, an inventory
    // entry, the backup ledger.
    let store = first.store();
    let entry = apiary_core::store::JournalEntry {
        deployment: first.deployment.clone(),
        execution_id: "provision-1".into(),
        step: "network".into(),
        action: "ensure".into(),
        outcome: "succeeded".into(),
        resource_ids: vec!["vpc-0abc".into()],
        detail: None,
        at: chrono::Utc::now(),
    };
    store.append_journal(&entry).await.expect("journal");
    let vpc = apiary_core::store::Resource {
        layer: "network".into(),
        kind: "ec2:vpc".into(),
        id: "vpc-0abc".into(),
        arn: None,
    };
    store
        .record_resource(&first.deployment, &vpc)
        .await
        .expect("inventory");
    let ledger = json!({"postgres": {"newest": "2026-12-06T03:00:00Z"}});
    store
        .put_output(
            &first.deployment,
            apiary_core::outputs::BACKUP_LEDGER_SLOT,
            &ledger,
        )
        .await
        .expect("ledger");
    // The first stack deleted with the data plane kept: the table stays.
    let kept = first.send("Delete", StackStatus::DeleteInProgress).await;
    assert!(succeeded(&kept).contains("kept"), "{kept}");
    assert!(first.described().await.is_some());

    let second = Stack::of(&first.deployment).await;
    let adopted = second.send("Create", StackStatus::CreateInProgress).await;
    let reason = succeeded(&adopted);
    assert!(reason.contains("READY"), "{reason}");
    let record = second
        .store()
        .get_deployment(&second.deployment)
        .await
        .expect("GetItem")
        .expect("the record is still there");
    assert_eq!(record.status, DeploymentStatus::Ready);
    let kept = second.store();
    assert!(
        kept.journal(&second.deployment)
            .await
            .expect("journal")
            .iter()
            .any(|e| e.execution_id == "provision-1"),
        "the journal is kept"
    );
    assert_eq!(
        kept.inventory(&second.deployment).await.expect("inventory"),
        vec![vpc.clone()]
    );
    assert_eq!(
        kept.layer_outputs(&second.deployment)
            .await
            .expect("outputs")[apiary_core::outputs::BACKUP_LEDGER_SLOT],
        ledger
    );
    // Still the first stack's making: the second's failed create would not delete it.
    assert!(
        second.tags().await.contains(&(
            launch::state_table::CREATED_BY_TAG.to_owned(),
            first.stack_id.clone()
        )),
        "{:?}",
        second.tags().await
    );
    let rollback = second.send("Delete", StackStatus::RollbackInProgress).await;
    assert!(succeeded(&rollback).contains("kept"), "{rollback}");
    assert!(second.described().await.is_some());

    // Torn down, then the stack deleted: a final backup, then the table goes.
    second.record(DeploymentStatus::Deleted).await;
    let deleted = second.send("Delete", StackStatus::DeleteInProgress).await;
    let reason = succeeded(&deleted);
    assert!(reason.contains("final backup"), "{reason}");
    assert!(second.described().await.is_none(), "the table is gone");
    let backups = second.final_backups().await;
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(
        backups[0].starts_with(&format!("{}-final-", second.table)),
        "{backups:?}"
    );
}

#[tokio::test]
async fn a_table_of_the_name_that_is_not_the_deployments_is_refused_and_left_untouched() {
    let stack = Stack::new().await;
    apiary_core::store::table_layout(stack.dynamodb.create_table().table_name(&stack.table))
        .send()
        .await
        .expect("someone else's table");
    let answer = stack.send("Create", StackStatus::CreateInProgress).await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(reason.contains(&stack.table), "{reason}");
    assert!(reason.contains("nothing was changed"), "{reason}");
    assert!(stack.tags().await.is_empty(), "no tag was added");
    assert_ne!(
        stack
            .described()
            .await
            .unwrap()
            .deletion_protection_enabled(),
        Some(true)
    );
    // Its rollback leaves it too.
    let rollback = stack.send("Delete", StackStatus::RollbackInProgress).await;
    assert!(succeeded(&rollback).contains("left alone"), "{rollback}");
    assert!(stack.described().await.is_some());
}

#[tokio::test]
async fn a_delete_that_is_not_the_stacks_deletion_deletes_nothing() {
    let stack = Stack::new().await;
    succeeded(&stack.send("Create", StackStatus::CreateInProgress).await);
    stack.record(DeploymentStatus::Deleted).await;
    // An update's rollback or cleanup, or a hand-made Delete while the stack stands.
    for status in [
        StackStatus::UpdateRollbackInProgress,
        StackStatus::UpdateCompleteCleanupInProgress,
        StackStatus::UpdateComplete,
    ] {
        let answer = stack.send("Delete", status.clone()).await;
        assert!(succeeded(&answer).contains("kept"), "{status:?}: {answer}");
        assert!(stack.described().await.is_some(), "{status:?}");
    }
    // A Delete naming another stack is refused.
    let server = CaptureServer::start(&[]).await;
    let mut forged = stack.event("Delete", &server.url(), "r-forged");
    forged["StackId"] = json!("arn:aws:cloudformation:us-west-2:123456789012:stack/other/1");
    launch::handle(&stack.deps(StackStatus::DeleteInProgress), forged)
        .await
        .expect("answered");
    let answer = server.last_json();
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(stack.described().await.is_some());
    assert!(stack.final_backups().await.is_empty());
    // A failed create after provision recorded the deployment keeps its inventory.
    stack.record(DeploymentStatus::Failed).await;
    let rollback = stack.send("Delete", StackStatus::RollbackInProgress).await;
    assert!(succeeded(&rollback).contains("inventory"), "{rollback}");
    assert!(stack.described().await.is_some());
}
