//! The emulator proxy against the real emulator: each fault as the SDK meets it, AWS's
//! idempotency tokens, eventual consistency, creating states on the caller's clock, a
//! crash right after a write; then the chaos suite's own canary: a missing token must
//! show as a duplicate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary::chaos;
use apiary_core::aws::AwsSettings;
use apiary_proxy::{Config, Fault, Proxy};
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};

fn upstream() -> String {
    apiary_e2e::emulator().endpoint().to_owned()
}

/// An SDK configuration that talks to the emulator through `proxy`, giving up on an
/// attempt after `attempt` (the emulator answers in milliseconds, but tests share it).
async fn through(proxy: &Proxy, attempt: Duration) -> SdkConfig {
    let mut settings = AwsSettings::local(&proxy.url(), apiary_e2e::REGION);
    settings.attempt_timeout = attempt;
    apiary_core::aws::load(&settings).await
}

/// A new VPC, made directly.
async fn new_vpc(config: &SdkConfig) -> String {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let cidr = apiary_e2e::unique_cidr(config).await;
    let vpc = ec2.create_vpc().cidr_block(&cidr).send().await.unwrap();
    vpc.vpc().unwrap().vpc_id().unwrap().to_owned()
}

/// The route tables of `vpc` besides its main one.
async fn tables_in(config: &SdkConfig, vpc: &str) -> usize {
    let ec2 = aws_sdk_ec2::Client::new(config);
    ec2.describe_route_tables()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(vpc)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .route_tables()
        .iter()
        .filter(|t| !t.associations().iter().any(|a| a.main() == Some(true)))
        .count()
}

/// A late answer to CreateRouteTable: the emulator made it, the SDK gave up and sent the
/// same request again. With its token the repeat gets the first answer (one table);
/// with the token removed the emulator makes a second one.
#[tokio::test]
async fn a_repeat_with_the_same_token_gets_the_first_answer_and_without_it_a_second_resource() {
    let direct = apiary_e2e::sdk_config().await;
    for (strip, expected) in [(false, 1), (true, 2)] {
        let vpc = new_vpc(&direct).await;
        let proxy = Proxy::start(Config {
            forced: vec![("CreateRouteTable".into(), 1, Fault::Late)],
            strip_tokens: if strip {
                vec!["CreateRouteTable".into()]
            } else {
                vec![]
            },
            late_by: Duration::from_secs(4),
            ..Config::passthrough(&upstream())
        })
        .await
        .unwrap();
        let ec2 = aws_sdk_ec2::Client::new(&through(&proxy, Duration::from_secs(3)).await);
        ec2.create_route_table()
            .vpc_id(&vpc)
            .send()
            .await
            .expect("the SDK's retry succeeds");
        let report = proxy.report();
        assert_eq!(report.faults.get(&Fault::Late), Some(&1), "{report:?}");
        assert_eq!(
            report.replayed,
            u64::from(!strip),
            "the repeat is answered from the first answer only with its token: {report:?}"
        );
        assert_eq!(
            tables_in(&direct, &vpc).await,
            expected,
            "token stripped: {strip}"
        );
    }
}

/// Throttling, a server error and a reset before the emulator saw the call: the SDK
/// retries each, and the call is made once.
#[tokio::test]
async fn throttling_server_errors_and_resets_are_retried_by_the_sdk_and_made_once() {
    let direct = apiary_e2e::sdk_config().await;
    let vpc = new_vpc(&direct).await;
    let proxy = Proxy::start(Config {
        forced: vec![
            ("CreateRouteTable".into(), 1, Fault::Throttle),
            ("CreateRouteTable".into(), 2, Fault::ServerError),
            ("CreateRouteTable".into(), 3, Fault::Reset),
        ],
        ..Config::passthrough(&upstream())
    })
    .await
    .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&through(&proxy, Duration::from_secs(5)).await);
    ec2.create_route_table()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("the fourth attempt succeeds");
    let report = proxy.report();
    assert_eq!(
        report.operations.get("ec2:CreateRouteTable"),
        Some(&4),
        "{report:?}"
    );
    assert_eq!(report.faults_total(), 3, "{report:?}");
    assert_eq!(
        report.abandoned, 0,
        "every attempt was answered: {report:?}"
    );
    assert_eq!(tables_in(&direct, &vpc).await, 1);

    // Past the SDK's attempts, the throttling reaches the caller as AWS's error code.
    let proxy = Proxy::start(Config {
        forced: (1..=4)
            .map(|n| ("DescribeNatGateways".to_owned(), n, Fault::Throttle))
            .collect(),
        ..Config::passthrough(&upstream())
    })
    .await
    .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&through(&proxy, Duration::from_secs(5)).await);
    let err = ec2.describe_nat_gateways().send().await.unwrap_err();
    assert_eq!(
        aws_sdk_ec2::error::ProvideErrorMetadata::code(&err),
        Some("RequestLimitExceeded")
    );
}

