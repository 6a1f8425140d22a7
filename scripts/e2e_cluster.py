#!/usr/bin/env python3
"""The suite on a real Kubernetes cluster, end to end (run by scripts/e2e-cluster.sh).

The images are built and loaded already; this deploys an overlay, drives the suite through its
Ingress as a user would, and prints one PASS/FAIL line per check:

  dry-run       every overlay under k8s/overlays is accepted by the API server (--dry-run=server)
  deploy        every pod Ready
  ingress       test data, listings, the agent page and a stream through the Ingress
  netpol        which pod reaches which Service: the allowed paths open, every other one closed
  init, probes  with Redis stopped, a new stream pod waits in its init containers and running
                pods turn unready without being restarted; all recover when Redis is back
  hpa-main      CPU load on main takes it 1 -> 3, and back to 1 as its HPA's behavior says
  hpa-stream    N streams take stream 1 -> ceil(N/5) (at most 5), and back down after the load
  rebalance     after the scale-up, the streams spread over the pods (max/mean <= 1.25 within
                60 s of the last scale-up), every moved stream streaming again, no 409
  metric-chain  the custom metrics API gives, per pod, the streams open on that pod
  handover      streams of stream pods removed by the scale-down reconnect elsewhere at once
  keda          the keda overlay's ScaledObject scales stream
  unbound       dropping the test data ends a stream of it with `event: unbound` at once: base
                announces the change on Redis and stream hears it, through the NetworkPolicies

A sampler records a timeline meanwhile (replicas, HPA metrics, streams and CPU per pod), written
as CSV and drawn as PNG.

usage: e2e_cluster.py --root ROOT --bin BIN_DIR --kustomization DIR --ingress-url URL [...]
"""
from __future__ import annotations

import argparse
import csv
import http.client
import json
import math
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

NS = "kubescaler"
T0 = time.time()


