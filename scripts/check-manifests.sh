#!/usr/bin/env bash
# Renders every overlay under k8s/overlays with kubectl's kustomize, validates each object
# against the Kubernetes 1.32 schemas in strict mode (a warning is a failure), then checks the
# wiring between objects (scripts/check_manifests.py).
#
# Custom resources (KEDA's ScaledObject) have no schema in kubernetes-validate; they are
# checked by the wiring checks instead.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
K8S_VERSION=${K8S_VERSION:-1.32.0}
VENV=${KUBESCALER_STATE:-$ROOT/.dev}/venv-manifests

command -v kubectl >/dev/null || { echo "kubectl not found: it renders the kustomizations" >&2; exit 1; }
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "kubernetes-validate==1.37.0" "PyYAML>=6"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for overlay in k8s/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" >"$work/$name.yaml"
  mkdir -p "$work/$name"
  "$VENV/bin/python" - "$work/$name.yaml" "$work/$name" <<'PY'
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[2])
for i, doc in enumerate(d for d in yaml.safe_load_all(open(sys.argv[1])) if d):
    if doc["apiVersion"].startswith("keda.sh/"):
        continue
    (out / f"{i:03d}-{doc['kind']}-{doc['metadata']['name']}.yaml").write_text(yaml.safe_dump(doc))
PY
  report=$("$VENV/bin/kubernetes-validate" -k "$K8S_VERSION" --strict "$work/$name"/*.yaml 2>&1 || true)
  bad=$(printf '%s\n' "$report" | grep -v '^INFO' || true)
  count=$(ls "$work/$name" | wc -l)
  if [ -n "$bad" ]; then
    printf '%s: schema problems\n%s\n' "$name" "$bad"
    status=1
  else
    echo "$name: $count objects valid against Kubernetes $K8S_VERSION (strict)"
  fi
  "$VENV/bin/python" scripts/check_manifests.py "$work/$name.yaml" "$ROOT" || status=1
done

# The checks must be able to fail: a copy with a broken metric chain, a buffered stream path,
# an init container waiting for a Service that does not exist, one copying with `cp -a` as
# non-root and a stream path with cookie affinity has to be refused.
sed -e 's/name: connections$/name: connection/' -e 's/proxy-buffering: "off"/proxy-buffering: "on"/' \
  -e 's/nc -z -w 2 redis 6379/nc -z -w 2 no-such-service 6379/' -e 's|cp -R /etc/cassandra|cp -a /etc/cassandra|' \
  -e 's|nginx.ingress.kubernetes.io/proxy-read-timeout: "3600"|nginx.ingress.kubernetes.io/affinity: cookie|' \
  "$work/minikube.yaml" >"$work/broken.yaml"
if "$VENV/bin/python" scripts/check_manifests.py "$work/broken.yaml" "$ROOT" >"$work/broken.out"; then
  echo "the wiring checks accepted deliberately broken manifests" >&2
  status=1
elif [ "$(grep -c '^  - ' "$work/broken.out")" -lt 6 ]; then
  cat "$work/broken.out" >&2
  echo "the wiring checks missed some of the deliberate breakages" >&2
  status=1
else
  echo "broken copy: refused as it should be ($(grep -c '^  - ' "$work/broken.out") problems found)"
fi
exit $status
