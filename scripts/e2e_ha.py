#!/usr/bin/env python3
"""The highly available suite (k8s/overlays/ha) under failure, on a real cluster: one PASS/FAIL
line per drill with its figures, written to docs/RELIABILITY.md's table by the wrapper.

Run by `scripts/e2e-cluster.sh --overlay ha`, which builds and loads the images and writes the
overlay. The drills, in order (each leaves the suite whole for the next):

  redis-one      one Redis instance killed under 20 streams: none ends, every concurrent
                 opener of a pair gets 409, the locks keep being extended on the other two;
  redis-two      a second one killed: the streams end with `lock-lost` within LOCK_TTL, new
                 opens get 503; with the instances back, every pair streams again;
  cassandra      one Cassandra node killed while users and profiles are written through base:
                 base keeps answering, and every write it acknowledged is read back;
  stream-term    a stream pod deleted (SIGTERM): its streams reconnect elsewhere, none lost;
  stream-kill    a stream pod's process killed (SIGKILL): its pairs stay locked until their TTL
                 runs out, never shorter;
  memory         stream limited to 64 MiB with 200 slow readers: no OOM kill, messages skipped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from e2e_cluster import NS, Abort, Checks, Ingress, Kube, log, ready, restarts, wait_until  # noqa: E402

LOCK_TTL = 60.0  # k8s/base/config.yaml
LOCK_REFRESH = 10.0


class Stream(threading.Thread):
    """One SSE client of a pair through the Ingress. Records when it streamed, how it ended
    (the last named event, or `eof`), and, with `reconnect`, opens again after an end as a
    client following the contract does (honouring `reconnect_after_ms`)."""

    def __init__(self, url: str, user: str, profile: str, reconnect: bool | set[str] = False) -> None:
        super().__init__(daemon=True)
        self.url, self.user, self.profile, self.reconnect = url, user, profile, reconnect
        self.streaming = threading.Event()
        self.stop_flag = threading.Event()
        self.ends: list[tuple[float, str]] = []  # (time, reason)
        self.opens: list[float] = []
        self.refusals: list[int] = []
        self.last_message = 0.0
        self.connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        while not self.stop_flag.is_set():
            ended = len(self.ends)
            wait = self.once()
            if not self.reconnect or self.stop_flag.is_set():
                return
            # With a set, only ends for those reasons (and refusals) are followed by a reconnect.
            if isinstance(self.reconnect, set) and len(self.ends) > ended and self.ends[-1][1] not in self.reconnect:
                return
            time.sleep(wait)

    def first_end(self, ignoring: set[str]) -> tuple[float, str] | None:
        return next((end for end in self.ends if end[1] not in ignoring), None)

    def once(self) -> float:
        parsed = urllib.parse.urlsplit(self.url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=30)
        self.connection = connection
        try:
            connection.request("GET", f"/stream/{self.user}/{self.profile}", headers={"accept": "text/event-stream, application/json"})
            response = connection.getresponse()
            if response.status != 200:
                self.refusals.append(response.status)
                body = response.read(500)
                try:
                    return min(json.loads(body).get("retry_after_ms", 1000), 5000) / 1000
                except ValueError:
                    return 1.0
            self.opens.append(time.time())
            event, wait = None, 0.5
            while not self.stop_flag.is_set():
                line = response.readline()
                if not line:
                    break
                if line.startswith(b"id: "):
                    self.last_message = time.time()
                    self.streaming.set()
                elif line.startswith(b"event: "):
                    event = line[7:].strip().decode()
                elif line.startswith(b"data: ") and event:
                    try:
                        wait = json.loads(line[6:]).get("reconnect_after_ms", 500) / 1000
                    except ValueError:
                        pass
            self.streaming.clear()
            if not self.stop_flag.is_set():
                self.ends.append((time.time(), event or "eof"))
            return wait
        except (OSError, http.client.HTTPException):
            self.streaming.clear()
            if not self.stop_flag.is_set():
                self.ends.append((time.time(), "error"))
            return 1.0
        finally:
            connection.close()

    def stop(self) -> None:
        self.stop_flag.set()
        if self.connection and self.connection.sock:
            try:
                self.connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def open_status(url: str, user: str, profile: str) -> tuple[int, dict]:
    """A second opener of a pair, as a JSON client: the status and body of its answer."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=15)
    try:
        connection.request("GET", f"/stream/{user}/{profile}", headers={"accept": "application/json"})
        response = connection.getresponse()
        if response.status == 200:
            return 200, {}
        body = response.read(2000)
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, {"raw": body[:200].decode(errors="replace")}
    finally:
        connection.close()


