#!/bin/sh
# Loads run-time secrets into the environment, then runs the command (default: `sweep worker`).
# Docker/compose secrets are files under /run/secrets; nothing secret is baked into the image.
#   postgres_password -> PGPASSWORD: libpq reads it, so storage URLs carry no password at all
#   wandb_api_key     -> WANDB_API_KEY: the W&B mirror logs in with it (else it stays offline)
set -eu
secrets_dir=${CLOUDSWEEP_SECRETS_DIR:-/run/secrets}
load_secret() {  # load_secret FILE VAR: set VAR from a non-empty FILE unless VAR is set
    if [ -s "$secrets_dir/$1" ] && eval "[ -z \"\${$2:-}\" ]"; then
        value=$(cat "$secrets_dir/$1")
        export "$2=$value"
    fi
}
load_secret postgres_password PGPASSWORD
load_secret wandb_api_key WANDB_API_KEY
exec "$@"
