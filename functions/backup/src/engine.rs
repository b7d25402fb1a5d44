//! The three stores' snapshots behind one shape: find, list (only what the backup
//! workflow tagged) and delete, in the primary region or the DR region.

use std::collections::BTreeMap;

use apiary_core::inputs::backup::StoreName;
use apiary_core::naming::{MANAGED_BY, Names, TAG_DEPLOYMENT, TAG_MANAGED_BY};
use apiary_core::outputs::Layers;
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::StepContext;
use apiary_core::{Error, Result};
use aws_sdk_s3::error::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::plan::Plan;
use crate::{Action, Deps, Regional};

/// On every snapshot and DR copy the backup workflow makes (value [`BACKUP_VALUE`]): what
/// pruning may delete, in the code and in the IAM conditions of the function's role.
pub const TAG_BACKUP: &str = "apiary:backup";
pub const BACKUP_VALUE: &str = "snapshot";
/// The store a snapshot or scratch copy belongs to.
pub const TAG_STORE: &str = "apiary:store";
/// The sentinel written just before the snapshot (`none` when none was written).
pub const TAG_SENTINEL: &str = "apiary:sentinel";
/// The run (a hash of its execution id) that made it.
pub const TAG_RUN: &str = "apiary:run";
/// On a Redis export's files: how many files (one per shard) the whole export has, so a
/// replica missing some is never taken for a restorable point.
pub const TAG_PARTS: &str = "apiary:parts";
/// On a DR replica file: when S3 wrote it (RFC 3339), kept through its re-encryption,
/// which gives the file a new modification time; the replica's age is counted from it.
pub const TAG_REPLICATED_AT: &str = "apiary:replicated-at";
/// On every scratch resource a restore test makes (value [`SCRATCH_VALUE`]): what its
/// cleanup may delete.
pub const TAG_SCRATCH: &str = "apiary:scratch";
pub const SCRATCH_VALUE: &str = "restore-test";
pub const NO_SENTINEL: &str = "none";

/// A short word for a store in resource names.
pub fn short(store: StoreName) -> &'static str {
    match store {
        StoreName::Postgres => "pg",
        StoreName::Documentdb => "docdb",
        StoreName::Redis => "redis",
    }
}

/// The snapshot a backup run makes of `store`: `apiary-<deployment>-<store>-<date>-<run>`,
/// the same for every attempt of the run (at most 63 characters, DocumentDB's limit).
pub fn snapshot_id(names: &Names, store: StoreName, plan: &Plan) -> String {
    format!(
        "{}-{}-{}",
        names.resource(short(store)),
        plan.started_at.format("%Y%m%d"),
        plan.run
    )
}

/// The tags of a snapshot.
pub fn backup_tags(
    names: &Names,
    store: StoreName,
    plan: &Plan,
    sentinel: &str,
) -> Vec<(String, String)> {
    vec![
        (TAG_DEPLOYMENT.to_owned(), names.deployment().to_owned()),
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (TAG_BACKUP.to_owned(), BACKUP_VALUE.to_owned()),
        (TAG_STORE.to_owned(), store.as_str().to_owned()),
        (TAG_SENTINEL.to_owned(), sentinel.to_owned()),
        (TAG_RUN.to_owned(), plan.run.clone()),
    ]
}

/// What a store's source is for this run: the live identifier, or why it is skipped.
pub fn source(
    step: &StepContext<'_, Action>,
    store: StoreName,
) -> std::result::Result<String, String> {
    source_of(&step.spec, &step.layers, store)
}

/// A store's live identifier as the spec and the recorded databases layer give it, or
/// why it has none (off in the spec, never built, not emulated): what the backup
/// workflow snapshots, and what the teardown lists the backups of.
pub fn source_of(
    spec: &DeploymentSpec,
    layers: &Layers,
    store: StoreName,
) -> std::result::Result<String, String> {
    let enabled = match store {
        StoreName::Postgres => true,
        StoreName::Documentdb => spec.databases.documentdb,
        StoreName::Redis => spec.databases.redis,
    };
    if !enabled {
        return Err(format!("{} is off in the spec", store.as_str()));
    }
    let Some(databases) = layers.databases.as_ref() else {
        return Err("the databases layer has not been built".to_owned());
    };
    let endpoint = match store {
        StoreName::Postgres => &databases.postgres,
        StoreName::Documentdb => &databases.documentdb,
        StoreName::Redis => &databases.redis,
    };
    match endpoint {
        Some(endpoint) => Ok(endpoint.identifier.clone()),
        None => Err(format!(
            "{} was not built here (the databases layer reports it not emulated), so there is nothing to back up",
            store.as_str()
        )),
    }
}

