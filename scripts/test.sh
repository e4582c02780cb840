#!/usr/bin/env bash
# The test command of the README: installs what the tests drive (the mosquitto clients; the
# Azure SDKs' venv and node_modules are installed by the tests themselves), then runs every
# test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  echo "installing mosquitto-clients (the MQTT tests drive the broker with them)"
  sudo_if_needed=""
  [ "$(id -u)" -eq 0 ] || sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq
  $sudo_if_needed apt-get install -y -qq mosquitto-clients
fi
command -v python3 >/dev/null || { echo "python3 is needed (the Azure SDK compatibility tests)"; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "node (20+) and npm are needed (the JavaScript SDK tests)"; exit 1; }

cargo test --workspace --locked "$@"
