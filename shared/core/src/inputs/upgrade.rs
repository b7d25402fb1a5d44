//! The upgrade input: one thing to move forward.
//!
//! - `{"image": "<registry>/<repository>:<tag>"}` (or `@sha256:<digest>`): roll the
//!   ingestion pods to a new pinned image; on a failed rollout the workflow puts the
//!   previous image back and fails with the cause;
//! - `{"kubernetes_version": "1.34"}`: the cluster one minor version up: control plane,
//!   then the system node group and the add-ons (EKS Auto Mode rolls its own nodes).
//!
//! What needs no record is checked here, before the lock (exactly one of the two, the
//! image pinned, the version well formed). What needs the record is checked by
//! [`UpgradeInput::plan`] in the workflow's first step, before anything is changed: one
//! minor version at a time, never down, and a backup newer than [`MAX_BACKUP_AGE_HOURS`]
//! of every data store before the Kubernetes version moves.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::spec::{DeploymentSpec, image_problem, is_kubernetes_version};
use crate::{Error, Result};

pub const WORKFLOW: &str = "upgrade";

/// How old the newest restorable backup of each data store may be when the Kubernetes
/// version moves: a control-plane upgrade cannot be undone, so the data must be
/// restorable from just before it.
pub const MAX_BACKUP_AGE_HOURS: i64 = 24;

/// The state-table slot where the image step keeps what it changed (`{"from", "to",
/// "execution_id"}`): the rollback reads the previous image from here, never from its
/// event.
pub const IMAGE_SLOT: &str = "upgrade.image";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
}

/// What the run moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Image,
    KubernetesVersion,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::KubernetesVersion => "kubernetes_version",
        }
    }
}

/// The record before and after the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub kind: Kind,
    /// The recorded image or Kubernetes version.
    pub before: String,
    /// What the run moves it to.
    pub after: String,
    /// Whether the record changes (false: a rerun after the record was written, or the
    /// same value again; the run still converges the cluster to it).
    pub changes: bool,
    /// The newest restorable backup of each data store, as the gate found it (version
    /// upgrades that change the record only).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub backups: Value,
}

fn field_error(field: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("{WORKFLOW} input field `{field}`: {message}"))
}

/// `1.33` -> 33.
fn minor(version: &str) -> Option<u32> {
    version
        .split_once('.')
        .filter(|(major, _)| *major == "1")
        .and_then(|(_, minor)| minor.parse().ok())
}

impl UpgradeInput {
    /// Checks what needs no record.
    pub fn check(self) -> Result<Self> {
        match (&self.image, &self.kubernetes_version) {
            (Some(_), Some(_)) => Err(Error::invalid_input(format!(
                "{WORKFLOW} input: give `image` or `kubernetes_version`, not both: each is \
                 its own run, so a failure names one cause and rolls back one change"
            ))),
            (None, None) => Err(Error::invalid_input(format!(
                "{WORKFLOW} input: nothing to upgrade; give `image` (a pinned image for the \
                 ingestion pods) or `kubernetes_version` (the next minor version, e.g. \"1.34\")"
            ))),
            (Some(image), None) => match image_problem(image) {
                Some(problem) => Err(field_error("image", problem)),
                None => Ok(self),
            },
            (None, Some(version)) => {
                if is_kubernetes_version(version) && minor(version).is_some() {
                    Ok(self)
                } else {
                    Err(field_error(
                        "kubernetes_version",
                        format!("{version:?} is not a Kubernetes minor version like \"1.34\""),
                    ))
                }
            }
        }
    }

    pub fn kind(&self) -> Kind {
        if self.image.is_some() {
            Kind::Image
        } else {
            Kind::KubernetesVersion
        }
    }

    /// The Kubernetes version the input asks for, when it asks for one.
    pub fn version(&self) -> Option<&str> {
        self.kubernetes_version.as_deref()
    }

