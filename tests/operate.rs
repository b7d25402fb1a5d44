//! The rotate-keys workflow end to end: provision a deployment, then run
//! `statemachines/rotate-keys.asl.json` in the embedded engine against the emulator with
//! each of its inputs, and read back what changed in KMS, Secrets Manager and the journal.
//!
//! What the emulator cannot show is unit-tested in functions/operate with mocks: the
//! rotation period (moto does not store it), the on-demand quota, a group still
//! modifying, the exact order of the Redis token's phases.

use apiary_asl::ExecutionStatus;
use apiary_e2e::Local as Fixture;
use aws_sdk_kms::types::{KeyState, RotationType};
use serde_json::{Value, json};

async fn fixture() -> Fixture {
    Fixture::new("apiary-test-operate").await
}

async fn provisioned(f: &Fixture, prefix: &str) -> String {
    let without_documentdb = json!({"databases": {"documentdb": false}});
    f.provisioned(prefix, without_documentdb).await.0
}

fn rotate(input: Value, name: &str) -> Value {
    let mut input = input;
    input["deployment"] = json!(name);
    input
}

async fn key_id(f: &Fixture, name: &str, scope: &str) -> String {
    aws_sdk_kms::Client::new(&f.config)
        .describe_key()
        .key_id(format!("alias/apiary/{name}/{scope}"))
        .send()
        .await
        .expect("DescribeKey")
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

/// The pods' PostgreSQL user's secret: its current value and each version's labels.
async fn app_secret(f: &Fixture, name: &str) -> (Value, Vec<Vec<String>>) {
    let secrets = aws_sdk_secretsmanager::Client::new(&f.config);
    let id = format!("apiary-{name}-postgres-app");
    let value = secrets
        .get_secret_value()
        .secret_id(&id)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("GetSecretValue");
    let described = secrets
        .describe_secret()
        .secret_id(&id)
        .send()
        .await
        .expect("DescribeSecret");
    let mut stages: Vec<Vec<String>> = described
        .version_ids_to_stages()
        .into_iter()
        .flat_map(|v| v.values().cloned())
        .collect();
    stages.sort();
    (
        serde_json::from_str(value.secret_string().unwrap()).unwrap(),
        stages,
    )
}

async fn redis_secret(f: &Fixture, name: &str) -> Value {
    let value = aws_sdk_secretsmanager::Client::new(&f.config)
        .get_secret_value()
        .secret_id(format!("apiary-{name}-redis-auth"))
        .send()
        .await
        .expect("GetSecretValue");
    serde_json::from_str(value.secret_string().unwrap()).unwrap()
}

#[tokio::test]
async fn on_demand_rotates_every_key_and_secret_and_a_rerun_rotates_again() {
    let f = fixture().await;
    let name = provisioned(&f, "rot").await;
    let before = redis_secret(&f, &name).await;
    let (app_before, _) = app_secret(&f, &name).await;
    assert_eq!(app_before["username"], "honeyhive_app_a", "{app_before}");

    let done = f
        .run(
            "rotate-keys",
            &name,
            rotate(json!({"on_demand": true}), &name),
            "on-demand",
        )
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let output = done.output.expect("output");
    assert_eq!(output["workflow"], json!("rotate-keys"));
    let result = &output["result"];
    assert_eq!(
        result["keys"]["keys"].as_array().unwrap().len(),
        keys::SCOPES.len()
    );
    assert_eq!(
        result["database_secrets"]["secrets"][0]["rotated"],
        json!(true)
    );
    assert_eq!(result["redis"]["phase"], json!("set-requested"));
    assert_eq!(
        result["restart"]["verified"],
        json!(false),
        "no pods locally: said, not pretended"
    );

    let rotations = aws_sdk_kms::Client::new(&f.config)
        .list_key_rotations()
        .key_id(key_id(&f, &name, "app").await)
        .send()
        .await
        .expect("ListKeyRotations");
    assert_eq!(
        rotations
            .rotations()
            .iter()
            .filter(|r| r.rotation_type() == Some(&RotationType::OnDemand))
            .count(),
        1
    );
    let after = redis_secret(&f, &name).await;
    assert_ne!(
        after["auth_token"], before["auth_token"],
        "a new Redis token"
    );
    assert!(
        after.get("rotation").is_none(),
        "both phases done: {after:?}"
    );
    assert!(after.get("previous_auth_token").is_none());

    // The pods' own user: the other one of the pair, with a new password, current;
    // the one before is AWSPREVIOUS (its user keeps working for the pods not yet
    // restarted), and nothing is left pending.
    let (app_after, stages) = app_secret(&f, &name).await;
    assert_eq!(app_after["username"], "honeyhive_app_b", "{app_after}");
    assert_ne!(app_after["password"], app_before["password"]);
    assert_eq!(app_after["dbname"], app_before["dbname"]);
    assert_eq!(
        stages,
        [
            vec!["AWSCURRENT".to_owned()],
            vec!["AWSPREVIOUS".to_owned()]
        ],
        "{stages:?}"
    );
    assert_eq!(
        result["app_users"]["users"][0]["stages"],
        json!(["AWSCURRENT"]),
        "{result}"
    );

    let journal = f.store.journal(&name).await.expect("journal");
    assert!(
        journal
            .iter()
            .any(|e| e.step == "rotate-keys" && e.action == "redis-set" && e.outcome == "created"),
        "{journal:?}"
    );

    // A second rotation goes back to the first user, with yet another password.
    let done = f
        .run(
            "rotate-keys",
            &name,
            rotate(json!({"scope": "secrets"}), &name),
            "again",
        )
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let (app_again, _) = app_secret(&f, &name).await;
    assert_eq!(app_again["username"], "honeyhive_app_a", "{app_again}");
    assert_ne!(app_again["password"], app_before["password"]);
    assert_ne!(app_again["password"], app_after["password"]);
}

#[tokio::test]
async fn the_keys_check_changes_no_secret_and_refuses_a_disabled_key() {
    let f = fixture().await;
    let name = provisioned(&f, "chk").await;
    let before = redis_secret(&f, &name).await;

    let done = f
        .run(
            "rotate-keys",
            &name,
            rotate(json!({"scope": "keys-check"}), &name),
            "check",
        )
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let result = &done.output.unwrap()["result"];
    assert!(
        result["database_secrets"]["skipped"].is_string(),
        "{result}"
    );
    assert_eq!(redis_secret(&f, &name).await, before, "no secret changed");
    assert_eq!(
        app_secret(&f, &name).await.0["username"],
        "honeyhive_app_a",
        "the pods' user stays"
    );

    // The customer disables a key: the check refuses it by name and never enables it.
    let kms = aws_sdk_kms::Client::new(&f.config);
    let rds = key_id(&f, &name, "rds").await;
    kms.disable_key()
        .key_id(&rds)
        .send()
        .await
        .expect("DisableKey");
    let done = f
        .run(
            "rotate-keys",
            &name,
            rotate(json!({"scope": "keys-check"}), &name),
            "disabled",
        )
        .await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("Apiary.Conflict"));
    assert!(done.cause.as_deref().unwrap_or_default().contains(&rds));
    let state = kms.describe_key().key_id(&rds).send().await.unwrap();
    assert_eq!(
        state.key_metadata().unwrap().key_state(),
        Some(&KeyState::Disabled),
        "the kill switch stays"
    );
}

#[tokio::test]
async fn a_bad_input_is_refused_before_anything_changes() {
    let f = fixture().await;
    let name = provisioned(&f, "bad").await;
    let before = redis_secret(&f, &name).await;
    let done = f
        .run(
            "rotate-keys",
            &name,
            rotate(json!({"scope": "secrets", "on_demand": true}), &name),
            "bad",
        )
        .await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("Apiary.InvalidInput"));
    assert!(
        done.cause
            .as_deref()
            .unwrap_or_default()
            .contains("on_demand")
    );
    assert_eq!(redis_secret(&f, &name).await, before);
}
