#!/usr/bin/env python3
"""The tests' own view of an object store, through each provider's official Python client.

    objstore_client.py PROVIDER OP BUCKET KEY

PROVIDER: aws-s3 | azure-blob-storage | google-cloud-storage (credentials from the
environment, as integration/src/objstore.rs sets it; OBJSTORE_ENDPOINT for S3).
OP: create (bucket; ok if it exists), put (stdin -> KEY), get (KEY -> stdout), delete (KEY),
list (every key under the prefix KEY: "<size> <key>" per line), uploads (S3 multipart uploads
in progress under KEY, one key per line).
"""
import os
import sys


def s3(op, bucket, key):
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("s3", endpoint_url=os.environ["OBJSTORE_ENDPOINT"])
    if op == "create":
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    elif op == "put":
        client.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())
    elif op == "get":
        sys.stdout.buffer.write(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    elif op == "delete":
        client.delete_object(Bucket=bucket, Key=key)
    elif op == "list":
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for obj in page.get("Contents", []):
                print(obj["Size"], obj["Key"])
    elif op == "uploads":
        resp = client.list_multipart_uploads(Bucket=bucket, Prefix=key)
        for upload in resp.get("Uploads", []):
            print(upload["Key"])
    else:
        raise SystemExit("unknown op " + op)


def azure(op, bucket, key):
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])
    container = service.get_container_client(bucket)
    if op == "create":
        try:
            container.create_container()
        except ResourceExistsError:
            pass
    elif op == "put":
        container.upload_blob(key, sys.stdin.buffer.read(), overwrite=True)
    elif op == "get":
        sys.stdout.buffer.write(container.download_blob(key).readall())
    elif op == "delete":
        container.delete_blob(key)
    elif op == "list":
        for blob in container.list_blobs(name_starts_with=key or None):
            print(blob.size, blob.name)
    elif op == "uploads":
        pass
    else:
        raise SystemExit("unknown op " + op)


def gcs(op, bucket, key):
    from google.api_core.exceptions import Conflict
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"), credentials=AnonymousCredentials())
    if op == "create":
        try:
            client.create_bucket(bucket)
        except Conflict:
            pass
    elif op == "put":
        client.bucket(bucket).blob(key).upload_from_string(sys.stdin.buffer.read())
    elif op == "get":
        sys.stdout.buffer.write(client.bucket(bucket).blob(key).download_as_bytes())
    elif op == "delete":
        client.bucket(bucket).blob(key).delete()
    elif op == "list":
        for blob in client.list_blobs(bucket, prefix=key or None):
            print(blob.size, blob.name)
    elif op == "uploads":
        pass
    else:
        raise SystemExit("unknown op " + op)


def main():
    provider, op, bucket, key = sys.argv[1:5]
    {"aws-s3": s3, "azure-blob-storage": azure, "google-cloud-storage": gcs}[provider](op, bucket, key)


if __name__ == "__main__":
    main()