    /// The plan over the recorded spec. `ledger` is the backup workflow's RPO ledger
    /// (the state table's `backup.ledger` slot), read only for a version that moves.
    pub fn plan(
        &self,
        spec: &DeploymentSpec,
        ledger: Option<&Value>,
        now: DateTime<Utc>,
    ) -> Result<Plan> {
        self.planned(spec, Some((ledger, now)))
    }

    /// The plan without the backup gate: for the steps after the plan, which must not
    /// stop halfway because a backup aged while the control plane was upgrading.
    pub fn plan_ungated(&self, spec: &DeploymentSpec) -> Result<Plan> {
        self.planned(spec, None)
    }

    fn planned(
        &self,
        spec: &DeploymentSpec,
        gate: Option<(Option<&Value>, DateTime<Utc>)>,
    ) -> Result<Plan> {
        let input = self.clone().check()?;
        if let Some(image) = &input.image {
            let before = spec.workloads.ingestion_image.clone();
            return Ok(Plan {
                kind: Kind::Image,
                changes: &before != image,
                before,
                after: image.clone(),
                backups: Value::Null,
            });
        }
        let after = input.kubernetes_version.clone().unwrap_or_default();
        let before = spec.cluster.version.clone();
        let (Some(from), Some(to)) = (minor(&before), minor(&after)) else {
            return Err(Error::fatal(format!(
                "the recorded cluster.version {before:?} is not a Kubernetes minor version"
            )));
        };
        if to < from {
            return Err(field_error(
                "kubernetes_version",
                format!(
                    "{after} is older than the cluster's {before}: EKS cannot downgrade a \
                     cluster; restore from a backup into a new deployment instead"
                ),
            ));
        }
        if to > from + 1 {
            return Err(field_error(
                "kubernetes_version",
                format!(
                    "{after} skips versions: the cluster runs {before}, and EKS upgrades one \
                     minor version at a time; run upgrade with \"1.{}\" first",
                    from + 1
                ),
            ));
        }
        let changes = to == from + 1;
        let backups = match gate {
            Some((ledger, now)) if changes => backup_gate(spec, ledger, now)?,
            _ => Value::Null,
        };
        Ok(Plan {
            kind: Kind::KubernetesVersion,
            before,
            after,
            changes,
            backups,
        })
    }
}

