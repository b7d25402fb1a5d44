//! Route tables, default routes, subnet associations and VPC endpoints.

use apiary_core::{Error, Result};
use aws_sdk_ec2::types::{ResourceType, VpcEndpointType};

use crate::Run;
use apiary_core::naming::client_token;

use crate::ec2::{filter, is_code, on_known_id, role_filters, tag_spec};

pub struct RouteTable {
    pub id: String,
    /// Gateway or NAT id of the current 0.0.0.0/0 route.
    default_target: Option<String>,
    associated_subnets: Vec<String>,
}

pub enum Target<'a> {
    Internet(&'a str),
    Nat(&'a str),
}

pub async fn ensure_route_table(run: &Run<'_>, vpc_id: &str, role: &str) -> Result<RouteTable> {
    let ec2 = &run.deps.ec2;
    let mut filters = role_filters(run.names, role);
    filters.push(filter("vpc-id", vpc_id));
    let found = ec2
        .describe_route_tables()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeRouteTables {role}"), e))?;
    let table = match found.route_tables().first() {
        Some(table) => RouteTable {
            id: table.route_table_id().unwrap_or_default().to_owned(),
            default_target: table
                .routes()
                .iter()
                .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                .and_then(|r| r.gateway_id().or(r.nat_gateway_id()))
                .map(str::to_owned),
            associated_subnets: table
                .associations()
                .iter()
                .filter_map(|a| a.subnet_id().map(str::to_owned))
                .collect(),
        },
        None => {
            let created = ec2
                .create_route_table()
                .vpc_id(vpc_id)
                .client_token(client_token(&[
                    run.names.deployment(),
                    vpc_id,
                    "route-table",
                    role,
                ]))
                .tag_specifications(tag_spec(ResourceType::RouteTable, run.names, role, &[]))
                .send()
                .await
                .map_err(|e| on_known_id(format!("CreateRouteTable {role}"), e))?;
            let id = created
                .route_table()
                .and_then(|t| t.route_table_id())
                .ok_or_else(|| Error::fatal("CreateRouteTable returned no id"))?
                .to_owned();
            run.log.created(&id);
            RouteTable {
                id,
                default_target: None,
                associated_subnets: Vec::new(),
            }
        }
    };
    run.log.resource("ec2:route-table", &table.id, None).await?;
    Ok(table)
}

pub async fn ensure_default_route(
    run: &Run<'_>,
    table: &RouteTable,
    target: Target<'_>,
) -> Result<()> {
    let target_id = match target {
        Target::Internet(id) | Target::Nat(id) => id,
    };
    if table.default_target.as_deref() == Some(target_id) {
        return Ok(());
    }
    let ec2 = &run.deps.ec2;
    let result = if table.default_target.is_some() {
        // A default route to something else (e.g. a replaced NAT): repoint it.
        let request = ec2
            .replace_route()
            .route_table_id(&table.id)
            .destination_cidr_block("0.0.0.0/0");
        match target {
            Target::Internet(id) => request.gateway_id(id),
            Target::Nat(id) => request.nat_gateway_id(id),
        }
        .send()
        .await
        .map(|_| ())
        .map_err(|e| on_known_id(format!("ReplaceRoute {} -> {target_id}", table.id), e))
    } else {
        let request = ec2
            .create_route()
            .route_table_id(&table.id)
            .destination_cidr_block("0.0.0.0/0");
        match target {
            Target::Internet(id) => request.gateway_id(id),
            Target::Nat(id) => request.nat_gateway_id(id),
        }
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            let operation = format!("CreateRoute {} -> {target_id}", table.id);
            if e.as_service_error()
                .is_some_and(|e| is_code(e, &["RouteAlreadyExists"]))
            {
                // CreateRoute takes no idempotency token: an attempt whose answer was
                // lost (the SDK retried it) or another writer made the route after
                // this step read the table. The step runs again and reads it: ours is
                // kept, another target is replaced.
                Error::Aws {
                    operation,
                    code: Some("RouteAlreadyExists".into()),
                    message: "a default route appeared after this step read the route table; \
                              the step runs again and reads it"
                        .into(),
                    retryable: true,
                }
            } else {
                on_known_id(operation, e)
            }
        })
    };
    result?;
    run.log.created(&format!("{}:0.0.0.0/0", table.id));
    Ok(())
}

