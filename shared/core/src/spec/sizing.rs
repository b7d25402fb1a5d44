//! Size presets: what `small`, `medium` and `large` mean in nodes, databases and limits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SizePreset {
    #[default]
    Small,
    Medium,
    Large,
}

impl SizePreset {
    pub const ALL: [SizePreset; 3] = [SizePreset::Small, SizePreset::Medium, SizePreset::Large];

    pub fn as_str(self) -> &'static str {
        match self {
            SizePreset::Small => "small",
            SizePreset::Medium => "medium",
            SizePreset::Large => "large",
        }
    }

    pub fn sizing(self) -> Sizing {
        let common = Sizing {
            node_instance_type: "t3.large",
            nodes_min: 3,
            nodes_desired: 3,
            nodes_max: 10,
            db_instance_class: "db.t3.medium",
            db_allocated_storage_gb: 100,
            db_max_allocated_storage_gb: 1000,
            multi_az: false,
            docdb_instance_class: "db.t3.medium",
            redis_node_type: "cache.t3.medium",
            karpenter_cpu_limit: 64,
            karpenter_memory_limit_gib: 256,
            ingestion_replicas_min: 2,
            ingestion_replicas_max: 10,
        };
        match self {
            SizePreset::Small => common,
            SizePreset::Medium => Sizing {
                nodes_min: 10,
                nodes_desired: 10,
                nodes_max: 50,
                multi_az: true,
                karpenter_cpu_limit: 320,
                karpenter_memory_limit_gib: 1280,
                ingestion_replicas_min: 3,
                ingestion_replicas_max: 50,
                ..common
            },
            SizePreset::Large => Sizing {
                nodes_min: 50,
                nodes_desired: 50,
                nodes_max: 200,
                multi_az: true,
                karpenter_cpu_limit: 1600,
                karpenter_memory_limit_gib: 6400,
                ingestion_replicas_min: 6,
                ingestion_replicas_max: 200,
                ..common
            },
        }
    }
}

impl std::fmt::Display for SizePreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SizePreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SizePreset::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not one of small, medium, large"))
    }
}

/// The concrete sizes a preset stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sizing {
    pub node_instance_type: &'static str,
    pub nodes_min: i32,
    pub nodes_desired: i32,
    pub nodes_max: i32,
    pub db_instance_class: &'static str,
    pub db_allocated_storage_gb: i32,
    pub db_max_allocated_storage_gb: i32,
    pub multi_az: bool,
    pub docdb_instance_class: &'static str,
    pub redis_node_type: &'static str,
    /// Upper bound of vCPUs Karpenter may provision for the ingestion node pool.
    pub karpenter_cpu_limit: u32,
    pub karpenter_memory_limit_gib: u32,
    pub ingestion_replicas_min: i32,
    pub ingestion_replicas_max: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_sizing_table() {
        let small = SizePreset::Small.sizing();
        assert_eq!((small.nodes_min, small.nodes_max), (3, 10));
        let medium = SizePreset::Medium.sizing();
        assert_eq!((medium.nodes_min, medium.nodes_max), (10, 50));
        let large = SizePreset::Large.sizing();
        assert!(large.nodes_min >= 50 && large.nodes_max > large.nodes_min);
        for preset in SizePreset::ALL {
            let s = preset.sizing();
            assert_eq!(s.node_instance_type, "t3.large");
            assert_eq!(s.db_instance_class, "db.t3.medium");
            assert_eq!(
                (s.db_allocated_storage_gb, s.db_max_allocated_storage_gb),
                (100, 1000)
            );
            assert!(s.nodes_min <= s.nodes_desired && s.nodes_desired <= s.nodes_max);
            assert_eq!(preset.as_str().parse::<SizePreset>(), Ok(preset));
        }
        assert!("huge".parse::<SizePreset>().is_err());
    }
}
