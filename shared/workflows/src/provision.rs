//! The provision workflow: builds a complete data plane.
//!
//! ```text
//! validate -> lock -> keys -> network (polled)
//!   -> in parallel: dns (polled) | storage | databases (postgres | documentdb | redis, each polled)
//!                 | cluster (EKS polled -> node group polled -> Karpenter prerequisites)
//!                 | the in-VPC functions placed in the private subnets (polled)
//!   -> the pods' own database users (verifier, in the VPC: postgres | documentdb)
//!   -> workloads (apply, then poll the rollout and the load balancer's healthy targets)
//!   -> the domain's alias to the load balancer
//!   -> mark ready (READY, or WAITING_FOR_DNS_VALIDATION) -> unlock
//! ```
//!
//! Poll bounds are a few times the real durations in AWS-TIMINGS.md (typical, and the
//! slow tail that still succeeds); the first wait is close to the typical duration so
//! that a normal run polls only a few times.

use serde_json::json;

use crate::flow::{Flow, Poll, Task};
use crate::function::Function;
use crate::locked::{Input, Locked, Outcome};

/// Two hours of waiting for another workflow's lock (a provision typically takes 20-30
/// minutes): every minute at first, then every ten.
pub const LOCK_WAIT: &[u64] = &[
    60, 60, 120, 360, 600, 600, 600, 600, 600, 600, 600, 600, 600, 600, 600,
];

/// NAT gateways: ~1.75 min, 2 at p90, 5-10 in old reports. Bound 12 minutes.
pub const NETWORK: Poll = Poll {
    name: "Network",
    function: Function::Network,
    ensure: "ensure",
    status: "ensure",
    what: "the network (NAT gateways)",
    schedule: &[90, 30, 60, 120, 180, 240],
};

/// The certificate's DNS validation records: ACM publishes them seconds to a minute after
/// the request. Bound 5 minutes. The step is ready once they are written (or handed to
/// the customer), not when ACM issues: a certificate waiting for records the customer
/// must create makes the run end WAITING_FOR_DNS_VALIDATION (see MarkReady), not time out.
pub const DNS: Poll = Poll {
    name: "Dns",
    function: Function::Dns,
    ensure: "ensure",
    status: "ensure",
    what: "the certificate's DNS validation records",
    schedule: &[10, 20, 30, 60, 60, 120],
};

/// The functions that must reach private endpoints (the workloads function: the EKS API
/// is private by default), attached to the private subnets. Lambda creates their network
/// interfaces in about a minute, a few on a first attachment in an account. Bound 12
/// minutes, long before the workloads step needs them (after the cluster).
pub const IN_VPC: Poll = Poll {
    name: "InVpcFunctions",
    function: Function::Network,
    ensure: "ensure-in-vpc",
    status: "status-in-vpc",
    what: "the in-VPC functions' network interfaces",
    schedule: &[30, 30, 60, 60, 120, 180, 240],
};

/// RDS PostgreSQL: ~5 min Single-AZ, 12-15 Multi-AZ (36 min seen once). Bound 45 minutes.
/// Every round is an `ensure`: an existing instance converges to the spec one
/// ModifyDBInstance per round, each once the instance is available for it.
pub const POSTGRES: Poll = Poll {
    name: "Postgres",
    function: Function::Databases,
    ensure: "ensure-postgres",
    status: "ensure-postgres",
    what: "RDS PostgreSQL",
    schedule: &[240, 60, 120, 180, 300, 300, 600, 900],
};

/// DocumentDB cluster then instance: 10-13 min. Bound 45 minutes.
/// Every round is an `ensure`: an existing cluster converges to the spec once it is
/// available for it, and a second instance (Multi-AZ) is added.
pub const DOCUMENTDB: Poll = Poll {
    name: "DocumentDb",
    function: Function::Databases,
    ensure: "ensure-documentdb",
    status: "ensure-documentdb",
    what: "DocumentDB",
    schedule: &[480, 120, 120, 180, 300, 600, 900],
};

/// ElastiCache Redis: ~7 min one node, 10-12 Multi-AZ, up to 20. Bound 42 minutes.
/// Every round is an `ensure`: an existing group converges one change per round (a
/// replica, then failover), each once the group is available for it.
pub const REDIS: Poll = Poll {
    name: "Redis",
    function: Function::Databases,
    ensure: "ensure-redis",
    status: "ensure-redis",
    what: "ElastiCache Redis",
    schedule: &[300, 120, 120, 180, 300, 600, 900],
};

/// EKS control plane: ~10 min, 13-16 in some regions. Bound 45 minutes.
pub const CLUSTER: Poll = Poll {
    name: "Cluster",
    function: Function::Cluster,
    ensure: "ensure-cluster",
    status: "status-cluster",
    what: "the EKS cluster",
    schedule: &[480, 120, 120, 180, 300, 600, 900],
};

