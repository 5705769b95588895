"""A deployed stack without AWS: the SAM template, packaged as `sam deploy` packages it (each
function's `CodeUri` an object in S3) and created as a CloudFormation stack on the emulator, so its
resources get CloudFormation's names (random suffixes: `prod-EventStream-644FO86FPE14`) that no
code can derive from a logical id.

The emulator's CloudFormation (`infra/moto_server.py`) runs the SAM transform as AWS's does, keeps
the template as sent for `GetTemplate`, and creates what moto's leaves out and AWS creates (alarms,
SNS subscriptions, delivery streams, Function URLs, table TTL and PITR). One difference from AWS:
the code is a placeholder zip (nothing runs it; the local runner plays Lambda, and nothing answers
at a Function URL's address). Nested applications with a local template (the building blocks in
`infra/blocks/`) are packaged and uploaded as `sam package` does, and become nested stacks.

Usage: python infra/cfn_standin.py --endpoint http://127.0.0.1:5050 --stack prod [--template t.yaml]
Prints the stack's status and resource count; exits non-zero when the stack was not created.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import zipfile

import boto3
from samtranslator.yaml_helper import yaml_parse

CODE_BUCKET = "herald-standin-code"


def package(s3, template, directory):
    """What `sam package` does to `template` (read from `directory`): each function's code in S3,
    and each nested application with a local template (the building blocks) packaged the same
    way and uploaded, its `Location` the object's URL, so CloudFormation creates it as a nested
    stack of its own."""
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            properties["CodeUri"] = f"s3://{CODE_BUCKET}/bootstrap.zip"
        location = properties.get("Location")
        if (
            resource["Type"] == "AWS::Serverless::Application"
            and isinstance(location, str)
            and "://" not in location
        ):
            path = os.path.join(directory, location)
            with open(path) as f:
                child = yaml_parse(f.read())
            package(s3, child, os.path.dirname(path))
            body = json.dumps(child).encode()
            key = f"templates/{hashlib.sha256(body).hexdigest()[:16]}.json"
            s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=body)
            properties["Location"] = f"https://s3.amazonaws.com/{CODE_BUCKET}/{key}"


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
    package(s3, template, os.path.dirname(os.path.abspath(args.template)))

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
