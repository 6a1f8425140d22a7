#!/usr/bin/env bash
# Real backing services for development, tests and benchmarks: Redis and a single-node
# Apache Cassandra, both on 127.0.0.1, both installed by this script when missing (and nginx,
# which tests start themselves as the balancer in front of several stream instances). Cassandra
# is ready once `kubescaler-bench cql-ping` gets an answer; the first use builds it (debug).
#
#   scripts/services.sh up       start what is not running (idempotent), wait until ready
#   scripts/services.sh down     stop what `up` started (pid files), keep data
#   scripts/services.sh status   say what runs where
#   scripts/services.sh check    exit 0 when both answer (for scripts)
#   scripts/services.sh clean    down, then remove data and logs
#
# Environment: REDIS_PORT (6379), CASSANDRA_PORT (9042), CASSANDRA_STORAGE_PORT (7000),
# CASSANDRA_JMX_PORT (7199), CASSANDRA_HEAP (1g), KUBESCALER_STATE (<repo>/.dev),
# CASSANDRA_START_TIMEOUT (seconds, 240).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${KUBESCALER_STATE:-$ROOT/.dev}
REDIS_PORT=${REDIS_PORT:-6379}
CASSANDRA_PORT=${CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${CASSANDRA_STORAGE_PORT:-7000}
CASSANDRA_JMX_PORT=${CASSANDRA_JMX_PORT:-7199}
CASSANDRA_HEAP=${CASSANDRA_HEAP:-1g}
CASSANDRA_START_TIMEOUT=${CASSANDRA_START_TIMEOUT:-240}

REDIS_DIR=$STATE/redis
CASS_DIR=$STATE/cassandra
CASS_CACHE=${KUBESCALER_CACHE:-$HOME/.cache/kubescaler}/cassandra

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

apt_install() {
  # `apt-get install` fails on a machine whose package lists were never fetched.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
    log "apt-get update"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  }
}

# ---------------------------------------------------------------- Redis
redis_ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

redis_up() {
  if alive "$REDIS_DIR/redis.pid" && redis_ping; then
    log "redis      already up on 127.0.0.1:$REDIS_PORT"
    return
  fi
  if redis_ping; then
    log "redis      127.0.0.1:$REDIS_PORT answers but was not started here; using it"
    return
  fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server (apt-get)"
    apt_install redis-server redis-tools
  fi
  # The tests that need a load balancer in front of several stream instances run nginx.
  if ! command -v nginx >/dev/null; then
    log "installing nginx (apt-get)"
    apt_install nginx-light
  fi
  mkdir -p "$REDIS_DIR"
  local t0=$SECONDS
  # No persistence: tests own their data, and a stale dump must never leak into a run.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$REDIS_DIR" --daemonize yes --pidfile "$REDIS_DIR/redis.pid" \
    --logfile "$REDIS_DIR/redis.log"
  for _ in $(seq 1 100); do
    redis_ping && { log "redis      up on 127.0.0.1:$REDIS_PORT in $((SECONDS - t0)) s"; return; }
    sleep 0.1
  done
  tail -n 30 "$REDIS_DIR/redis.log" >&2 || true
  die "redis did not answer PING on 127.0.0.1:$REDIS_PORT"
}

redis_down() {
  if alive "$REDIS_DIR/redis.pid"; then
    kill "$(cat "$REDIS_DIR/redis.pid")"
    for _ in $(seq 1 50); do alive "$REDIS_DIR/redis.pid" || break; sleep 0.1; done
    log "redis      stopped"
  fi
  rm -f "$REDIS_DIR/redis.pid"
}