/// EKS managed node group: ~2 min, 20-33 min outliers. Bound 30 minutes.
pub const NODEGROUP: Poll = Poll {
    name: "Nodegroup",
    function: Function::Cluster,
    ensure: "ensure-nodegroup",
    status: "status-nodegroup",
    what: "the EKS node group",
    schedule: &[90, 30, 60, 120, 300, 600, 600],
};

/// The ingestion rollout: load balancer ~2.5 min plus targets and nodes, occasionally
/// up to 30 min. Bound 30 minutes.
pub const WORKLOADS: Poll = Poll {
    name: "Workloads",
    function: Function::Workloads,
    ensure: "ensure",
    status: "status",
    what: "the ingestion rollout",
    schedule: &[60, 60, 60, 120, 300, 600, 600],
};

/// Every poll loop of the workflow.
pub const POLLS: [Poll; 9] = [
    NETWORK, IN_VPC, DNS, POSTGRES, DOCUMENTDB, REDIS, CLUSTER, NODEGROUP, WORKLOADS,
];

/// 31 hours. The longest path (every Task using all its retries, each attempt running to
/// its timeout, every loop to its bound) is 97,460 s (27.1 hours); see the budget test.
pub const TIMEOUT_SECONDS: u64 = 31 * 3600;

pub const OUTCOME: Outcome = Outcome {
    state: "MarkReady",
    action: "ready",
    comment: "Mark the deployment READY, or WAITING_FOR_DNS_VALIDATION while the certificate is not issued; returns that status and every layer's output",
    done: "Provisioned",
};

pub fn definition() -> serde_json::Value {
    let body = Flow::new()
        .task(
            Task::step("Keys", Function::Keys, "ensure")
                .comment("One customer-managed KMS key per scope"),
        )
        .poll(NETWORK)
        .parallel(
            "Layers",
            "Everything that needs only keys and network, in parallel. Each step saves its output in the state table, so the results are dropped here",
            vec![
                Flow::branch().poll(DNS),
                Flow::branch().task(
                    Task::step("Storage", Function::Storage, "ensure")
                        .comment("Encrypted, versioned buckets with retention"),
                ),
                Flow::branch().parallel(
                    "Databases",
                    "PostgreSQL, DocumentDB and Redis side by side, each with its own poll loop",
                    vec![
                        Flow::branch().poll(POSTGRES),
                        Flow::branch().poll(DOCUMENTDB),
                        Flow::branch().poll(REDIS),
                    ],
                ).task(
                    Task::step("DatabaseAlarms", Function::Databases, "ensure-alarms")
                        .comment("The stores' alarms (free storage, CPU, connections, Redis memory and evictions), telling the alerts topic; the stack's rule hands their changes to handle-alert"),
                ),
                Flow::branch().poll(CLUSTER).poll(NODEGROUP).task(
                    Task::step("Karpenter", Function::Cluster, "ensure-karpenter")
                        .comment("Karpenter prerequisites: interruption queue and its rules"),
                ),
                Flow::branch().poll(IN_VPC),
            ],
        )
        .parallel(
            "AppUsers",
            "The pods' own database users, made in each store from inside the VPC by the verifier with the password the databases step keeps in their secret: the pods never log in as the master user. Not made locally, where the emulated stores have no server",
            crate::backup::STORES
                .iter()
                .filter(|(store, _)| apiary_core::outputs::app_users::STORES.contains(store))
                .map(|(store, title)| {
                    Flow::branch().task(
                        Task::step(
                            &format!("AppUser{title}"),
                            Function::Verifier,
                            "ensure-app-user",
                        )
                        .comment(format!("The pods' {store} user: created, or its password set to its secret's; then a login as it and a check of its privileges"))
                        .options(json!({"store": store})),
                    )
                })
                .collect(),
        )
        .poll(WORKLOADS)
        .task(
            Task::step("Alias", Function::Dns, "ensure-alias").comment(
                "The domain, in the private zone, points at the load balancer the workloads step found serving",
            ),
        )
        .task(
            Task::step("ServingAlarms", Function::Databases, "ensure-alarms")
                .comment("The stores' alarms again, now with the load balancer's (5xx rate, unhealthy targets per target group) that the workloads step found serving"),
        );
    Locked {
        name: "provision",
        comment: "Apiary provision: builds a complete HoneyHive data plane. keys -> network -> (dns | storage | databases | cluster | in-VPC functions) -> workloads. Generated from shared/workflows/src/provision.rs by `apiary workflows generate`: change the Rust, not this file".into(),
        timeout_seconds: TIMEOUT_SECONDS,
        lock_wait: LOCK_WAIT,
        body,
        input: Input::Spec,
        outcome: OUTCOME,
    }
    .definition()
}