/// A snapshot as the backup workflow reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub id: String,
    pub arn: String,
    pub region: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    pub encrypted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(skip)]
    pub tags: BTreeMap<String, String>,
    /// Redis: the snapshot's node groups (shards), one export file each; a replica: the
    /// files there are. 1 for RDS and DocumentDB.
    #[serde(skip)]
    pub parts: usize,
}

impl Snapshot {
    pub fn available(&self) -> bool {
        self.status == "available"
    }

    pub fn failed(&self) -> bool {
        matches!(
            self.status.as_str(),
            "failed" | "incompatible-restore" | "deleting"
        )
    }

    /// Made by the backup workflow for this deployment.
    pub fn ours(&self, deployment: &str) -> bool {
        self.tags.get(TAG_BACKUP).map(String::as_str) == Some(BACKUP_VALUE)
            && self.tags.get(TAG_DEPLOYMENT).map(String::as_str) == Some(deployment)
    }

    pub fn sentinel(&self) -> Option<&str> {
        self.tags
            .get(TAG_SENTINEL)
            .map(String::as_str)
            .filter(|s| *s != NO_SENTINEL)
    }
}

pub(crate) fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// The clients of one region. ElastiCache snapshots never leave the primary region: in
/// the DR region a Redis backup is its export's replica in the DR export bucket.
pub struct Clients<'a> {
    pub region: String,
    pub rds: &'a aws_sdk_rds::Client,
    pub docdb: &'a aws_sdk_docdb::Client,
    pub elasticache: Option<&'a aws_sdk_elasticache::Client>,
    /// In the DR region, when the storage layer made the export buckets.
    pub replicas: Option<Replicas<'a>>,
}

/// The DR export bucket: each Redis backup's `.rdb` files, `<snapshot id>-NNNN.rdb`,
/// replicated from the primary export bucket with the snapshot's tags.
pub struct Replicas<'a> {
    pub s3: &'a aws_sdk_s3::Client,
    pub bucket: String,
}

impl<'a> Clients<'a> {
    pub fn primary(deps: &'a Deps, region: &str) -> Self {
        Clients {
            region: region.to_owned(),
            rds: &deps.rds,
            docdb: &deps.docdb,
            elasticache: Some(&deps.elasticache),
            replicas: None,
        }
    }

    /// The DR region's clients; its Redis backups are the replicas in the DR export
    /// bucket that `layers` records (made for this region).
    pub fn dr(regional: &'a Regional, layers: &Layers) -> Self {
        let replicas = layers
            .storage
            .as_ref()
            .and_then(|s| s.exports.as_ref())
            .filter(|e| e.dr_region == regional.region)
            .map(|e| Replicas {
                s3: &regional.s3,
                bucket: e.dr.clone(),
            });
        Clients {
            region: regional.region.clone(),
            rds: &regional.rds,
            docdb: &regional.docdb,
            elasticache: None,
            replicas,
        }
    }

    /// Whether this region holds backups of `store` to list, describe or delete.
    pub fn holds(&self, store: StoreName) -> bool {
        store != StoreName::Redis || self.elasticache.is_some() || self.replicas.is_some()
    }

