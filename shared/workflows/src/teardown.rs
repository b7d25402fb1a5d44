//! The teardown workflow: removes a deployment's data plane and ends with a receipt.
//!
//! ```text
//! validate-input (confirm = the deployment's name) -> lock (TEARING_DOWN)
//!   -> Kubernetes: freeze NodePools, delete Ingresses and LoadBalancer Services (the
//!      ingestion traffic stops), then PVCs, then NodePools and node classes (workloads
//!      function, polled)
//!   -> final snapshots (polled): taken once nothing writes any more, so no write
//!      accepted by the deployment is missing from them
//!   -> node groups, cluster (polled)
//!   -> sweep of what controllers made (polled) -> data stores (polled) -> secrets
//!   -> buckets (polled) -> DNS (polled) -> detach the in-VPC functions (polled)
//!   -> network (polled) -> IAM roles -> keys last -> receipt (polled: the final scan
//!      by tag must find nothing unexplained)
//!   -> finish (TORN_DOWN) -> unlock
//! ```
//!
//! Every step is the teardown function's (the only role with delete rights), idempotent
//! and resumable: a teardown stopped anywhere and started again continues. Poll bounds
//! are a few times the real durations in AWS-TIMINGS.md.

use serde_json::json;

use crate::flow::{Flow, Poll, Task};
use crate::function::Function;
use crate::locked::{Input, Locked, Outcome};

/// A teardown waits for a running workflow (a provision the stack's delete
/// interrupted, a backup) up to an hour when the input asks to queue.
pub const LOCK_WAIT: &[u64] = &[60, 60, 120, 300, 600, 600, 600, 600, 600];

const fn step(
    name: &'static str,
    action: &'static str,
    what: &'static str,
    schedule: &'static [u64],
) -> Poll {
    Poll {
        name,
        function: Function::Teardown,
        ensure: action,
        status: action,
        what,
        schedule,
    }
}

/// RDS snapshot of a small database 3-4 min, more for large ones. Bound 40 minutes.
pub const SNAPSHOTS: Poll = step(
    "Snapshots",
    "snapshots",
    "the final snapshots",
    &[180, 120, 300, 600, 1200],
);
/// The Kubernetes side, by the workloads function (the one that reaches the cluster's
/// API): NodePools frozen, Ingresses and LoadBalancer Services deleted and their load
/// balancers gone (~1-3 min), then the PVCs and their volumes, then the NodePools and
/// their instances (~1-2 min). Bound 33 minutes.
pub const KUBERNETES: Poll = Poll {
    name: "Kubernetes",
    function: Function::Workloads,
    ensure: "teardown-kubernetes",
    status: "teardown-kubernetes",
    what: "the deletion of the Ingresses, LoadBalancer Services, volumes and node pools",
    schedule: &[90, 120, 300, 600, 900],
};

