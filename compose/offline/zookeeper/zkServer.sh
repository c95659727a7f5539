#!/bin/bash
# zkServer.sh start-foreground for the stand-in image: Debian's own script reads its settings
# from /etc/zookeeper, so this one runs the server on $ZOOCFGDIR/zoo.cfg (the entrypoint wrote
# it), logging to the console, with JVMFLAGS from the environment like the official script.
# The JVM replaces this shell: it is the process docker signals and kills.
set -e
case "${1:-}" in
  start-foreground) ;;
  *) echo "usage: zkServer.sh start-foreground (the only command of this stand-in)" >&2; exit 2 ;;
esac
classpath="/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
log4j="$ZOO_CONF_DIR/log4j.properties"
if [[ ! -f "$log4j" ]]; then
  cat > "$log4j" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
EOF
fi
# shellcheck disable=SC2086  # JVMFLAGS is a list of flags, as in the official script
exec java -Dlog4j.configuration="file:$log4j" -Dzookeeper.jmx.log4j.disable=true $JVMFLAGS \
  -cp "$classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZOOCFGDIR/zoo.cfg"
