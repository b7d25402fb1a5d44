//! handle-alert end to end: provision a deployment, then deliver AWS's sample events
//! (examples/events/, renamed for the deployment) through the bootstrap template's own
//! rules, as `apiary local event` does, and read back what the runbooks changed, the
//! alarm records, the journal and what reached the alerts topic (an SQS queue subscribed
//! to it).
//!
//! The data stores' free-storage alarm is handed to the storage runbook here too.
//!
//! What the emulator cannot show is unit-tested elsewhere: a full disk, a raise already
//! pending and a storage change being optimized (functions/databases, mocked RDS), an SNS subject over the limit
//! (functions/control), events of other deployments and unknown shapes (apiary-core).

use apiary::local::rules::{Delivered, handle_event};
use apiary_asl::{ExecutionResult, ExecutionStatus};
use apiary_e2e::{Local as Fixture, repo_root};
use serde_json::{Value, json};

const TABLE: &str = "apiary-test-alerts";

async fn provisioned(f: &Fixture, prefix: &str) -> String {
    f.provisioned(prefix, json!({"databases": {"documentdb": false}}))
        .await
        .0
}

/// `examples/events/<file>` for deployment `name`, with a fresh event id.
fn sample(file: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/events").join(file)).unwrap();
    let mut event: Value =
        serde_json::from_str(&text.replace("apiary-demo-", &format!("apiary-{name}-"))).unwrap();
    event["id"] = json!(uuid::Uuid::new_v4().to_string());
    event
}

async fn deliver(f: &Fixture, name: &str, event: &Value) -> Delivered {
    let template =
        std::fs::read_to_string(repo_root().join("infra-bootstrap/bootstrap.yaml")).unwrap();
    handle_event(&f.env, &f.root, &template, name, event, false)
        .await
        .expect("the event is delivered")
}

/// The one handle-alert run a delivery started.
fn only_run(delivered: &Delivered) -> &ExecutionResult {
    assert_eq!(delivered.executions.len(), 1, "{delivered:?}");
    &delivered.executions[0].1
}

/// A queue subscribed to the deployment's alerts topic: what a person would receive.
async fn inbox(f: &Fixture, name: &str) -> String {
    let topic = f
        .env
        .ensure_alert_topic(name)
        .await
        .expect("the alerts topic");
    let sqs = aws_sdk_sqs::Client::new(&f.config);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{name}-inbox"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    aws_sdk_sns::Client::new(&f.config)
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(arn)
        .send()
        .await
        .expect("Subscribe");
    queue_url
}

/// The notifications received so far: (subject, message).
async fn received(f: &Fixture, queue_url: &str) -> Vec<(String, String)> {
    let sqs = aws_sdk_sqs::Client::new(&f.config);
    let mut found = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("ReceiveMessage");
        if out.messages().is_empty() {
            return found;
        }
        for message in out.messages() {
            let envelope: Value = serde_json::from_str(message.body().unwrap()).unwrap();
            found.push((
                envelope["Subject"].as_str().unwrap_or_default().to_owned(),
                envelope["Message"].as_str().unwrap_or_default().to_owned(),
            ));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn allocated_storage(f: &Fixture, name: &str) -> i32 {
    aws_sdk_rds::Client::new(&f.config)
        .describe_db_instances()
        .db_instance_identifier(format!("apiary-{name}-postgres"))
        .send()
        .await
        .expect("DescribeDBInstances")
        .db_instances()[0]
        .allocated_storage()
        .unwrap()
}

#[tokio::test]
async fn a_low_storage_event_delivered_twice_raises_storage_once_and_tells_a_person_once() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "lowsto").await;
    let queue = inbox(&f, &name).await;
    let before = allocated_storage(&f, &name).await;
    let event = sample("rds-low-storage.json", &name);

    let first = deliver(&f, &name, &event).await;
    assert_eq!(
        first
            .rules
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
        vec![format!("apiary-{name}-database-events")]
    );
    let run = only_run(&first);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    let output = run.output.clone().unwrap();
    assert_eq!(output["runbook"], "raise-storage");
    let raised = before + (before + 3) / 4;
    assert_eq!(output["outcome"]["after_gib"], json!(raised), "{output}");
    assert_eq!(allocated_storage(&f, &name).await, raised);

    // EventBridge delivers at least once: the same event again acts on nothing.
    let again = deliver(&f, &name, &event).await;
    let run = only_run(&again);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    assert_eq!(run.output.as_ref().unwrap()["duplicate"], true);
    assert_eq!(allocated_storage(&f, &name).await, raised, "raised once");

    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].0.contains("RDS DB Instance Event"), "{told:?}");
    assert!(
        told[0].1.contains(&format!(
            "raised RDS instance apiary-{name}-postgres from {before} GiB to {raised} GiB"
        )),
        "{told:?}"
    );
}

