#!/usr/bin/env python3
"""Wiring checks over rendered Kubernetes manifests (the output of `kubectl kustomize`).

Schema validation says each object is well formed; these checks say the objects fit together:
selectors select, ports exist, init containers wait for real Services, every container is
hardened and bounded, the Ingress reaches only main and stream, and the autoscaling metric
chain is unbroken from the name stream exports to the name the HPA asks for.

usage: check_manifests.py RENDERED.yaml [REPO_ROOT]      exit 1 and a list of findings on failure
"""
import pathlib
import re
import sys

import yaml

SERVICES = {"base", "main", "stream"}
EXPORTED_METRIC = "kubescaler_stream_active_connections"


def main() -> int:
    rendered = pathlib.Path(sys.argv[1])
    root = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else pathlib.Path(__file__).resolve().parent.parent
    objects = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
    problems: list[str] = []

    def by_kind(kind):
        return [o for o in objects if o["kind"] == kind]

    workloads = by_kind("Deployment") + by_kind("StatefulSet")
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}

    # Everything of the suite lives in its namespace (a component's own objects get none of the
    # base's transformers, so a forgotten namespace lands in `default`). The adapter's reader
    # binding is in kube-system by design, cluster-scoped objects have none.
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService"}
    for o in objects:
        where = o["metadata"].get("namespace")
        if o["kind"] not in cluster_scoped and where != "kubescaler" and not (
            o["kind"] == "RoleBinding" and where == "kube-system"
        ):
            problems.append(f"{o['kind']} {o['metadata']['name']}: in namespace {where!r}, not kubescaler")

    # The stream service really exports the metric the chain starts from.
    source = (root / "crates/stream/src/metrics.rs").read_text()
    if f'"{EXPORTED_METRIC}"' not in source:
        problems.append(f"stream does not export {EXPORTED_METRIC}")

    for w in workloads:
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]["spec"]
        labels = w["spec"]["template"]["metadata"].get("labels", {})
        selector = w["spec"]["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{name}: selector {selector} does not match its pod labels")
        psc = pod.get("securityContext", {})
        if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod must run as non-root with seccomp RuntimeDefault")
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: needs allowPrivilegeEscalation false and a read-only root")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: must drop ALL capabilities")
            res = c.get("resources", {})
            if not {"cpu", "memory"} <= set(res.get("requests", {})) or not {"cpu", "memory"} <= set(res.get("limits", {})):
                problems.append(f"{where}: needs cpu and memory requests and limits")
        for c in pod["containers"]:
            where = f"{name}/{c['name']}"
            if "readinessProbe" not in c or "livenessProbe" not in c:
                problems.append(f"{where}: needs readiness and liveness probes")
            if name in SERVICES:
                ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
                live = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
                if (ready, live) != ("/readyz", "/livez"):
                    problems.append(f"{where}: probes must be /readyz and /livez, got {ready} and {live}")
        # Init containers wait for a Service that exists, on a port it serves.
        for c in pod.get("initContainers", []):
            script = " ".join(c.get("command", []))
            for host, port in re.findall(r"nc -z -w \d+ ([a-z-]+) (\d+)", script) + re.findall(
                r"http://([a-z-]+):(\d+)/readyz", script
            ):
                svc = services.get(host)
                if not svc or int(port) not in [p["port"] for p in svc["spec"]["ports"]]:
                    problems.append(f"{name}/{c['name']}: waits for {host}:{port}, which no Service serves")
            if c["name"].startswith("wait-for-") and "until" not in script:
                problems.append(f"{name}/{c['name']}: an init container that does not wait")
            # A non-root copy into a volume cannot keep owners or times: the volume's root
            # belongs to root, so `cp -a` fails there and the pod never starts.
            if pod.get("securityContext", {}).get("runAsUser", 0) != 0 and re.search(
                r"\bcp\s+(-[a-zA-Z]*[ap]|--archive|--preserve)", script
            ):
                problems.append(f"{name}/{c['name']}: copies with preserved attributes as non-root (use cp -R)")

    expected_waits = {"base": {"cassandra"}, "main": {"redis", "base"}, "stream": {"redis", "base"}}
    for w in workloads:
        name = w["metadata"]["name"]
        if name in expected_waits:
            waits = {c["name"].removeprefix("wait-for-") for c in w["spec"]["template"]["spec"].get("initContainers", [])}
            if waits != expected_waits[name]:
                problems.append(f"{name}: waits for {sorted(waits)}, should wait for {sorted(expected_waits[name])}")

    # Services select pods that exist and target ports those pods name.
    for name, svc in services.items():
        selector = svc["spec"].get("selector", {})
        targets = [w for w in workloads if all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
        if not targets:
            problems.append(f"service {name}: selects no pod")
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for w in targets:
                names = {p.get("name") for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                numbers = {p["containerPort"] for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                if target not in names and target not in numbers:
                    problems.append(f"service {name}: target port {target} not in {w['metadata']['name']}")

    # The Ingress reaches main and stream only.
    for ing in by_kind("Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]["name"]
                if backend not in {"main", "stream"}:
                    problems.append(f"ingress {ing['metadata']['name']}: path {path['path']} reaches {backend}")
    # Portable routes: plain paths that every Ingress controller reads alike (main serves /main
    # itself, so nothing is rewritten).
    for ing in by_kind("Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                if path["pathType"] not in {"Prefix", "Exact"} or re.search(r"[()*$^\\]", path["path"]):
                    problems.append(f"ingress {ing['metadata']['name']}: path {path['path']} ({path['pathType']}) is not a plain Prefix")
        if any(k.endswith(("/rewrite-target", "/use-regex")) for k in ing["metadata"].get("annotations", {})):
            problems.append(f"ingress {ing['metadata']['name']}: rewrites paths, which only ingress-nginx would do")
    stream_ingress = [i for i in by_kind("Ingress") if any(p["backend"]["service"]["name"] == "stream" for r in i["spec"]["rules"] for p in r["http"]["paths"])]
    for ing in stream_ingress:
        annotations = ing["metadata"].get("annotations", {})
        if annotations.get("nginx.ingress.kubernetes.io/proxy-buffering") != "off":
            problems.append(f"ingress {ing['metadata']['name']}: the stream path must not be buffered")
        # A stream handed off to rebalance must be free to land on another pod.
        if any("affinity" in k or "session-cookie" in k or "sticky" in k for k in annotations):
            problems.append(f"ingress {ing['metadata']['name']}: the stream path must not pin clients to a pod")

    # No cluster-admin anywhere.
    for b in by_kind("ClusterRoleBinding") + by_kind("RoleBinding"):
        if b["roleRef"]["name"] == "cluster-admin":
            problems.append(f"{b['kind']} {b['metadata']['name']} binds cluster-admin")

    # Metric chain: exported name -> adapter rule -> HPA metric (or KEDA query).
    adapter_names = set()
    for cm in by_kind("ConfigMap"):
        if "config.yaml" in cm.get("data", {}) and "rules" in cm["data"]["config.yaml"]:
            for rule in yaml.safe_load(cm["data"]["config.yaml"])["rules"]:
                if EXPORTED_METRIC in rule["seriesQuery"] and re.fullmatch(rule["name"]["matches"], EXPORTED_METRIC):
                    adapter_names.add(rule["name"]["as"])
    hpas = {h["metadata"]["name"]: h for h in by_kind("HorizontalPodAutoscaler")}
    scaled = [s for s in by_kind("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == "stream"]
    if "stream" in hpas:
        metrics = [m["pods"]["metric"]["name"] for m in hpas["stream"]["spec"]["metrics"] if m["type"] == "Pods"]
        if not metrics or not set(metrics) <= adapter_names:
            problems.append(f"stream HPA asks for {metrics}, the adapter serves {sorted(adapter_names)}")
    elif scaled:
        if not all(EXPORTED_METRIC in t["metadata"]["query"] for t in scaled[0]["spec"]["triggers"]):
            problems.append("the KEDA trigger does not query the exported metric")
    else:
        problems.append("nothing scales stream")
    if "main" in hpas and hpas["main"]["spec"]["metrics"][0]["resource"]["name"] != "cpu":
        problems.append("main must scale on CPU")

    # What minikube-up.sh tells a user about scale-down must be what the HPAs do.
    minikube_up = (root / "scripts/minikube-up.sh").read_text()
    stated = re.search(r"\((\d+) s of calm\)", minikube_up)
    for name, hpa in hpas.items():
        window = hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds")
        if not stated or window != int(stated.group(1)):
            said = stated.group(0) if stated else "nothing"
            problems.append(f"HPA {name}: scales down after {window} s of calm; minikube-up.sh says {said}")

    for p in problems:
        print(f"  - {p}")
    print(f"{rendered.name}: {len(objects)} objects, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
