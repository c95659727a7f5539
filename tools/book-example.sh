#!/usr/bin/env bash
# Build the book's own Java example (Master, Worker, Client, recovery/) against Debian's
# ZooKeeper jars, for `mw bench throughput --system book --book-classpath CP`, with
# tools/BookDriver.java (the book's Client in rounds, for `--client book-java`).
#
#   bash tools/book-example.sh SOURCE OUT
#
# SOURCE: a clone of https://github.com/fpj/zookeeper-book-example, or a bare mirror of it
#         (it is cloned next to OUT, outside this repository). OUT: where the classes go.
# Prints the classpath to pass to --book-classpath. The Curator master is left out (its jars
# are not in Debian); the C master too.
set -euo pipefail
source=${1:?usage: tools/book-example.sh SOURCE OUT}
out=$(realpath -m "${2:?usage: tools/book-example.sh SOURCE OUT}")
jars=${JARS:-/usr/share/java}
command -v javac >/dev/null || { echo "javac is missing: apt-get install -y openjdk-17-jdk-headless" >&2; exit 1; }
[ -f "$jars/zookeeper.jar" ] || { echo "$jars/zookeeper.jar is missing: apt-get install -y zookeeper" >&2; exit 1; }
if [ ! -d "$source/src/main/java" ]; then  # a bare mirror: check it out beside the classes
    git clone -q "$source" "$out.src"
    source="$out.src"
fi
book="$source/src/main/java/org/apache/zookeeper/book"
mkdir -p "$out"
# zookeeper.jar's manifest names its own dependencies (jute, netty, slf4j-api...); log4j 1.2 logs.
deps="$jars/zookeeper.jar:$jars/slf4j-api.jar:$jars/slf4j-log4j12.jar:$jars/log4j-1.2.jar"
javac -nowarn -implicit:none -encoding UTF-8 -d "$out" -cp "$deps" \
    "$book"/Master.java "$book"/Worker.java "$book"/Client.java "$book"/ChildrenCache.java "$book"/recovery/*.java \
    "$(dirname "$0")"/BookDriver.java
echo "$out:$deps"
