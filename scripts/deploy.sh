#!/usr/bin/env bash
# Builds the images into minikube, applies an overlay, waits for every rollout, prints URLs.
#   scripts/deploy.sh [OVERLAY]              (default: minikube; `keda` scales stream with KEDA)
# Or rebuilds one service's image into minikube and restarts its Deployment, nothing else:
#   scripts/deploy.sh --only base|main|stream
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NS=kubescaler
build() {
  echo "building kubescaler/$1:dev"
  minikube image build -t "kubescaler/$1:dev" -f docker/Dockerfile --build-opt="target=$1" .
}
if [ "${1:-}" = --only ]; then
  service=${2:-}
  case "$service" in
    base | main | stream) ;;
    "") echo "usage: scripts/deploy.sh --only base|main|stream" >&2; exit 2 ;;
    *) echo "unknown service $service (base, main or stream)" >&2; exit 2 ;;
  esac
  build "$service"
  kubectl -n "$NS" rollout restart "deployment/$service"
  kubectl -n "$NS" rollout status "deployment/$service" --timeout=5m
  exit
fi
OVERLAY=${1:-minikube}
for service in base main stream; do build "$service"; done
kubectl apply -f k8s/base/namespace.yaml
# The admin token guarding POST/DELETE /main/testdata: made once, kept across deploys.
if ! kubectl -n "$NS" get secret kubescaler-admin >/dev/null 2>&1; then
  kubectl -n "$NS" create secret generic kubescaler-admin --from-literal=admin-token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi
# KEDA refuses a workload that another HPA scales, and `apply` would leave the plain one.
[ "$OVERLAY" != keda ] || kubectl -n "$NS" delete hpa stream --ignore-not-found
kubectl apply -k "k8s/overlays/$OVERLAY"
kubectl -n "$NS" rollout status statefulset/cassandra --timeout=10m
for d in redis base main stream prometheus; do kubectl -n "$NS" rollout status "deployment/$d" --timeout=10m; done
[ "$OVERLAY" = keda ] || kubectl -n "$NS" rollout status deployment/prometheus-adapter --timeout=5m
ip=$(minikube ip)
cat <<TXT

kubescaler is up.
  main:        http://$ip/main/suggested   http://$ip/main/testdata
  agent page:  http://$ip/index/<userId>/<profileId>
  admin token: kubectl -n $NS get secret kubescaler-admin -o jsonpath='{.data.admin-token}' | base64 -d
  autoscaling: kubectl -n $NS get hpa -w
TXT