def log(message: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {message}", flush=True)


# ------------------------------------------------------------------------------------ checks
class Checks:
    """PASS/FAIL lines as they happen, and the verdict at the end."""

    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def record(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        return ok

    def run(self, name: str, check) -> bool:
        """Runs `check() -> (ok, detail)`; an exception is a failure with its message."""
        try:
            ok, detail = check()
        except Exception as error:  # every failure becomes a FAIL line
            ok, detail = False, f"{type(error).__name__}: {error}"
        return self.record(name, ok, detail)

    def summary(self) -> str:
        failed = [n for n, ok, _ in self.results if not ok]
        return f"e2e: {len(self.results) - len(failed)} passed, {len(failed)} failed" + (
            f" ({', '.join(failed)})" if failed else ""
        )


class Abort(Exception):
    """A step the remaining checks depend on failed."""


# -------------------------------------------------------------------------------- kubernetes
class Kube:
    """kubectl for changes, and `kubectl proxy` for the many reads of the sampler, so that
    whatever authentication the kubeconfig uses works unchanged."""

    def __init__(self) -> None:
        self.proxy = subprocess.Popen(
            ["kubectl", "proxy", "--port=0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        line = self.proxy.stdout.readline() if self.proxy.stdout else ""
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            raise Abort(f"kubectl proxy did not start: {line.strip()}")
        self.api = f"http://127.0.0.1:{match.group(1)}"

    def close(self) -> None:
        self.proxy.terminate()

    def get(self, path: str, timeout: float = 10):
        with urllib.request.urlopen(self.api + path, timeout=timeout) as response:
            return json.load(response)

    def text(self, path: str, timeout: float = 5) -> str:
        with urllib.request.urlopen(self.api + path, timeout=timeout) as response:
            return response.read().decode()

    @staticmethod
    def run(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 600) -> str:
        done = subprocess.run(
            ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def pods(self, name: str | None = None) -> list[dict]:
        selector = f"?labelSelector=app.kubernetes.io%2Fname%3D{name}" if name else ""
        return self.get(f"/api/v1/namespaces/{NS}/pods{selector}")["items"]

    def deployment(self, name: str) -> dict:
        return self.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def restarts(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))


def quantity(value: str) -> float:
    """A Kubernetes quantity as a number: "3", "3500m", "12345678n", "2k"."""
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
    if value and value[-1] in units:
        return float(value[:-1]) * units[value[-1]]
    return float(value)


def parse_time(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


def open_streams(kube: Kube, pod: str) -> int | None:
    """A stream pod's own count of its open streams (its gauge), through the API server."""
    try:
        text = kube.text(f"/api/v1/namespaces/{NS}/pods/{pod}:8080/proxy/metrics", timeout=3)
    except (OSError, urllib.error.URLError):
        return None
    match = re.search(r"^kubescaler_stream_active_connections(?:\{[^}]*\})? (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else None


def wait_until(what: str, predicate, timeout: float, every: float = 1.0):
    deadline = time.time() + timeout
    last_error = None
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, urllib.error.URLError, KeyError, ValueError) as error:
            last_error = error
        time.sleep(every)
    raise TimeoutError(f"{what} not within {timeout:.0f} s" + (f" (last error: {last_error})" if last_error else ""))


# ------------------------------------------------------------------------------------- HTTP
class Ingress:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, admin: bool = False, timeout: float = 15):
        request = urllib.request.Request(self.url + path, method=method)
        if admin:
            request.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
                return response.status, response.headers, body
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def json(self, path: str):
        status, _, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    def first_event(self, path: str, timeout: float = 10) -> tuple[float, http.client.HTTPConnection]:
        """Opens an SSE stream; returns the seconds to its first message and the open connection."""
        seconds, connection, _ = self.stream(path, timeout)
        return seconds, connection

    def stream(self, path: str, timeout: float = 10):
        """Opens an SSE stream; the seconds to its first message, the connection and the response
        (read on for the events that follow)."""
        parsed = urllib.parse.urlsplit(self.url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=timeout)
        started = time.time()
        connection.request("GET", path, headers={"accept": "text/event-stream, application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {response.read(300)!r}")
        while True:
            line = response.readline()
            if not line:
                raise RuntimeError(f"{path}: the stream ended before its first message")
            if line.startswith(b"id: "):
                return time.time() - started, connection, response


# ---------------------------------------------------------------------------------- timeline
class Timeline(threading.Thread):
    """Samples the cluster every `every` seconds: replicas, HPAs, streams and CPU per pod, and
    what the custom metrics API says per pod."""

    def __init__(self, kube: Kube, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.kube, self.every = kube, every
        self.rows: list[dict] = []
        self.events: list[tuple[float, str]] = []
        self.stopped = threading.Event()

    def mark(self, event: str) -> float:
        now = time.time()
        self.events.append((now, event))
        log(f"timeline: {event}")
        return now

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.time()
            try:
                self.rows.append(self.sample())
            except Exception as error:  # a missed sample is not fatal
                log(f"sample failed: {error}")
            self.stopped.wait(max(0.0, self.every - (time.time() - started)))

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)

    def sample(self) -> dict:
        kube = self.kube
        now = time.time()
        row: dict = {"time": now}
        for d in kube.get(f"/apis/apps/v1/namespaces/{NS}/deployments")["items"]:
            name = d["metadata"]["name"]
            row[f"{name}_replicas"] = d["spec"].get("replicas", 0)
            row[f"{name}_ready"] = d["status"].get("readyReplicas", 0)
        for h in kube.get(f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers")["items"]:
            name = h["metadata"]["name"]
            row[f"hpa_{name}_desired"] = h["status"].get("desiredReplicas")
            spec = h["spec"]["metrics"][0]
            current = (h["status"].get("currentMetrics") or [{}])[0]
            if spec["type"] == "Resource":
                row[f"hpa_{name}_target"] = spec["resource"]["target"].get("averageUtilization")
                row[f"hpa_{name}_current"] = current.get("resource", {}).get("current", {}).get("averageUtilization")
            else:
                row[f"hpa_{name}_target"] = quantity(spec["pods"]["target"]["averageValue"])
                value = current.get("pods", {}).get("current", {}).get("averageValue")
                row[f"hpa_{name}_current"] = quantity(value) if value is not None else None
        pods = kube.pods()
        row["pods"] = {
            p["metadata"]["name"]: {
                "app": p["metadata"].get("labels", {}).get("app.kubernetes.io/name", ""),
                "ready": ready(p),
                "terminating": "deletionTimestamp" in p["metadata"],
            }
            for p in pods
        }
        streams: dict[str, int] = {}
        for p in pods:
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "stream":
                continue
            if p["status"].get("phase") != "Running" or not p["status"].get("podIP"):
                continue
            name = p["metadata"]["name"]
            gauge = open_streams(kube, name)
            if gauge is not None:
                streams[name] = gauge
        row["streams"] = streams
        custom: dict[str, float] = {}
        try:
            items = kube.get(f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NS}/pods/*/connections", timeout=5)
            for item in items.get("items", []):
                custom[item["describedObject"]["name"]] = quantity(item["value"])
        except (OSError, urllib.error.URLError):
            pass
        row["custom"] = custom
        cpu: dict[str, float] = {}
        try:
            for item in kube.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods", timeout=5)["items"]:
                cpu[item["metadata"]["name"]] = sum(quantity(c["usage"]["cpu"]) for c in item["containers"]) * 1000
        except (OSError, urllib.error.URLError):
            pass
        row["cpu"] = cpu
        return row

    # The CSV: one row per sample, per-pod values as `pod=value` separated by spaces.
    COLUMNS = [
        "t_s", "unix_time", "event",
        "base_ready", "main_replicas", "main_ready", "stream_replicas", "stream_ready",
        "hpa_main_cpu_pct", "hpa_main_target_pct", "hpa_main_desired",
        "hpa_stream_connections_avg", "hpa_stream_target", "hpa_stream_desired",
        "streams_total", "streams_per_pod", "custom_metric_per_pod", "cpu_millicores_per_pod",
    ]

    def write_csv(self, path: pathlib.Path, origin: float) -> None:
        events = sorted(self.events)
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(self.COLUMNS)
            previous = -math.inf
            for row in self.rows:
                here = [e for t, e in events if previous < t <= row["time"]]
                previous = row["time"]

                def pods(values: dict, fmt: str) -> str:
                    return " ".join(f"{k}={fmt.format(v)}" for k, v in sorted(values.items()))

                writer.writerow([
                    f"{row['time'] - origin:.1f}", f"{row['time']:.1f}", "; ".join(here),
                    row.get("base_ready"), row.get("main_replicas"), row.get("main_ready"),
                    row.get("stream_replicas"), row.get("stream_ready"),
                    row.get("hpa_main_current"), row.get("hpa_main_target"), row.get("hpa_main_desired"),
                    row.get("hpa_stream_current"), row.get("hpa_stream_target"), row.get("hpa_stream_desired"),
                    sum(row["streams"].values()), pods(row["streams"], "{}"), pods(row["custom"], "{:g}"),
                    pods({k: v for k, v in row["cpu"].items() if not k.startswith(("cassandra", "prometheus"))}, "{:.0f}"),
                ])


def draw(csv_path: pathlib.Path, png_path: pathlib.Path, title: str) -> None:
    """Replicas, streams per stream pod and CPU per pod over time, load start and stop marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    t = [float(r["t_s"]) for r in rows]

    def per_pod(column: str) -> dict[str, list[float | None]]:
        names = sorted({kv.split("=")[0] for r in rows for kv in r[column].split()})
        series = {n: [] for n in names}
        for r in rows:
            values = dict(kv.split("=") for kv in r[column].split())
            for n in names:
                series[n].append(float(values[n]) if n in values else None)
        return series

    def number(r: dict, column: str) -> float | None:
        return float(r[column]) if r[column] not in ("", "None") else None

    streams_by_pod = per_pod("streams_per_pod")
    cpu_by_pod = {n: v for n, v in per_pod("cpu_millicores_per_pod").items() if n.startswith(("main-", "stream-"))}
    # One colour per pod in every panel; a pod is named by its deployment and its last name part.
    palette = plt.get_cmap("tab10").colors
    colour = {pod: palette[i % len(palette)] for i, pod in enumerate(sorted(set(streams_by_pod) | set(cpu_by_pod)))}

    def label(pod: str) -> str:
        return f"{pod.split('-')[0]} {pod.split('-')[-1]}"

    fig, (replicas, streams, cpu) = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    fig.suptitle(title)
    replicas.step(t, [number(r, "stream_replicas") for r in rows], where="post", label="stream replicas", color="tab:blue")
    replicas.step(t, [number(r, "stream_ready") for r in rows], where="post", label="stream ready", color="tab:blue", linestyle=":")
    replicas.step(t, [number(r, "main_replicas") for r in rows], where="post", label="main replicas", color="tab:orange")
    replicas.step(t, [number(r, "main_ready") for r in rows], where="post", label="main ready", color="tab:orange", linestyle=":")
    replicas.set_ylabel("replicas")
    replicas.set_ylim(0, 6)
    replicas.legend(loc="upper right", fontsize="small")

    for pod, values in streams_by_pod.items():
        if any(values):
            streams.step(t, values, where="post", label=label(pod), color=colour[pod])
    streams.plot(t, [number(r, "hpa_stream_connections_avg") for r in rows], color="black", linestyle="--", label="HPA: average")
    streams.axhline(5, color="grey", linewidth=0.8, linestyle=":", label="HPA: target")
    streams.set_ylabel("open streams per stream pod")
    streams.set_ylim(bottom=0)
    streams.legend(loc="upper right", fontsize="small", ncol=3)

    for pod, values in cpu_by_pod.items():
        cpu.plot(t, values, label=label(pod), color=colour[pod], linestyle="-" if pod.startswith("main-") else "--")
    cpu.set_ylabel("CPU, millicores")
    cpu.set_xlabel("seconds since the load started")
    cpu.set_ylim(bottom=0)
    cpu.legend(loc="upper right", fontsize="small", ncol=3)

    for r, x in zip(rows, t):
        for event in filter(None, r["event"].split("; ")):
            for axis in (replicas, streams, cpu):
                axis.axvline(x, color="red" if "stop" in event else "green", linewidth=0.8, alpha=0.7)
            replicas.annotate(event, (x, 5.6), fontsize="x-small", rotation=90, va="top", ha="right")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)


# ------------------------------------------------------------------------------------- phases
class E2E:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = pathlib.Path(args.root)
        self.bin = pathlib.Path(args.bin)
        self.work = pathlib.Path(args.work)
        self.checks = Checks()
        self.kube = Kube()
        self.token = secrets.token_hex(16)
        self.ingress = Ingress(args.ingress_url or "", self.token)
        self.children: list[subprocess.Popen] = []
        self.pairs: list[tuple[str, str]] = []
        self.figures: dict[str, str] = {}

    # -- dry run of every overlay
    def dry_run(self) -> None:
        Kube.run("apply", "-f", str(self.root / "k8s/base/namespace.yaml"))
        keda = self.install_keda()
        for overlay in sorted((self.root / "k8s/overlays").iterdir()):
            if not (overlay / "kustomization.yaml").exists():
                continue

            def check(overlay=overlay):
                # KEDA's webhook answers once its operator has made the webhook's certificate.
                out = wait_until("the dry run", lambda: dry_run(overlay), 120, 3)
                kinds = {line.split("/")[0] for line in out.split()}
                return True, f"{len(out.split())} objects accepted ({len(kinds)} kinds)" + (
                    f"; the ScaledObject by KEDA {keda}'s CRD and admission webhook" if overlay.name == "keda" else ""
                )

            self.checks.run(f"dry-run {overlay.name}", check)

    def install_keda(self) -> str:
        """KEDA from its Go module's config/ (CRDs, operator, metrics API server, admission
        webhooks), on the images the wrapper script made available; kept if already installed."""
        version = self.args.keda_version
        if Kube.run("-n", "keda", "get", "deployment", "keda-operator", "--ignore-not-found", "-o", "name").strip():
            return version + " (already installed)"
        here = self.work / "keda"
        shutil.copytree(pathlib.Path(self.args.keda_dir) / "config", here / "config")
        for path in [here, *here.rglob("*")]:  # the module cache is read-only
            path.chmod(path.stat().st_mode | 0o200)
        tag = version.removeprefix("v")
        small = {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
        (here / "kustomization.yaml").write_text(yaml.safe_dump({
            "resources": ["config/default"],
            "images": [{"name": f"ghcr.io/kedacore/{n}", "newTag": tag}
                       for n in ("keda", "keda-metrics-apiserver", "keda-admission-webhooks")],
            # Its manifests say `Always`, which would pull what is already here; and small
            # requests, so that KEDA fits beside the suite on one node.
            "patches": [{"target": {"kind": "Deployment"}, "patch": json.dumps([
                {"op": "replace", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "IfNotPresent"},
                {"op": "replace", "path": "/spec/template/spec/containers/0/resources", "value": small},
            ])}],
        }))
        (self.work / "keda-installed").write_text(str(here))  # removed with the run
        Kube.run("apply", "--server-side", "--force-conflicts", "-k", str(here))
        for name in ("keda-operator", "keda-metrics-apiserver", "keda-admission"):
            Kube.run("-n", "keda", "rollout", "status", f"deployment/{name}", "--timeout=180s", timeout=200)

        def serving():
            service = self.kube.get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.external.metrics.k8s.io")
            return any(c["type"] == "Available" and c["status"] == "True" for c in service["status"].get("conditions") or [])

        wait_until("KEDA's external metrics API", serving, 120, 2)
        return version

    # -- deploy
    def deploy(self) -> None:
        started = time.time()
        Kube.run("-n", NS, "delete", "secret", "kubescaler-admin", "--ignore-not-found")
        Kube.run("-n", NS, "create", "secret", "generic", "kubescaler-admin", f"--from-literal=admin-token={self.token}")
        Kube.run("apply", "-k", self.args.kustomization)
        try:
            Kube.run("-n", NS, "rollout", "status", "statefulset/cassandra", "--timeout=600s", timeout=620)
            for d in ("redis", "base", "main", "stream", "prometheus", "prometheus-adapter"):
                Kube.run("-n", NS, "rollout", "status", f"deployment/{d}", "--timeout=300s", timeout=320)
            wait_until("every pod Ready", lambda: all(ready(p) for p in self.kube.pods()), 120)
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as error:
            self.checks.record("deploy", False, str(error))
            self.diagnose()
            raise Abort("the suite did not come up") from error
        if not self.ingress.url:
            def address():
                status = self.kube.get(f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/stream")["status"]
                entry = (status.get("loadBalancer", {}).get("ingress") or [{}])[0]
                return entry.get("ip") or entry.get("hostname")

            self.ingress.url = f"http://{wait_until('an address in the Ingress status', address, 120, 2)}"
        # The controller routes a moment after the pods are Ready: /main/suggested answers only on
        # main (stream has no /main routes), /readyz at the root on stream.
        try:
            wait_until("the Ingress routing to main and stream", lambda: self.ingress.request("GET", "/main/suggested")[0] == 200
                       and self.ingress.request("GET", "/readyz")[0] == 200, 60)
        except TimeoutError as error:
            self.checks.record("deploy", False, str(error))
            raise Abort("the Ingress does not route") from error
        pods = self.kube.pods()
        self.checks.record(
            "deploy", True,
            f"{len(pods)} pods Ready {time.time() - started:.0f} s after apply "
            f"({', '.join(sorted({p['metadata']['labels'].get('app.kubernetes.io/name', '?') for p in pods}))}); "
            f"Ingress at {self.ingress.url}",
        )
        self.figures["deploy_s"] = f"{time.time() - started:.0f}"

    def diagnose(self) -> None:
        print(Kube.run("-n", NS, "get", "pods", "-o", "wide", check=False))
        for pod in self.kube.pods():
            if not ready(pod):
                name = pod["metadata"]["name"]
                print(Kube.run("-n", NS, "describe", "pod", name, check=False)[-2500:])
                print(Kube.run("-n", NS, "logs", name, "--all-containers", "--tail=30", check=False))

    # -- test data and the Ingress
    def ingress_checks(self) -> None:
        def testdata():
            status, _, body = self.ingress.request("POST", "/main/testdata?profiles=12&users_per_profile=2&seed=7", admin=True)
            if status != 202:
                return False, f"POST /main/testdata: {status} {body[:200]!r}"
            progress = wait_until(
                "test data", lambda: (p := self.ingress.json("/main/testdata"))["state"] != "running" and p, 120
            )
            profiles = self.ingress.json("/main/profiles")
            seen = set()
            for profile in profiles:
                for user in profile["users"]:
                    if (user, profile["id"]) not in seen:
                        seen.add((user, profile["id"]))
                        self.pairs.append((user, profile["id"]))
            ok = progress["state"] == "done" and len(profiles) == 12
            return ok, (
                f"POST /main/testdata through the Ingress: {progress['state']}, {progress['profiles_created']} "
                f"profiles, {progress['users_created']} users; {len(self.pairs)} user-profile pairs"
            )

        if not self.checks.run("ingress: test data", testdata) or len(self.pairs) < 30:
            raise Abort("no test data")

        def routes():
            suggested = self.ingress.json("/main/suggested")
            user, profile = self.pairs[-1]
            status, headers, body = self.ingress.request("GET", f"/index/{user}/{profile}/")
            page_ok = status == 200 and "text/html" in headers.get("content-type", "") and b"<script" in body
            if not page_ok:
                status, headers, body = self.ingress.request("GET", f"/index/{user}/{profile}")
                page_ok = status == 200 and "text/html" in headers.get("content-type", "")
            seconds, connection = self.ingress.first_event(f"/stream/{user}/{profile}")
            try:
                launched = wait_until("launched", lambda: profile in self.ingress.json(f"/main/login/{user}"), 10, 0.2)
            finally:
                connection.close()
            ok = len(suggested) >= 2 and page_ok and seconds < 2 and bool(launched)
            return ok, (
                f"/main/suggested {len(suggested)} users; agent page {status} {headers.get('content-type')}; "
                f"first event of a stream after {seconds * 1000:.0f} ms; /main/login lists its profile as launched"
            )

        self.checks.run("ingress: main, the agent page and a stream", routes)
        self.pairs.pop()  # that pair stays locked for LOCK_TTL after its stream closed

    # -- NetworkPolicies
    def netpol(self) -> None:
        targets = [("redis", 6379), ("base", 8080), ("cassandra", 9042), ("main", 8080), ("stream", 8080), ("prometheus", 9090)]
        allowed = {
            None: set(),
            "main": {"redis", "base"},
            "stream": {"redis", "base"},
            "base": {"cassandra", "redis"},
            "prometheus": {"base", "main", "stream"},
            "prometheus-adapter": {"prometheus"},
        }
        names = {}
        for role in allowed:
            # kube-router admits a new pod's address a moment after the pod starts: a path that
            # should be open is tried for up to 20 s, and only then, with the pod known to the
            # policies, are the paths that should be closed tried, once each.
            opened = [f'ok=closed; for i in 1 2 3 4 5 6 7 8 9 10; do if nc -z -w 2 {h} {p}; then ok=open; break; fi; sleep 2; done; echo "{h} $ok"'
                      for h, p in targets if h in allowed[role]]
            closed = [f'if nc -z -w 3 {h} {p}; then echo "{h} open"; else echo "{h} closed"; fi'
                      for h, p in targets if h not in allowed[role]]
            script = "; ".join(["sleep 5", *opened, *closed])
            name = f"e2e-netpol-{role or 'unlabelled'}"
            names[role] = name
            labels = {"kubescaler-e2e": "netpol", **({"app.kubernetes.io/name": role} if role else {})}
            Kube.run("apply", "-f", "-", stdin=json.dumps(probe_pod(name, labels, script)))

        def finished():
            phases = {p["metadata"]["name"]: p["status"].get("phase") for p in self.kube.get(
                f"/api/v1/namespaces/{NS}/pods?labelSelector=kubescaler-e2e%3Dnetpol")["items"]}
            return all(phases.get(n) in ("Succeeded", "Failed") for n in names.values())

        def check():
            wait_until("the probe pods", finished, 120, 2)
            wrong, opened, closed = [], 0, 0
            for role, name in names.items():
                out = Kube.run("-n", NS, "logs", name)
                for line in out.split("\n"):
                    if not line.strip():
                        continue
                    host, state = line.split()
                    expected = "open" if host in allowed[role] else "closed"
                    opened += state == "open"
                    closed += state == "closed"
                    if state != expected:
                        wrong.append(f"{role or 'unlabelled'} -> {host} {state}, expected {expected}")
            total = opened + closed
            ok = not wrong and total == len(allowed) * len(targets)
            return ok, (
                f"{total} paths from 6 pods (unlabelled, main, stream, base, prometheus, adapter): "
                f"{opened} open as allowed, {closed} closed" + (f"; WRONG: {'; '.join(wrong)}" if wrong else "")
            )

        self.checks.run("netpol: only the allowed paths are open", check)
        Kube.run("-n", NS, "delete", "pod", "-l", "kubescaler-e2e=netpol", "--wait=false")

    # -- Redis stopped: init containers wait, readiness turns, liveness holds
    def outage(self) -> None:
        before = {p["metadata"]["name"]: restarts(p) for p in self.kube.pods() if p["metadata"]["labels"].get("app.kubernetes.io/name") in ("main", "stream")}
        old_stream = {p["metadata"]["name"] for p in self.kube.pods("stream")}
        Kube.run("-n", NS, "scale", "deployment/redis", "--replicas=0")
        stopped = time.time()
        wait_until("redis gone", lambda: not self.kube.pods("redis"), 90)
        Kube.run("-n", NS, "rollout", "restart", "deployment/stream")
        new_pod = wait_until(
            "a new stream pod",
            lambda: next((p["metadata"]["name"] for p in self.kube.pods("stream") if p["metadata"]["name"] not in old_stream), None),
            60,
        )
        unready_after: dict[str, float] = {}
        waiting_since = None  # when the new pod was first seen in wait-for-redis
        escaped = False  # it left wait-for-redis, or turned Ready, while Redis was down
        hold = 40.0  # longer than three liveness periods (3 x 10 s): a restart would show
        deadline = time.time() + hold
        while time.time() < deadline:
            for p in self.kube.pods():
                name = p["metadata"]["name"]
                if name in before and not ready(p) and name not in unready_after:
                    unready_after[name] = time.time() - stopped
                if name == new_pod:
                    state = next(
                        (next(iter(s.get("state", {})), "") for s in p["status"].get("initContainerStatuses", [])
                         if s["name"] == "wait-for-redis"), "")
                    if state == "running" and waiting_since is None:
                        waiting_since = time.time()
                    escaped |= state == "terminated" or ready(p)
            time.sleep(2)
        held = time.time() - stopped
        Kube.run("-n", NS, "scale", "deployment/redis", "--replicas=1")
        back = time.time()
        wait_until("redis Ready", lambda: any(ready(p) for p in self.kube.pods("redis")), 120)
        redis_ready = time.time()

        def new_ready():
            p = next((p for p in self.kube.pods("stream") if p["metadata"]["name"] == new_pod), None)
            return p is not None and ready(p)

        try:
            wait_until("the new stream pod Ready", new_ready, 120)
            new_ready_after = time.time() - redis_ready
        except TimeoutError:
            new_ready_after = None
        Kube.run("-n", NS, "rollout", "status", "deployment/stream", "--timeout=120s", check=False, timeout=130)
        wait_until("main Ready again", lambda: all(ready(p) for p in self.kube.pods("main")), 60)
        after = {p["metadata"]["name"]: restarts(p) for p in self.kube.pods()}
        restarted = [n for n in before if n in after and after[n] != before[n]]
        waited = back - waiting_since if waiting_since else 0
        self.checks.record(
            "init: a new stream pod waits for Redis",
            waiting_since is not None and not escaped and new_ready_after is not None,
            f"{new_pod} stayed in its init container wait-for-redis for the {waited:.0f} s it was watched "
            f"while Redis was down{' (but LEFT it)' if escaped else ''}; Ready "
            + (f"{new_ready_after:.0f} s after Redis was" if new_ready_after is not None else "NEVER after Redis returned"),
        )
        unready_main = [n for n in unready_after if n.startswith("main")]
        self.checks.record(
            "probes: unready without a backend, never restarted",
            bool(unready_main) and not restarted and all(n in unready_after for n in before),
            f"{len(unready_after)}/{len(before)} main/stream pods unready "
            f"{max(unready_after.values(), default=float('nan')):.0f} s at most after Redis stopped; "
            f"restarts during {held:.0f} s without Redis: {len(restarted)} ({', '.join(restarted) or 'none'}); "
            f"Ready again {time.time() - back:.0f} s after Redis was started",
        )

    # -- load: HPAs, the metric chain, the scale-down
    def load(self) -> None:
        args = self.args
        streams, background = args.streams, 4
        expected = min(5, math.ceil(streams / 5))
        if len(self.pairs) < streams + background:
            raise Abort(f"{len(self.pairs)} pairs for {streams + background} streams")
        load_pairs = self.work / "pairs-load.txt"
        load_pairs.write_text("".join(f"{u} {p}\n" for u, p in self.pairs[:streams]))
        background_pairs = self.work / "pairs-background.txt"
        background_pairs.write_text("".join(f"{u} {p}\n" for u, p in self.pairs[streams : streams + background]))
        hpas = {h["metadata"]["name"]: h for h in self.kube.get(f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers")["items"]}

        timeline = Timeline(self.kube)
        timeline.start()
        time.sleep(6)  # a baseline before the load
        t_load = timeline.mark("load start")
        loadgen = self.spawn(
            [str(self.bin / "loadgen"), "--url", self.ingress.url, "--streams", str(streams), "--ramp", "2",
             "--duration", "3600s", "--pairs", str(load_pairs), "--json"], "loadgen-load")
        # /main/suggested: main's own work (it reads every profile from base and counts), with an
        # answer that does not change while streams come and go.
        cpu_load = self.spawn(
            [str(self.bin / "kubescaler-bench"), "http-get", "--url", f"{self.ingress.url}/main/suggested",
             "--concurrency", str(args.main_concurrency), "--warmup", "0s", "--duration", "3600s"], "main-load")
        try:
            wait_until(f"stream at {expected} Ready replicas", lambda: self.kube.deployment("stream")["status"].get("readyReplicas", 0) >= expected, 240, 2)
            wait_until("main at 3 replicas", lambda: self.kube.deployment("main")["spec"]["replicas"] >= 3, 240, 2)
            wait_until("main at 3 Ready replicas", lambda: self.kube.deployment("main")["status"].get("readyReplicas", 0) >= 3, 120, 2)
        except TimeoutError as error:
            log(str(error))
        try:
            wait_until("the streams spread over the stream pods", lambda: self.spread() <= 1.25, 120, 2)
        except TimeoutError as error:
            log(str(error))
        timeline.mark(f"{background} more streams")
        background_run = self.spawn(
            [str(self.bin / "loadgen"), "--url", self.ingress.url, "--streams", str(background), "--ramp", "4",
             "--duration", "3600s", "--pairs", str(background_pairs), "--json"], "loadgen-background")
        time.sleep(args.hold)
        t_stop = timeline.mark("load stop")
        cpu_load[0].terminate()
        load_summary = self.finish(loadgen)

        behavior = {name: scale_down_bound(h) for name, h in hpas.items()}
        for name in ("stream", "main"):
            try:
                wait_until(f"{name} back at 1 replica", lambda name=name: self.kube.deployment(name)["spec"]["replicas"] == 1,
                           behavior[name] + 90, 2)
            except TimeoutError as error:
                log(str(error))
        time.sleep(6)
        timeline.mark("background stop")
        background_summary = self.finish(background_run)
        time.sleep(4)
        timeline.stop()

        origin = t_load
        rows = timeline.rows
        csv_path = self.root / "docs/e2e-timeline.csv"
        png_path = self.root / "docs/e2e-timeline.png"
        timeline.write_csv(csv_path, origin)
        try:
            draw(csv_path, png_path, f"kubescaler on Kubernetes: {streams} + {background} streams, CPU load on main")
            log(f"timeline: {csv_path.relative_to(self.root)}, {png_path.relative_to(self.root)}")
        except Exception as error:  # the checks stand without the picture
            log(f"chart not drawn: {error}")

        self.check_hpa("main", rows, origin, t_stop, 3, hpas["main"])
        self.check_hpa("stream", rows, origin, t_stop, expected, hpas["stream"], streams)
        self.check_rebalance(rows, load_summary, hpas["stream"])
        self.check_metric_chain(rows)
        self.check_lag(rows, t_load, streams)
        self.check_handover(background_summary, load_summary)

    def spread(self) -> float:
        """The most loaded stream pod's open streams over the mean, read from the pods."""
        counts = [
            open_streams(self.kube, pod["metadata"]["name"]) or 0
            for pod in self.kube.pods("stream")
            if "deletionTimestamp" not in pod["metadata"] and ready(pod)
        ]
        mean = sum(counts) / len(counts) if counts else 0.0
        return max(counts) / mean if mean else float("inf")

    # -- the keda overlay: KEDA's ScaledObject instead of the HPA
    def keda(self) -> None:
        streams = 10
        expected = math.ceil(streams / 5)

        def check():
            # As a user switches: the HPA goes first (KEDA refuses a workload another HPA scales).
            Kube.run("-n", NS, "delete", "hpa", "stream", "--ignore-not-found")
            Kube.run("apply", "-k", self.args.keda_kustomization)

            def scaled_object_ready():
                status = self.kube.get(f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects/stream").get("status") or {}
                return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])

            wait_until("the ScaledObject Ready (KEDA reading Prometheus)", scaled_object_ready, 120, 2)
            hpas = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers"
            wait_until("KEDA's HPA", lambda: self.kube.get(f"{hpas}/keda-hpa-stream"), 60, 2)
            pairs = self.work / "pairs-keda.txt"
            pairs.write_text("".join(f"{u} {p}\n" for u, p in self.pairs[-streams:]))
            started = time.time()
            tool = self.spawn([str(self.bin / "loadgen"), "--url", self.ingress.url, "--streams", str(streams), "--ramp", "5",
                               "--duration", "3600s", "--pairs", str(pairs), "--json"], "loadgen-keda")
            try:
                wait_until(f"stream at {expected} Ready replicas", lambda: self.kube.deployment("stream")["status"].get("readyReplicas", 0) >= expected, 180, 2)
                took = time.time() - started
                metric = (self.kube.get(f"{hpas}/keda-hpa-stream")["status"].get("currentMetrics") or [{}])[0]
            finally:
                summary = self.finish(tool)
            value = metric.get("external", {}).get("current", {}).get("averageValue", "?")
            ok = summary.get("streams_opened") == streams and summary.get("errors") == 0
            return ok, (
                f"hpa/stream removed, ScaledObject Ready (KEDA's operator reaches Prometheus), HPA keda-hpa-stream made by "
                f"KEDA; {streams} streams took stream 1 -> {expected} Ready replicas in {took:.0f} s (external metric "
                f"average {value}); loadgen: {summary.get('streams_opened')} opened, 409 {summary.get('refused_locked_409')}, "
                f"errors {summary.get('errors')}"
            )

        self.checks.run("keda: the ScaledObject scales stream", check)

    # -- bindings
    def unbound(self) -> None:
        def check():
            before = {p["id"] for p in self.ingress.json("/main/profiles")}
            status, _, body = self.ingress.request("POST", "/main/testdata?profiles=2&users_per_profile=2", admin=True)
            if status != 202:
                return False, f"POST /main/testdata: {status} {body[:200]!r}"
            wait_until("test data", lambda: self.ingress.json("/main/testdata")["state"] != "running", 60)
            fresh = [p for p in self.ingress.json("/main/profiles") if p["id"] not in before]
            user, profile = fresh[0]["users"][0], fresh[0]["id"]
            _, connection, response = self.ingress.stream(f"/stream/{user}/{profile}")
            try:
                dropped = time.time()
                status, _, body = self.ingress.request("DELETE", "/main/testdata", admin=True)
                if status != 204:
                    return False, f"DELETE /main/testdata: {status} {body[:200]!r}"
                event = None
                while event is None and time.time() - dropped < 15:
                    line = response.readline()
                    if not line:
                        break
                    if line.startswith(b"event: "):
                        event = line[len(b"event: "):].strip().decode()
                took = time.time() - dropped
            finally:
                connection.close()
            ok = event == "unbound" and took < 2
            return ok, (
                f"a stream of fresh test data; DELETE /main/testdata: the stream ended with `{event}` "
                f"{took * 1000:.0f} ms after (base announces on Redis, stream re-checks the pairs it holds)"
            )

        self.checks.run("unbound: a dropped pair's stream ends at once", check)

    def spawn(self, command: list[str], name: str) -> tuple[subprocess.Popen, pathlib.Path]:
        """Starts a load tool; its standard output (the JSON summary) goes to WORK/NAME.out."""
        out = self.work / f"{name}.out"
        with out.open("w") as stdout, (self.work / f"{name}.log").open("w") as stderr:
            child = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True)
        self.children.append(child)
        return child, out

    @staticmethod
    def finish(tool: tuple[subprocess.Popen, pathlib.Path]) -> dict:
        """Stops a loadgen with SIGINT and reads its JSON summary."""
        child, out = tool
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
        lines = out.read_text().strip().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def check_hpa(self, name, rows, origin, t_stop, expected, hpa, streams=None):
        replicas = [(r["time"], r.get(f"{name}_replicas", 0), r.get(f"{name}_ready", 0)) for r in rows]
        peak = max((n for _, n, _ in replicas), default=0)
        bound = scale_down_bound(hpa, peak)
        steps_up, steps_down = [], []
        last = replicas[0][1] if replicas else 0
        for t, n, _ in replicas:
            if n != last:
                (steps_up if n > last else steps_down).append((t, last, n))
                last = n
        # Each pod that the scale-up added: when it was first seen, and when it was first Ready.
        seen, became_ready = {}, {}
        for r in rows:
            for pod, state in r["pods"].items():
                if state["app"] != name:
                    continue
                seen.setdefault(pod, r["time"])
                if state["ready"]:
                    became_ready.setdefault(pod, r["time"])
        added = sorted((t, pod) for pod, t in seen.items() if origin < t < t_stop)
        readies = ", ".join(
            f"{pod.split('-')[-1]} Ready at {became_ready[pod] - origin:.0f} s" if pod in became_ready else f"{pod} never Ready"
            for _, pod in added
        )
        up = ", ".join(f"{a}->{b} at {t - origin:.0f} s" for t, a, b in steps_up)
        down = ", ".join(f"{a}->{b} at +{t - t_stop:.0f} s" for t, a, b in steps_down if t > t_stop)
        back = next((t for t, n, _ in replicas if t > t_stop and n == 1), None)
        self.figures[f"{name}_up"] = f"{up}; {readies}"
        self.figures[f"{name}_down"] = down
        what = f"{streams} streams" if streams else "CPU load"
        self.checks.record(
            f"hpa-{name}: {what} -> {expected} replicas",
            peak == expected,
            f"1 -> {peak} (expected {expected}): {up or 'no step'}; {readies or 'no new replica Ready'} (seconds from load start)",
        )
        ok = peak > 1 and back is not None and back - t_stop <= bound + 60
        self.checks.record(
            f"hpa-{name}: back to 1 after the load",
            ok,
            (f"{down}; at 1 replica {back - t_stop:.0f} s after the load stopped" if back and peak > 1 else "no scale-down to see" if peak == 1 else "did not return to 1")
            + f" (behavior: stabilization {window(hpa)} s, {policy_text(hpa)}; bound {bound:.0f} s + 60 s for sync and scrape)",
        )

    def check_metric_chain(self, rows):
        """Per pod: does the custom metrics API give the pod's own gauge, and how late?"""
        samples, matching, missing = 0, 0, 0
        lags: list[float] = []
        pending: dict[str, tuple[float, int]] = {}
        last_gauge: dict[str, int] = {}
        for r in rows:
            for pod, gauge in r["streams"].items():
                if r["pods"].get(pod, {}).get("terminating"):
                    continue
                samples += 1
                custom = r["custom"].get(pod)
                if custom is None:
                    missing += 1
                elif round(custom) == gauge:
                    matching += 1
                if last_gauge.get(pod) != gauge:
                    pending[pod] = (r["time"], gauge)
                    last_gauge[pod] = gauge
                if pod in pending and custom is not None and round(custom) == pending[pod][1]:
                    lags.append(r["time"] - pending.pop(pod)[0])
        unresolved = len(pending)
        lags.sort()
        median = lags[len(lags) // 2] if lags else float("nan")
        ok = samples > 0 and lags and max(lags) < 60 and matching / samples >= 0.7
        self.figures["metric_lag"] = f"median {median:.0f} s, max {max(lags, default=float('nan')):.0f} s"
        self.checks.record(
            "metric-chain: custom metrics API = streams per pod",
            bool(ok),
            f"{samples} pod samples, {matching} equal to the pod's own gauge ({100 * matching / max(samples, 1):.0f} %), "
            f"{missing} without a value (new pods); {len(lags)} changes seen through the API "
            f"{median:.0f} s later (median), {max(lags, default=float('nan')):.0f} s (max); {unresolved} not yet at the end",
        )

    def check_lag(self, rows, t_load, streams):
        def first(predicate):
            return next((r["time"] for r in rows if r["time"] >= t_load and predicate(r)), None)

        opened = first(lambda r: sum(r["streams"].values()) > 0)
        api = first(lambda r: sum(r["custom"].values()) > 0)
        hpa = first(lambda r: (r.get("hpa_stream_current") or 0) > 0)
        full = first(lambda r: sum(r["streams"].values()) >= streams)
        full_api = first(lambda r: sum(r["custom"].values()) >= streams - 0.01)
        ok = None not in (opened, api, hpa)
        detail = (
            f"first stream open (pod gauge) at {opened - t_load:.0f} s; custom metrics API > 0 after {api - opened:.0f} s; "
            f"HPA status > 0 after {hpa - opened:.0f} s"
            if ok else "the HPA never saw the streams"
        )
        if full and full_api:
            detail += f"; all {streams} open at {full - t_load:.0f} s, the API's sum = {streams} after {full_api - full:.0f} s"
        if ok:
            self.figures["hpa_lag"] = f"{hpa - opened:.0f} s"
        self.checks.record("metric-chain: lag from a stream opening to the HPA", ok, detail)

    def check_rebalance(self, rows, load, hpa):
        """After the last scale-up, the streams spread over the pods: the most loaded pod holds
        at most 1.25 times the mean, within 60 s; and the HPA holds still meanwhile."""
        ups = [r["time"] for prev, r in zip(rows, rows[1:]) if r.get("stream_replicas", 0) > prev.get("stream_replicas", 0)]
        if not ups:
            return self.checks.record("rebalance: streams spread over the new pods", False, "stream never scaled up")
        last_up = ups[-1]
        peak = max(r.get("stream_replicas", 0) for r in rows)
        spread_at, worst = None, None
        for r in rows:
            if r["time"] < last_up:
                continue
            live = {pod: n for pod, n in r["streams"].items() if not r["pods"].get(pod, {}).get("terminating")}
            if len(live) < peak or r.get("stream_ready", 0) < peak:
                continue
            mean = sum(live.values()) / len(live)
            ratio = max(live.values()) / mean if mean else float("inf")
            if ratio <= 1.25:
                spread_at, worst = r["time"], live
                break
        settled = spread_at is not None and all(
            r.get("hpa_stream_desired") == peak for r in rows if spread_at <= r["time"] <= spread_at + 30
        )
        moves = [m for m in load.get("moves", []) if m["why"] == "rebalance"]
        ms = sorted(m["ms"] for m in moves)
        ok = (
            spread_at is not None and spread_at - last_up <= 60 and settled
            and load.get("refused_locked_409_on_return") == 0 and load.get("errors") == 0
            and load.get("open_at_end") == load.get("streams_asked")
        )
        self.figures["rebalance"] = (
            f"spread {spread_at - last_up:.0f} s after the last scale-up" if spread_at else "never spread"
        ) + f"; {len(moves)} moves, {ms[len(ms) // 2] if ms else '-'} ms median, {ms[-1] if ms else '-'} ms max"
        self.checks.record(
            "rebalance: streams spread over the new pods",
            ok,
            (f"max/mean <= 1.25 over {peak} pods {spread_at - last_up:.0f} s after the last scale-up "
             f"({' '.join(f'{pod.rsplit(chr(45), 1)[-1]}={n}' for pod, n in sorted(worst.items()))}); HPA "
             f"{'held' if settled else 'did NOT hold'} at {peak} for 30 s after"
             if spread_at else "never within 1.25 of the mean after the last scale-up")
            + f"; {len(moves)} streams handed off, streaming again after "
            + (f"{ms[len(ms) // 2]} ms (median), {ms[-1]} ms (max)" if ms else "-")
            + f"; on return 409 {load.get('refused_locked_409_on_return')}, 503 retried "
            f"{load.get('refused_and_retried_503')}; errors {load.get('errors')}; open at the end "
            f"{load.get('open_at_end')}/{load.get('streams_asked')}",
        )

    def check_handover(self, background, load):
        moves = [m for m in background.get("moves", []) if m["why"] == "shutdown"]
        removed = sorted({m["from"] for m in moves})
        ms = sorted(m["ms"] for m in moves)
        ok = (
            bool(moves)
            and background.get("refused_locked_409") == 0
            and background.get("refused_locked_409_on_return") == 0
            and background.get("errors") == 0
            and background.get("open_at_end") == background.get("streams_asked")
            and max(ms) < 5000
        )
        self.figures["handover"] = f"{len(moves)} moves, max {max(ms, default=0)} ms"
        self.checks.record(
            "handover: streams of removed pods reconnect elsewhere at once",
            ok,
            f"{len(moves)} streams moved off {len(removed)} removed pods ({', '.join(removed)}) to "
            f"{', '.join(sorted({m['to'] for m in moves}))}; streaming again after "
            + (f"{ms[len(ms) // 2]} ms (median), {ms[-1]} ms (max)" if ms else "-")
            + f"; 409 {background.get('refused_locked_409')}, errors {background.get('errors')}, "
            f"open at the end {background.get('open_at_end')}/{background.get('streams_asked')} "
            f"(the load's own streams: {load.get('streams_opened')} opened, 409 {load.get('refused_locked_409')}, errors {load.get('errors')})",
        )

    def stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()


def window(hpa: dict) -> int:
    return hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 300)


def policy_text(hpa: dict) -> str:
    policies = hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("policies") or [
        {"type": "Percent", "value": 100, "periodSeconds": 15}
    ]
    return " or ".join(f"{p['value']}{' %' if p['type'] == 'Percent' else ' pod(s)'} per {p['periodSeconds']} s" for p in policies)


def scale_down_bound(hpa: dict, replicas: int | None = None) -> float:
    """The longest a scale-down from `replicas` (default maxReplicas) to 1 may take under the
    HPA's behavior: the stabilization window, then as many policy periods as the slowest policy
    needs."""
    down = hpa["spec"].get("behavior", {}).get("scaleDown", {})
    policies = down.get("policies") or [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    steps = 0
    for policy in policies:
        n, count = replicas or hpa["spec"]["maxReplicas"], 0
        while n > 1:
            n -= policy["value"] if policy["type"] == "Pods" else max(1, math.floor(n * policy["value"] / 100))
            count += 1
        steps = max(steps, count * policy["periodSeconds"])
    return window(hpa) + steps


def dry_run(overlay: pathlib.Path) -> str | None:
    """`kubectl apply -k --dry-run=server`: the object names, None while a webhook cannot be
    called yet; any other refusal raises."""
    done = subprocess.run(["kubectl", "apply", "-k", str(overlay), "--dry-run=server", "-o", "name"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return done.stdout
    if "failed calling webhook" in done.stderr:
        return None
    raise RuntimeError(done.stderr.strip())


def probe_pod(name: str, labels: dict, script: str) -> dict:
    locked = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": "busybox:1.36", "command": ["sh", "-c", script], "securityContext": locked,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
            }],
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--bin", required=True, help="where loadgen and kubescaler-bench are")
    parser.add_argument("--work", required=True)
    parser.add_argument("--kustomization", required=True, help="the overlay to deploy")
    parser.add_argument("--ingress-url", help="default: the address in the stream Ingress's status")
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--hold", type=float, default=30, help="seconds under full load after the scale-up")
    parser.add_argument("--main-concurrency", type=int, default=4)
    parser.add_argument("--keda-version", default="v2.17.3")
    parser.add_argument("--keda-dir", required=True, help="KEDA's Go module, for its config/")
    parser.add_argument("--keda-kustomization", required=True, help="the keda overlay to switch stream to")
    args = parser.parse_args()

    e2e = E2E(args)
    started = time.time()
    try:
        for phase in (e2e.dry_run, e2e.deploy, e2e.ingress_checks, e2e.netpol, e2e.outage, e2e.load, e2e.keda,
                      e2e.unbound):
            log(f"--- {phase.__name__}")
            phase()
    except Abort as error:
        e2e.checks.record("e2e", False, f"stopped: {error}")
    except Exception as error:  # a bug in a phase still ends with a verdict
        e2e.checks.record("e2e", False, f"stopped by {type(error).__name__}: {error}")
        raise
    finally:
        e2e.stop_children()
        e2e.kube.close()
    for key, value in e2e.figures.items():
        print(f"figure {key}: {value}")
    print(f"e2e checks took {time.time() - started:.0f} s")
    print(e2e.checks.summary())
    return 0 if all(ok for _, ok, _ in e2e.checks.results) else 1


if __name__ == "__main__":
    sys.exit(main())
