#!/usr/bin/env python3
"""The autoscaling chain on real components, without a cluster.

Two stream instances behind nginx with the Ingress's routes and streaming settings, a real
Prometheus scraping both with the manifests' job reduced to static targets, and base (real
Cassandra) and Redis behind them. It opens 7 streams through nginx and checks:

1. every first event arrives within 1 s (nginx does not buffer the stream);
2. Prometheus answers the prometheus-adapter rule's metricsQuery (taken from the manifests)
   with one value per stream instance, summing to 7;
3. the HPA formula ceil(replicas * average / target), with the target from the manifests,
   gives 2 replicas.

usage: scaling_chain.py ROOT BIN_DIR WORK_DIR
"""
import http.client
import json
import math
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import yaml

ROOT, BIN, WORK = (pathlib.Path(p) for p in sys.argv[1:4])
STREAMS = 7
PORTS = {"base": 18481, "stream-a": 18482, "stream-b": 18483, "nginx": 18480, "prometheus": 18490}
children: list[subprocess.Popen] = []


def start(args, name, env=None):
    log = open(WORK / f"{name}.log", "w")
    child = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    children.append(child)
    return child


def wait_http(url, within=60.0):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer 200 within {within} s")


def post_json(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def manifests():
    docs = []
    for path in (ROOT / "k8s/base").glob("*.yaml"):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and "kind" in d]
    return docs


def main() -> int:
    docs = manifests()
    rule = next(
        r
        for d in docs
        if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})
        for r in yaml.safe_load(d["data"]["config.yaml"])["rules"]
    )
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == "stream")
    target = float(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"])
    ingress = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Ingress"}
    stream_annotations = ingress["stream"]["metadata"]["annotations"]
    series = re.match(r"([a-z_]+)", rule["seriesQuery"]).group(1)

    env = {"RUST_LOG": "warn", "REDIS_URLS": "redis://127.0.0.1:6379", "LISTEN_ADDRESS": "127.0.0.1"}
    start([BIN / "base"], "base", {**env, "PORT": str(PORTS["base"]), "CASSANDRA_KEYSPACE": "kubescaler_chain"})
    wait_http(f"http://127.0.0.1:{PORTS['base']}/readyz")
    for pod in ("stream-a", "stream-b"):
        start([BIN / "stream"], pod, {**env, "PORT": str(PORTS[pod]), "HOSTNAME": pod,
                                       "BASE_URL": f"http://127.0.0.1:{PORTS['base']}", "RELEASE_ON_DISCONNECT": "true"})
        wait_http(f"http://127.0.0.1:{PORTS[pod]}/readyz")

    # nginx with the Ingress's stream route and its annotations turned into directives.
    read_timeout = stream_annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]
    buffering = stream_annotations["nginx.ingress.kubernetes.io/proxy-buffering"]
    (WORK / "nginx").mkdir(exist_ok=True)
    (WORK / "nginx.conf").write_text(f"""
worker_processes 1;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {WORK}/nginx; proxy_temp_path {WORK}/nginx;
  fastcgi_temp_path {WORK}/nginx; uwsgi_temp_path {WORK}/nginx; scgi_temp_path {WORK}/nginx;
  upstream stream {{ server 127.0.0.1:{PORTS['stream-a']}; server 127.0.0.1:{PORTS['stream-b']}; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']};
    location / {{
      proxy_pass http://stream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering {buffering};
      proxy_read_timeout {read_timeout}s;
    }}
  }}
}}
""")
    start(["nginx", "-c", str(WORK / "nginx.conf"), "-p", str(WORK), "-g", "daemon off;"], "nginx")
    wait_http(f"http://127.0.0.1:{PORTS['nginx']}/livez")

    # Prometheus: the manifests' job, static targets labelled as the relabelling would.
    (WORK / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{
            "job_name": "kubescaler-pods",
            "static_configs": [
                {"targets": [f"127.0.0.1:{PORTS[pod]}"], "labels": {"namespace": "kubescaler", "pod": pod}}
                for pod in ("stream-a", "stream-b")
            ],
        }],
    }))
    start(["prometheus", f"--config.file={WORK / 'prometheus.yml'}", f"--storage.tsdb.path={WORK / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{PORTS['prometheus']}"], "prometheus")
    wait_http(f"http://127.0.0.1:{PORTS['prometheus']}/-/ready")

    # 7 bound pairs, 7 streams through nginx.
    base = f"http://127.0.0.1:{PORTS['base']}"
    sockets, firsts = [], []
    for i in range(STREAMS):
        user = post_json(f"{base}/users", {"name": f"Chain user {i}"})
        profile = post_json(f"{base}/profiles", {"users": [user["id"]]})
        s = socket.create_connection(("127.0.0.1", PORTS["nginx"]), timeout=5)
        started = time.time()
        s.sendall(f"GET /stream/{user['id']}/{profile['id']} HTTP/1.1\r\nhost: kubescaler\r\n\r\n".encode())
        buf = b""
        while b"\nid: " not in buf and b"\r\nid: " not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit(f"stream {i} closed: {buf[:300]!r}")
            buf += chunk
        firsts.append(time.time() - started)
        assert b" 200 " in buf.split(b"\r\n", 1)[0], buf[:200]
        sockets.append(s)
    print(f"7 streams through nginx; first events after {', '.join(f'{f * 1000:.0f}' for f in firsts)} ms")
    if max(firsts) >= 1.0:
        print("FAIL: a first event took 1 s or more through nginx (buffering?)")
        return 1

    # The adapter's query, as it would run it for the HPA (all pods of the namespace).
    query = (rule["metricsQuery"].replace("<<.Series>>", series)
             .replace("<<.LabelMatchers>>", 'namespace="kubescaler",pod=~"stream-a|stream-b"')
             .replace("<<.GroupBy>>", "pod"))
    values: dict[str, float] = {}
    deadline = time.time() + 20
    while time.time() < deadline:
        url = f"http://127.0.0.1:{PORTS['prometheus']}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        result = json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"]
        values = {r["metric"]["pod"]: float(r["value"][1]) for r in result}
        if len(values) == 2 and sum(values.values()) == STREAMS:
            break
        time.sleep(0.5)
    print(f"adapter query {query!r} -> {values}")
    if len(values) != 2 or sum(values.values()) != STREAMS:
        print(f"FAIL: expected one value per instance summing to {STREAMS}")
        return 1
    replicas = len(values)
    desired = math.ceil(replicas * (sum(values.values()) / replicas) / target)
    print(f"HPA: ceil({replicas} x {sum(values.values()) / replicas} / {target:g}) = {desired} replicas")
    if desired != 2:
        print("FAIL: the HPA formula should give 2")
        return 1
    for s in sockets:
        s.close()
    return 0


if __name__ == "__main__":
    try:
        code = main()
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
    print("scaling chain: 1 passed, 0 failed" if code == 0 else "scaling chain: 0 passed, 1 failed")
    sys.exit(code)