#[tokio::test]
async fn an_alarm_back_to_ok_closes_its_record_and_a_late_alarm_does_not_reopen_it() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "alarmok").await;
    let queue = inbox(&f, &name).await;
    let alarm = format!("apiary-{name}-backup-run-failed");
    let state = |alarms: Vec<apiary_core::store::AlarmRecord>| {
        alarms
            .into_iter()
            .find(|a| a.name == alarm)
            .map(|a| a.state)
    };

    let fired = sample("alarm-backup-run-failed.json", &name);
    let run = only_run(&deliver(&f, &name, &fired).await).clone();
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    assert_eq!(
        state(f.store.alarms(&name).await.unwrap()).as_deref(),
        Some("ALARM")
    );

    let ok = sample("alarm-backup-run-ok.json", &name);
    let run = only_run(&deliver(&f, &name, &ok).await).clone();
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    assert_eq!(run.output.as_ref().unwrap()["runbook"], "close");
    assert_eq!(
        state(f.store.alarms(&name).await.unwrap()).as_deref(),
        Some("OK")
    );

    // EventBridge does not promise order: the ALARM delivered late (a new id, its own
    // older time) is recorded as history, not as the alarm's state.
    let late = sample("alarm-backup-run-failed.json", &name);
    let run = only_run(&deliver(&f, &name, &late).await).clone();
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    assert_eq!(
        state(f.store.alarms(&name).await.unwrap()).as_deref(),
        Some("OK")
    );

    // The alarms tell the topic themselves (their AlarmActions): nothing twice.
    assert_eq!(received(&f, &queue).await, Vec::<(String, String)>::new());
}

#[tokio::test]
async fn an_event_no_runbook_knows_is_recorded_and_told_and_one_no_rule_matches_is_journaled() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "unknown").await;
    let queue = inbox(&f, &name).await;

    // Started from the console with an event of a kind no runbook knows.
    let event = sample("ec2-instance-state-change.json", &name);
    let run = f
        .run(
            "handle-alert",
            &name,
            json!({"deployment": name, "event": event}),
            "console",
        )
        .await;
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    let output = run.output.unwrap();
    assert_eq!(output["runbook"], "record");
    assert_eq!(output["notified"]["notified"], true, "{output}");
    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].1.contains("no runbook knows this event"),
        "{told:?}"
    );
    let journal = f.store.journal(&name).await.unwrap();
    assert!(
        journal
            .iter()
            .any(|e| e.step == "handle-alert" && e.action == "alert-triage"),
        "{journal:?}"
    );

    // Through the stack's rules the same event matches none: on AWS it would reach no
    // workflow, so it is journaled as unmatched and nothing runs.
    let unmatched = sample("ec2-instance-state-change.json", &name);
    let delivered = deliver(&f, &name, &unmatched).await;
    assert!(
        delivered.rules.is_empty() && delivered.executions.is_empty(),
        "{delivered:?}"
    );
    let journal = f.store.journal(&name).await.unwrap();
    let id = unmatched["id"].as_str().unwrap();
    assert!(
        journal
            .iter()
            .any(|e| e.outcome == "unmatched" && e.execution_id.contains(id)),
        "{journal:?}"
    );
}

