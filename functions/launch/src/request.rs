//! The CloudFormation custom resource request, and what the `Launch` resource's
//! properties say: which state machine to start, and with what input.

use std::fmt;

use apiary_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What CloudFormation asks of the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Create => "Create",
            RequestType::Update => "Update",
            RequestType::Delete => "Delete",
        }
    }
}

/// A custom resource request, as CloudFormation sends it to the function. Only the fields
/// needed to answer are required, so that even a request with bad properties or an
/// unknown type still gets a FAILED response rather than none.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub request_type: String,
    /// A presigned S3 URL: a credential. Never logged; see [`Request::response_host`].
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// `Custom::ApiaryLaunch` or `Custom::ApiarySigningKey`.
    #[serde(default)]
    pub resource_type: String,
    /// Absent on Create.
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    #[serde(default)]
    pub resource_properties: Value,
}

// By hand, so that the response URL never reaches a log through `{:?}`.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("request_type", &self.request_type)
            .field("response_host", &self.response_host())
            .field("stack_id", &self.stack_id)
            .field("request_id", &self.request_id)
            .field("logical_resource_id", &self.logical_resource_id)
            .field("resource_type", &self.resource_type)
            .field("physical_resource_id", &self.physical_resource_id)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Reads the request. Fails only when the event cannot be answered at all (it names
    /// no response URL, stack or request): then nothing can be reported to CloudFormation.
    pub fn from_event(event: Value) -> Result<Request> {
        serde_path_to_error::deserialize(event).map_err(|e| {
            Error::invalid_input(format!(
                "not a CloudFormation custom resource request, so no response can be sent: \
                 {}{}",
                field_of(&e),
                e.inner()
            ))
        })
    }

    pub fn kind(&self) -> Result<RequestType> {
        match self.request_type.as_str() {
            "Create" => Ok(RequestType::Create),
            "Update" => Ok(RequestType::Update),
            "Delete" => Ok(RequestType::Delete),
            other => Err(Error::invalid_input(format!(
                "unknown RequestType {other:?}; expected Create, Update or Delete"
            ))),
        }
    }

    /// The host of the response URL: what may be logged of it.
    pub fn response_host(&self) -> &str {
        let rest = self
            .response_url
            .split_once("://")
            .map_or(self.response_url.as_str(), |(_, rest)| rest);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // Never the userinfo part, should a URL carry one.
        authority.rsplit('@').next().unwrap_or_default()
    }

    /// The name of the execution this request starts: the same for a redelivered request
    /// (same stack and request id), so that Step Functions' idempotent StartExecution
    /// returns the first execution instead of starting a second one.
    pub fn execution_name(&self, kind: RequestType) -> String {
        let mut hash = Sha256::new();
        hash.update(self.stack_id.as_bytes());
        hash.update(b"\n");
        hash.update(self.request_id.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("cfn-{}-{hex}", kind.as_str().to_ascii_lowercase())
    }

    /// The stack's name, from its id (`arn:...:stack/<name>/<uuid>`).
    pub fn stack_name(&self) -> &str {
        stack_name_of(&self.stack_id)
    }
}

/// The stack's name in a stack id (`arn:...:stack/<name>/<uuid>`); the id itself when it
/// is not one.
pub fn stack_name_of(stack_id: &str) -> &str {
    stack_id
        .split('/')
        .nth(1)
        .filter(|name| !name.is_empty())
        .unwrap_or(stack_id)
}

/// The `Launch` resource's properties.
#[derive(Debug)]
pub struct Properties {
    pub state_machine: StateMachineArn,
    /// The execution input: an object with the stack's parameters map under `spec`.
    pub input: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawProperties {
    /// Where CloudFormation sent the request (this function); not used.
    #[serde(default)]
    #[allow(dead_code)]
    service_token: Option<Value>,
    /// CloudFormation's own timeout for this resource; not used.
    #[serde(default)]
    #[allow(dead_code)]
    service_timeout: Option<Value>,
    state_machine_arn: String,
    input: Value,
}

impl Properties {
    pub fn parse(properties: &Value) -> Result<Properties> {
        let raw: RawProperties = read_properties(properties)?;
        let state_machine = StateMachineArn::parse(&raw.state_machine_arn)?;
        // Written as a mapping in the template; a JSON string is accepted as well.
        let input = match raw.input {
            Value::String(text) => serde_json::from_str(&text).map_err(|e| {
                Error::invalid_input(format!("ResourceProperties.Input is not JSON: {e}"))
            })?,
            other => other,
        };
        if !input.get("spec").is_some_and(Value::is_object) {
            return Err(Error::invalid_input(
                "ResourceProperties.Input must be an object with the stack's parameters map \
                 under \"spec\"",
            ));
        }
        Ok(Properties {
            state_machine,
            input,
        })
    }
}

/// `arn:<partition>:states:<region>:<account>:stateMachine:<name>`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachineArn {
    pub arn: String,
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
}

impl StateMachineArn {
    pub fn parse(arn: &str) -> Result<StateMachineArn> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            [
                "arn",
                partition,
                "states",
                region,
                account,
                "stateMachine",
                name,
            ] if [partition, region, account, name]
                .iter()
                .all(|p| !p.is_empty()) =>
            {
                Ok(StateMachineArn {
                    arn: arn.to_owned(),
                    partition: (*partition).to_owned(),
                    region: (*region).to_owned(),
                    account: (*account).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            _ => Err(Error::invalid_input(format!(
                "ResourceProperties.StateMachineArn {arn:?} is not a state machine ARN \
                 (arn:<partition>:states:<region>:<account>:stateMachine:<name>)"
            ))),
        }
    }

    /// The state machine of `deployment`'s `workflow` in the same account and region, as
    /// the template names it: `apiary-<deployment>-<workflow>`.
    pub fn workflow(&self, deployment: &str, workflow: &str) -> StateMachineArn {
        self.sibling(&format!("apiary-{deployment}-{workflow}"))
    }

    /// Another state machine of the same account and region, named `name`.
    fn sibling(&self, name: &str) -> StateMachineArn {
        StateMachineArn {
            arn: format!(
                "arn:{}:states:{}:{}:stateMachine:{name}",
                self.partition, self.region, self.account
            ),
            partition: self.partition.clone(),
            region: self.region.clone(),
            account: self.account.clone(),
            name: name.to_owned(),
        }
    }

    /// The ARN Step Functions gives an execution of this state machine named `name`.
    pub fn execution_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:states:{}:{}:execution:{}:{name}",
            self.partition, self.region, self.account, self.name
        )
    }
}

