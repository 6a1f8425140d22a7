#!/usr/bin/env bash
# A local cluster fit for watching the autoscalers: the HPA controller syncs every 10 s and
# scales down after 1 minute of calm (the original's settings); ingress and metrics-server.
#   scripts/minikube-up.sh            (MINIKUBE_CPUS=4 MINIKUBE_MEMORY=8g by default)
set -euo pipefail
command -v minikube >/dev/null || { echo "minikube not found: https://minikube.sigs.k8s.io/docs/start/" >&2; exit 1; }
minikube start \
  --cpus "${MINIKUBE_CPUS:-4}" --memory "${MINIKUBE_MEMORY:-8g}" \
  --extra-config=controller-manager.horizontal-pod-autoscaler-sync-period=10s \
  --extra-config=controller-manager.horizontal-pod-autoscaler-downscale-stabilization=1m0s \
  --extra-config=controller-manager.horizontal-pod-autoscaler-initial-readiness-delay=10s
minikube addons enable ingress
minikube addons enable metrics-server
echo "cluster up; next: scripts/deploy.sh"
