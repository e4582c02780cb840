#!/usr/bin/env bash
# The end-to-end suite on a kind cluster, with the two images built from this checkout and
# the chart installed as a user would install it.
#
#   e2e/kind.sh                  create (or reuse) the cluster, build, load, install, test
#   e2e/kind.sh --delete         the same, then delete the cluster
#   e2e/kind.sh -- <args>        pass <args> to the test binaries (e.g. a test name filter)
#
# Needs docker, kind, kubectl and cargo; helm is taken from PATH or installed into ./.tools
# by scripts/install-helm.sh. GRIDLINE_KIND_CLUSTER names the cluster (default gridline-e2e).
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${GRIDLINE_KIND_CLUSTER:-gridline-e2e}"
delete_cluster=false
test_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --delete) delete_cluster=true ;;
    --) shift; test_args=("$@"); break ;;
    *) echo "usage: $0 [--delete] [-- test args]" >&2; exit 2 ;;
  esac
  shift
done

for tool in docker kind kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "kind.sh: '$tool' is needed on PATH" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind.sh: the docker daemon does not answer" >&2; exit 1; }
helm="$(scripts/install-helm.sh | tail -n 1)"

if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "== creating kind cluster $cluster"
  kind create cluster --name "$cluster" --wait 180s
fi
kubeconfig="$(mktemp)"
trap 'rm -f "$kubeconfig"' EXIT
kind get kubeconfig --name "$cluster" >"$kubeconfig"
export KUBECONFIG="$kubeconfig"

# Tag each build with its image id: a new build gets a new tag, so `helm upgrade` rolls the
# operator and new StatefulSets never reuse a stale image a node already has.
build() {
  local name="$1"
  echo "== building $name" >&2
  docker build -f "deploy/Dockerfile.${name#gridline-}" -t "$name:e2e" . >&2
  local id
  id="$(docker image inspect --format '{{.Id}}' "$name:e2e")"
  local tag="e2e-${id#sha256:}"
  tag="${tag:0:16}"
  docker tag "$name:e2e" "$name:$tag"
  kind load docker-image --name "$cluster" "$name:$tag" >&2
  echo "$tag"
}
operator_tag="$(build gridline-operator)"
dataplane_tag="$(build gridline-dataplane)"

echo "== installing the chart (operator $operator_tag, data plane $dataplane_tag)"
# pullPolicy Never: the images exist only on the kind nodes; a wrong tag fails at once.
"$helm" upgrade --install gridline charts/gridline \
  --namespace gridline-system --create-namespace \
  --set image.operator.repository=gridline-operator \
  --set image.operator.tag="$operator_tag" \
  --set image.operator.pullPolicy=Never \
  --set image.dataplane.repository=gridline-dataplane \
  --set image.dataplane.tag="$dataplane_tag" \
  --set image.dataplane.pullPolicy=Never \
  --wait --timeout 180s
# CRDs are installed by `helm install` only (helm never upgrades crds/): apply them so a
# reused cluster has this checkout's.
kubectl apply --server-side --force-conflicts -f charts/gridline/crds/ >/dev/null

echo "== end-to-end tests"
status=0
cargo test -p gridline-e2e --locked -- --test-threads=1 ${test_args[@]+"${test_args[@]}"} || status=$?
if [ "$status" -ne 0 ]; then
  echo "== operator logs (the tests failed)"
  kubectl --namespace gridline-system logs deployment/gridline-operator --tail=200 || true
fi

if $delete_cluster; then
  echo "== deleting kind cluster $cluster"
  kind delete cluster --name "$cluster"
else
  echo "== kept kind cluster $cluster (kind delete cluster --name $cluster, or run with --delete)"
fi
exit "$status"