/// A new VPC is not visible to DescribeVpcs for its next one to three reads; reading it
/// does not use up another new VPC's lag.
#[tokio::test]
async fn a_new_resource_is_not_found_for_its_next_few_reads() {
    let direct = apiary_e2e::sdk_config().await;
    let proxy = Proxy::start(Config {
        lag_rate: 1.0,
        ..Config::passthrough(&upstream())
    })
    .await
    .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&through(&proxy, Duration::from_secs(5)).await);
    let mut made = Vec::new();
    for _ in 0..2 {
        let cidr = apiary_e2e::unique_cidr(&direct).await;
        let vpc = ec2.create_vpc().cidr_block(cidr).send().await.unwrap();
        made.push(vpc.vpc().unwrap().vpc_id().unwrap().to_owned());
    }
    let hidden_reads = |vpc: String| {
        let ec2 = ec2.clone();
        async move {
            let mut not_found = 0;
            loop {
                match ec2.describe_vpcs().vpc_ids(&vpc).send().await {
                    Ok(found) => {
                        assert_eq!(found.vpcs()[0].vpc_id(), Some(vpc.as_str()));
                        return not_found;
                    }
                    Err(err) => {
                        assert_eq!(
                            aws_sdk_ec2::error::ProvideErrorMetadata::code(&err),
                            Some("InvalidVpcID.NotFound")
                        );
                        not_found += 1;
                        assert!(not_found <= 3, "still hidden after {not_found} reads");
                    }
                }
            }
        }
    };
    for vpc in made {
        let not_found = hidden_reads(vpc.clone()).await;
        assert!(
            (1..=3).contains(&not_found),
            "{vpc}: the first read after its create did not miss it"
        );
    }
}

/// An RDS instance stays `creating` for its AWS duration divided by the time scale, on
/// the caller's clock.
#[tokio::test]
async fn a_database_stays_creating_for_its_scaled_aws_duration_on_the_callers_clock() {
    let clock = Arc::new(Mutex::new(Utc::now()));
    let now = {
        let clock = clock.clone();
        Arc::new(move || *clock.lock().unwrap())
    };
    let proxy = Proxy::start(Config {
        time_scale: Some(60.0),
        now,
        ..Config::passthrough(&upstream())
    })
    .await
    .unwrap();
    let rds = aws_sdk_rds::Client::new(&through(&proxy, Duration::from_secs(5)).await);
    let name = apiary_e2e::unique_name("slow");
    rds.create_db_instance()
        .db_instance_identifier(&name)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("apiary")
        .master_user_password("not-a-secret-1")
        .send()
        .await
        .unwrap();
    let status = |rds: aws_sdk_rds::Client, name: String| async move {
        rds.describe_db_instances()
            .db_instance_identifier(name)
            .send()
            .await
            .unwrap()
            .db_instances()[0]
            .db_instance_status()
            .map(str::to_owned)
    };
    assert_eq!(
        status(rds.clone(), name.clone()).await.as_deref(),
        Some("creating")
    );
    // 300 s on AWS is 5 s at 1/60: not yet at 4 s, ready at 5 s.
    let advance = |seconds: i64| {
        let mut at = clock.lock().unwrap();
        *at += chrono::Duration::seconds(seconds);
    };
    advance(4);
    assert_eq!(
        status(rds.clone(), name.clone()).await.as_deref(),
        Some("creating")
    );
    advance(1);
    assert_eq!(
        status(rds.clone(), name.clone()).await.as_deref(),
        Some("available")
    );
    let report = proxy.report();
    let applied = report
        .applied
        .iter()
        .find(|a| a.id == name)
        .expect("the creating state is reported");
    assert_eq!(
        (applied.kind, applied.aws_seconds),
        ("rds:db-instance", 300)
    );
    let held: DateTime<Utc> = applied.ready_at;
    assert_eq!((held - applied.created_at).num_seconds(), 5);
    // The create's own answer and the two early reads.
    assert_eq!(report.held_creating, 3);
}

