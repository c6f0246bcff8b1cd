#!/usr/bin/env bash
# A Spark Connect server on loopback, from the `pyspark` package in a virtual environment
# under the target directory (created on first use, so a fresh machine needs no manual step).
#
#   tools/spark/server.sh start PORT [OWNER_PID]
#                                      start one (Java 17 must be on PATH); prints its pid;
#                                      with OWNER_PID it stops when that process ends
#   tools/spark/server.sh stop PID     stop it
#   tools/spark/server.sh home         print SPARK_HOME (installing pyspark when missing)
#
# local[2], driver memory 1 GB, UI off, session time zone UTC, every port bound to 127.0.0.1,
# and result streams without a time limit (the Rust client does not reattach a stream the
# server ends after senderMaxStreamDuration, 2 minutes by default).
set -euo pipefail
PYSPARK_VERSION="${VIGIL_PYSPARK_VERSION:-4.0.0}"
base="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target}/spark"
venv="$base/venv"

home() {
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$base"
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import pyspark" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "pyspark==$PYSPARK_VERSION" >"$base/pip.log" 2>&1 \
      || { echo "pip install pyspark==$PYSPARK_VERSION failed; see $base/pip.log" >&2; exit 1; }
  fi
  "$venv/bin/python" -c "import os, pyspark; print(os.path.dirname(pyspark.__file__))"
}

case "${1:-}" in
  home) home ;;
  start)
    port="${2:?usage: server.sh start PORT}"
    command -v java >/dev/null || { echo "java (17) is not on PATH" >&2; exit 1; }
    spark_home="$(home)"
    jar="$(ls "$spark_home"/jars/spark-connect_*.jar 2>/dev/null | head -1)"
    [ -n "$jar" ] || { echo "no spark-connect jar in $spark_home/jars" >&2; exit 1; }
    mkdir -p "$base/run"
    log="$base/run/server-$port.log"
    # pyspark's pip package has the jar but not sbin/start-connect-server.sh: start its
    # main class the way that script does.
    SPARK_HOME="$spark_home" nohup "$spark_home/bin/spark-submit" \
      --class org.apache.spark.sql.connect.service.SparkConnectServer \
      --master 'local[2]' --driver-memory 1g \
      --conf spark.ui.enabled=false \
      --conf spark.sql.session.timeZone=UTC \
      --conf spark.sql.ansi.enabled=true \
      --conf spark.sql.shuffle.partitions=4 \
      --conf spark.connect.execute.reattachable.senderMaxStreamDuration=0 \
      --conf spark.connect.grpc.binding.address=127.0.0.1 \
      --conf "spark.connect.grpc.binding.port=$port" \
      --conf spark.driver.bindAddress=127.0.0.1 \
      --conf spark.driver.host=127.0.0.1 \
      --conf "spark.sql.warehouse.dir=$base/run/warehouse" \
      --conf "spark.driver.extraJavaOptions=-Dderby.system.home=$base/run" \
      "$jar" >"$log" 2>&1 &
    pid=$!
    owner="${3:-}"
    if [ -n "$owner" ]; then
      # A watchdog: the server never outlives the tests that started it.
      nohup bash -c "while kill -0 $owner 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; kill $pid 2>/dev/null" \
        >/dev/null 2>&1 &
    fi
    echo "$pid"
    ;;
  stop)
    pid="${2:?usage: server.sh stop PID}"
    kill "$pid" 2>/dev/null || true
    ;;
  *) echo "usage: server.sh start PORT | stop PID | home" >&2; exit 2 ;;
esac
