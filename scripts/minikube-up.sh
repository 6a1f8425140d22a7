#!/usr/bin/env bash
# A local cluster fit for watching the autoscalers: the HPA controller syncs every 10 s (not 15)
# and counts a new pod's metrics 10 s after it starts; ingress and metrics-server. How fast each
# HPA scales down is in its manifest's `behavior` (120 s of calm), which overrides the controller
# default set here to 2 minutes, so an HPA without a `behavior` also waits out a short lull
# before it removes pods.
#   scripts/minikube-up.sh            (MINIKUBE_CPUS=4 MINIKUBE_MEMORY=8g by default)
set -euo pipefail
command -v minikube >/dev/null || { echo "minikube not found: https://minikube.sigs.k8s.io/docs/start/" >&2; exit 1; }
minikube start \
  --cpus "${MINIKUBE_CPUS:-4}" --memory "${MINIKUBE_MEMORY:-8g}" \
  --extra-config=controller-manager.horizontal-pod-autoscaler-sync-period=10s \
  --extra-config=controller-manager.horizontal-pod-autoscaler-downscale-stabilization=2m0s \
  --extra-config=controller-manager.horizontal-pod-autoscaler-initial-readiness-delay=10s
minikube addons enable ingress
minikube addons enable metrics-server
echo "cluster up; next: scripts/deploy.sh"
