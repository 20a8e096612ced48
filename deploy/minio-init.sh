#!/bin/sh
# Run once by the minio-init service of deploy/compose.yaml, with MinIO's root key (which no
# other service gets): the buckets, and one user per service that may read and write its own
# bucket and nothing else (no admin rights, no other bucket):
#   RUNS_S3_ACCESS_KEY    s3://babelforge  the Prefect worker and the Ray nodes (runs, inputs)
#   MLFLOW_S3_ACCESS_KEY  s3://mlflow      the MLflow server (artifacts, proxied to clients)
# Safe to run again: buckets, policies and users are created or updated in place.
set -eu

mc alias set root http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing root/babelforge root/mlflow

policy() {  # policy name, bucket: list the bucket, read / write / delete its objects
  cat > "/tmp/$1.json" <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
   "Resource": ["arn:aws:s3:::$2"]},
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                                 "s3:ListMultipartUploadParts"],
   "Resource": ["arn:aws:s3:::$2/*"]}]}
JSON
  mc admin policy create root "$1" "/tmp/$1.json"
}

user() {  # access key, secret key, policy name
  mc admin user add root "$1" "$2"
  # attaching a policy the user has already fails: then check that it is there
  mc admin policy attach root "$3" --user "$1" || mc admin user info root "$1" | grep -q "$3"
}

policy babelforge-runs babelforge
policy babelforge-mlflow mlflow
user "$RUNS_S3_ACCESS_KEY" "$RUNS_S3_SECRET_KEY" babelforge-runs
user "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY" babelforge-mlflow
echo "minio-init: buckets babelforge and mlflow; one user per service, each limited to its bucket"
