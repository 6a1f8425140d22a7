#!/usr/bin/env bash
# The suite on a real Kubernetes cluster, end to end: builds the service binaries here and the
# three images through docker/Dockerfile (BINARIES=host), loads them into the cluster, deploys
# an overlay with `kubectl apply -k` and runs scripts/e2e_cluster.py, which prints one PASS/FAIL
# line per check and writes the run's timeline to docs/e2e-timeline.{csv,png}.
#
#   scripts/e2e-cluster.sh [--lab] [--overlay NAME] [--keep] [--streams N]
#                          [--ingress-from NAMESPACE[/KEY=VALUE]] [--ingress-url URL] [--registry REGISTRY]
#
# The cluster is the one in KUBECONFIG: minikube (images loaded with `minikube image load`),
# kind (`kind load docker-image`) or any other (images pushed to --registry). With --lab, the
# one-node lab cluster kept beside this repository (../shared/k8s-lab, or $K8S_LAB) is brought
# up first, and purged at the end when this run started it: that is how CI gets a cluster.
#
#   --overlay        the overlay under k8s/overlays to deploy (default minikube); `ha` runs the
#                    failure drills of scripts/e2e_ha.py on the highly available suite instead
#                    of the scaling checks
#   --keep           leave the suite (and a cluster this run started) running afterwards
#   --streams        streams of the load on stream (default 30: min(5, ceil(30/5)) = 5 replicas)
#   --ingress-from   where the Ingress controller runs, for the NetworkPolicy that admits it
#                    (the manifests say ingress-nginx; --lab: kube-system/app=traefik)
#   --ingress-url    the Ingress's address (default: from the Ingress's status)
#   --registry       push the images there instead of loading them into the cluster
#
# Needs: cargo, docker with BuildKit (buildx; built from its Go module when the docker CLI has
# none), kubectl, python3, go (for KEDA's CRDs). The run removes what it deployed, also when a
# check fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE=${KUBESCALER_STATE:-$ROOT/.dev}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/kubescaler
BUILDX_VERSION=v0.20.1
KEDA_VERSION=v2.17.3  # the KEDA line made for Kubernetes 1.30-1.32
TAG=e2e
USE_LAB=0 KEEP=0 OVERLAY=minikube INGRESS_FROM="" INGRESS_URL="" REGISTRY="" STREAMS=30
while [ $# -gt 0 ]; do
  case $1 in
    --lab) USE_LAB=1 ;;
    --keep) KEEP=1 ;;
    --overlay) OVERLAY=$2; shift ;;
    --streams) STREAMS=$2; shift ;;
    --ingress-from) INGRESS_FROM=$2; shift ;;
    --ingress-url) INGRESS_URL=$2; shift ;;
    --registry) REGISTRY=$2; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -f "k8s/overlays/$OVERLAY/kustomization.yaml" ] || { echo "no overlay k8s/overlays/$OVERLAY" >&2; exit 2; }

work=$(mktemp -d)
results=$work/results.txt
touch "$results"
t_all=$SECONDS
timings=""
started_lab=0
lab_sh=""
phase() { printf '\n==> %s\n' "$1"; t_phase=$SECONDS; phase_name=$1; }
done_phase() { printf '<== %s (%d s)\n' "$phase_name" $((SECONDS - t_phase)); timings+="$(printf '%-12s %4d s' "$phase_name" $((SECONDS - t_phase)))"$'\n'; }
check() { # name ok detail: a PASS/FAIL line of this script's own
  local line; line="$([ "$2" = 1 ] && echo PASS || echo FAIL)  $1: $3"
  echo "$line"; echo "$line" >>"$results"
}