/// Every data store the ledger lists (a store it skipped, being off, excepted) has a
/// restorable point in the deployment's own region at most [`MAX_BACKUP_AGE_HOURS`] old;
/// otherwise `Apiary.Conflict`, naming each store and what the ledger says of it.
pub fn backup_gate(
    spec: &DeploymentSpec,
    ledger: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<Value> {
    const RUN_BACKUP: &str =
        "run the backup workflow (its console input is {}), then run upgrade again";
    let Some(stores) = ledger
        .and_then(|l| l.get("stores"))
        .and_then(Value::as_object)
    else {
        return Err(Error::Conflict(format!(
            "no backup is recorded for deployment {}, and a Kubernetes upgrade cannot be \
             undone: {RUN_BACKUP}",
            spec.name
        )));
    };
    let limit = Duration::hours(MAX_BACKUP_AGE_HOURS);
    let mut checked = Map::new();
    let mut problems = Vec::new();
    // Every store the spec turns on must have a point; the ledger also skips a store
    // that is on but was not built yet, which proves nothing.
    let enabled = [
        ("postgres", true),
        ("documentdb", spec.databases.documentdb),
        ("redis", spec.databases.redis),
    ];
    for (store, on) in enabled {
        let points = stores.get(store);
        match points.and_then(|p| p.get("skipped")) {
            Some(reason) if !on => {
                checked.insert(store.to_owned(), json!({"skipped": reason}));
            }
            Some(reason) => problems.push(format!(
                "{store}: the last backup skipped it ({}), and the spec turns it on",
                reason.as_str().unwrap_or("no reason given")
            )),
            None if points.is_none() && !on => {}
            None if points.is_none() => {
                problems.push(format!("{store}: the ledger has no entry for it"))
            }
            None => {}
        }
    }
    for (store, points) in stores {
        if points.get("skipped").is_some() {
            continue;
        }
        let point = points.get(&spec.region).cloned().unwrap_or(Value::Null);
        let at = point
            .get("restorable_at")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        match at {
            Some(at) if now - at <= limit => {
                checked.insert(
                    store.clone(),
                    json!({"snapshot_id": point["snapshot_id"], "restorable_at": at}),
                );
            }
            Some(at) => problems.push(format!(
                "{store}: the newest restorable backup ({}) was taken at {}, {} hours ago",
                point["snapshot_id"].as_str().unwrap_or("unnamed"),
                at.to_rfc3339(),
                (now - at).num_hours()
            )),
            None if point["snapshot_id"].is_string() => problems.push(format!(
                "{store}: the newest restorable backup ({}) reports no creation time, so its \
                 age is unknown (the local emulator's ElastiCache snapshots carry none)",
                point["snapshot_id"].as_str().unwrap_or_default()
            )),
            None => problems.push(format!(
                "{store}: no restorable backup in {} ({})",
                spec.region,
                point
                    .get("note")
                    .and_then(Value::as_str)
                    .unwrap_or("the ledger lists none")
            )),
        }
    }
    if problems.is_empty() {
        Ok(Value::Object(checked))
    } else {
        Err(Error::Conflict(format!(
            "a Kubernetes upgrade needs a backup of every data store newer than \
             {MAX_BACKUP_AGE_HOURS} hours, and it cannot be undone: {}; {RUN_BACKUP}",
            problems.join("; ")
        )))
    }
}

pub(crate) fn parse(input: Value) -> Result<Value> {
    let parsed: UpgradeInput = super::read(WORKFLOW, input)?;
    super::normalized(WORKFLOW, parsed.check()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Fixture;

    /// The test deployment with DocumentDB off (the ledger below skips it).
    fn spec() -> DeploymentSpec {
        Fixture::test()
            .with_spec(|spec| spec["databases"]["documentdb"] = json!(false))
            .spec()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn input(value: Value) -> Result<UpgradeInput> {
        serde_json::from_value::<UpgradeInput>(value)
            .map_err(|e| Error::invalid_input(e.to_string()))?
            .check()
    }

    fn ledger(region: &str, postgres_at: &str) -> Value {
        json!({"stores": {
            "postgres": {region: {"snapshot_id": "pg-1", "restorable_at": postgres_at}},
            "documentdb": {"skipped": "databases.documentdb is off"},
            "redis": {region: {"snapshot_id": "redis-1", "restorable_at": "2026-12-06T03:00:00Z"}}
        }})
    }

    #[test]
    fn the_input_is_one_pinned_change() {
        for (value, field) in [
            (json!({}), "nothing to upgrade"),
            (
                json!({"image": "x:1", "kubernetes_version": "1.34"}),
                "not both",
            ),
            (
                json!({"image": "public.ecr.aws/honeyhive/ingestion"}),
                "`image`",
            ),
            (
                json!({"image": "public.ecr.aws/honeyhive/ingestion:latest"}),
                "`image`",
            ),
            (json!({"kubernetes_version": "1.x"}), "`kubernetes_version`"),
            (json!({"kubernetes_version": "2.0"}), "`kubernetes_version`"),
            (json!({"version": "1.34"}), "unknown field `version`"),
        ] {
            let err = match input(value.clone()) {
                Ok(ok) => panic!("{value} accepted as {ok:?}"),
                Err(err) => err.to_string(),
            };
            assert!(err.contains(field), "{value}: {err}");
        }
        assert_eq!(
            input(json!({"image": "public.ecr.aws/honeyhive/ingestion@sha256:abc"}))
                .unwrap()
                .kind(),
            Kind::Image
        );
        assert_eq!(
            parse(json!({"kubernetes_version": "1.34"})).unwrap(),
            json!({"kubernetes_version": "1.34"})
        );
    }

    #[test]
    fn an_image_plan_needs_no_backup() {
        let spec = spec();
        let plan = input(json!({"image": "public.ecr.aws/honeyhive/ingestion:1.0.1"}))
            .unwrap()
            .plan(&spec, None, now())
            .unwrap();
        assert_eq!(plan.kind, Kind::Image);
        assert_eq!(plan.before, spec.workloads.ingestion_image);
        assert!(plan.changes);
        let same = input(json!({"image": spec.workloads.ingestion_image.clone()}))
            .unwrap()
            .plan(&spec, None, now())
            .unwrap();
        assert!(!same.changes, "the recorded image again changes nothing");
    }

    #[test]
    fn kubernetes_moves_one_minor_version_up_at_a_time() {
        let spec = spec();
        let from = minor(&spec.cluster.version).unwrap();
        let next = format!("1.{}", from + 1);
        let ledger = ledger(&spec.region, "2026-12-06T02:00:00Z");
        let plan = input(json!({"kubernetes_version": next}))
            .unwrap()
            .plan(&spec, Some(&ledger), now())
            .unwrap();
        assert!(plan.changes);
        assert_eq!(plan.after, next);
        assert_eq!(plan.backups["postgres"]["snapshot_id"], "pg-1");
        assert!(plan.backups["documentdb"]["skipped"].is_string());

        let skip = format!("1.{}", from + 2);
        let err = input(json!({"kubernetes_version": skip}))
            .unwrap()
            .plan(&spec, Some(&ledger), now())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("skips versions") && err.contains(&next),
            "{err}"
        );

        let down = format!("1.{}", from - 1);
        let err = input(json!({"kubernetes_version": down}))
            .unwrap()
            .plan(&spec, Some(&ledger), now())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot downgrade"), "{err}");

        // The recorded version again: a rerun that finishes the node group and add-ons,
        // with no gate (the control plane already moved).
        let again = input(json!({"kubernetes_version": spec.cluster.version.clone()}))
            .unwrap()
            .plan(&spec, None, now())
            .unwrap();
        assert!(!again.changes);
        assert!(again.backups.is_null());
    }

    #[test]
    fn the_gate_names_each_store_without_a_fresh_backup() {
        let spec = spec();
        let next = format!("1.{}", minor(&spec.cluster.version).unwrap() + 1);
        let plan = |ledger: Option<&Value>| {
            input(json!({"kubernetes_version": next.clone()}))
                .unwrap()
                .plan(&spec, ledger, now())
        };
        let err = plan(None).unwrap_err();
        assert_eq!(err.name(), crate::ErrorName::Conflict);
        let ungated = input(json!({"kubernetes_version": next.clone()}))
            .unwrap()
            .plan_ungated(&spec)
            .unwrap();
        assert!(ungated.changes && ungated.backups.is_null());
        assert!(err.to_string().contains("no backup is recorded"), "{err}");

        let stale = ledger(&spec.region, "2026-12-05T11:00:00Z");
        let err = plan(Some(&stale)).unwrap_err().to_string();
        assert!(
            err.contains("postgres") && err.contains("25 hours ago"),
            "{err}"
        );
        assert!(!err.contains("redis"), "redis is fresh: {err}");

        // A store the spec turns on that the ledger skipped (not built when the backup
        // ran) proves nothing.
        let mut skipped = ledger(&spec.region, "2026-12-06T11:00:00Z");
        skipped["stores"]["redis"] = json!({"skipped": "the databases layer has not been built"});
        let err = plan(Some(&skipped)).unwrap_err().to_string();
        assert!(err.contains("redis: the last backup skipped it"), "{err}");

        // A point whose time is unknown proves nothing about its age.
        let mut timeless = ledger(&spec.region, "2026-12-06T11:00:00Z");
        timeless["stores"]["redis"][&spec.region]["restorable_at"] = Value::Null;
        let err = plan(Some(&timeless)).unwrap_err().to_string();
        assert!(
            err.contains("redis") && err.contains("age is unknown"),
            "{err}"
        );

        // A point in another region (a DR copy) does not count for the cluster's region.
        let elsewhere = ledger("eu-central-1", "2026-12-06T11:00:00Z");
        let err = plan(Some(&elsewhere)).unwrap_err().to_string();
        assert!(err.contains("postgres: no restorable backup"), "{err}");
    }
}
