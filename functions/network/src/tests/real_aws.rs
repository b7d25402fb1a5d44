//! What only real AWS does, with mocked EC2: idempotency tokens on the creates that take
//! one, no SDK retry of the creates that do not, and EC2's eventual consistency.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::operation::allocate_address::AllocateAddressOutput;
use aws_sdk_ec2::operation::associate_route_table::AssociateRouteTableOutput;
use aws_sdk_ec2::operation::create_nat_gateway::CreateNatGatewayOutput;
use aws_sdk_ec2::operation::create_route::CreateRouteOutput;
use aws_sdk_ec2::operation::create_route_table::CreateRouteTableOutput;
use aws_sdk_ec2::operation::create_subnet::CreateSubnetError;
use aws_sdk_ec2::operation::create_vpc_endpoint::CreateVpcEndpointOutput;
use aws_smithy_types::error::ErrorMetadata;

use super::*;

/// The client tokens one kind of create was sent with, in order.
#[derive(Clone, Default)]
struct Tokens(Arc<Mutex<Vec<String>>>);

impl Tokens {
    fn record(&self, token: Option<&str>) {
        self.0
            .lock()
            .unwrap()
            .push(token.expect("a client token is sent").to_owned());
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A NAT gateway of another deployment only: this one's must be created.
fn foreign_nat() -> NatGateway {
    NatGateway::builder()
        .nat_gateway_id("nat-theirs")
        .state(NatGatewayState::Available)
        .build()
}

/// CreateNatGateway, answering the first call with a gateway in `first` state and every
/// later one with a pending gateway.
fn create_nat(tokens: &Tokens, first: NatGatewayState) -> Rule {
    let tokens = tokens.clone();
    mock!(Ec2::create_nat_gateway).then_compute_output(move |input| {
        tokens.record(input.client_token());
        let calls = tokens.all().len();
        let state = if calls == 1 {
            first.clone()
        } else {
            NatGatewayState::Pending
        };
        CreateNatGatewayOutput::builder()
            .nat_gateway(
                NatGateway::builder()
                    .nat_gateway_id(format!("nat-{calls}"))
                    .state(state)
                    .build(),
            )
            .build()
    })
}

fn allocate(id: &'static str) -> Rule {
    mock!(Ec2::allocate_address)
        .then_output(move || AllocateAddressOutput::builder().allocation_id(id).build())
}

fn vpc(id: &'static str) -> Rule {
    mock!(Ec2::describe_vpcs).then_output(move || {
        DescribeVpcsOutput::builder()
            .vpcs(Vpc::builder().vpc_id(id).cidr_block(CIDR).build())
            .build()
    })
}

#[tokio::test]
async fn a_nat_gateway_is_created_with_a_token_that_is_stable_and_follows_its_inputs() {
    let tokens = Tokens::default();
    let create = create_nat(&tokens, NatGatewayState::Pending);
    let run = |vpc_rule: Rule, allocation: &'static str| {
        let mut rules = existing_network(foreign_nat());
        rules[1] = vpc_rule;
        let allocate = allocate(allocation);
        let attach = mock!(Ec2::attach_internet_gateway).then_output(|| {
            aws_sdk_ec2::operation::attach_internet_gateway::AttachInternetGatewayOutput::builder()
                .build()
        });
        let create = &create;
        async move {
            let deps = run_with(&rules, &[create, &allocate, &attach]);
            handle(&deps, event()).await.expect("network");
        }
    };
    // Two runs that find nothing of theirs (the first timed out after its create, and
    // EC2 does not list the gateway yet) send the same token: EC2 answers the second
    // with the first's gateway instead of making another.
    run(vpc("vpc-1"), "eipalloc-1").await;
    run(vpc("vpc-1"), "eipalloc-1").await;
    // Another Elastic IP is another request; another VPC is another data plane.
    run(vpc("vpc-1"), "eipalloc-2").await;
    run(vpc("vpc-2"), "eipalloc-1").await;
    let sent = tokens.all();
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(sent[0], sent[1], "stable across runs");
    assert_ne!(sent[0], sent[2], "follows the allocation");
    assert_ne!(sent[0], sent[3], "follows the VPC (the incarnation)");
    assert!(sent.iter().all(|t| t.len() <= 64 && t.is_ascii()));
}

#[tokio::test]
async fn a_token_answered_with_a_deleted_gateway_is_followed_by_a_fresh_one() {
    // A failed gateway stays `failed` for about an hour and is what the token answers too.
    for dead in [NatGatewayState::Deleted, NatGatewayState::Failed] {
        let tokens = Tokens::default();
        let replay = create_nat(&tokens, dead.clone());
        let mut rules = existing_network(foreign_nat());
        rules.push(allocate("eipalloc-1"));
        let deps = run_with(&rules, &[&replay]);
        let out = handle(&deps, event()).await.expect("network");
        let sent = tokens.all();
        assert_eq!(sent.len(), 2, "{dead:?}: {sent:?}");
        assert_ne!(sent[0], sent[1]);
        assert_eq!(out["nat_gateway_ids"], json!(["nat-2"]), "{dead:?}: {out}");
    }
}

#[tokio::test]
async fn route_tables_and_endpoints_are_created_with_stable_tokens() {
    let (tables, endpoints) = (Tokens::default(), Tokens::default());
    let create_table = {
        let tables = tables.clone();
        mock!(Ec2::create_route_table).then_compute_output(move |input| {
            tables.record(input.client_token());
            CreateRouteTableOutput::builder()
                .route_table(RouteTable::builder().route_table_id("rtb-new").build())
                .build()
        })
    };
    let create_endpoint = {
        let endpoints = endpoints.clone();
        mock!(Ec2::create_vpc_endpoint).then_compute_output(move |input| {
            endpoints.record(input.client_token());
            CreateVpcEndpointOutput::builder()
                .vpc_endpoint(VpcEndpoint::builder().vpc_endpoint_id("vpce-new").build())
                .build()
        })
    };
    let create_route =
        mock!(Ec2::create_route).then_output(|| CreateRouteOutput::builder().build());
    let associate = mock!(Ec2::associate_route_table)
        .then_output(|| AssociateRouteTableOutput::builder().build());
    let nat = our_nat(NatGatewayState::Available);
    let mut rules = existing_network(nat);
    rules[7] = mock!(Ec2::describe_route_tables)
        .then_output(|| DescribeRouteTablesOutput::builder().build());
    rules[9] = mock!(Ec2::describe_vpc_endpoints)
        .then_output(|| DescribeVpcEndpointsOutput::builder().build());
    for _ in 0..2 {
        let deps = run_with(
            &rules,
            &[&create_table, &create_endpoint, &create_route, &associate],
        );
        handle(&deps, event()).await.expect("network");
    }
    // Per run: the public table and one per private subnet; every endpoint service.
    let (tables, endpoints) = (tables.all(), endpoints.all());
    let per_run = GATEWAY_ENDPOINTS.len() + INTERFACE_ENDPOINTS.len();
    assert_eq!(tables.len(), 2 * 3, "{tables:?}");
    assert_eq!(endpoints.len(), 2 * per_run);
    assert_eq!(tables[..3], tables[3..], "stable across runs");
    assert_eq!(endpoints[..per_run], endpoints[per_run..]);
    // Each resource has a token of its own.
    let distinct = |all: &[String]| all.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(distinct(&tables[..3]), 3);
    assert_eq!(distinct(&endpoints[..per_run]), per_run);
}

/// A client that retries like the real one (three attempts, no real wait).
fn retrying_client(rules: &[&Rule]) -> Ec2 {
    mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules, |config| {
        config.retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(1)),
        )
    })
}