/// Node group 4-8 min, then the cluster ~3 min (8.7 min tails). Bound 42 minutes.
pub const CLUSTER: Poll = step(
    "Cluster",
    "cluster",
    "the deletion of the node groups and the EKS cluster",
    &[300, 120, 300, 600, 1200],
);
/// Instances terminate in 1-2 minutes; load balancers ~1 min, their interfaces and
/// groups a few minutes after. Bound 33 minutes.
pub const SWEEP: Poll = step(
    "Sweep",
    "sweep",
    "the controllers' instances, load balancers, security groups and volumes",
    &[60, 120, 300, 600, 900],
);
/// RDS 4-6 min, DocumentDB instance ~7 then cluster 1-4, ElastiCache 3-6. Bound 47 minutes.
pub const STORES: Poll = step(
    "Stores",
    "stores",
    "the deletion of the data stores",
    &[300, 120, 300, 600, 1500],
);
/// Each call empties up to 20,000 object versions (140,000 over the loop; a larger
/// bucket times the step out, and a re-run continues). Bound 33 minutes.
pub const BUCKETS: Poll = step(
    "Buckets",
    "buckets",
    "the emptying and deletion of the buckets",
    &[5, 30, 120, 300, 600, 900],
);
/// A certificate stays in use for minutes after its load balancer. Bound 30 minutes.
pub const DNS: Poll = step(
    "Dns",
    "dns",
    "the hosted zone and the certificate",
    &[60, 300, 900],
);
/// Lambda releases a detached function's interfaces in minutes, sometimes tens of
/// minutes. Bound 52 minutes.
pub const DETACH: Poll = step(
    "Detach",
    "detach",
    "the release of the in-VPC functions' network interfaces",
    &[120, 300, 600, 900, 1200],
);
/// Interface endpoints and NAT gateways ~1 min, then the rest. Bound 38 minutes.
pub const NETWORK: Poll = step(
    "Network",
    "network",
    "the deletion of the network",
    &[60, 120, 300, 600, 1200],
);
/// The Tagging API catches up within minutes. Bound 15 minutes.
pub const RECEIPT: Poll = step(
    "Receipt",
    "receipt",
    "a final scan by tag with nothing unexplained",
    &[60, 240, 600],
);

pub const POLLS: [Poll; 10] = [
    KUBERNETES, SNAPSHOTS, CLUSTER, SWEEP, STORES, BUCKETS, DNS, DETACH, NETWORK, RECEIPT,
];

/// 36 hours, the lock's lease. A normal teardown takes 20-40 minutes; the longest path
/// (every Task using all its retries, each attempt running to its timeout, every loop to
/// its bound) is checked against it by the budget test.
pub const TIMEOUT_SECONDS: u64 = 36 * 3600;

pub fn definition() -> serde_json::Value {
    let input = || Some(json!({"input.$": "$.input"}));
    let task = |name: &str, action: &str, comment: &str| {
        Task::step(name, Function::Teardown, action)
            .comment(comment)
            .options(json!({"input.$": "$.input"}))
    };
    // Kubernetes first: the snapshots must see the last write the ingress accepted.
    let body = Flow::new()
        .poll_with(KUBERNETES, input())
        .poll_with(SNAPSHOTS, input())
        .poll_with(CLUSTER, input())
        .poll_with(SWEEP, input())
        .poll_with(STORES, input())
        .task(task(
            "Secrets",
            "secrets",
            "Schedule the deployment's secrets for deletion (7-day recovery window)",
        ))
        .poll_with(BUCKETS, input())
        .poll_with(DNS, input())
        .poll_with(DETACH, input())
        .poll_with(NETWORK, input())
        .task(task(
            "Roles",
            "iam",
            "The deployment's IAM roles, their policies and instance profiles",
        ))
        .task(task(
            "Keys",
            "keys",
            "Keys last: scheduled for deletion (30 days), except those protecting what is kept",
        ))
        .poll_with(RECEIPT, input())
        .task(
            task(
                "ReceiptReport",
                "receipt",
                "The receipt for the execution's output: removed, kept and why, the final scan",
            )
            .keep(
                json!({"removed.$": "$.removed", "kept.$": "$.kept", "notes.$": "$.notes", "scan.$": "$.scan"}),
                "$.result.receipt",
            ),
        );
    Locked {
        name: apiary_core::inputs::teardown::WORKFLOW,
        comment: "Remove a deployment's data plane: Kubernetes ingress and node pools -> final snapshots -> cluster -> sweep of what controllers made -> data stores, secrets, buckets, DNS -> in-VPC functions detached -> network -> IAM -> keys last -> receipt. Input {\"confirm\": \"<deployment>\", \"delete_backups\": false}. Generated from shared/workflows/src/teardown.rs by `apiary workflows generate`: change the Rust, not this file".into(),
        timeout_seconds: TIMEOUT_SECONDS,
        lock_wait: LOCK_WAIT,
        body,
        input: Input::Deployment,
        outcome: Outcome::finish(),
    }
    .definition()
}