cleanup() {
  local rc=$?
  set +e
  if [ "$KEEP" = 1 ]; then
    echo "kept running (--keep)"
  elif [ "$started_lab" = 1 ]; then
    phase cleanup
    "$lab_sh" purge >"$work/purge.log" 2>&1
    local lab_dir; lab_dir=${LAB:-$HOME/.cache/k8s-lab}
    local daemons mounts rules bridge
    daemons=$(pgrep -f -c "^(\S*/)?(etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kube-router) |containerd --config $lab_dir|dockerd --data-root $lab_dir" || true)
    mounts=$(grep -c " $lab_dir/" /proc/mounts || true)
    rules=$( { iptables-save 2>/dev/null || true; } | grep -c -E 'KUBE-|CNI-|k8sbr0' || true)
    bridge=$(ip link show k8sbr0 >/dev/null 2>&1 && echo present || echo gone)
    check "cleanup: the lab purged" "$([ "$daemons$mounts$rules" = 000 ] && [ "$bridge" = gone ] && echo 1 || echo 0)" \
      "$daemons daemons, $mounts mounts under the lab, $rules iptables rules of the cluster left; bridge $bridge"
    done_phase
  elif [ -n "${kustomization:-}" ]; then
    phase cleanup
    # The APIService first: while it points at the adapter's vanished Service, API discovery fails
    # and the namespace cannot finish terminating.
    kubectl delete apiservice v1beta1.custom.metrics.k8s.io --ignore-not-found >/dev/null 2>&1
    kubectl delete -k "$kustomization" --ignore-not-found --wait=true --timeout=180s >/dev/null 2>&1
    [ ! -f "$work/keda-installed" ] || kubectl delete -k "$(cat "$work/keda-installed")" --ignore-not-found >/dev/null 2>&1
    kubectl get namespace kubescaler >/dev/null 2>&1 && left=1 || left=0
    check "cleanup: the suite removed" "$((1 - left))" "namespace kubescaler and the cluster-scoped objects deleted"
    done_phase
  fi
  printf '\ntimes per phase:\n%stotal        %4d s\n\n' "$timings" $((SECONDS - t_all))
  local passed failed
  passed=$(grep -c '^PASS' "$results" || true)
  failed=$(grep -c '^FAIL' "$results" || true)
  [ "$rc" = 0 ] || [ "$failed" != 0 ] || failed=1
  grep '^FAIL' "$results" || true
  rm -rf "$work"
  echo "e2e: $passed passed, $failed failed"
  [ "$failed" = 0 ] || exit 1
}
trap cleanup EXIT

# ------------------------------------------------------------------------------ the cluster
find_lab() {
  local origin; origin=$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)
  for dir in "${K8S_LAB:-}" "$ROOT/../shared/k8s-lab" "${origin:+$origin/../shared/k8s-lab}"; do
    if [ -n "$dir" ] && [ -x "$dir/lab.sh" ]; then (cd "$dir" && pwd); return; fi
  done
  echo "no k8s-lab found: set K8S_LAB to its directory" >&2; return 1
}
if [ "$USE_LAB" = 1 ]; then
  phase lab
  lab_sh=$(find_lab)/lab.sh
  eval "$("$lab_sh" env)"
  export KUBECONFIG
  if kubectl get --raw /readyz >/dev/null 2>&1; then
    echo "the lab cluster is up already: it stays up afterwards"
  else
    started_lab=1
    "$lab_sh" all
  fi
  kubectl get --raw /readyz >/dev/null
  INGRESS_FROM=${INGRESS_FROM:-kube-system/app=traefik}
  done_phase
fi
kubectl version 2>/dev/null | grep -i '^server' || true
kubectl get --raw /readyz >/dev/null || { echo "no cluster answers (KUBECONFIG=${KUBECONFIG:-~/.kube/config})" >&2; exit 1; }

# ----------------------------------------------------------------------------- the binaries
phase build
target=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --locked -q -p kubescaler-base -p kubescaler-main -p kubescaler-stream \
  -p kubescaler-loadgen -p kubescaler-bench
