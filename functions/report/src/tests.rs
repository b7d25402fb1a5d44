use super::*;

#[test]
fn only_the_host_of_the_endpoint_is_ever_shown() {
    assert_eq!(
        host_of("https://vendor.example:8443/v1/reports?token=s3cr3t"),
        "vendor.example:8443"
    );
    assert_eq!(host_of("https://vendor.example"), "vendor.example");
}

#[test]
fn the_lease_outlives_the_function_and_the_window_leaves_room_for_the_last_post() {
    assert!(LEASE.to_std().unwrap() > LAMBDA_TIMEOUT);
    assert!(SEND_WINDOW + REQUEST_TIMEOUT < LAMBDA_TIMEOUT);
}

#[test]
fn an_unknown_action_is_refused_by_name() {
    let err = apiary_core::step::StepEvent::<ReportAction>::parse(
        serde_json::json!({"action": "send", "deployment": "acme"}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("action"), "{err}");
}

mod signing_key {
    use std::sync::{Arc, Mutex};

    use apiary_core::phone_home::SigningKey;
    use aws_sdk_secretsmanager::Client;
    use aws_sdk_secretsmanager::operation::get_secret_value::{
        GetSecretValueError, GetSecretValueOutput,
    };
    use aws_sdk_secretsmanager::operation::put_secret_value::{
        PutSecretValueError, PutSecretValueOutput,
    };
    use aws_sdk_secretsmanager::types::error::{
        ResourceExistsException, ResourceNotFoundException,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    const SECRET: &str =
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:SigningKeySecret-AbCdEf";

    fn no_value() -> GetSecretValueError {
        GetSecretValueError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Secrets Manager can't find the specified secret value for staging label: AWSCURRENT")
                .meta(ErrorMetadata::builder().code("ResourceNotFoundException").build())
                .build(),
        )
    }

    #[tokio::test]
    async fn a_key_already_written_by_an_earlier_attempt_is_the_one_returned() {
        // The first attempt wrote its key with this request's token; the retry generated
        // another, and Secrets Manager refuses a different value under the same token.
        let kept = SigningKey::generate().unwrap();
        let kept_text = kept.to_secret();
        let empty = mock!(Client::get_secret_value).then_error(no_value);
        let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = tokens.clone();
        let refused = mock!(Client::put_secret_value)
            .match_requests(move |r| {
                seen.lock()
                    .unwrap()
                    .push(r.client_request_token().unwrap_or_default().to_owned());
                true
            })
            .then_error(|| {
                PutSecretValueError::ResourceExistsException(
                    ResourceExistsException::builder()
                        .message("A resource with the ID you requested already exists.")
                        .meta(
                            ErrorMetadata::builder()
                                .code("ResourceExistsException")
                                .build(),
                        )
                        .build(),
                )
            });
        let stored = mock!(Client::get_secret_value).then_output(move || {
            GetSecretValueOutput::builder()
                .secret_string(kept_text.clone())
                .build()
        });
        let secrets = mock_client!(
            aws_sdk_secretsmanager,
            RuleMode::Sequential,
            [&empty, &refused, &stored]
        );
        let key = crate::ensure_signing_key(&secrets, SECRET, "stack/SigningKey")
            .await
            .unwrap();
        assert_eq!(key.public_key(), kept.public_key());
        let tokens = tokens.lock().unwrap();
        // Secrets Manager's ClientRequestToken is 32 to 64 characters, and the same for
        // every attempt of the request.
        assert_eq!(tokens.len(), 1);
        assert!((32..=64).contains(&tokens[0].len()), "{}", tokens[0]);
    }

    #[tokio::test]
    async fn a_secret_holding_something_else_gets_a_key_and_a_key_is_never_replaced() {
        let placeholder = mock!(Client::get_secret_value).then_output(|| {
            GetSecretValueOutput::builder()
                .secret_string("generated-password")
                .build()
        });
        let written: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = written.clone();
        let put = mock!(Client::put_secret_value)
            .match_requests(move |r| {
                seen.lock()
                    .unwrap()
                    .push(r.secret_string().unwrap_or_default().to_owned());
                true
            })
            .then_output(|| PutSecretValueOutput::builder().build());
        let secrets = mock_client!(
            aws_sdk_secretsmanager,
            RuleMode::Sequential,
            [&placeholder, &put]
        );
        let key = crate::ensure_signing_key(&secrets, SECRET, "t")
            .await
            .unwrap();
        let written = written.lock().unwrap().clone();
        assert_eq!(written.len(), 1);
        let again = SigningKey::from_secret(SECRET, &written[0]).unwrap();
        assert_eq!(again.public_key(), key.public_key());

        // The report function never makes a key: an empty secret is an error naming it.
        let empty = mock!(Client::get_secret_value).then_error(no_value);
        let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, [&empty]);
        let err = crate::load_signing_key(&secrets, SECRET).await.unwrap_err();
        assert!(err.to_string().contains(SECRET), "{err}");
    }
}
