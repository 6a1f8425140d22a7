#!/usr/bin/env bash
# Rebuilds one service's image into minikube and restarts its Deployment.
#   scripts/redeploy.sh base|main|stream
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
service=${1:?usage: redeploy.sh base|main|stream}
case "$service" in base|main|stream) ;; *) echo "unknown service $service" >&2; exit 2 ;; esac
minikube image build -t "kubescaler/$service:dev" -f docker/Dockerfile --build-opt="target=$service" .
kubectl -n kubescaler rollout restart "deployment/$service"
kubectl -n kubescaler rollout status "deployment/$service" --timeout=5m
