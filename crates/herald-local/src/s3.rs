//! An S3 client for the endpoint the configuration points at: path-style addressing when an
//! emulator endpoint is set (`http://127.0.0.1:5050/<bucket>/<key>`: no per-bucket host names
//! to resolve), virtual-hosted on AWS.

/// The S3 client for `aws`.
pub fn client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(aws.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
