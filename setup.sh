#!/usr/bin/env bash
# masterworker set-up: install what is missing, then run the demo or the test suite.
#
#   bash setup.sh demo   # install, then: mw demo
#   bash setup.sh test   # install, then: the whole test suite
#
# Idempotent and quick once installed. On Debian/Ubuntu as root it installs a Java runtime and
# Debian's zookeeper package with apt when they are missing; elsewhere, install ZooKeeper
# yourself (an Apache release with ZOOKEEPER_HOME set, or Homebrew) and run it as any user.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-}"
case "$job" in
  demo|test) shift ;;
  *) echo "usage: bash setup.sh demo|test [extra arguments for mw demo or pytest]" >&2; exit 2 ;;
esac

apt_install() {
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "setup.sh: please install $* (needs apt-get as root)" >&2
    exit 2
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v java >/dev/null || apt_install default-jre-headless
if [ -z "${ZOOKEEPER_HOME:-}" ] && { [ ! -f /usr/share/java/zookeeper.jar ] || [ ! -x /usr/share/zookeeper/bin/zkCli.sh ]; }; then
  apt_install zookeeper
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "setup.sh: masterworker needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv 2>/dev/null || { apt_install python3-venv && "$python" -m venv .venv; }
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [ "$job" = demo ]; then
  exec .venv/bin/mw demo "$@"
else
  exec .venv/bin/python -m pytest "$@"
fi
