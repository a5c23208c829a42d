"""Test helper for tests/firehose.rs, talking to moto's server with boto3.

    python firehose_tool.py create ENDPOINT STREAM BUCKET   # bucket + DirectPut stream into it
    python firehose_tool.py read ENDPOINT BUCKET            # every object: one JSON line each

`read` prints {"key": ..., "data": base64} per S3 object, in key order.
"""

import base64
import json
import sys

import boto3

KW = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def main():
    cmd, endpoint = sys.argv[1], sys.argv[2]
    if cmd == "create":
        stream, bucket = sys.argv[3], sys.argv[4]
        boto3.client("s3", endpoint_url=endpoint, **KW).create_bucket(Bucket=bucket)
        boto3.client("firehose", endpoint_url=endpoint, **KW).create_delivery_stream(
            DeliveryStreamName=stream,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{bucket}",
                # Both set, or the Rust SDK cannot read moto's DescribeDeliveryStream answer.
                "CompressionFormat": "UNCOMPRESSED",
                "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
            },
        )
    elif cmd == "read":
        bucket = sys.argv[3]
        s3 = boto3.client("s3", endpoint_url=endpoint, **KW)
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        for key in sorted(keys):
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            print(json.dumps({"key": key, "data": base64.b64encode(data).decode()}))
    else:
        sys.exit(f"unknown command {cmd}")


main()
