//! AWS access: the standard credential/region/endpoint chain and the clients made from it
//! ([`s3`]: object bodies as `Read`ers; [`lease`]: keeping SQS messages invisible), and the
//! requests we sign ourselves ([`credentials`]: the chain's credentials, cached; [`sigv4`]:
//! SigV4 for HTTP; [`msk_iam`]: Amazon MSK IAM tokens).
//!
//! `aws-config` reads `AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL[_S3|_SQS]` itself. With an
//! endpoint override in effect we use path-style addressing (S3-compatible stores and local
//! servers have no `bucket.host` DNS) and compute checksums only when an API requires them
//! (many S3-compatible stores reject the newer defaults).

pub mod credentials;
pub mod lease;
pub mod msk_iam;
pub mod s3;
pub mod sigv4;

use aws_sdk_s3::error::DisplayErrorContext;

/// Load the shared AWS configuration from the environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// True when S3 requests go to a non-AWS endpoint.
fn endpoint_override(cfg: &aws_config::SdkConfig) -> bool {
    cfg.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
}

/// An S3 client from the shared configuration.
pub fn s3_client(cfg: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let path_style = endpoint_override(cfg) || std::env::var("S3S_PATH_STYLE").is_ok_and(|v| v == "1" || v == "true");
    let conf = aws_sdk_s3::config::Builder::from(cfg)
        .force_path_style(path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An SQS client from the shared configuration.
pub fn sqs_client(cfg: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(cfg)
}

/// The most useful one-line description of an SDK error (service code and message, or the
/// transport cause).
pub fn describe_sdk_error<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => format!("{}", DisplayErrorContext(e)),
            }
        }
        _ => format!("{}", DisplayErrorContext(e)),
    }
}
