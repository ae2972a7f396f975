#!/usr/bin/env bash
# Installs the OCSF schema validator that tests/ocsf/validate.py uses, in a
# virtual environment under target/ (pinned versions, from PyPI):
#   ocsf-json-schema — the published OCSF schema exports (1.0.0 to 1.8.0) and
#                      a generator of each class's JSON Schema;
#   jsonschema       — the JSON Schema (draft 2020-12) validator.
# Needs python3 and python3-venv (Debian). .ci/run calls it; so can you.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/ocsf-venv
if ! "$venv/bin/python3" -c 'import ocsf_json_schema, jsonschema' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'ocsf-json-schema==1.2.0' 'jsonschema==4.26.0'
fi
"$venv/bin/python3" -c 'import ocsf_json_schema, jsonschema; print("OCSF validator ready:", "'"$venv"'")'
