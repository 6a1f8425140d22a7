#!/usr/bin/env bash
# Drives load through the Ingress and shows the autoscalers react: test data, then STREAMS
# concurrent streams (each ~2 Mbit/s, opened by `loadgen`) for DURATION seconds, with
# `kubectl get hpa -w` alongside.
#   scripts/hpa-demo.sh               (STREAMS=20 DURATION=180, HOST=$(minikube ip))
set -euo pipefail
HOST=${HOST:-$(minikube ip)}
STREAMS=${STREAMS:-20}
DURATION=${DURATION:-180}
token=$(kubectl -n kubescaler get secret kubescaler-admin -o jsonpath='{.data.admin-token}' | base64 -d)
curl -fsS -X POST -H "Authorization: Bearer $token" "http://$HOST/main/testdata?profiles=$((STREAMS + 5))&users_per_profile=2" >/dev/null
until curl -fsS "http://$HOST/main/testdata" | grep -q '"state":"done"'; do sleep 1; done
kubectl -n kubescaler get hpa -w &
watcher=$!
trap 'kill $watcher 2>/dev/null' EXIT
echo "$STREAMS streams for $DURATION s; stream should scale to $(( (STREAMS + 4) / 5 )) replicas"
cargo run --release -q -p kubescaler-loadgen -- --url "http://$HOST" --streams "$STREAMS" --duration "${DURATION}s" --ramp 2