def pttls(pod: str, pairs) -> list[int]:
    """The remaining TTL of each pair's lock on one Redis instance, in ms (-2: no such key,
    -3: the instance did not answer)."""
    script = "".join(f"PTTL kubescaler:lock:{u}:{p}\n" for u, p in pairs)
    out = Kube.run("-n", NS, "exec", "-i", pod, "-c", "redis", "--", "redis-cli", stdin=script, check=False, timeout=30)
    values = [int(v) for v in out.split() if re.fullmatch(r"-?\d+", v)]
    return values if len(values) == len(pairs) else [-3] * len(pairs)


class HA:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.checks = Checks()
        self.kube = Kube()
        self.token = secrets.token_hex(16)
        self.ingress = Ingress(args.ingress_url or "", self.token)
        self.pairs: list[tuple[str, str]] = []
        self.figures: dict[str, str] = {}

    # ------------------------------------------------------------------------------- deploy
    def deploy(self) -> None:
        started = time.time()
        Kube.run("apply", "-f", str(pathlib.Path(self.args.root) / "k8s/base/namespace.yaml"))
        Kube.run("-n", NS, "delete", "secret", "kubescaler-admin", "--ignore-not-found")
        Kube.run("-n", NS, "create", "secret", "generic", "kubescaler-admin", f"--from-literal=admin-token={self.token}")
        Kube.run("apply", "-k", self.args.kustomization)
        try:
            for sts in ("redis", "cassandra"):
                Kube.run("-n", NS, "rollout", "status", f"statefulset/{sts}", "--timeout=900s", timeout=920)
            for d in ("base", "main", "stream", "prometheus", "prometheus-adapter"):
                Kube.run("-n", NS, "rollout", "status", f"deployment/{d}", "--timeout=300s", timeout=320)
            wait_until("every pod Ready", lambda: all(ready(p) for p in self.kube.pods()), 180)
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as error:
            self.checks.record("ha-deploy", False, str(error))
            print(Kube.run("-n", NS, "get", "pods", "-o", "wide", check=False))
            raise Abort("the ha suite did not come up") from error
        if not self.ingress.url:
            def address():
                status = self.kube.get(f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/stream")["status"]
                entry = (status.get("loadBalancer", {}).get("ingress") or [{}])[0]
                return entry.get("ip") or entry.get("hostname")

            self.ingress.url = f"http://{wait_until('an address in the Ingress status', address, 120, 2)}"
        wait_until("the Ingress routing", lambda: self.ingress.request("GET", "/main/suggested")[0] == 200
                   and self.ingress.request("GET", "/readyz")[0] == 200, 90)
        # The ring as the first node sees it: the nodes Up and Normal.
        ring = Kube.run("-n", NS, "exec", "cassandra-0", "-c", "cassandra", "--", "nodetool", "status",
                        check=False, timeout=60)
        nodes_up = len(re.findall(r"^UN\s", ring, re.M))
        pods = self.kube.pods()
        counts = {}
        for pod in pods:
            name = pod["metadata"]["labels"].get("app.kubernetes.io/name", "?")
            counts[name] = counts.get(name, 0) + 1
        self.checks.record(
            "ha-deploy", nodes_up == 3,
            f"{len(pods)} pods Ready {time.time() - started:.0f} s after apply "
            f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); Cassandra ring: {nodes_up} nodes",
        )
        # Test data: enough pairs for 200 streams.
        status, _, body = self.ingress.request("POST", "/main/testdata?profiles=25&users_per_profile=10&seed=15", admin=True)
        if status != 202:
            raise Abort(f"POST /main/testdata: {status} {body[:200]!r}")

        def pairs():
            profiles = self.ingress.json("/main/profiles")
            found = [(u, p["id"]) for p in profiles for u in p["users"]]
            return found if len(profiles) >= 25 and len(found) >= 220 else None

        self.pairs = wait_until("the test data", pairs, 300, 3)
        self.figures["pairs"] = str(len(self.pairs))

    # --------------------------------------------------------------------------- the drills
    def streams(self, pairs, reconnect=False) -> list[Stream]:
        clients = [Stream(self.ingress.url, u, p, reconnect) for u, p in pairs]
        for c in clients:
            c.start()
        wait_until(f"{len(clients)} streams streaming", lambda: all(c.streaming.is_set() for c in clients), 60, 0.5)
        return clients

    def pin_replicas(self) -> None:
        """The drills count streams that end: the HPAs must not add pods meanwhile, or stream
        would rebalance onto them. stream and main stay at their minimum, 2."""
        for hpa in ("stream", "main"):
            Kube.run("-n", NS, "patch", "hpa", hpa, "--type=merge", "-p", '{"spec": {"maxReplicas": 2}}')

    def set_redis_replicas(self, n: int, kill: str | None = None) -> None:
        Kube.run("-n", NS, "scale", "statefulset/redis", f"--replicas={n}")
        if kill:
            Kube.run("-n", NS, "delete", "pod", kill, "--grace-period=0", "--force", "--wait=false", check=False)
        wait_until(f"{n} Redis pods", lambda: len([p for p in self.kube.pods("redis") if p["metadata"].get("deletionTimestamp") is None]) == n, 60)

    def redis_drills(self) -> None:
        self.pin_replicas()
        pairs = self.pairs[:20]
        # A stream handed off by rebalancing (two pods sharing 20) reconnects, as clients do;
        # only an end for another reason counts.
        clients = self.streams(pairs, reconnect={"rebalance"})
        try:
            # One instance down, for longer than a lock's TTL: every lock must have been
            # extended on the two left, or it would have expired.
            killed_at = time.time()
            self.set_redis_replicas(2, kill="redis-2")
            min_pttl, missing, openers = 10**9, 0, {}
            while time.time() - killed_at < LOCK_TTL + LOCK_REFRESH:
                for value in pttls("redis-0", pairs) + pttls("redis-1", pairs):
                    if value >= 0:
                        min_pttl = min(min_pttl, value)
                    elif value == -2:  # a pair between two instances after a hand-off
                        missing += 1
                time.sleep(3)
            for pair in pairs:
                status, body = open_status(self.ingress.url, *pair)
                openers[status] = openers.get(status, 0) + 1
            ended = sum(1 for c in clients if c.first_end({"rebalance"}))
            handed = sum(1 for c in clients for _, r in c.ends if r == "rebalance")
            # Extended every LOCK_REFRESH to a full TTL: never below TTL - 2 refreshes.
            ok = ended == 0 and openers == {409: 20} and min_pttl > (LOCK_TTL - 2 * LOCK_REFRESH) * 1000
            self.checks.record(
                "redis-one", ok,
                f"redis-2 killed under 20 streams, watched {time.time() - killed_at:.0f} s (> LOCK_TTL {LOCK_TTL:.0f} s): "
                f"streams ended {ended} (handed off by rebalancing and back: {handed}); a second opener of each pair: "
                f"{openers}; lowest lock PTTL on the two left {min_pttl / 1000:.1f} s (extended every {LOCK_REFRESH:.0f} s "
                f"on 2 of 3, never below {LOCK_TTL - 2 * LOCK_REFRESH:.0f} s; samples without the key: {missing})",
            )
            self.figures["redis_one_streams_lost"] = str(ended)
            self.figures["redis_one_double_streams"] = str(openers.get(200, 0))

            # A second one: no quorum. The streams end with lock-lost before their locks can
            # expire, and new opens are refused.
            killed_at = time.time()
            self.set_redis_replicas(1, kill="redis-1")
            # A new open at once, before the probes take the pods out of the Ingress (then the
            # Ingress itself answers 503).
            status, body = open_status(self.ingress.url, *self.pairs[30])
            wait_until("every stream ended", lambda: all(c.first_end({"rebalance"}) for c in clients), LOCK_TTL + 15, 1)
            ends = [c.first_end({"rebalance"}) for c in clients]
            reasons = {}
            for _, reason in ends:
                reasons[reason] = reasons.get(reason, 0) + 1
            latest = max(t for t, _ in ends) - killed_at
            refused = status == 503 and body.get("dependency") == "redis"
            # Back: three instances; every pair streams again.
            back_at = time.time()
            self.set_redis_replicas(3)
            wait_until("3 Redis pods Ready", lambda: len([p for p in self.kube.pods("redis") if ready(p)]) == 3, 120)
            for c in clients:
                c.stop()
            again = self.streams(pairs, reconnect=True)
            recovered = time.time() - back_at
            for c in again:
                c.stop()
            ok = reasons == {"lock-lost": 20} and latest <= LOCK_TTL and refused
            self.checks.record(
                "redis-two", ok,
                f"redis-1 killed too (1 of 3 left): the 20 streams ended {reasons}, the last {latest:.1f} s after the kill "
                f"(LOCK_TTL {LOCK_TTL:.0f} s); a new open: {status} {body.get('error')} ({body.get('dependency')}); "
                f"with the instances back, all 20 pairs streaming again {recovered:.0f} s after the scale-up",
            )
            self.figures["redis_two_end_s"] = f"{latest:.1f}"
            self.figures["redis_two_recover_s"] = f"{recovered:.0f}"
        finally:
            for c in clients:
                c.stop()

    def cassandra_drill(self) -> None:
        proxy = f"/api/v1/namespaces/{NS}/services/base:8080/proxy"
        api = self.kube.api + proxy
        acked: list[tuple[str, str, dict]] = []  # (kind, id, body)
        answers: dict[str, int] = {}
        stop = threading.Event()

        def call(method, path, body=None):
            parsed = urllib.parse.urlsplit(api + path)
            connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=20)
            try:
                payload = json.dumps(body).encode() if body is not None else None
                connection.request(method, parsed.path, body=payload, headers={"content-type": "application/json"})
                response = connection.getresponse()
                return response.status, response.read()
            finally:
                connection.close()

        def writer():
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    status, raw = call("POST", "/users", {"name": f"drill user {n}"})
                    answers[str(status)] = answers.get(str(status), 0) + 1
                    if status == 201:
                        user = json.loads(raw)
                        acked.append(("users", user["id"], user))
                        status, raw = call("POST", "/profiles", {"users": [user["id"]]})
                        answers[str(status)] = answers.get(str(status), 0) + 1
                        if status == 201:
                            profile = json.loads(raw)
                            acked.append(("profiles", profile["id"], profile))
                except (OSError, http.client.HTTPException) as error:
                    answers[type(error).__name__] = answers.get(type(error).__name__, 0) + 1
                    time.sleep(0.2)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(10)
        killed_at = time.time()
        Kube.run("-n", NS, "delete", "pod", "cassandra-2", "--grace-period=0", "--force", "--wait=false", check=False)
        time.sleep(30)
        stop.set()
        thread.join(30)
        lost = []
        for kind, ident, body in acked:
            status, raw = call("GET", f"/{kind}/{ident}")
            if status != 200 or json.loads(raw) != body:
                lost.append((kind, ident, status))
        rejoin = wait_until("cassandra-2 back and Ready", lambda: any(
            p["metadata"]["name"] == "cassandra-2" and ready(p) for p in self.kube.pods("cassandra")), 600, 5)
        rejoined = time.time() - killed_at
        failures = sum(v for k, v in answers.items() if k not in ("201",))
        total = sum(answers.values())
        ok = not lost and bool(rejoin) and failures <= total * 0.01
        self.checks.record(
            "cassandra", ok,
            f"cassandra-2 killed while base wrote users and profiles (RF 3, LOCAL_QUORUM): {total} writes, answers {answers}; "
            f"{len(acked)} acknowledged, read back {len(acked) - len(lost)}, lost {len(lost)}; "
            f"cassandra-2 Ready again {rejoined:.0f} s after the kill",
        )
        self.figures["cassandra_writes_lost"] = str(len(lost))
        self.figures["cassandra_failed_writes"] = str(failures)

    def busiest_stream_pod(self) -> str:
        from e2e_cluster import open_streams
        pods = [p["metadata"]["name"] for p in self.kube.pods("stream") if ready(p)]
        return max(pods, key=lambda p: open_streams(self.kube, p) or 0)

    def stream_drills(self) -> None:
        pairs = self.pairs[40:60]
        clients = self.streams(pairs, reconnect=True)
        try:
            time.sleep(2 * 2)  # two rebalancing periods: the spread settles before the drill
            for c in clients:
                c.ends.clear()
            victim = self.busiest_stream_pod()
            Kube.run("-n", NS, "delete", "pod", victim, "--wait=false")
            # The process gets SIGTERM after the pod's 5 s preStop pause.
            wait_until("the victim's streams told to reconnect", lambda: any(
                r == "shutdown" for c in clients for _, r in c.ends), 30, 0.5)
            time.sleep(3)
            # The victim's streams are the ones told `shutdown` (others may be handed off by
            # rebalancing onto the replacement pod meanwhile, and reconnect too).
            moved = [c for c in clients if any(r == "shutdown" for _, r in c.ends)]
            wait_until("every stream streaming again", lambda: all(c.streaming.is_set() for c in clients), 30, 0.5)
            back = [c.opens[-1] - next(t for t, r in c.ends if r == "shutdown") for c in moved] or [0.0]
            refused_409 = sum(c.refusals.count(409) for c in clients)
            lost = sum(1 for c in clients if not c.streaming.is_set())
            ok = bool(moved) and lost == 0 and refused_409 == 0
            self.checks.record(
                "stream-term", ok,
                f"{victim} deleted (SIGTERM) under 20 streams: its {len(moved)} were told `shutdown` and "
                f"streamed again from another pod after "
                f"{sorted(back)[len(back) // 2] * 1000:.0f} ms median, {max(back) * 1000:.0f} ms max; 409 on return {refused_409}; lost {lost}",
            )
            self.figures["stream_term_lost"] = str(lost)
        finally:
            for c in clients:
                c.stop()

        # SIGKILL: nothing releases the locks; they must hold until their TTL, never less.
        pairs = self.pairs[60:80]
        clients = self.streams(pairs)
        victim = self.busiest_stream_pod()
        killed_at = self.kill_process(victim)
        wait_until("the victim's streams cut", lambda: any(c.ends for c in clients), 20, 0.5)
        time.sleep(2)
        cut = [c for c in clients if c.ends]
        for c in clients:
            c.stop()
        held = [(c.user, c.profile) for c in cut]
        measured = time.time()
        left = pttls("redis-0", held)
        # When each lock expires, as Redis says right after the kill.
        expiry = {pair: measured + ms / 1000 for pair, ms in zip(held, left)}
        early, late, freed = 0, [], []
        pending = set(held)
        while pending and time.time() < killed_at + LOCK_TTL + 20:
            for pair in list(pending):
                status, _ = open_status(self.ingress.url, *pair)
                if status == 200:
                    now = time.time()
                    freed.append(now - killed_at)
                    late.append(now - expiry[pair])
                    pending.discard(pair)
                    if now < expiry[pair] - 0.5:
                        early += 1
            time.sleep(1)
        ok = bool(held) and early == 0 and not pending and min(left or [0]) > 0
        self.checks.record(
            "stream-kill", ok,
            f"{victim}'s process killed (SIGKILL) under {len(held)} of 20 streams: their locks had "
            f"{min(left or [0]) / 1000:.1f}-{max(left or [0]) / 1000:.1f} s left; the pairs opened again "
            f"{min(freed or [0]):.1f}-{max(freed or [0]):.1f} s after the kill, {min(late or [0]):.1f}-{max(late or [0]):.1f} s "
            f"after their lock's expiry (LOCK_TTL {LOCK_TTL:.0f} s); opened before expiry {early}; never freed {len(pending)}",
        )
        self.figures["stream_kill_early"] = str(early)

    def kill_process(self, pod: str) -> float:
        """SIGKILL to the pod's own process: on the lab the node is this machine, so the process
        is found by its HOSTNAME (the pod's name). Elsewhere, a forced delete with no grace."""
        for pid in subprocess.run(["pgrep", "-x", "stream"], capture_output=True, text=True).stdout.split():
            try:
                env = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"HOSTNAME={pod}".encode() in env:
                os.kill(int(pid), signal.SIGKILL)
                log(f"SIGKILL to {pod} (pid {pid})")
                return time.time()
        log(f"{pod}'s process is not on this machine: forced delete with no grace instead")
        Kube.run("-n", NS, "delete", "pod", pod, "--grace-period=0", "--force", "--wait=false", check=False)
        return time.time()

    def memory_drill(self) -> None:
        Kube.run("-n", NS, "set", "resources", "deployment/stream", "-c", "stream", "--limits=memory=64Mi", "--requests=memory=32Mi")
        Kube.run("-n", NS, "rollout", "status", "deployment/stream", "--timeout=180s", timeout=200)
        wait_until("only the new stream pods", lambda: all(
            p["metadata"].get("deletionTimestamp") is None for p in self.kube.pods("stream")), 60)
        pods = [p for p in self.kube.pods("stream") if ready(p)]
        # Straight to the pods where this machine reaches them (the lab's node is this machine):
        # the Ingress's own socket buffers would hold megabytes per reader before stream ever
        # saw a slow one. Elsewhere, through the Ingress.
        targets = [(p["status"]["podIP"], 8080) for p in pods]
        try:
            socket.create_connection(targets[0], timeout=3).close()
        except OSError:
            parsed = urllib.parse.urlsplit(self.ingress.url)
            targets = [(parsed.hostname, parsed.port or 80)]
        sockets, answers = [], {}
        # Pairs no earlier drill touched, so none is still locked by one.
        for i, (user, profile) in enumerate(self.pairs[200:400]):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(5)
            s.connect(targets[i % len(targets)])
            s.sendall(f"GET /stream/{user}/{profile} HTTP/1.1\r\nHost: stream\r\naccept: text/event-stream\r\n\r\n".encode())
            sockets.append(s)
        for s in sockets:  # each answer's head: streaming, or refused (and why)
            try:
                head = s.recv(2048).decode(errors="replace")
            except OSError as error:
                head = type(error).__name__
            code = re.search(r'"error":"([a-z_]+)"', head)
            kind = code.group(1) if code and "event: refused" in head else head.split("\r\n", 1)[0][:40]
            answers[kind] = answers.get(kind, 0) + 1
        # Then 2 KB every 2 s per reader (1 KB/s against ~250 KB/s sent): stream skips what they
        # cannot take, and counts the gap when it next writes to them.
        started = time.time()
        while time.time() - started < 60:
            for s in sockets:
                try:
                    s.setblocking(False)
                    s.recv(2048)
                except OSError:
                    pass
            time.sleep(2)
        from e2e_cluster import open_streams
        pods = self.kube.pods("stream")
        open_now = sum(open_streams(self.kube, p["metadata"]["name"]) or 0 for p in pods)
        dropped = 0.0
        for p in pods:
            try:
                text = self.kube.text(f"/api/v1/namespaces/{NS}/pods/{p['metadata']['name']}:8080/proxy/metrics")
                m = re.search(r"^kubescaler_stream_messages_dropped_total(?:\{[^}]*\})? (\S+)$", text, re.M)
                dropped += float(m.group(1)) if m else 0
            except OSError:
                pass
        try:
            usage = self.kube.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods?labelSelector=app.kubernetes.io%2Fname%3Dstream")
            memory = [c["usage"]["memory"] for item in usage["items"] for c in item["containers"]]
        except (OSError, KeyError):
            memory = []
        oom = [p["metadata"]["name"] for p in pods for c in p["status"].get("containerStatuses", [])
               if (c.get("lastState", {}).get("terminated") or {}).get("reason") == "OOMKilled"]
        restarted = sum(restarts(p) for p in pods)
        for s in sockets:
            s.close()
        ok = not oom and restarted == 0 and dropped > 0 and open_now >= 190
        self.checks.record(
            "memory", ok,
            f"stream limited to 64 MiB, 200 readers taking 1 KB/s for 60 s, over "
            f"{len(targets)} {'pods' if len(targets) > 1 else 'Ingress'}: answers {answers}; {open_now} open, "
            f"messages skipped {dropped:.0f}, memory in use {', '.join(memory) or 'unknown'}, OOM kills {len(oom)}, restarts {restarted}",
        )
        self.figures["memory_oom_kills"] = str(len(oom))
        Kube.run("-n", NS, "rollout", "undo", "deployment/stream", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--kustomization", required=True, help="the ha overlay to deploy")
    parser.add_argument("--ingress-url", help="default: the address in the stream Ingress's status")
    args = parser.parse_args()
    ha = HA(args)
    started = time.time()
    try:
        for phase in (ha.deploy, ha.redis_drills, ha.cassandra_drill, ha.stream_drills, ha.memory_drill):
            log(f"--- {phase.__name__}")
            try:
                phase()
            except (TimeoutError, RuntimeError) as error:
                if phase == ha.deploy:
                    raise Abort(str(error)) from error
                ha.checks.record(phase.__name__, False, f"stopped: {error}")
    except Abort as error:
        ha.checks.record("ha", False, f"stopped: {error}")
    finally:
        ha.kube.close()
    for key, value in ha.figures.items():
        print(f"figure {key}: {value}")
    print(f"ha drills took {time.time() - started:.0f} s")
    print(ha.checks.summary())
    return 0 if all(ok for _, ok, _ in ha.checks.results) else 1


if __name__ == "__main__":
    sys.exit(main())
