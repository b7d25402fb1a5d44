//! The client factory against the emulator: S3 must use path-style addressing there
//! (virtual-hosted style would resolve `<bucket>.127.0.0.1`, which does not exist).

use apiary_e2e::{REGION, sdk_config, unique_name};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

#[tokio::test]
async fn s3_works_against_the_emulator() {
    let config = sdk_config().await;
    let s3 = apiary_core::aws::s3_client(&config);
    let bucket = unique_name("clients");
    s3.create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(REGION))
                .build(),
        )
        .send()
        .await
        .expect("create bucket");
    s3.put_object()
        .bucket(&bucket)
        .key("hello")
        .body(ByteStream::from_static(b"world"))
        .send()
        .await
        .expect("put object through a path-style URL");
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key("hello")
        .send()
        .await
        .unwrap();
    let body = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"world");
}
