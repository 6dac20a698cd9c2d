#!/usr/bin/env bash
# Validates the Kubernetes manifests (deploy/kubernetes) against the Kubernetes API's JSON
# schemas with kubeconform, strictly (unknown fields are errors). No cluster is involved: there
# is none within reach here, so this checks the manifests' shape, not how a cluster runs them.
#
# Both pieces are pinned and installed on first use into the build cache (idempotent):
# - kubeconform, built from the Go module proxy with `go install`;
# - the schemas: kubeconform downloads them from GitHub by default, which is out of reach
#   here, so they come from the PyPI package kubernetes-validate, which vendors them per
#   Kubernetes version. Its "local" schemas point into one `_definitions.json` through an
#   absolute `$ref` under their `$id`'s host; the copy made here drops `$id` and makes the refs
#   relative, so kubeconform resolves them from the files beside them.
#
# Usage: scripts/kubeconform.sh [manifests...]   (default: deploy/kubernetes/*.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

kubeconform_version=v0.7.0
schemas_package_version=1.37.0 # kubernetes-validate on PyPI
kubernetes_version=1.33.0      # the API version validated against (within the package's range)

tools=$SLUICE_BUILD_CACHE/tools
kubeconform=$tools/kubeconform-$kubeconform_version/kubeconform
schemas=$tools/kubernetes-schemas-$schemas_package_version/v$kubernetes_version

if [[ ! -x $kubeconform ]] && ! command -v go >/dev/null; then
    echo "error: kubeconform is built with Go (go install); install Go" >&2
    exit 1
fi
if [[ ! -x $kubeconform ]]; then
    echo "installing kubeconform $kubeconform_version (Go module proxy; first run: about a minute)"
    GOBIN=$(dirname "$kubeconform") GOFLAGS=-mod=mod \
        go install "github.com/yannh/kubeconform/cmd/kubeconform@$kubeconform_version"
fi

if [[ ! -f $schemas/.complete ]]; then
    echo "installing the Kubernetes $kubernetes_version JSON schemas (PyPI kubernetes-validate $schemas_package_version)"
    download=$(mktemp -d)
    trap 'rm -rf "$download"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$download" "kubernetes-validate==$schemas_package_version"
    rm -rf "$schemas"
    mkdir -p "$schemas"
    python3 - "$download"/kubernetes_validate-*.whl "v$kubernetes_version-local-strict" "$schemas" <<'EOF'
import json, sys, zipfile
wheel, flavour, target = sys.argv[1:]
prefix = f"kubernetes_validate/kubernetes-json-schema/{flavour}/"
count = 0
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if not (name.startswith(prefix) and name.endswith(".json")):
            continue
        text = archive.read(name).decode()
        document = json.loads(text.replace('"/api/_definitions.json', '"_definitions.json'))
        document.pop("$id", None)
        with open(f"{target}/{name[len(prefix):]}", "w") as out:
            json.dump(document, out)
        count += 1
if count == 0:
    sys.exit(f"no schemas under {prefix} in {wheel}")
print(f"    {count} schemas")
EOF
    touch "$schemas/.complete"
fi

if (($# == 0)); then
    set -- deploy/kubernetes/*.yaml
fi
# Kustomization is kustomize's file, not a Kubernetes API object.
"$kubeconform" -strict -summary -kubernetes-version "$kubernetes_version" \
    -skip Kustomization \
    -schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
