#!/usr/bin/env bash
# The official `openai` and `ollama` Python packages (pinned in tests/python/requirements.txt)
# in a venv at target/pyvenv, for the gateway's whole-system tests
# (tests/tests/gateway_clients.rs). Idempotent: does nothing when the venv matches.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pyvenv
req=tests/python/requirements.txt
if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/.requirements"; then
  exit 0
fi
echo "python venv: installing $(tr '\n' ' ' <"$req")into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
cp "$req" "$venv/.requirements"