    fn elasticache(&self) -> Result<&'a aws_sdk_elasticache::Client> {
        self.elasticache.ok_or_else(|| {
            Error::fatal("ElastiCache snapshots stay in the primary region (no cross-region copy)")
        })
    }

    /// The snapshot `id` of `store`, if it exists.
    pub async fn describe(&self, store: StoreName, id: &str) -> Result<Option<Snapshot>> {
        match store {
            StoreName::Postgres => Ok(apiary_core::aws::answer_or_none(
                format!("DescribeDBSnapshots {id} ({})", self.region),
                self.rds
                    .describe_db_snapshots()
                    .db_snapshot_identifier(id)
                    .send(),
                |e| e.is_db_snapshot_not_found_fault(),
            )
            .await?
            .and_then(|out| out.db_snapshots().first().map(|s| self.rds_snapshot(s)))),
            StoreName::Documentdb => {
                let found = apiary_core::aws::answer_or_none(
                    format!("DescribeDBClusterSnapshots {id} ({})", self.region),
                    self.docdb
                        .describe_db_cluster_snapshots()
                        .db_cluster_snapshot_identifier(id)
                        .send(),
                    |e| e.is_db_cluster_snapshot_not_found_fault(),
                )
                .await?
                .and_then(|out| out.db_cluster_snapshots().first().cloned());
                match found {
                    Some(s) => Ok(Some(self.docdb_snapshot(&s).await?)),
                    None => Ok(None),
                }
            }
            StoreName::Redis if self.elasticache.is_none() => {
                let Some(replicas) = &self.replicas else {
                    return Ok(None);
                };
                Ok(replicas
                    .listed(&self.region, Some(id))
                    .await?
                    .into_iter()
                    .find(|s| s.id == id))
            }
            StoreName::Redis => {
                let found = apiary_core::aws::answer_or_none(
                    format!("DescribeSnapshots {id}"),
                    self.elasticache()?
                        .describe_snapshots()
                        .snapshot_name(id)
                        .send(),
                    |e| e.is_snapshot_not_found_fault(),
                )
                .await?
                .and_then(|out| out.snapshots().first().cloned());
                match found {
                    Some(s) => Ok(Some(self.redis_snapshot(&s).await?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Every manual snapshot of `source` that the backup workflow made for `deployment`,
    /// newest first.
    pub async fn list(
        &self,
        store: StoreName,
        source: &str,
        deployment: &str,
    ) -> Result<Vec<Snapshot>> {
        let mut found = self.list_manual(store, source).await?;
        found.retain(|s| s.ours(deployment));
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(found)
    }

    /// Every manual snapshot of `source` (also of a source already deleted), with its
    /// tags, whoever made it: the caller decides by the tags what is whose.
    pub async fn list_manual(&self, store: StoreName, source: &str) -> Result<Vec<Snapshot>> {
        let mut found = Vec::new();
        match store {
            StoreName::Postgres => {
                let mut pages = self
                    .rds
                    .describe_db_snapshots()
                    .db_instance_identifier(source)
                    .snapshot_type("manual")
                    .into_paginator()
                    .items()
                    .send();
                while let Some(s) = pages.try_next().await.map_err(|e| {
                    Error::aws(
                        format!("DescribeDBSnapshots of {source} ({})", self.region),
                        e,
                    )
                })? {
                    found.push(self.rds_snapshot(&s));
                }
            }
            StoreName::Documentdb => {
                let mut pages = self
                    .docdb
                    .describe_db_cluster_snapshots()
                    .db_cluster_identifier(source)
                    .snapshot_type("manual")
                    .into_paginator()
                    .items()
                    .send();
                let mut listed = Vec::new();
                while let Some(s) = pages.try_next().await.map_err(|e| {
                    Error::aws(
                        format!("DescribeDBClusterSnapshots of {source} ({})", self.region),
                        e,
                    )
                })? {
                    listed.push(s);
                }
                for s in listed {
                    found.push(self.docdb_snapshot(&s).await?);
                }
            }
            StoreName::Redis if self.elasticache.is_none() => {
                if let Some(replicas) = &self.replicas {
                    found = replicas.listed(&self.region, None).await?;
                }
            }
            StoreName::Redis => {
                let mut pages = self
                    .elasticache()?
                    .describe_snapshots()
                    .replication_group_id(source)
                    .snapshot_source("manual")
                    .into_paginator()
                    .items()
                    .send();
                let mut listed = Vec::new();
                while let Some(s) = pages
                    .try_next()
                    .await
                    .map_err(|e| Error::aws(format!("DescribeSnapshots of {source}"), e))?
                {
                    listed.push(s);
                }
                for s in listed {
                    found.push(self.redis_snapshot(&s).await?);
                }
            }
        }
        Ok(found)
    }

    /// Deletes a snapshot; one already gone is success.
    pub async fn delete(&self, store: StoreName, id: &str) -> Result<()> {
        match store {
            StoreName::Postgres => {
                apiary_core::aws::answer_or_none(
                    format!("DeleteDBSnapshot {id} ({})", self.region),
                    self.rds
                        .delete_db_snapshot()
                        .db_snapshot_identifier(id)
                        .send(),
                    |e| e.is_db_snapshot_not_found_fault(),
                )
                .await?;
            }
            StoreName::Documentdb => {
                apiary_core::aws::answer_or_none(
                    format!("DeleteDBClusterSnapshot {id} ({})", self.region),
                    self.docdb
                        .delete_db_cluster_snapshot()
                        .db_cluster_snapshot_identifier(id)
                        .send(),
                    |e| e.is_db_cluster_snapshot_not_found_fault(),
                )
                .await?;
            }
            StoreName::Redis if self.elasticache.is_none() => {
                if let Some(replicas) = &self.replicas {
                    replicas.delete(id).await?;
                }
            }
            StoreName::Redis => {
                apiary_core::aws::answer_or_none(
                    format!("DeleteSnapshot {id}"),
                    self.elasticache()?
                        .delete_snapshot()
                        .snapshot_name(id)
                        .send(),
                    |e| e.is_snapshot_not_found_fault(),
                )
                .await?;
            }
        }
        Ok(())
    }

    fn rds_snapshot(&self, s: &aws_sdk_rds::types::DbSnapshot) -> Snapshot {
        Snapshot {
            id: s.db_snapshot_identifier().unwrap_or_default().to_owned(),
            arn: s.db_snapshot_arn().unwrap_or_default().to_owned(),
            region: self.region.clone(),
            status: s.status().unwrap_or("unknown").to_owned(),
            created_at: time(s.snapshot_create_time()),
            encrypted: s.encrypted().unwrap_or(false),
            kms_key_id: s.kms_key_id().map(str::to_owned),
            tags: s
                .tag_list()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
            parts: 1,
        }
    }

    async fn docdb_snapshot(
        &self,
        s: &aws_sdk_docdb::types::DbClusterSnapshot,
    ) -> Result<Snapshot> {
        let arn = s.db_cluster_snapshot_arn().unwrap_or_default().to_owned();
        let tags = self
            .docdb
            .list_tags_for_resource()
            .resource_name(&arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListTagsForResource {arn}"), e))?
            .tag_list()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        Ok(Snapshot {
            id: s
                .db_cluster_snapshot_identifier()
                .unwrap_or_default()
                .to_owned(),
            arn,
            region: self.region.clone(),
            status: s.status().unwrap_or("unknown").to_owned(),
            created_at: time(s.snapshot_create_time()),
            encrypted: s.storage_encrypted().unwrap_or(false),
            kms_key_id: s.kms_key_id().map(str::to_owned),
            tags,
            parts: 1,
        })
    }

    async fn redis_snapshot(&self, s: &aws_sdk_elasticache::types::Snapshot) -> Result<Snapshot> {
        let arn = s.arn().unwrap_or_default().to_owned();
        let tags = self
            .elasticache()?
            .list_tags_for_resource()
            .resource_name(&arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListTagsForResource {arn}"), e))?
            .tag_list()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        let created = s
            .node_snapshots()
            .iter()
            .filter_map(|n| time(n.snapshot_create_time()))
            .min();
        Ok(Snapshot {
            id: s.snapshot_name().unwrap_or_default().to_owned(),
            arn,
            region: self.region.clone(),
            status: s.snapshot_status().unwrap_or("unknown").to_owned(),
            created_at: created,
            // A snapshot of a group encrypted at rest is encrypted with the group's key.
            encrypted: s.kms_key_id().is_some(),
            kms_key_id: s.kms_key_id().map(str::to_owned),
            tags,
            parts: s
                .node_snapshots()
                .iter()
                .filter_map(|n| n.node_group_id())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                .max(1),
        })
    }
}

/// The snapshot id an export's file belongs to: `<id>-0001.rdb` -> `<id>` (ElastiCache
/// adds the node group's number and `.rdb` to the name it is given).
pub fn export_snapshot_id(key: &str) -> Option<&str> {
    let stem = key.strip_suffix(".rdb")?;
    let (id, number) = stem.rsplit_once('-')?;
    (!id.is_empty() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then_some(id)
}

/// An object's tags as a map.
pub(crate) async fn object_tags(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<BTreeMap<String, String>> {
    let out = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetObjectTagging s3://{bucket}/{key}"), e))?;
    Ok(out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect())
}

impl Replicas<'_> {
    /// The backups in the bucket (of snapshot `only`, when given), one per snapshot id,
    /// with the tags of its first file and the time of its newest.
    pub async fn listed(&self, region: &str, only: Option<&str>) -> Result<Vec<Snapshot>> {
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(only.map(|id| format!("{id}-")))
            .into_paginator()
            .send();
        // Per snapshot id: its first file, its newest file's time, how many files.
        let mut files: BTreeMap<String, (String, Option<DateTime<Utc>>, usize)> = BTreeMap::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                // The bucket is gone (a teardown with "delete_backups" empties and deletes
                // it before it settles the keys): so are the replicas.
                Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_bucket()) => {
                    return Ok(Vec::new());
                }
                Err(e) => {
                    return Err(Error::aws(
                        format!("ListObjectsV2 s3://{} ({region})", self.bucket),
                        e,
                    ));
                }
            };
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let Some(id) = export_snapshot_id(key) else {
                    continue;
                };
                let at = time(object.last_modified());
                let entry = files
                    .entry(id.to_owned())
                    .or_insert_with(|| (key.to_owned(), at, 0));
                entry.1 = entry.1.max(at);
                entry.2 += 1;
            }
        }
        let mut found = Vec::new();
        for (id, (first, at, count)) in files {
            let tags = object_tags(self.s3, &self.bucket, &first).await?;
            // Re-encrypted files carry the time S3 first wrote them.
            let replicated = tags
                .get(TAG_REPLICATED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            let at = match (at, replicated) {
                (Some(at), Some(r)) => Some(at.min(r)),
                (at, r) => at.or(r),
            };
            let expected = tags
                .get(TAG_PARTS)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(1);
            // A replica missing files is no restorable point: neither the newest good
            // one pruning keeps nor one it deletes.
            let status = if count >= expected {
                "available"
            } else {
                "incomplete"
            };
            found.push(Snapshot {
                arn: format!(
                    "{}/{id}-*",
                    apiary_core::aws::arn(
                        apiary_core::aws::partition(region),
                        "s3",
                        "",
                        "",
                        &self.bucket
                    )
                ),
                id,
                region: region.to_owned(),
                status: status.to_owned(),
                created_at: at,
                // Replicated as SSE-S3, then re-encrypted with the DR key by `copy`
                // (which reports the key once every file is under it).
                encrypted: true,
                kms_key_id: None,
                tags,
                parts: count,
            });
        }
        Ok(found)
    }

    /// Deletes every version (and delete marker) of a backup's files. A delete in the DR
    /// bucket is never replicated back, and nothing replicates deletes into it.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let prefix = format!("{id}-");
        // One page: a backup has a file per shard, a few at most.
        let listed = match self
            .s3
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .send()
            .await
        {
            Ok(listed) => listed,
            Err(e) if e.as_service_error().and_then(|e| e.code()) == Some("NoSuchBucket") => {
                return Ok(());
            }
            Err(e) => {
                return Err(Error::aws(
                    format!("ListObjectVersions s3://{}/{prefix}", self.bucket),
                    e,
                ));
            }
        };
        let versions = listed
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                listed
                    .delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            );
        for (key, version) in versions {
            // A versioned bucket lists every version with an id ("null" for one made
            // before versioning): a delete always names it.
            let (Some(key), Some(version)) = (key, version) else {
                continue;
            };
            self.s3
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .version_id(version)
                .send()
                .await
                .map_err(|e| Error::aws(format!("DeleteObject s3://{}/{key}", self.bucket), e))?;
        }
        Ok(())
    }
}