#[tokio::test]
async fn a_deployment_key_scheduled_for_deletion_is_cancelled_and_the_person_told() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "keydel").await;
    let queue = inbox(&f, &name).await;
    let kms = aws_sdk_kms::Client::new(&f.config);
    let key = kms
        .describe_key()
        .key_id(format!("alias/apiary/{name}/rds"))
        .send()
        .await
        .expect("DescribeKey")
        .key_metadata()
        .unwrap()
        .clone();
    kms.schedule_key_deletion()
        .key_id(key.key_id())
        .pending_window_in_days(30)
        .send()
        .await
        .expect("ScheduleKeyDeletion");

    let mut event = sample("kms-schedule-key-deletion.json", &name);
    let arn = key.arn().unwrap();
    event["detail"]["responseElements"]["keyId"] = json!(arn);
    event["detail"]["resources"][0]["ARN"] = json!(arn);
    event["detail"]["requestParameters"]["keyId"] = json!(key.key_id());
    let run = only_run(&deliver(&f, &name, &event).await).clone();

    // The runbook cancelled the deletion; KMS leaves the key disabled, which only a
    // person undoes: the run fails with that, after telling the person.
    assert_eq!(run.status, ExecutionStatus::Failed, "{run:?}");
    assert_eq!(run.error.as_deref(), Some("Apiary.Conflict"), "{run:?}");
    let state = kms
        .describe_key()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(
        state.key_metadata().unwrap().key_state(),
        Some(&aws_sdk_kms::types::KeyState::Disabled)
    );
    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].0.contains("runbook failed"), "{told:?}");
    assert!(told[0].1.contains("pending deletion"), "{told:?}");
}

/// A new current version of the pods' own PostgreSQL user's secret (a rotation outside
/// rotate-keys, by hand or by another tool): the pods restart once their secrets driver
/// holds the new value, and the person hears it. Locally there are no pods: both steps
/// say they were not verified. RDS's scheduled rotation of the master password reaches
/// no pod (they never read it), and another secret's rotation does nothing: both are
/// recorded, nobody told.
#[tokio::test]
async fn a_rotated_store_secret_restarts_the_ingestion_pods_and_another_secret_does_nothing() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "rotated").await;
    let queue = inbox(&f, &name).await;
    let layers = f.store.layer_outputs(&name).await.expect("layer outputs");
    let secret = layers["databases.postgres"]["app_secret_arn"]
        .as_str()
        .expect("the pods' PostgreSQL user's secret")
        .to_owned();
    let master = layers["databases.postgres"]["secret_arn"]
        .as_str()
        .expect("the PostgreSQL master secret")
        .to_owned();
    let region = apiary_e2e::REGION;
    let account = apiary::local::LOCAL_ACCOUNT;
    let rotated = |arn: &str| {
        let mut event = sample("secretsmanager-secret-rotated.json", &name);
        event["resources"] = json!([arn]);
        event["region"] = json!(region);
        event["account"] = json!(account);
        event
    };
    let delivered = deliver(&f, &name, &rotated(&secret)).await;
    let run = only_run(&delivered);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    let output = run.output.as_ref().expect("the run's output");
    assert_eq!(output["runbook"], "restart-ingestion", "{output}");
    assert_eq!(output["outcome"]["verified"], false, "{output}");
    assert!(
        output["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("not verified locally"),
        "{output}"
    );
    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].1.contains(&secret), "{told:?}");

    // The master password RDS rotates on its schedule: no pod reads it, and it never
    // reaches handle-alert.
    let delivered = deliver(&f, &name, &rotated(&master)).await;
    assert!(delivered.rules.is_empty(), "{delivered:?}");
    assert!(received(&f, &queue).await.is_empty());

    // A secret named for the deployment that the pods do not read (a restore test's
    // scratch secret) matches the rule: recorded, no runbook, nobody told.
    let theirs = format!(
        "arn:aws:secretsmanager:{region}:{account}:secret:apiary-{name}-rt0a1b-postgres-AbCdEf"
    );
    let delivered = deliver(&f, &name, &rotated(&theirs)).await;
    let run = only_run(&delivered);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    assert_eq!(run.output.as_ref().unwrap()["runbook"], "record");
    assert!(received(&f, &queue).await.is_empty());

    // Being torn down: nothing to restart, and nobody is told of it.
    f.store
        .set_status(
            &name,
            apiary_core::store::DeploymentStatus::TearingDown,
            chrono::Utc::now(),
        )
        .await
        .expect("status");
    let delivered = deliver(&f, &name, &rotated(&secret)).await;
    let run = only_run(&delivered);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    let output = run.output.as_ref().unwrap();
    assert_eq!(output["runbook"], "record", "{output}");
    assert!(
        output["alert"]["summary"]
            .as_str()
            .unwrap()
            .contains("TEARING_DOWN"),
        "{output}"
    );
    assert!(received(&f, &queue).await.is_empty());
}

