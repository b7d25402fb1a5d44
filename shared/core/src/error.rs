//! The one error type every Apiary function returns, and the stable names it is known by.
//!
//! A Lambda turns an [`Error`] into a [`Diagnostic`] whose `error_type` is one of
//! [`ERROR_NAMES`]. The state machines' `Retry` and `Catch` blocks name exactly these
//! strings, so they are part of the public contract: add names, never rename them.

use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_runtime::Diagnostic;

use crate::spec::SpecErrors;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stable error name, as it appears in a Lambda `Diagnostic` and in ASL `ErrorEquals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ErrorName {
    InvalidSpec,
    InvalidInput,
    Conflict,
    NotReady,
    Retryable,
    Timeout,
    Fatal,
}

/// What a name means and whether a state machine may retry it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ErrorNameInfo {
    pub name: &'static str,
    pub retryable: bool,
    pub meaning: &'static str,
}

/// Every error name a function can return. State machines are checked against this list.
pub const ERROR_NAMES: &[ErrorNameInfo] = &[
    ErrorNameInfo {
        name: "Apiary.InvalidSpec",
        retryable: false,
        meaning: "The deployment spec is invalid; every problem is listed with its field path.",
    },
    ErrorNameInfo {
        name: "Apiary.InvalidInput",
        retryable: false,
        meaning: "The step's input event is malformed (unknown action, missing field).",
    },
    ErrorNameInfo {
        name: "Apiary.Conflict",
        retryable: false,
        meaning: "Another workflow holds the deployment lock, or a resource conflicts with one Apiary does not own.",
    },
    ErrorNameInfo {
        name: "Apiary.NotReady",
        retryable: true,
        meaning: "A resource this step depends on exists but is not ready yet.",
    },
    ErrorNameInfo {
        name: "Apiary.Retryable",
        retryable: true,
        meaning: "A transient AWS failure (throttling, 5xx, network); the same call may succeed later.",
    },
    ErrorNameInfo {
        name: "Apiary.Timeout",
        retryable: false,
        meaning: "A resource did not become ready within the workflow's bounded wait.",
    },
    ErrorNameInfo {
        name: "Apiary.Fatal",
        retryable: false,
        meaning: "AWS refused the request in a way that cannot succeed on retry (access denied, invalid parameter, quota).",
    },
];

impl ErrorName {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorName::InvalidSpec => "Apiary.InvalidSpec",
            ErrorName::InvalidInput => "Apiary.InvalidInput",
            ErrorName::Conflict => "Apiary.Conflict",
            ErrorName::NotReady => "Apiary.NotReady",
            ErrorName::Retryable => "Apiary.Retryable",
            ErrorName::Timeout => "Apiary.Timeout",
            ErrorName::Fatal => "Apiary.Fatal",
        }
    }
}

impl fmt::Display for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(SpecErrors),

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("{0}")]
    Conflict(String),

    #[error("{resource} is not ready: {detail}")]
    NotReady { resource: String, detail: String },

    #[error("{resource} did not become ready: {detail}")]
    Timeout { resource: String, detail: String },

    /// An AWS call failed. `retryable` decides between `Apiary.Retryable` and `Apiary.Fatal`.
    #[error("{operation} failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Aws {
        operation: String,
        code: Option<String>,
        message: String,
        retryable: bool,
    },

    #[error("{0}")]
    Fatal(String),
}

impl Error {
    pub fn name(&self) -> ErrorName {
        match self {
            Error::InvalidSpec(_) => ErrorName::InvalidSpec,
            Error::InvalidInput(_) => ErrorName::InvalidInput,
            Error::Conflict(_) => ErrorName::Conflict,
            Error::NotReady { .. } => ErrorName::NotReady,
            Error::Timeout { .. } => ErrorName::Timeout,
            Error::Aws {
                retryable: true, ..
            } => ErrorName::Retryable,
            Error::Aws { .. } | Error::Fatal(_) => ErrorName::Fatal,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.name(), ErrorName::Retryable | ErrorName::NotReady)
    }

    /// The AWS error code, when this error came from an AWS call.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Error::Fatal(message.into())
    }

    /// Classifies an AWS SDK error. `operation` names the call and the resource, e.g.
    /// `"CreateKey alias/apiary/acme/rds"`, so the message says what failed.
    pub fn aws<E>(operation: impl Into<String>, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let operation = operation.into();
        let status = err.raw_response().map(|r| r.status().as_u16());
        match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().map(str::to_owned);
                let message = e
                    .message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| match status {
                        Some(status) => format!("HTTP {status} with no error message"),
                        None => "no error message".to_owned(),
                    });
                let retryable = is_retryable_code(code.as_deref(), status);
                Error::Aws {
                    operation,
                    code,
                    message,
                    retryable,
                }
            }
            // Timeouts, connection failures and unparseable responses are transient.
            SdkError::TimeoutError(_) => Error::Aws {
                operation,
                code: None,
                message: format!(
                    "{} (no answer in time; the call may still have taken effect)",
                    sentence(&err)
                ),
                retryable: true,
            },
            SdkError::DispatchFailure(_) => Error::Aws {
                operation,
                code: None,
                message: format!(
                    "{} (hint: the AWS endpoint could not be reached; check the network, \
                     or AWS_ENDPOINT_URL when running locally)",
                    sentence(&err)
                ),
                retryable: true,
            },
            SdkError::ResponseError(_) => Error::Aws {
                operation,
                code: None,
                message: sentence(&err),
                retryable: true,
            },
            // The request could not even be built: a bug or bad input, never transient.
            _ => Error::Aws {
                operation,
                code: None,
                message: sentence(&err),
                retryable: false,
            },
        }
    }

    /// Like [`Error::aws`], and also `Apiary.Retryable` when `transient` recognises the
    /// service error: for a failure that is transient in the caller's context only (see
    /// [`transient`]). Pass a modeled variant's check where the SDK has one
    /// (`|e| e.is_no_such_entity_exception()`), a code list otherwise
    /// (`transient::ec2_not_yet_visible`). The workflow's `Retry` on `Apiary.Retryable`
    /// supplies the backoff and the bound.
    pub fn aws_transient_if<E>(
        operation: impl Into<String>,
        err: SdkError<E, HttpResponse>,
        transient: impl FnOnce(&E) -> bool,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let in_context = err.as_service_error().is_some_and(transient);
        match Error::aws(operation, err) {
            Error::Aws {
                operation,
                code,
                message,
                retryable,
            } if in_context && !retryable => Error::Aws {
                operation,
                code,
                message: format!(
                    "{message} (transient: AWS has not caught up with a change made just before; retried)"
                ),
                retryable: true,
            },
            other => other,
        }
    }
}

/// Failures that are transient only in the caller's context, which a call site opts into
/// with [`Error::aws_transient_if`]. Each is fatal elsewhere: a `NotFound` from a Describe
/// used to look something up is an answer ("there is none"), and a role EKS cannot assume
/// is a wrong role unless the step made it a moment ago.
pub mod transient {
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;

    /// EC2 codes for an id it does not know (yet). EC2 is eventually consistent: an id a
    /// Create has just returned, or a Describe has just shown, can be unknown to the next
    /// call for a few seconds.
    pub const EC2_NOT_YET_VISIBLE: &[&str] = &[
        "InvalidVpcID.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidRouteTableID.NotFound",
        "InvalidRouteTableId.NotFound",
        "InvalidInternetGatewayID.NotFound",
        "InvalidGatewayID.NotFound",
        "InvalidAllocationID.NotFound",
        "InvalidNatGatewayID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidGroupId.NotFound",
        "InvalidVpcEndpointId.NotFound",
        "InvalidNetworkInterfaceID.NotFound",
    ];

    /// Fragments of EKS `InvalidParameterException` messages that mean the IAM role (or
    /// the policies just attached to it) has not reached EKS yet. Real messages, e.g.
    /// "Role with arn: arn:aws:iam::1:role/x, could not be assumed because it does not
    /// exist or the trusted entity is not correct".
    pub const EKS_ROLE_NOT_YET_USABLE: &[&str] = &[
        "could not be assumed",
        "Error in role params",
        "The provided role doesn't have the Amazon EKS Managed Policies associated with it",
        "IAM role's policy must include",
    ];

    /// An EC2 error about an id the caller holds: transient just after that id was
    /// created or found.
    pub fn ec2_not_yet_visible(err: &impl ProvideErrorMetadata) -> bool {
        err.code().is_some_and(|c| EC2_NOT_YET_VISIBLE.contains(&c))
    }

    /// An EKS `InvalidParameterException` message saying a role is not usable yet: call
    /// it only after matching the modeled `InvalidParameterException`, and only when the
    /// step has just created the role or attached its policies.
    pub fn eks_role_not_yet_usable(message: Option<&str>) -> bool {
        message.is_some_and(|m| EKS_ROLE_NOT_YET_USABLE.iter().any(|f| m.contains(f)))
    }
}

/// An error and its causes as one line (`dispatch failure: io error: connection
/// refused`), each cause once: what a person reads, never a `Debug` dump of the SDK's
/// error structures (which `DisplayErrorContext` appends).
pub fn sentence(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Whether an HTTP answer may change by asking again later: a server error, 429 (too many
/// requests) or 408 (request timeout). Any other non-2xx (a refused signature, an
/// expired URL, a wrong path) will not.
pub fn transient_http_status(status: u16) -> bool {
    (500..600).contains(&status) || status == 429 || status == 408
}

/// Error codes AWS services use for throttling and transient failures, in any context.
const RETRYABLE_CODES: &[&str] = &[
    // Another change to the same resource is in progress (IAM answers
    // `ConcurrentModification`, others the `...Exception` form); S3 answers
    // `OperationAborted` while a conflicting bucket operation runs.
    "ConcurrentModification",
    "ConcurrentModificationException",
    "OperationAborted",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "PriorRequestNotComplete",
    "SlowDown",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServiceError",
    "InternalServiceErrorException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMSInternalException",
    "DependencyTimeoutException",
];

fn is_retryable_code(code: Option<&str>, status: Option<u16>) -> bool {
    if let Some(code) = code
        && RETRYABLE_CODES.contains(&code)
    {
        return true;
    }
    matches!(status, Some(429) | Some(500..=599))
}

impl From<Error> for Diagnostic {
    fn from(err: Error) -> Self {
        Diagnostic {
            error_type: err.name().as_str().to_owned(),
            error_message: err.to_string(),
        }
    }
}

impl From<SpecErrors> for Error {
    fn from(errors: SpecErrors) -> Self {
        Error::InvalidSpec(errors)
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::InvalidInput(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
    use aws_sdk_dynamodb::types::error::{InternalServerError, ResourceNotFoundException};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    async fn describe_with(rule: &aws_smithy_mocks::Rule) -> Error {
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [rule]);
        let err = client
            .describe_table()
            .table_name("apiary")
            .send()
            .await
            .expect_err("the mock returns an error");
        Error::aws("DescribeTable apiary", err)
    }

    #[test]
    fn only_server_errors_throttling_and_timeouts_are_worth_asking_again() {
        for status in [500, 502, 503, 504, 429, 408] {
            assert!(transient_http_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 413, 200, 301] {
            assert!(!transient_http_status(status), "{status}");
        }
    }

    fn unhandled(code: &str, message: &str) -> DescribeTableError {
        DescribeTableError::generic(ErrorMetadata::builder().code(code).message(message).build())
    }

    #[tokio::test]
    async fn throttling_is_retryable() {
        let rule = mock!(Client::describe_table)
            .then_error(|| unhandled("ThrottlingException", "Rate exceeded"));
        let err = describe_with(&rule).await;
        assert_eq!(err.name(), ErrorName::Retryable);
        assert!(err.is_retryable());
        assert_eq!(err.aws_code(), Some("ThrottlingException"));
        assert!(err.to_string().contains("Rate exceeded"), "{err}");
    }

    #[tokio::test]
    async fn access_denied_fails_fast_with_the_aws_message() {
        let rule = mock!(Client::describe_table).then_error(|| {
            unhandled(
                "AccessDeniedException",
                "User: arn:aws:sts::1:assumed-role/x is not authorized to perform: dynamodb:DescribeTable",
            )
        });
        let err = describe_with(&rule).await;
        assert_eq!(err.name(), ErrorName::Fatal);
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.starts_with("DescribeTable apiary failed (AccessDeniedException)"),
            "{text}"
        );
        assert!(text.contains("not authorized to perform"), "{text}");
    }

    #[tokio::test]
    async fn invalid_parameter_and_quota_are_not_retryable() {
        for code in [
            "ValidationException",
            "LimitExceededException",
            "InvalidParameterValue",
        ] {
            let rule = mock!(Client::describe_table).then_error(move || unhandled(code, "no"));
            let err = describe_with(&rule).await;
            assert_eq!(err.name(), ErrorName::Fatal, "{code}");
        }
    }

    // Real responses always carry the error code in their metadata; so do these.
    #[tokio::test]
    async fn modeled_server_errors_are_retryable() {
        let rule = mock!(Client::describe_table).then_error(|| {
            DescribeTableError::InternalServerError(
                InternalServerError::builder()
                    .message("boom")
                    .meta(ErrorMetadata::builder().code("InternalServerError").build())
                    .build(),
            )
        });
        let err = describe_with(&rule).await;
        assert_eq!(err.name(), ErrorName::Retryable);
    }

    #[tokio::test]
    async fn modeled_not_found_is_fatal() {
        let rule = mock!(Client::describe_table).then_error(|| {
            DescribeTableError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("Requested resource not found")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .build(),
                    )
                    .build(),
            )
        });
        let err = describe_with(&rule).await;
        assert_eq!(err.name(), ErrorName::Fatal);
        assert_eq!(err.aws_code(), Some("ResourceNotFoundException"));
    }

    #[tokio::test]
    async fn http_5xx_without_a_known_code_is_retryable() {
        let rule = mock!(Client::describe_table).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(503).unwrap(),
                aws_smithy_types::body::SdkBody::from("{}"),
            )
        });
        let err = describe_with(&rule).await;
        assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    }

    #[test]
    fn an_unreachable_endpoint_reads_as_one_sentence_with_a_hint() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let err: SdkError<DescribeTableError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let error = Error::aws("DescribeTable apiary", err);
        let text = error.to_string();
        assert!(text.starts_with("DescribeTable apiary failed: "), "{text}");
        assert!(text.contains("Connection refused (os error 111)"), "{text}");
        assert!(text.contains("hint:"), "{text}");
        assert!(!text.contains(" {"), "no Debug structures: {text}");
        assert_eq!(error.name(), ErrorName::Retryable);
    }

    #[tokio::test]
    async fn concurrent_modification_and_operation_aborted_are_retryable_anywhere() {
        for code in ["ConcurrentModification", "ConcurrentModificationException"] {
            let rule = mock!(Client::describe_table).then_error(move || unhandled(code, "busy"));
            let err = describe_with(&rule).await;
            assert_eq!(err.name(), ErrorName::Retryable, "{code}");
        }
        let rule = mock!(aws_sdk_s3::Client::put_bucket_policy).then_error(|| {
            aws_sdk_s3::operation::put_bucket_policy::PutBucketPolicyError::generic(
                ErrorMetadata::builder()
                    .code("OperationAborted")
                    .message("A conflicting conditional operation is currently in progress against this resource. Please try again.")
                    .build(),
            )
        });
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
        let err = s3
            .put_bucket_policy()
            .bucket("apiary-acme-logs")
            .policy("{}")
            .send()
            .await
            .expect_err("the mock returns an error");
        let err = Error::aws("PutBucketPolicy apiary-acme-logs", err);
        assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    }

    async fn transient_if(code: &str, in_context: bool) -> Error {
        let code = code.to_owned();
        let rule = mock!(Client::describe_table)
            .then_error(move || unhandled(&code, "The vpc ID 'vpc-1' does not exist"));
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
        let err = client
            .describe_table()
            .table_name("apiary")
            .send()
            .await
            .expect_err("the mock returns an error");
        if in_context {
            Error::aws_transient_if(
                "CreateSubnet private-0",
                err,
                transient::ec2_not_yet_visible,
            )
        } else {
            Error::aws("CreateSubnet private-0", err)
        }
    }

    #[tokio::test]
    async fn an_ec2_not_found_on_an_id_just_made_is_retryable() {
        for code in [
            "InvalidVpcID.NotFound",
            "InvalidSubnetID.NotFound",
            "InvalidRouteTableID.NotFound",
            "InvalidInternetGatewayID.NotFound",
            "InvalidAllocationID.NotFound",
            "InvalidNatGatewayID.NotFound",
            "InvalidGroup.NotFound",
        ] {
            let err = transient_if(code, true).await;
            assert_eq!(err.name(), ErrorName::Retryable, "{code}");
            assert_eq!(err.aws_code(), Some(code));
            assert!(err.to_string().contains("does not exist"), "{err}");
            assert!(err.to_string().contains("transient"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_ec2_not_found_outside_that_context_stays_fatal() {
        let err = transient_if("InvalidVpcID.NotFound", false).await;
        assert_eq!(err.name(), ErrorName::Fatal);
        // In context, only the listed codes are transient: a bad parameter is not.
        let err = transient_if("InvalidParameterValue", true).await;
        assert_eq!(err.name(), ErrorName::Fatal);
        assert!(!err.to_string().contains("transient"), "{err}");
    }

    #[tokio::test]
    async fn a_caller_predicate_on_the_modeled_error_decides() {
        let rule = mock!(Client::describe_table).then_error(|| {
            DescribeTableError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("Requested resource not found")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .build(),
                    )
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
        let err = client
            .describe_table()
            .table_name("apiary")
            .send()
            .await
            .unwrap_err();
        let err = Error::aws_transient_if("DescribeTable apiary", err, |e| {
            e.is_resource_not_found_exception()
        });
        assert_eq!(err.name(), ErrorName::Retryable);
        // An error that is retryable anyway keeps its own message.
        let rule = mock!(Client::describe_table)
            .then_error(|| unhandled("ThrottlingException", "Rate exceeded"));
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
        let err = client
            .describe_table()
            .table_name("apiary")
            .send()
            .await
            .unwrap_err();
        let err = Error::aws_transient_if("DescribeTable apiary", err, |_| true);
        assert_eq!(err.name(), ErrorName::Retryable);
        assert!(!err.to_string().contains("transient"), "{err}");
    }

    #[test]
    fn eks_role_propagation_messages_are_recognised() {
        for message in [
            "Role with arn: arn:aws:iam::123456789012:role/apiary-acme-eks-cluster, could not be assumed because it does not exist or the trusted entity is not correct",
            "Error in role params",
            "The provided role doesn't have the Amazon EKS Managed Policies associated with it. Please ensure the following policy is attached: arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
        ] {
            assert!(
                transient::eks_role_not_yet_usable(Some(message)),
                "{message}"
            );
        }
        assert!(!transient::eks_role_not_yet_usable(Some(
            "Subnets specified must be in at least two different AZs"
        )));
        assert!(!transient::eks_role_not_yet_usable(None));
    }

    #[test]
    fn diagnostic_carries_the_stable_name() {
        let diagnostic = Diagnostic::from(Error::Conflict("deployment acme is locked".into()));
        assert_eq!(diagnostic.error_type, "Apiary.Conflict");
        assert_eq!(diagnostic.error_message, "deployment acme is locked");
    }

    #[test]
    fn every_name_is_listed_once() {
        let all = [
            ErrorName::InvalidSpec,
            ErrorName::InvalidInput,
            ErrorName::Conflict,
            ErrorName::NotReady,
            ErrorName::Retryable,
            ErrorName::Timeout,
            ErrorName::Fatal,
        ];
        assert_eq!(all.len(), ERROR_NAMES.len());
        for name in all {
            let listed: Vec<_> = ERROR_NAMES
                .iter()
                .filter(|i| i.name == name.as_str())
                .collect();
            assert_eq!(listed.len(), 1, "{name}");
            assert_eq!(
                listed[0].retryable,
                matches!(name, ErrorName::Retryable | ErrorName::NotReady),
                "{name}"
            );
        }
    }
}