/// After its k-th write the proxy answers nothing more, as if the caller had died right
/// after AWS performed that call; the write is in the account.
#[tokio::test]
async fn after_its_kth_write_the_proxy_stops_and_the_write_was_performed() {
    let direct = apiary_e2e::sdk_config().await;
    let proxy = Proxy::start(Config {
        crash_after_writes: Some(2),
        ..Config::passthrough(&upstream())
    })
    .await
    .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&through(&proxy, Duration::from_secs(5)).await);
    let first = apiary_e2e::unique_cidr(&direct).await;
    let second = apiary_e2e::unique_cidr(&direct).await;
    ec2.create_vpc().cidr_block(&first).send().await.unwrap();
    // The caller "dies" once its write was performed: its call never gets an answer.
    let caller = {
        let ec2 = ec2.clone();
        let second = second.clone();
        tokio::spawn(async move { ec2.create_vpc().cidr_block(second).send().await })
    };
    let crashed = tokio::time::timeout(Duration::from_secs(20), proxy.crashed()).await;
    caller.abort();
    assert!(crashed.is_ok(), "the proxy never reported its crash");
    let made = aws_sdk_ec2::Client::new(&direct)
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("cidr")
                .values(&second)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(made.vpcs().len(), 1, "the second write was performed once");
    assert_eq!(proxy.report().writes, 2);
}

/// An emulator of the test's own (every seed or race empties it) and chaos options for
/// the test deployment `name`.
fn own_emulator(name: &str) -> (apiary_core::local::Emulator, chaos::Options) {
    let root = apiary_core::local::project_root(&apiary_core::aws::ProcessEnv).unwrap();
    let emulator = apiary_core::local::Emulator::start(&root).unwrap();
    let spec =
        apiary_core::DeploymentSpec::parse(&apiary_core::fixtures::Fixture::named(name).spec)
            .expect("a valid spec");
    let options = chaos::Options::new(emulator.endpoint(), &root, spec);
    (emulator, options)
}

/// The suite can fail: with CreateRouteTable's token removed and its first answer late,
/// a provision makes a second route table, and the seed reports it as a duplicate. With
/// the token, the same seed is clean.
#[tokio::test]
async fn the_chaos_suite_reports_the_duplicate_a_missing_token_makes() {
    let (_emulator, mut options) = own_emulator("chaos");
    options.workflows = vec!["provision".into()];
    options.attempt_timeout = Duration::from_secs(1);
    let reference = chaos::run_seed(&options.fault_free(), 0, 0.0, None)
        .await
        .unwrap();
    assert!(reference.clean(), "{}", reference.render());

    options.forced = vec![("CreateRouteTable".into(), 1, Fault::Late)];
    let kept = chaos::run_seed(&options, 1, 0.0, Some(&reference.counts))
        .await
        .unwrap();
    assert!(kept.clean(), "{}", kept.render());
    assert_eq!(kept.proxy.replayed, 1, "{}", kept.render());

    options.strip_tokens = vec!["CreateRouteTable".into()];
    let stripped = chaos::run_seed(&options, 1, 0.0, Some(&reference.counts))
        .await
        .unwrap();
    assert!(stripped.converged(), "{}", stripped.render());
    assert_eq!(
        stripped.judged.duplicates,
        vec!["ec2:route-table +1 after provision".to_owned()],
        "{}",
        stripped.render()
    );
}

/// The stack deleted while it provisions: the launch resource's teardown is queued, waits
/// for the provision's lock, then removes everything the provision made.
#[tokio::test]
async fn a_teardown_queued_behind_a_running_provision_waits_and_then_leaves_nothing() {
    use chaos::races::{Expected, Race, run_race};
    let (_emulator, mut options) = own_emulator("race");
    options.workflows = vec!["provision".into(), "teardown".into()];
    let reference = chaos::run_seed(&options.fault_free(), 0, 0.0, None)
        .await
        .unwrap();
    assert!(reference.clean(), "{}", reference.render());
    let expected = Expected {
        provisioned: reference.counts[0].clone(),
        torn_down: reference.counts[1].clone(),
    };
    assert!(
        expected.provisioned.values().sum::<usize>() > expected.torn_down.values().sum::<usize>(),
        "the teardown removes what the provision made: {expected:?}"
    );

    let result = run_race(&options, Race::TeardownWhileProvisioning, 1, 0.0, &expected)
        .await
        .unwrap();
    assert!(result.clean(), "{}", result.render());
    assert_eq!(result.first, "provision succeeded", "{}", result.render());
    assert_eq!(
        result.second,
        "teardown (queued) succeeded",
        "{}",
        result.render()
    );
    assert!(result.after.is_none(), "{}", result.render());
}