/// The Step Functions console page of an execution, in the region's partition.
pub fn execution_console_url(region: &str, execution_arn: &str) -> String {
    format!(
        "{}/states/home?region={region}#/v2/executions/details/{execution_arn}",
        apiary_core::aws::console_origin(region)
    )
}

/// The `SigningKey` resource's properties: the secret that keeps the report signing key.
#[derive(Debug)]
pub struct SigningKeyProperties {
    pub secret_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawSigningKeyProperties {
    #[serde(default)]
    #[allow(dead_code)]
    service_token: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    service_timeout: Option<Value>,
    secret_arn: String,
}

impl SigningKeyProperties {
    pub fn parse(properties: &Value) -> Result<SigningKeyProperties> {
        let raw: RawSigningKeyProperties = read_properties(properties)?;
        if !raw.secret_arn.starts_with("arn:") || !raw.secret_arn.contains(":secretsmanager:") {
            return Err(Error::invalid_input(format!(
                "ResourceProperties.SecretArn {:?} is not a Secrets Manager secret ARN",
                raw.secret_arn
            )));
        }
        Ok(SigningKeyProperties {
            secret_arn: raw.secret_arn,
        })
    }
}

/// `field `X`: ` for an error inside a field, nothing for one about the whole document.
fn field_of<E>(error: &serde_path_to_error::Error<E>) -> String {
    let path = error.path().to_string();
    if path == "." {
        String::new()
    } else {
        format!("field `{path}`: ")
    }
}

/// Reads a resource's properties, naming the property a problem is in.
fn read_properties<T: serde::de::DeserializeOwned>(properties: &Value) -> Result<T> {
    serde_path_to_error::deserialize(properties.clone()).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Error::invalid_input(format!("ResourceProperties: {}", e.inner()))
        } else {
            Error::invalid_input(format!("ResourceProperties.{path}: {}", e.inner()))
        }
    })
}