#[tokio::test]
async fn an_input_without_an_event_is_refused_naming_the_field() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "noevent").await;
    let run = f
        .run(
            "handle-alert",
            &name,
            json!({"deployment": name}),
            "noevent",
        )
        .await;
    assert_eq!(run.status, ExecutionStatus::Failed, "{run:?}");
    assert_eq!(run.error.as_deref(), Some("Apiary.InvalidInput"));
    assert!(
        run.cause.as_deref().unwrap_or_default().contains("`event`"),
        "{run:?}"
    );
}

#[tokio::test]
async fn the_free_storage_alarm_raises_storage_and_the_alarms_step_says_it_made_none_here() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "dpalarm").await;
    let queue = inbox(&f, &name).await;

    // The emulator does not accept this SDK's CloudWatch requests: the step says so
    // instead of claiming alarms (what they are is unit-tested in functions/databases).
    let journal = f.store.journal(&name).await.unwrap();
    let alarms = journal
        .iter()
        .find(|e| e.action == "ensure-alarms")
        .unwrap_or_else(|| panic!("no ensure-alarms entry: {journal:?}"));
    assert!(
        alarms
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("not emulated"),
        "{alarms:?}"
    );

    // The alarm fires: the stack's rule hands it to handle-alert, which raises storage;
    // the alarm told the topic itself, handle-alert tells what it did.
    let before = allocated_storage(&f, &name).await;
    let mut fired = sample("alarm-backup-run-failed.json", &name);
    fired["detail"]["alarmName"] = json!(format!("apiary-{name}-dp-postgres-free-storage"));
    let delivered = deliver(&f, &name, &fired).await;
    assert_eq!(
        delivered
            .rules
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
        vec![format!("apiary-{name}-alarm-state")]
    );
    let run = only_run(&delivered);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    assert_eq!(run.output.as_ref().unwrap()["runbook"], "raise-storage");
    assert_eq!(
        allocated_storage(&f, &name).await,
        before + (before + 3) / 4
    );
    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].1.contains("raised RDS instance"), "{told:?}");
}

