//! `AWS::S3::Bucket`: created on the emulator's S3 (path-style addressing, as an emulator
//! needs). Lifecycle rules, encryption and public-access blocks apply on AWS only.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::{prop, Physical, Stack};
use crate::template::scalar;

/// `AWS::S3::Bucket`: named by `BucketName`, or `<stack>-<logicalid>` in lower case (S3's rules).
pub(super) async fn bucket(
    s3: &aws_sdk_s3::Client,
    stack: &Stack,
    id: &str,
    kind: &str,
    properties: &Value,
) -> Result<Physical> {
    let name = match prop(properties, "BucketName") {
        Some(name) => scalar(name),
        None => {
            let mut name: String = format!("{}-{id}", stack.name)
                .to_lowercase()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            name.truncate(63);
            name.trim_end_matches('-').to_string()
        }
    };
    let mut request = s3.create_bucket().bucket(&name);
    if stack.region != "us-east-1" {
        request = request.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    stack.region.as_str(),
                ))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(err)
            if err.as_service_error().is_some_and(|e| {
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
            }) => {}
        Err(err) => return Err(anyhow!(herald::aws::error_text(&err))),
    }
    Ok(Physical {
        kind: kind.into(),
        reference: name.clone(),
        attributes: BTreeMap::from([
            ("Arn".into(), format!("arn:aws:s3:::{name}")),
            ("DomainName".into(), format!("{name}.s3.amazonaws.com")),
        ]),
    })
}