pub async fn ensure_association(run: &Run<'_>, table: &RouteTable, subnet_id: &str) -> Result<()> {
    if table.associated_subnets.iter().any(|s| s == subnet_id) {
        return Ok(());
    }
    let result = run
        .deps
        .ec2
        .associate_route_table()
        .route_table_id(&table.id)
        .subnet_id(subnet_id)
        .send()
        .await;
    match result {
        Ok(_) => {
            run.log.created(&format!("{}:{subnet_id}", table.id));
            Ok(())
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| is_code(e, &["Resource.AlreadyAssociated"])) =>
        {
            Ok(())
        }
        Err(err) => Err(on_known_id(
            format!("AssociateRouteTable {} {subnet_id}", table.id),
            err,
        )),
    }
}

fn service_name(run: &Run<'_>, service: &str) -> String {
    format!("com.amazonaws.{}.{service}", run.region)
}

async fn find_endpoint(run: &Run<'_>, vpc_id: &str, service: &str) -> Result<Option<String>> {
    let found = run
        .deps
        .ec2
        .describe_vpc_endpoints()
        .filters(filter("vpc-id", vpc_id))
        .filters(filter("service-name", service_name(run, service)))
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeVpcEndpoints {service}"), e))?;
    Ok(found
        .vpc_endpoints()
        .iter()
        .filter(|e| {
            !matches!(
                e.state().map(|s| s.as_str()),
                Some("deleted" | "deleting" | "failed" | "Deleted" | "Deleting" | "Failed")
            )
        })
        .find_map(|e| e.vpc_endpoint_id().map(str::to_owned)))
}

/// How an endpoint attaches to the VPC.
pub enum EndpointKind<'a> {
    /// S3 and DynamoDB through the private route tables, free of NAT charges.
    Gateway { route_tables: &'a [String] },
    /// ECR, KMS, Secrets Manager, STS and CloudWatch Logs inside the VPC, with private
    /// DNS so the SDKs' default endpoints resolve to them.
    Interface {
        subnets: &'a [String],
        security_group: &'a str,
    },
}

pub async fn ensure_endpoint(
    run: &Run<'_>,
    vpc_id: &str,
    service: &str,
    kind: EndpointKind<'_>,
) -> Result<String> {
    let id = match find_endpoint(run, vpc_id, service).await? {
        Some(id) => id,
        None => {
            let request = run
                .deps
                .ec2
                .create_vpc_endpoint()
                .vpc_id(vpc_id)
                .service_name(service_name(run, service))
                .tag_specifications(tag_spec(
                    ResourceType::VpcEndpoint,
                    run.names,
                    &format!("endpoint-{service}"),
                    &[],
                ));
            // The token covers what the endpoint is made with: a changed set of route
            // tables or subnets is a new request, not a replay of the old one.
            let mut token = vec![run.names.deployment(), vpc_id, "endpoint", service];
            let request = match kind {
                EndpointKind::Gateway { route_tables } => {
                    token.push("gateway");
                    token.extend(route_tables.iter().map(String::as_str));
                    request
                        .vpc_endpoint_type(VpcEndpointType::Gateway)
                        .set_route_table_ids(Some(route_tables.to_vec()))
                }
                EndpointKind::Interface {
                    subnets,
                    security_group,
                } => {
                    token.push("interface");
                    token.extend(subnets.iter().map(String::as_str));
                    token.push(security_group);
                    request
                        .vpc_endpoint_type(VpcEndpointType::Interface)
                        .set_subnet_ids(Some(subnets.to_vec()))
                        .security_group_ids(security_group)
                        .private_dns_enabled(true)
                }
            };
            let created = request
                .client_token(client_token(&token))
                .send()
                .await
                .map_err(|e| on_known_id(format!("CreateVpcEndpoint {service}"), e))?;
            let id = created
                .vpc_endpoint()
                .and_then(|e| e.vpc_endpoint_id())
                .ok_or_else(|| Error::fatal("CreateVpcEndpoint returned no id"))?
                .to_owned();
            run.log.created(&id);
            id
        }
    };
    run.log.resource("ec2:vpc-endpoint", &id, None).await?;
    Ok(id)
}