# ------------------------------------------------------------ Cassandra
# Ready means "a CQL query answers", not "the port is open": Cassandra opens the native port
# before it can serve queries. The query is `kubescaler-bench cql-ping` (the scylla driver),
# built in debug by cql_ping_build, which must run in this shell (not in `$(...)`) first.
CQL_PING=
cql_ping_build() {
  [ -z "$CQL_PING" ] || return 0
  local target=${CARGO_TARGET_DIR:-$ROOT/target} out
  [ -x "$target/debug/kubescaler-bench" ] || log "building kubescaler-bench, which asks Cassandra whether it is ready"
  out=$(cd "$ROOT" && cargo build -q -p kubescaler-bench --message-format=json-render-diagnostics) ||
    die "cargo build -p kubescaler-bench failed: it asks Cassandra whether it is ready"
  CQL_PING=$(printf '%s\n' "$out" | sed -n 's/.*"executable":"\([^"]*kubescaler-bench\)".*/\1/p' | tail -n 1)
  [ -x "$CQL_PING" ] || die "cargo build -p kubescaler-bench named no executable"
}
cql_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$CASSANDRA_PORT") 2>/dev/null; }
# No build while nothing listens: then the answer is no, at once.
cql_ping_prepare() { if cql_port_open; then cql_ping_build; fi; }
cql_ping() {
  cql_port_open && [ -n "$CQL_PING" ] &&
    "$CQL_PING" cql-ping --nodes "127.0.0.1:$CASSANDRA_PORT" --timeout 2s 2>/dev/null
}

# The resolved classpath is cached beside Maven's own cache, keyed by the pom's content,
# so only the first `up` on a machine pays for resolution.
cassandra_classpath() {
  local pom=$ROOT/scripts/cassandra/pom.xml key cp
  key=$(sha256sum "$pom" | cut -c1-16)
  cp=$CASS_CACHE/classpath-$key.txt
  if [ ! -s "$cp" ] || ! tr ':' '\n' <"$cp" | head -n 1 | xargs test -f; then
    command -v mvn >/dev/null || apt_install maven
    mkdir -p "$CASS_CACHE"
    log "resolving Cassandra from Maven Central (first run only)"
    if ! mvn -B -q -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp.tmp" \
      >"$CASS_CACHE/maven.log" 2>&1; then
      tail -n 30 "$CASS_CACHE/maven.log" >&2
      die "maven could not resolve org.apache.cassandra:cassandra-all (log: $CASS_CACHE/maven.log)"
    fi
    mv "$cp.tmp" "$cp"
  fi
  cat "$cp"
}

