"""A deployed stack without AWS: the SAM template, packaged as `sam deploy` packages it (each
function's `CodeUri` an object in S3) and created as a CloudFormation stack on the emulator, so its
resources get CloudFormation's names (random suffixes: `prod-EventStream-644FO86FPE14`) that no
code can derive from a logical id.

The emulator's CloudFormation (`infra/moto_server.py`) runs the SAM transform as AWS's does, keeps
the template as sent for `GetTemplate`, and creates what moto's leaves out and AWS creates (alarms,
SNS subscriptions, delivery streams, Function URLs, table TTL and PITR). One difference from AWS:
the code is a placeholder zip (nothing runs it; the local runner plays Lambda, and nothing answers
at a Function URL's address).

Usage: python infra/cfn_standin.py --endpoint http://127.0.0.1:5050 --stack prod [--template t.yaml]
Prints the stack's status and resource count; exits non-zero when the stack was not created.
"""

import argparse
import io
import json
import os
import sys
import zipfile

import boto3
from samtranslator.yaml_helper import yaml_parse

CODE_BUCKET = "herald-standin-code"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--template", default="template.yaml")
    args = parser.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    session = dict(
        endpoint_url=args.endpoint,
        region_name=os.environ["AWS_DEFAULT_REGION"],
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )
    with open(args.template) as f:
        template = yaml_parse(f.read())

    s3 = boto3.client("s3", **session)
    s3.create_bucket(Bucket=CODE_BUCKET)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    s3.put_object(Bucket=CODE_BUCKET, Key="bootstrap.zip", Body=code.getvalue())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{CODE_BUCKET}/bootstrap.zip"

    cloudformation = boto3.client("cloudformation", **session)
    cloudformation.create_stack(
        StackName=args.stack,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = cloudformation.describe_stacks(StackName=args.stack)["Stacks"][0]
    count = 0
    for page in cloudformation.get_paginator("list_stack_resources").paginate(
        StackName=args.stack
    ):
        count += len(page["StackResourceSummaries"])
    print(f"{args.stack}: {stack['StackStatus']}, {count} resources")
    if stack["StackStatus"] != "CREATE_COMPLETE":
        sys.exit(1)


if __name__ == "__main__":
    main()
