//! The one place that builds AWS SDK configuration.
//!
//! The same code runs against AWS and against the local emulator: the standard
//! `AWS_ENDPOINT_URL` switches every client to the emulator, S3 then uses path-style
//! addressing, and (only for a loopback endpoint) dummy credentials are supplied when
//! none are set. Settings are read through [`Env`] so tests pass a map instead of
//! mutating the process environment.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Where configuration comes from.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<&str, &str> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|v| (*v).to_owned())
            .filter(|v| !v.is_empty())
    }
}

/// Settings that decide how clients are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Total attempts per call, including the first (SDK standard retry mode).
    pub max_attempts: u32,
    /// Use fixed dummy credentials: only ever true for a loopback endpoint.
    pub local_credentials: bool,
    /// How long one attempt may take before the SDK gives up on it and retries. Chaos
    /// runs lower it, so that an answer held past it costs seconds, not half a minute.
    pub attempt_timeout: Duration,
}

pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;

impl AwsSettings {
    pub fn from_env(env: &dyn Env) -> Self {
        let endpoint_url = env.var("AWS_ENDPOINT_URL");
        let is_loopback = endpoint_url.as_deref().is_some_and(is_loopback_url);
        let has_credentials =
            env.var("AWS_ACCESS_KEY_ID").is_some() || env.var("AWS_PROFILE").is_some();
        AwsSettings {
            region: env
                .var("AWS_REGION")
                .or_else(|| env.var("AWS_DEFAULT_REGION")),
            endpoint_url,
            max_attempts: env
                .var("APIARY_AWS_MAX_ATTEMPTS")
                .and_then(|v| v.parse().ok())
                .filter(|n| *n >= 1)
                .unwrap_or(DEFAULT_MAX_ATTEMPTS),
            local_credentials: is_loopback && !has_credentials,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }

    /// Settings for the local emulator at `endpoint`.
    pub fn local(endpoint: &str, region: &str) -> Self {
        AwsSettings {
            region: Some(region.to_owned()),
            endpoint_url: Some(endpoint.to_owned()),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            local_credentials: is_loopback_url(endpoint),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }

    pub fn is_local(&self) -> bool {
        self.endpoint_url.is_some()
    }
}

/// Whether `url` names this machine (`localhost`, `127.*`, `[::1]`).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "localhost" || host.starts_with("127.") || rest.starts_with("[::1]")
}

/// Builds the shared SDK configuration.
pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if settings.local_credentials {
        loader = loader.credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "apiary-local",
        ));
    }
    loader.load().await
}

/// Loads configuration from the process environment: what a Lambda's `main` calls.
pub async fn load_from_env() -> SdkConfig {
    load(&AwsSettings::from_env(&ProcessEnv)).await
}

/// A call's answer, or `None` when it fails with the one service error `expected`
/// recognises: "not found" on a Describe (there is none), "already exists" on a Create
/// (another run made it between our lookup and now). Any other failure is an
/// [`Error::aws`](crate::Error::aws) naming `operation`.
pub async fn answer_or_none<O, E>(
    operation: impl Into<String>,
    call: impl std::future::Future<Output = Result<O, SdkError<E, HttpResponse>>>,
    expected: impl FnOnce(&E) -> bool,
) -> crate::Result<Option<O>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match call.await {
        Ok(answer) => Ok(Some(answer)),
        Err(err) if err.as_service_error().is_some_and(expected) => Ok(None),
        Err(err) => Err(crate::Error::aws(operation, err)),
    }
}

/// Whether `err` is the local emulator not knowing the request at all: an HTTP 404
/// without an AWS error code, as the emulator answers this SDK's CloudWatch calls (sent
/// in the RPCv2 CBOR protocol it does not serve). Only ever true with an endpoint
/// override (`emulator`); on AWS a 404 is an error like any other.
pub fn not_emulated<E>(emulator: bool, err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    emulator
        && err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 404)
        && ProvideErrorMetadata::code(err).is_none()
}

/// Whether `err` is the local emulator lacking the operation: an HTTP 500 without an AWS
/// error code. The emulator answers an action it has not implemented with its web
/// server's generic error page, which a crash in an implemented one would also give, so
/// a caller uses this only for an operation the emulator is known to lack (said where it
/// is called). Only ever true with an endpoint override (`emulator`); on AWS a 500 is an
/// error like any other (retried).
pub fn not_implemented_in_emulator<E>(emulator: bool, err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    emulator
        && ProvideErrorMetadata::code(err).is_none()
        && err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 500)
}

/// What a step reports for a call [`not_emulated`] says the emulator cannot answer.
pub const NOT_EMULATED_CLOUDWATCH: &str =
    "not emulated: the local emulator does not accept this SDK's CloudWatch requests";

/// The partition a region belongs to: the word every ARN starts with after `arn:`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The DNS suffix of a region's service endpoints (`amazonaws.com`, or
/// `amazonaws.com.cn` in China).
pub fn dns_suffix(region: &str) -> &'static str {
    if partition(region) == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// `arn:<partition>:<service>:<region>:<account>:<resource>`, the partition from the
/// region (pass an empty region or account for services whose ARNs have none, e.g. IAM).
pub fn arn(partition: &str, service: &str, region: &str, account: &str, resource: &str) -> String {
    format!("arn:{partition}:{service}:{region}:{account}:{resource}")
}

/// The function a state machine's `${NameFunctionArn}` placeholder stands for: the
/// crate, binary and Lambda name `name` in kebab case (`${HandleAlertFunctionArn}` is
/// `handle-alert`). `None` for a placeholder that is not a function ARN.
pub fn function_for_placeholder(placeholder: &str) -> Option<String> {
    let base = placeholder.strip_suffix("FunctionArn")?;
    if base.is_empty() {
        return None;
    }
    let mut name = String::new();
    for (i, c) in base.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('-');
        }
        name.extend(c.to_lowercase());
    }
    Some(name)
}

