#!/usr/bin/env sh
# azd postprovision hook: grants the API permissions when GRANT_API_PERMISSIONS=true in the azd
# environment (azd env set GRANT_API_PERMISSIONS true); otherwise prints the command to run.
# Granting needs an administrator, which the person running `azd up` may not be.
set -eu
script_dir=$(dirname "$0")
python=$(command -v python3 || command -v python)

if [ "${GRANT_API_PERMISSIONS:-false}" = "true" ]; then
  "$python" "$script_dir/grant_api_permissions.py" --principal-id "$MANAGED_IDENTITY_PRINCIPAL_ID"
else
  echo "Next step (an administrator): grant the managed identity its API permissions:"
  echo "  python infra/scripts/grant_api_permissions.py --principal-id $MANAGED_IDENTITY_PRINCIPAL_ID"
fi
