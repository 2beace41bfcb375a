#!/bin/sh
# Production MLflow tracking server: PostgreSQL backend, S3 artifacts, basic-auth app.
# Every value comes from the environment (a Kubernetes Secret/ConfigMap or the service
# manager's environment file); nothing secret is written to disk or shown in the process list.
#
# Required:
#   MLFLOW_BACKEND_STORE_URI      postgresql://<user>@<host>:5432/<db>       (no password in it)
#   MLFLOW_ARTIFACTS_DESTINATION  s3://<bucket>/<prefix>
#   MLFLOW_FLASK_SERVER_SECRET_KEY  static CSRF key, the same on every replica      (secret)
#   MLFLOW_AUTH_ADMIN_USERNAME    first admin, created on first start
#   PGPASSWORD or PGPASSFILE      the database password                             (secret)
# Needed on the first start only (MLflow refuses to bootstrap the admin without it):
#   MLFLOW_AUTH_ADMIN_PASSWORD                                                      (secret)
# Optional:
#   MLFLOW_AUTH_DATABASE_URI      users/permissions database (default: basic_auth.ini's)
#   MLFLOW_HOST (127.0.0.1), MLFLOW_PORT (5000), MLFLOW_WORKERS (2),
#   MLFLOW_ALLOWED_HOSTS (Host headers accepted, e.g. mlflow.example.com,mlflow:5000),
#   AWS_* / S3 endpoint variables of boto3 (MLFLOW_S3_ENDPOINT_URL for MinIO), or workload identity.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

require() {
    eval "value=\${$1:-}"
    if [ -z "$value" ]; then
        echo "start.sh: $1 is not set ($2)" >&2
        exit 2
    fi
}

no_password_in() {
    # user:password@ in a URI would show in `ps` and in logs; libpq reads PGPASSWORD instead
    if printf '%s' "$2" | grep -Eq '^[a-z0-9+]+://[^/@:]*:[^/@]*@'; then
        echo "start.sh: $1 carries a password; remove it and set PGPASSWORD or PGPASSFILE" >&2
        exit 2
    fi
}

require MLFLOW_BACKEND_STORE_URI "postgresql://<user>@<host>:5432/<db>"
require MLFLOW_ARTIFACTS_DESTINATION "s3://<bucket>/<prefix>"
require MLFLOW_FLASK_SERVER_SECRET_KEY "a static random key, from a Secret"
require MLFLOW_AUTH_ADMIN_USERNAME "the first admin's user name"
if [ -z "${PGPASSWORD:-}" ] && [ -z "${PGPASSFILE:-}" ]; then
    echo "start.sh: set PGPASSWORD or PGPASSFILE (the database password, from a Secret)" >&2
    exit 2
fi
no_password_in MLFLOW_BACKEND_STORE_URI "$MLFLOW_BACKEND_STORE_URI"

config="${MLFLOW_AUTH_CONFIG_PATH:-$here/basic_auth.ini}"
if [ -n "${MLFLOW_AUTH_DATABASE_URI:-}" ]; then
    no_password_in MLFLOW_AUTH_DATABASE_URI "$MLFLOW_AUTH_DATABASE_URI"
    rendered="$(mktemp -d)/basic_auth.ini"
    python - "$config" "$rendered" <<'PY'
import configparser
import os
import sys

config = configparser.ConfigParser(interpolation=None)
config.read(sys.argv[1])
# MLflow reads the file with %-interpolation: a literal % is written as %%
config["mlflow"]["database_uri"] = os.environ["MLFLOW_AUTH_DATABASE_URI"].replace("%", "%%")
with open(sys.argv[2], "w") as handle:
    config.write(handle)
PY
    config="$rendered"
fi
export MLFLOW_AUTH_CONFIG_PATH="$config"

set -- server \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
    --serve-artifacts \
    --app-name basic-auth \
    --host "${MLFLOW_HOST:-127.0.0.1}" \
    --port "${MLFLOW_PORT:-5000}" \
    --workers "${MLFLOW_WORKERS:-2}"
if [ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]; then
    set -- "$@" --allowed-hosts "$MLFLOW_ALLOWED_HOSTS"
fi
exec "${MLFLOW_BIN:-mlflow}" "$@"
