#!/usr/bin/env bash
# Start ONE real OpenSearch 2.19 node (in a JVM, foreground) with its HTTP API on 127.0.0.1:<port>.
#   bash tests/opensearch-node/run.sh <port> <data-dir>
# Prints "READY http://127.0.0.1:<port>" on stdout once cluster health is yellow/green;
# SIGTERM (or Ctrl-C) stops the node cleanly and prints "STOPPED". Logs go to stderr.
# Builds this small Maven project on first use (Maven cache: the default ~/.m2).
# Env: JAVA_HOME (Java 17+; default: java on PATH), OPENSEARCH_NODE_HEAP (default 512m),
#      OPENSEARCH_NODE_LOG_LEVEL (default WARN; INFO shows the usual node start-up log).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 <port> <data-dir>" >&2
  exit 2
fi
PORT="$1"
DATA_DIR="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAR="$HERE/target/opensearch-node-0.1.0.jar"
LIB="$HERE/target/lib"

stale() {
  [ ! -f "$JAR" ] || [ ! -f "$LIB/.complete" ] ||
    [ -n "$(find "$HERE/pom.xml" "$HERE/src" -newer "$JAR" -type f 2>/dev/null | head -1)" ]
}

if stale; then
  mkdir -p "$HERE/target"
  exec 9>"$HERE/target/.build.lock"
  flock 9                      # two first uses at once: one builds, the other waits
  if stale; then
    echo "opensearch-node: building (mvn -q -B -DskipTests package) ..." >&2
    rm -rf "$LIB"
    (cd "$HERE" && exec mvn -q -B -Dstyle.color=never -DskipTests package >&2) &
    build_pid=$!
    trap 'kill -TERM "$build_pid" 2>/dev/null; wait "$build_pid" 2>/dev/null; exit 143' TERM INT
    wait "$build_pid"
    trap - TERM INT
    touch "$LIB/.complete"
  fi
  exec 9>&-
fi

JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
mkdir -p "$DATA_DIR"
HEAP="${OPENSEARCH_NODE_HEAP:-512m}"
# exec: the JVM takes this PID, so SIGTERM to it reaches the node's shutdown hook directly.
exec "$JAVA" \
  -Xms"$HEAP" -Xmx"$HEAP" \
  -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss1m \
  -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
  -Dlog4j2.disable.jmx=true -Dlog4j.shutdownHookEnabled=false -Dlog4j2.formatMsgNoLookups=true \
  -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
  -Dopensearch.networkaddress.cache.ttl=60 -Dopensearch.networkaddress.cache.negative.ttl=10 \
  -cp "$JAR:$LIB/*" periscope.opensearchnode.Main "$PORT" "$DATA_DIR"