/// The placeholder a function is known by in the state machines (`handle-alert` is
/// `HandleAlertFunctionArn`): the inverse of [`function_for_placeholder`].
pub fn placeholder_for_function(function: &str) -> String {
    let mut name = String::new();
    for word in function.split('-') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name.push_str("FunctionArn");
    name
}

/// The AWS console's origin for a region, in the region's partition (China and GovCloud
/// have consoles of their own).
pub fn console_origin(region: &str) -> String {
    if region.starts_with("cn-") {
        "https://console.amazonaws.cn".to_owned()
    } else if region.starts_with("us-gov-") {
        "https://console.amazonaws-us-gov.com".to_owned()
    } else {
        format!("https://{region}.console.aws.amazon.com")
    }
}

/// An S3 client; path-style addressing whenever the endpoint is overridden.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let builder = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .interceptor(crate::calls::CallLog);
    aws_sdk_s3::Client::from_conf(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_endpoint_gets_dummy_credentials_only_on_loopback() {
        let env = HashMap::from([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_REGION", "us-west-2"),
        ]);
        let settings = AwsSettings::from_env(&env);
        assert!(settings.local_credentials);
        assert_eq!(settings.region.as_deref(), Some("us-west-2"));
        assert_eq!(settings.max_attempts, DEFAULT_MAX_ATTEMPTS);

        let remote = HashMap::from([("AWS_ENDPOINT_URL", "https://vpce-123.example.com")]);
        assert!(!AwsSettings::from_env(&remote).local_credentials);

        let with_keys = HashMap::from([
            ("AWS_ENDPOINT_URL", "http://localhost:5000"),
            ("AWS_ACCESS_KEY_ID", "AKIA..."),
        ]);
        assert!(!AwsSettings::from_env(&with_keys).local_credentials);
    }

    #[test]
    fn no_endpoint_means_real_aws() {
        let env = HashMap::from([
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("APIARY_AWS_MAX_ATTEMPTS", "7"),
        ]);
        let settings = AwsSettings::from_env(&env);
        assert!(!settings.is_local());
        assert!(!settings.local_credentials);
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(settings.max_attempts, 7);
    }

    #[tokio::test]
    async fn only_the_expected_error_becomes_none() {
        use aws_sdk_dynamodb::operation::describe_table::{
            DescribeTableError, DescribeTableOutput,
        };
        use aws_sdk_dynamodb::types::error::{InternalServerError, ResourceNotFoundException};
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let found = mock!(aws_sdk_dynamodb::Client::describe_table)
            .match_requests(|r| r.table_name() == Some("found"))
            .then_output(|| DescribeTableOutput::builder().build());
        let missing = mock!(aws_sdk_dynamodb::Client::describe_table)
            .match_requests(|r| r.table_name() == Some("missing"))
            .then_error(|| {
                DescribeTableError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().build(),
                )
            });
        let broken = mock!(aws_sdk_dynamodb::Client::describe_table)
            .match_requests(|r| r.table_name() == Some("broken"))
            .then_error(|| {
                DescribeTableError::InternalServerError(
                    InternalServerError::builder().message("boom").build(),
                )
            });
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [&found, &missing, &broken]
        );
        let describe = |table: &'static str| {
            answer_or_none(
                format!("DescribeTable {table}"),
                client.describe_table().table_name(table).send(),
                |e| e.is_resource_not_found_exception(),
            )
        };
        assert!(describe("found").await.unwrap().is_some());
        assert!(describe("missing").await.unwrap().is_none());
        let err = describe("broken").await.unwrap_err();
        assert!(err.to_string().contains("DescribeTable broken"), "{err}");
    }

    #[test]
    fn partitions_and_function_placeholders() {
        assert_eq!(partition("us-west-2"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(
            arn("aws-cn", "lambda", "cn-north-1", "1", "function:keys"),
            "arn:aws-cn:lambda:cn-north-1:1:function:keys"
        );
        assert_eq!(
            function_for_placeholder("KeysFunctionArn").as_deref(),
            Some("keys")
        );
        assert_eq!(
            function_for_placeholder("HandleAlertFunctionArn").as_deref(),
            Some("handle-alert")
        );
        assert_eq!(function_for_placeholder("StateTable"), None);
        assert_eq!(dns_suffix("cn-northwest-1"), "amazonaws.com.cn");
        assert_eq!(dns_suffix("us-gov-east-1"), "amazonaws.com");
        assert_eq!(function_for_placeholder("FunctionArn"), None);
        for function in ["keys", "handle-alert", "restore-test"] {
            let placeholder = placeholder_for_function(function);
            assert_eq!(
                function_for_placeholder(&placeholder).as_deref(),
                Some(function)
            );
        }
    }

    #[test]
    fn each_partition_has_its_console() {
        assert_eq!(
            console_origin("eu-west-1"),
            "https://eu-west-1.console.aws.amazon.com"
        );
        assert_eq!(console_origin("cn-north-1"), "https://console.amazonaws.cn");
        assert_eq!(
            console_origin("us-gov-west-1"),
            "https://console.amazonaws-us-gov.com"
        );
    }

    #[tokio::test]
    async fn emulator_settings_reach_the_sdk_config() {
        let config = load(&AwsSettings::local("http://127.0.0.1:5000", "us-west-2")).await;
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert_eq!(config.region().map(|r| r.as_ref()), Some("us-west-2"));
        let retry = config.retry_config().expect("retry config is set");
        assert_eq!(retry.max_attempts(), DEFAULT_MAX_ATTEMPTS);
    }
}