# The runtime image is Debian 12: a binary that needs a newer glibc than its 2.36 would not start.
needs=$(objdump -T "$target/release/base" "$target/release/main" "$target/release/stream" |
  grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
if [ "$(printf '%s\n2.36\n' "$needs" | sort -V | tail -n 1)" != 2.36 ]; then
  echo "these binaries need glibc $needs, the runtime image has 2.36: build on Debian 12 or use the Dockerfile's default (compiled) path" >&2
  exit 1
fi
done_phase

# ------------------------------------------------------------------------------- the images
phase images
# BuildKit builds only the stages the target needs; the legacy builder would also run the Rust
# stage, whose base image may not be reachable. A docker CLI without buildx gets it from its Go
# module, once.
buildx() {
  if docker buildx version >/dev/null 2>&1; then docker buildx "$@"; return; fi
  local bin=$CACHE/buildx-$BUILDX_VERSION
  if [ ! -x "$bin" ]; then
    local src=$CACHE/src/buildx
    mkdir -p "$src"
    # buildx's go.mod excludes two versions; a module that requires it must say so too.
    printf 'module local/buildx\n\ngo 1.23\n\nexclude (\n\tgithub.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc\n\tgithub.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2\n)\n' >"$src/go.mod"
    (cd "$src" && go get "github.com/docker/buildx/cmd/buildx@$BUILDX_VERSION" &&
      CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/docker/buildx/version.Version=$BUILDX_VERSION" \
        -o "$bin.tmp" github.com/docker/buildx/cmd/buildx) >"$work/buildx.log" 2>&1 ||
      { tail -n 20 "$work/buildx.log"; echo "could not build buildx" >&2; return 1; }
    mv "$bin.tmp" "$bin"
  fi
  "$bin" "$@"
}
context=$work/context
mkdir -p "$context/target/release"
cp "$target/release/base" "$target/release/main" "$target/release/stream" "$context/target/release/"
images=()
for service in base main stream; do
  image=${REGISTRY:+$REGISTRY/}kubescaler/$service:$TAG
  if ! buildx build -f docker/Dockerfile --build-arg BINARIES=host --target "$service" -t "$image" --load \
      "$context" >"$work/image-$service.log" 2>&1; then
    tail -n 20 "$work/image-$service.log"
    check "image $service" 0 "docker/Dockerfile with BINARIES=host failed"
    exit 1
  fi
  images+=("$image")
done
# What the images hold: the entrypoint starts, as the non-root user, on the distroless runtime.
for image in "${images[@]}"; do
  service=${image##*/}; service=${service%%:*}
  user=$(docker image inspect -f '{{.Config.User}}' "$image")
  version=$(docker run --rm --network none "$image" --version 2>&1 || true)
  ok=0; [ "$user" = 65532:65532 ] && [[ $version == "$service "* ]] && ok=1
  check "image $service" "$ok" "$(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'), user $user, \`$service --version\`: $version"
done
done_phase

# The drills of the ha overlay test failures, not the images or KEDA: the scaling run (any other
# overlay) builds and checks those, so the drills skip both.
keda_images=() keda_dir=""
if [ "$OVERLAY" != ha ]; then
# The default path compiles in rust:1.95-bookworm. Where that image cannot be pulled, a stand-in
# under its name is made once from Debian 12 (debootstrap) and this machine's Rust 1.95, so the
# Dockerfile's own stages — the dependency layer included — are built and checked too.
phase "images (default path)"
rust_builder() {
  local image=rust:1.95-bookworm
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  docker pull -q "$image" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null || { echo "$image cannot be pulled and debootstrap is missing" >&2; return 1; }
  local sysroot; sysroot=$(rustc +1.95.0 --print sysroot 2>/dev/null || rustc --print sysroot)
  "$sysroot/bin/rustc" --version | grep -q '^rustc 1\.95\.' || { echo "$image cannot be pulled and no Rust 1.95 is here" >&2; return 1; }
  local fs=$CACHE/rust-builder
  if [ ! -x "$fs/usr/bin/gcc" ]; then
    rm -rf "$fs.tmp"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates bookworm "$fs.tmp" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
      { tail -n 20 "$work/debootstrap.log"; return 1; }
    rm -rf "$fs.tmp/var/cache/apt/archives"/*.deb "$fs.tmp/var/lib/apt/lists"/*
    rm -rf "$fs"; mv "$fs.tmp" "$fs"
  fi
  local toolchain=$fs/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu
  rm -rf "$fs/usr/local/rustup" "$fs/usr/local/cargo"
  mkdir -p "$toolchain" "$fs/usr/local/cargo/bin"
  cp -a "$sysroot/bin" "$sysroot/lib" "$toolchain/"
  for tool in cargo rustc rustdoc; do ln -s "/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/bin/$tool" "$fs/usr/local/cargo/bin/$tool"; done
  # The build fetches crates: this machine's resolver and trust store (a TLS-intercepting
  # proxy's CA included) go in.
  cp /etc/resolv.conf "$fs/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$fs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$fs" -c . | docker import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup' - "$image" >/dev/null
  echo "made $image: Debian 12 and this machine's $("$sysroot/bin/rustc" --version)"
}
if rust_builder; then
  for service in base main stream; do
    if buildx build --network host -f docker/Dockerfile --target "$service" -t "kubescaler/$service:$TAG-compiled" --load \
        . >"$work/image-compiled-$service.log" 2>&1; then
      version=$(docker run --rm --network none "kubescaler/$service:$TAG-compiled" --version 2>&1 || true)
      same=$(docker image inspect -f '{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Env}}' \
        "kubescaler/$service:$TAG-compiled" "${REGISTRY:+$REGISTRY/}kubescaler/$service:$TAG" | uniq | wc -l)
      ok=0; [[ $version == "$service "* ]] && [ "$same" = 1 ] && ok=1
      check "image $service, default path" "$ok" "compiled in the Dockerfile (dependencies in their own layer): \`$service --version\`: $version; user, entrypoint and environment $([ "$same" = 1 ] && echo "the same as" || echo "DIFFERENT from") the BINARIES=host image"
    else
      tail -n 30 "$work/image-compiled-$service.log"
      check "image $service, default path" 0 "docker/Dockerfile's default path failed"
    fi
  done
else
  check "images, default path" 0 "no Rust builder image"
fi
done_phase

# KEDA, for the keda overlay: its manifests come from its Go module (config/), its images from
# the registry, or — where that cannot be reached — are made from the same module: the three
# binaries built once, each on the distroless stand-in as the release images are.
phase keda
keda_dir=$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
keda_images=()
for part in "keda operator /keda" "keda-metrics-apiserver adapter /usr/local/bin/keda-adapter" \
    "keda-admission-webhooks webhooks /keda-admission-webhooks"; do
  read -r name command entrypoint <<<"$part"
  image=ghcr.io/kedacore/$name:${KEDA_VERSION#v}
  keda_images+=("$image")
  docker image inspect "$image" >/dev/null 2>&1 || docker pull -q "$image" >/dev/null 2>&1 && continue
  bin=$CACHE/keda-$KEDA_VERSION/$command
  if [ ! -x "$bin" ]; then
    src=$CACHE/src/keda-$KEDA_VERSION
    mkdir -p "$src"
    # KEDA's go.mod pins its Kubernetes libraries with replace directives, which a module that
    # requires it must repeat; this machine's checksum database does not know k8s.io/metrics
    # v0.31.7, which the Go proxy serves.
    { printf 'module local/keda\n\ngo 1.23.8\n\nrequire github.com/kedacore/keda/v2 %s\n\n' "$KEDA_VERSION"
      sed -n '/^replace (/,/^)/p' "$keda_dir/go.mod"; } >"$src/go.mod"
    printf 'package tools\n\nimport _ "github.com/kedacore/keda/v2/cmd/%s"\n' "$command" >"$src/tools.go"
    (cd "$src" && GONOSUMDB=k8s.io/metrics go mod tidy && CGO_ENABLED=0 GONOSUMDB=k8s.io/metrics go build -trimpath \
      -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v}" -o "$bin.tmp" \
      "github.com/kedacore/keda/v2/cmd/$command") >"$work/keda-$command.log" 2>&1 ||
      { tail -n 20 "$work/keda-$command.log"; check "keda images" 0 "could not build KEDA's $command"; exit 1; }
    mv "$bin.tmp" "$bin"
  fi
  mkdir -p "$work/keda-$command"
  cp "$bin" "$work/keda-$command/bin"
  printf 'FROM gcr.io/distroless/static-debian12:nonroot\nCOPY bin %s\nENTRYPOINT ["%s"]\n' "$entrypoint" "$entrypoint" \
    >"$work/keda-$command/Dockerfile"
  buildx build -q -t "$image" --load "$work/keda-$command" >/dev/null
done
echo "KEDA $KEDA_VERSION: ${keda_images[*]}"
done_phase
fi

phase load
if [ -n "$REGISTRY" ]; then
  for image in "${images[@]}"; do docker push -q "$image" >/dev/null; done
elif [ "$USE_LAB" = 1 ]; then
  "$lab_sh" load "${images[@]}" "${keda_images[@]}" | tail -n 1
elif [ "$(kubectl config current-context)" = minikube ]; then
  for image in "${images[@]}" "${keda_images[@]}"; do minikube image load "$image"; done
elif [[ $(kubectl config current-context) == kind-* ]]; then
  kind load docker-image --name "$(kubectl config current-context | sed 's/^kind-//')" "${images[@]}" "${keda_images[@]}"
else
  echo "cannot load images into context $(kubectl config current-context): use --registry" >&2
  exit 1
fi
done_phase

# ------------------------------------------------------------------------- the overlays to run
# An overlay, unchanged, with this run's images and, where the Ingress controller is not in
# ingress-nginx, the NetworkPolicy that admits it pointed at where it is: the chosen one, and
# keda for the check of KEDA's ScaledObject.
write_overlay() { # DIR OVERLAY
  local dir=$1 overlay=$2
  mkdir -p "$dir"
  {
    echo "# Made by scripts/e2e-cluster.sh for one run: k8s/overlays/$overlay with the images it built."
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    echo "  - $(realpath --relative-to="$dir" "$ROOT/k8s/overlays/$overlay")"
    echo "images:"
    for service in base main stream; do
      echo "  - {name: kubescaler/$service, newName: ${REGISTRY:+$REGISTRY/}kubescaler/$service, newTag: $TAG}"
    done
    echo "patches:"
    if [ -n "$REGISTRY" ]; then
      echo "  - target: {kind: Deployment, name: \"base|main|stream\"}"
      echo "    patch: '[{\"op\": \"add\", \"path\": \"/spec/template/spec/containers/0/imagePullPolicy\", \"value\": \"IfNotPresent\"}]'"
    fi
    if [ -n "$INGRESS_FROM" ]; then
      local namespace=${INGRESS_FROM%%/*} pods="" label
      if [[ $INGRESS_FROM == */* ]]; then
        label=${INGRESS_FROM#*/}
        pods=", \"podSelector\": {\"matchLabels\": {\"${label%%=*}\": \"${label#*=}\"}}"
      fi
      echo "  - target: {kind: NetworkPolicy, name: main-and-stream-from-ingress}"
      echo "    patch: '[{\"op\": \"replace\", \"path\": \"/spec/ingress/0/from/0\", \"value\": {\"namespaceSelector\": {\"matchLabels\": {\"kubernetes.io/metadata.name\": \"$namespace\"}}$pods}}]'"
    fi
  } >"$dir/kustomization.yaml"
  sed -i '/^patches:$/{$d}' "$dir/kustomization.yaml"
  kubectl kustomize "$dir" >/dev/null
}
kustomization=$STATE/e2e/overlay
write_overlay "$kustomization" "$OVERLAY"
write_overlay "$STATE/e2e/overlay-keda" keda

VENV=$STATE/venv-e2e
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib, yaml' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "PyYAML>=6" "matplotlib==3.10.3"
fi

phase checks
set +e
if [ "$OVERLAY" = ha ]; then
  # The highly available suite: the failure drills (scripts/e2e_ha.py) instead of the scaling checks.
  "$VENV/bin/python" scripts/e2e_ha.py --root "$ROOT" --kustomization "$kustomization" \
    ${INGRESS_URL:+--ingress-url "$INGRESS_URL"} 2>&1 | tee "$work/checks.log"
else
  "$VENV/bin/python" scripts/e2e_cluster.py --root "$ROOT" --bin "$target/release" --work "$work" \
    --kustomization "$kustomization" --keda-kustomization "$STATE/e2e/overlay-keda" --keda-dir "$keda_dir" \
    --streams "$STREAMS" ${INGRESS_URL:+--ingress-url "$INGRESS_URL"} \
    2>&1 | tee "$work/checks.log"
fi
rc=${PIPESTATUS[0]}
set -e
grep -E '^(PASS|FAIL)  ' "$work/checks.log" >>"$results" || true
[ "$rc" = 0 ] || grep -q '^FAIL' "$results" || check checks 0 "the checks exited with $rc"
done_phase
