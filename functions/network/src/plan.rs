//! The subnet plan: fixed, computed from the VPC's /16 so every run agrees.
//!
//! The /16 is cut into four /18s. The first /18 holds the public subnets as /20s (load
//! balancers and NAT gateways need few addresses); the other three are the private
//! subnets, one per availability zone, where pods take one address each.

use apiary_core::{Error, Result};
use ipnet::Ipv4Net;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetPlan {
    pub public: Vec<Ipv4Net>,
    pub private: Vec<Ipv4Net>,
}

pub fn plan(vpc: Ipv4Net, az_count: usize) -> Result<SubnetPlan> {
    if vpc.prefix_len() != 16 {
        return Err(Error::invalid_input(format!(
            "network.vpc_cidr: {vpc} must be a /16"
        )));
    }
    if !(1..=3).contains(&az_count) {
        return Err(Error::invalid_input(format!(
            "network.az_count: {az_count} must be 1-3"
        )));
    }
    let quarters: Vec<Ipv4Net> = vpc
        .subnets(18)
        .map_err(|e| Error::fatal(e.to_string()))?
        .collect();
    let public: Vec<Ipv4Net> = quarters[0]
        .subnets(20)
        .map_err(|e| Error::fatal(e.to_string()))?
        .take(az_count)
        .collect();
    let private = quarters[1..=az_count].to_vec();
    Ok(SubnetPlan { public, private })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_zones_get_disjoint_subnets_inside_the_vpc() {
        let vpc: Ipv4Net = "10.42.0.0/16".parse().unwrap();
        let plan = plan(vpc, 3).unwrap();
        let text = |v: &[Ipv4Net]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            text(&plan.public),
            ["10.42.0.0/20", "10.42.16.0/20", "10.42.32.0/20"]
        );
        assert_eq!(
            text(&plan.private),
            ["10.42.64.0/18", "10.42.128.0/18", "10.42.192.0/18"]
        );
        let all: Vec<Ipv4Net> = plan.public.iter().chain(&plan.private).copied().collect();
        for (i, a) in all.iter().enumerate() {
            assert!(vpc.contains(a));
            for b in &all[i + 1..] {
                assert!(!a.contains(b) && !b.contains(a), "{a} overlaps {b}");
            }
        }
    }

    #[test]
    fn two_zones_and_bad_sizes() {
        let vpc: Ipv4Net = "172.20.0.0/16".parse().unwrap();
        let plan = plan(vpc, 2).unwrap();
        assert_eq!((plan.public.len(), plan.private.len()), (2, 2));
        assert!(super::plan("10.0.0.0/8".parse().unwrap(), 3).is_err());
        assert!(super::plan(vpc, 4).is_err());
    }
}