/// The ingestion pool at its limit: at the preset's limits (a new deployment) the
/// runbook can only tell a person why it does nothing; once scale-pools lowered the pool
/// it starts scale-pools back to the preset (locally it says what it would start, since
/// a step cannot start a run here). The pool-usage metric that drives the alarm is
/// unit-tested in functions/workloads (it needs a cluster).
#[tokio::test]
async fn the_pool_at_its_limit_is_raised_within_the_preset_and_never_beyond() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "poolalarm").await;
    let queue = inbox(&f, &name).await;

    let at_ceiling = deliver(&f, &name, &sample("alarm-pool-at-limit.json", &name)).await;
    let run = only_run(&at_ceiling);
    assert_eq!(run.status, ExecutionStatus::Failed, "{run:?}");
    assert_eq!(run.error.as_deref(), Some("Apiary.Conflict"), "{run:?}");
    let cause = run.cause.as_deref().unwrap_or_default();
    assert!(cause.contains("size preset's ceiling"), "{cause}");
    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].1.contains("allow_beyond_preset"), "{told:?}");

    let lowered = f
        .run(
            "scale-pools",
            &name,
            json!({"deployment": name, "pool": "ingestion", "cpu": 16}),
            "lower",
        )
        .await;
    assert_eq!(lowered.status, ExecutionStatus::Succeeded, "{lowered:?}");
    let raised = deliver(&f, &name, &sample("alarm-pool-at-limit.json", &name)).await;
    let run = only_run(&raised);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    let output = run.output.as_ref().unwrap();
    assert_eq!(output["runbook"], "scale-pool");
    let input = &output["outcome"]["input"];
    let preset = apiary_core::spec::SizePreset::Small.sizing();
    assert_eq!(input["cpu"], json!(preset.karpenter_cpu_limit), "{output}");
    assert_eq!(input["queue"], true);
    assert!(
        output["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("run scale-pools with"),
        "{output}"
    );
    // The record is scale-pools' to change: the runbook changed nothing itself.
    let record = f.store.get_deployment(&name).await.unwrap().unwrap();
    assert_eq!(record.spec.cluster.pools.ingestion.cpu, Some(16));
    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].1.contains("run scale-pools with"), "{told:?}");
}

