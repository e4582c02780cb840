#!/usr/bin/env bash
# The end-to-end suite against any cluster (KUBECONFIG, or ~/.kube/config), with the operator
# and the data plane running as local processes built from this checkout: no image to build
# or push, so it is the quick loop while working on either.
#
#   e2e/local.sh                 apply the CRDs, start both processes, run the tests, stop them
#   e2e/local.sh -- <args>       pass <args> to the test binaries (e.g. a test name filter)
#
# The tests use one Kubernetes namespace (GRIDLINE_E2E_NAMESPACE, default gridline-e2e-local),
# created if missing and left in place. The operator still creates the Namespace's
# StatefulSet, but with an image that is never pulled: the local data plane is the one that
# serves, so the tests take `Accepted` as served and do not wait for pods.
set -euo pipefail
cd "$(dirname "$0")/.."

test_args=()
if [ "${1:-}" = "--" ]; then
  shift
  test_args=("$@")
elif [ $# -gt 0 ]; then
  echo "usage: $0 [-- test args]" >&2
  exit 2
fi

for tool in kubectl cargo curl; do
  command -v "$tool" >/dev/null || { echo "local.sh: '$tool' is needed on PATH" >&2; exit 1; }
done
kubectl version >/dev/null || { echo "local.sh: no cluster answers (KUBECONFIG?)" >&2; exit 1; }

namespace="${GRIDLINE_E2E_NAMESPACE:-gridline-e2e-local}"
http_port="${GRIDLINE_E2E_LOCAL_HTTP_PORT:-18080}"
mqtt_port="${GRIDLINE_E2E_LOCAL_MQTT_PORT:-11883}"
mqtts_port="${GRIDLINE_E2E_LOCAL_MQTTS_PORT:-18883}"
operator_port="${GRIDLINE_E2E_LOCAL_OPERATOR_PORT:-18090}"
work="$(mktemp -d -t gridline-e2e-local.XXXXXX)"
echo "== logs and data in $work"

echo "== CRDs and namespace $namespace"
kubectl apply --server-side --force-conflicts -f charts/gridline/crds/ >/dev/null
kubectl wait --for condition=established --timeout=60s -f charts/gridline/crds/ >/dev/null
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The data plane waits for its Namespace, but starting with it there is quicker.
kubectl apply --server-side --force-conflicts --namespace "$namespace" -f deploy/examples/ >/dev/null

echo "== building the operator and the data plane"
cargo build --locked -p gridline-operator -p gridline-dataplane
bin="${CARGO_TARGET_DIR:-target}/debug"

pids=()
# Called by the EXIT trap.
# shellcheck disable=SC2329
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT

"$bin/gridline-operator" run --no-leader-election \
  --watch-namespace "$namespace" \
  --metrics-addr "127.0.0.1:$operator_port" \
  --dataplane-image gridline-dataplane:local-e2e-never-pulled \
  --dataplane-image-pull-policy Never \
  >"$work/operator.log" 2>&1 &
pids+=("$!")

"$bin/gridline-dataplane" run --kubernetes \
  --k8s-namespace "$namespace" --namespace dev \
  --data-dir "$work/data" \
  --http-addr "127.0.0.1:$http_port" \
  --mqtt-addr "127.0.0.1:$mqtt_port" \
  --mqtts-addr "127.0.0.1:$mqtts_port" \
  >"$work/dataplane.log" 2>&1 &
pids+=("$!")

echo "== waiting for the data plane and the operator"
for _ in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 \
    && curl -fsS "http://127.0.0.1:$operator_port/healthz" >/dev/null 2>&1; then
    break
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a process exited; see $work/*.log" >&2; exit 1; }
  done
  sleep 1
done

export GRIDLINE_E2E_NAMESPACE="$namespace"
export GRIDLINE_E2E_HTTP="http://127.0.0.1:$http_port"
export GRIDLINE_E2E_MQTT="127.0.0.1:$mqtt_port"
export GRIDLINE_E2E_LOCAL_DATAPLANE=1

echo "== end-to-end tests"
status=0
# One namespace for all: one test at a time, and the lifecycle test (it deletes the
# Namespace, then puts it back) after the others.
cargo test --locked -p gridline-e2e --test manifests --test http_api --test mqtt \
  -- --test-threads=1 ${test_args[@]+"${test_args[@]}"} || status=$?
cargo test --locked -p gridline-e2e --test namespace_lifecycle \
  -- --test-threads=1 ${test_args[@]+"${test_args[@]}"} || status=$?
if [ "$status" -ne 0 ]; then
  echo "== the tests failed; last lines of the logs ($work)"
  tail -n 40 "$work/operator.log" "$work/dataplane.log" || true
fi
exit "$status"