#[tokio::test]
async fn a_create_without_a_token_is_never_repeated_by_the_sdk() {
    let server_error = || {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(500).unwrap(),
            aws_smithy_types::body::SdkBody::from(""),
        )
    };
    let create_vpc = mock!(Ec2::create_vpc).then_http_response(server_error);
    let mut rules = existing_network(foreign_nat());
    rules[1] = mock!(Ec2::describe_vpcs).then_output(|| DescribeVpcsOutput::builder().build());
    let mut all: Vec<&Rule> = rules.iter().collect();
    all.push(&create_vpc);
    let deps = Deps {
        ec2: retrying_client(&all),
        lambda: super::no_lambda(),
        recorder: Arc::new(state()),
        in_vpc_functions: Vec::new(),
    };
    let err = handle(&deps, event()).await.unwrap_err();
    // The call may have made a VPC whose answer was lost: the workflow retries the step,
    // which looks the VPC up by its tags first.
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    assert_eq!(create_vpc.num_calls(), 1, "one attempt only");
    // The same client repeats a call that is not switched off.
    let _ = deps.ec2.create_vpc().cidr_block(CIDR).send().await;
    assert_eq!(create_vpc.num_calls(), 1 + 3, "the SDK retries by default");
}

#[tokio::test]
async fn a_vpc_that_ec2_does_not_know_yet_is_retryable_for_its_subnets() {
    let mut rules = existing_network(foreign_nat());
    rules[3] =
        mock!(Ec2::describe_subnets).then_output(|| DescribeSubnetsOutput::builder().build());
    let create_subnet = mock!(Ec2::create_subnet).then_error(|| {
        CreateSubnetError::generic(
            ErrorMetadata::builder()
                .code("InvalidVpcID.NotFound")
                .message("The vpc ID 'vpc-1' does not exist")
                .build(),
        )
    });
    let deps = run_with(&rules, &[&create_subnet]);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    assert_eq!(err.aws_code(), Some("InvalidVpcID.NotFound"));
    assert!(err.to_string().contains("CreateSubnet public-0"), "{err}");
}

/// CreateRoute takes no token: an attempt whose answer was lost made the route, and the
/// SDK's repeat meets `RouteAlreadyExists`. That is a retry of the step (which reads the
/// table again and finds its route), never a failed provision.
#[tokio::test]
async fn a_route_that_already_exists_when_created_runs_the_step_again() {
    let exists = mock!(Ec2::create_route).then_error(|| {
        aws_sdk_ec2::operation::create_route::CreateRouteError::generic(
            ErrorMetadata::builder()
                .code("RouteAlreadyExists")
                .message("The route identified by 0.0.0.0/0 already exists.")
                .build(),
        )
    });
    let associate = mock!(Ec2::associate_route_table)
        .then_output(|| AssociateRouteTableOutput::builder().build());
    let nat = our_nat(NatGatewayState::Available);
    let mut rules = existing_network(nat);
    rules[7] = mock!(Ec2::describe_route_tables).then_output(|| {
        DescribeRouteTablesOutput::builder()
            .route_tables(RouteTable::builder().route_table_id("rtb-1").build())
            .build()
    });
    let deps = run_with(&rules, &[&exists, &associate]);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    assert!(err.to_string().contains("RouteAlreadyExists"), "{err}");
    assert!(exists.num_calls() >= 1);
}