#[tokio::test]
async fn every_sample_event_matches_exactly_the_rule_meant_for_it() {
    let f = Fixture::new(TABLE).await;
    // Matching needs no deployment: the rules are resolved for a name and EventBridge
    // (the emulator's) decides.
    let name = apiary_e2e::unique_name("samples");
    let template =
        std::fs::read_to_string(repo_root().join("infra-bootstrap/bootstrap.yaml")).unwrap();
    let stack = apiary::local::rules::Stack {
        deployment: name.clone(),
        region: apiary_e2e::REGION.to_owned(),
        account: apiary::local::LOCAL_ACCOUNT.to_owned(),
    };
    let rules = apiary::local::rules::rules(&template, &stack).unwrap();
    let expected: &[(&str, &[&str])] = &[
        ("alarm-backup-run-failed.json", &["alarm-state"]),
        ("alarm-backup-run-ok.json", &["alarm-state"]),
        ("alarm-pool-at-limit.json", &["alarm-state"]),
        ("rds-low-storage.json", &["database-events"]),
        ("rds-failover.json", &["database-events"]),
        ("elasticache-snapshot-failed.json", &["cache-events"]),
        ("health-eks-issue.json", &["health-events"]),
        ("kms-schedule-key-deletion.json", &["key-events"]),
        ("secretsmanager-secret-rotated.json", &["secret-rotated"]),
        // The run-ended rule (the control function's cleanup) sees it too.
        ("backup-failed.json", &["workflow-failed", "run-ended"]),
        ("ec2-instance-state-change.json", &[]),
    ];
    let files: std::collections::BTreeSet<String> =
        std::fs::read_dir(repo_root().join("examples/events"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    let listed: std::collections::BTreeSet<String> =
        expected.iter().map(|(f, _)| (*f).to_owned()).collect();
    assert_eq!(files, listed, "every sample has its expected rules here");
    for (file, want) in expected {
        let event = sample(file, &name);
        let matched = apiary::local::rules::deliver(&f.config, &name, &rules, &event)
            .await
            .unwrap();
        let mut got: Vec<String> = matched
            .iter()
            .map(|r| {
                r.name
                    .trim_start_matches(&format!("apiary-{name}-"))
                    .trim_start_matches(&format!("apiary_{name}_"))
                    .to_owned()
            })
            .collect();
        got.sort();
        let mut want: Vec<String> = want.iter().map(|w| (*w).to_owned()).collect();
        want.sort();
        assert_eq!(got, want, "{file}");
    }
    // Another deployment's database event matches none of this one's rules.
    let theirs = sample("rds-failover.json", "someone-else");
    let matched = apiary::local::rules::deliver(&f.config, &name, &rules, &theirs)
        .await
        .unwrap();
    assert!(matched.is_empty(), "{matched:?}");
}

#[tokio::test]
async fn an_event_claimed_by_a_run_that_ended_unfinished_is_taken_over_and_acted_on() {
    use control::Runs;
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "takeover").await;
    let before = allocated_storage(&f, &name).await;
    let event = sample("rds-low-storage.json", &name);
    // A run claimed the event, then was stopped before its runbook: its owner is of this
    // process but no longer running.
    let dead = f
        .env
        .runs
        .owner("arn:aws:states:us-west-2:123456789012:execution:apiary-handle-alert:stopped");
    let claim = f
        .store
        .claim_event(
            &name,
            event["id"].as_str().unwrap(),
            &dead,
            "low storage",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(claim, apiary_core::store::Claim::First);

    let run = only_run(&deliver(&f, &name, &event).await).clone();
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    assert_eq!(run.output.as_ref().unwrap()["duplicate"], false, "{run:?}");
    assert_eq!(
        allocated_storage(&f, &name).await,
        before + (before + 3) / 4
    );
    // Finished now: a redelivery is a duplicate, whatever became of this run.
    let again = only_run(&deliver(&f, &name, &event).await).clone();
    assert_eq!(
        again.output.as_ref().unwrap()["duplicate"],
        true,
        "{again:?}"
    );
}

/// A handle-alert execution for `event`, as the stack's rule starts one (EventBridge
/// names it; a delivery twice starts two). The local matcher is left out: it serves one
/// delivery at a time per deployment.
async fn handle_alert(f: &Fixture, name: &str, event: &Value, run: &str) -> ExecutionResult {
    let machine = f.env.load(&f.root, "handle-alert").unwrap();
    f.env
        .run(
            &machine,
            "handle-alert",
            name,
            json!({"deployment": name, "event": event}),
            format!("handle-alert-{name}-{run}"),
            None,
        )
        .await
}

#[tokio::test]
async fn the_same_event_delivered_twice_at_once_acts_once_and_tells_once() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "twice").await;
    let queue = inbox(&f, &name).await;
    let before = allocated_storage(&f, &name).await;
    let event = sample("rds-low-storage.json", &name);

    // EventBridge may deliver one event twice, and the two runs may overlap.
    let (first, second) = tokio::join!(
        handle_alert(&f, &name, &event, "a"),
        handle_alert(&f, &name, &event, "b")
    );
    let runs = [first, second];
    for run in &runs {
        assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    }
    assert!(
        runs[0].start_date < runs[1].stop_date && runs[1].start_date < runs[0].stop_date,
        "the two runs overlapped"
    );
    let mut duplicate: Vec<bool> = runs
        .iter()
        .map(|r| r.output.as_ref().unwrap()["duplicate"] == true)
        .collect();
    duplicate.sort();
    assert_eq!(duplicate, [false, true], "exactly one run acts: {runs:?}");
    assert_eq!(
        allocated_storage(&f, &name).await,
        before + (before + 3) / 4,
        "raised once"
    );
    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 1, "{told:?}");
}

#[tokio::test]
async fn two_different_events_at_once_are_each_handled_and_each_told() {
    let f = Fixture::new(TABLE).await;
    let name = provisioned(&f, "pair").await;
    let queue = inbox(&f, &name).await;
    let low = sample("rds-low-storage.json", &name);
    let failover = sample("rds-failover.json", &name);

    let (a, b) = tokio::join!(
        handle_alert(&f, &name, &low, "low"),
        handle_alert(&f, &name, &failover, "failover")
    );
    for run in [&a, &b] {
        assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
        assert_eq!(run.output.as_ref().unwrap()["duplicate"], false, "{run:?}");
    }
    let told = received(&f, &queue).await;
    assert_eq!(told.len(), 2, "one notification each: {told:?}");
}