cassandra_up() {
  cql_ping_prepare
  if alive "$CASS_DIR/cassandra.pid" && cql_ping >/dev/null; then
    log "cassandra  already up on 127.0.0.1:$CASSANDRA_PORT"
    return
  fi
  if cql_ping >/dev/null; then
    log "cassandra  127.0.0.1:$CASSANDRA_PORT answers but was not started here; using it"
    return
  fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  local java_major
  java_major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  [ "$java_major" = 17 ] || log "warning: Cassandra 5.0 is run on Java 17 here; found Java $java_major"

  local cp t0=$SECONDS
  cp=$(cassandra_classpath)
  mkdir -p "$CASS_DIR"/{data,commitlog,saved_caches,hints,cdc_raw,conf,triggers}
  sed -e "s|@DATA_DIR@|$CASS_DIR|g" -e "s|@CASSANDRA_PORT@|$CASSANDRA_PORT|g" \
    -e "s|@STORAGE_PORT@|$CASSANDRA_STORAGE_PORT|g" \
    "$ROOT/scripts/cassandra/cassandra.yaml" >"$CASS_DIR/conf/cassandra.yaml"

  # The JPMS flags are those of Cassandra's own conf/jvm17-server.options.
  local jvm=(
    -Xms512m "-Xmx$CASSANDRA_HEAP" -Xss512k -XX:+UseG1GC -XX:+HeapDumpOnOutOfMemoryError
    -XX:HeapDumpPath="$CASS_DIR" -XX:+ExitOnOutOfMemoryError
    -Djava.net.preferIPv4Stack=true
    -Djdk.attach.allowAttachSelf=true
    -Dio.netty.tryReflectionSetAccessible=true
    -Dcassandra.config="file://$CASS_DIR/conf/cassandra.yaml"
    -Dcassandra.storagedir="$CASS_DIR"
    -Dcassandra.logdir="$CASS_DIR"
    -Dcassandra.triggers_dir="$CASS_DIR/triggers"
    -Dlogback.configurationFile="file://$ROOT/scripts/cassandra/logback.xml"
    -Dcassandra.jmx.local.port="$CASSANDRA_JMX_PORT"
    # A single node with nobody to gossip with: do not wait for the ring to settle.
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=0
    -Dcassandra.superuser_setup_delay_ms=0
    -Dcassandra-foreground=yes
  )
  local m
  for m in java.base/jdk.internal.misc java.management.rmi/com.sun.jmx.remote.internal.rmi \
    java.rmi/sun.rmi.registry java.rmi/sun.rmi.server java.sql/java.sql java.base/java.lang.ref \
    jdk.unsupported/sun.misc jdk.compiler/com.sun.tools.javac.file jdk.attach/sun.tools.attach; do
    jvm+=(--add-exports "$m=ALL-UNNAMED")
  done
  for m in java.base/java.lang.module java.base/jdk.internal.loader java.base/jdk.internal.ref \
    java.base/jdk.internal.reflect java.base/jdk.internal.math java.base/jdk.internal.module \
    java.base/jdk.internal.util.jar jdk.management/com.sun.management.internal \
    java.base/sun.nio.ch java.base/java.io java.base/java.lang.reflect \
    jdk.compiler/com.sun.tools.javac java.base/java.lang java.base/java.util; do
    jvm+=(--add-opens "$m=ALL-UNNAMED")
  done

  # setsid: the daemon must outlive this shell and not receive its terminal's signals.
  setsid java "${jvm[@]}" -cp "$cp" org.apache.cassandra.service.CassandraDaemon \
    >"$CASS_DIR/cassandra.log" 2>&1 </dev/null &
  echo $! >"$CASS_DIR/cassandra.pid"
  cql_ping_build # while Cassandra starts; its time does not count against the timeout

  local deadline=$((SECONDS + CASSANDRA_START_TIMEOUT)) version
  while ((SECONDS < deadline)); do
    if ! alive "$CASS_DIR/cassandra.pid"; then
      tail -n 40 "$CASS_DIR/cassandra.log" >&2 || true
      die "cassandra exited during start-up (log: $CASS_DIR/cassandra.log)"
    fi
    if version=$(cql_ping); then
      log "cassandra  $version up on 127.0.0.1:$CASSANDRA_PORT in $((SECONDS - t0)) s"
      return
    fi
    sleep 1
  done
  tail -n 40 "$CASS_DIR/cassandra.log" >&2 || true
  die "cassandra did not answer CQL within ${CASSANDRA_START_TIMEOUT}s (log: $CASS_DIR/cassandra.log)"
}

cassandra_down() {
  if alive "$CASS_DIR/cassandra.pid"; then
    local pid
    pid=$(cat "$CASS_DIR/cassandra.pid")
    kill "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "cassandra  stopped"
  fi
  rm -f "$CASS_DIR/cassandra.pid"
}

status() {
  if redis_ping; then log "redis      up   127.0.0.1:$REDIS_PORT"; else log "redis      down"; fi
  local v
  cql_ping_prepare
  if v=$(cql_ping); then log "cassandra  up   127.0.0.1:$CASSANDRA_PORT ($v)"; else log "cassandra  down"; fi
}

case "${1:-}" in
  up) redis_up; cassandra_up ;;
  down) cassandra_down; redis_down ;;
  status) status ;;
  check) redis_ping && cql_ping_prepare && cql_ping >/dev/null ;;
  clean) cassandra_down; redis_down; rm -rf "$STATE"; log "removed $STATE" ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
