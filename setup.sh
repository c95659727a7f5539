#!/usr/bin/env bash
# masterworker set-up: install what is missing, then run the demo or the test suite.
#
#   bash setup.sh demo   # install, then: mw demo
#   bash setup.sh test   # install, then: the whole test suite
#   bash setup.sh lock   # maintainers: refresh requirements.lock after changing pyproject.toml
#
# Idempotent and quick once installed. On Debian/Ubuntu as root it installs a Java runtime and
# Debian's zookeeper package with apt when they are missing; elsewhere, install ZooKeeper
# yourself (an Apache release with ZOOKEEPER_HOME set, or Homebrew) and run it as any user.
# Python packages come from requirements.lock: exact versions, checked against their hashes.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-}"
case "$job" in
  demo|test|lock) shift ;;
  *) echo "usage: bash setup.sh demo|test|lock [extra arguments for mw demo or pytest]" >&2; exit 2 ;;
esac

say() { echo "setup: $*" >&2; }

apt_install() {
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "setup.sh: please install $* (needs apt-get as root)" >&2
    exit 2
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    say "apt-get update (once, to find $*)"
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  found=$("$python" -V 2>/dev/null || echo "not found")
  echo "setup.sh: masterworker needs Python 3.11 or newer; $python is $found (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

# A .venv whose python or pip is missing (an interrupted first run) is made again, not trusted.
if [ -e .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  say ".venv is incomplete (no working python or pip in it): making it again"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$python" -V 2>&1)"
  "$python" -m venv .venv 2>/dev/null || {
    rm -rf .venv
    say "installing python3-venv with apt: this Python cannot make virtual environments without it"
    apt_install python3-venv && "$python" -m venv .venv
  }
fi
if [ "$job" = lock ]; then
  # uv resolves for every platform and Python >= 3.11 and records PyPI's hashes; pip installs the result.
  [ -x .venv/bin/uv ] || { say "installing uv into .venv (only needed to refresh the lock)"; .venv/bin/python -m pip install -q uv; }
  say "resolving pyproject.toml (all extras) and the build backend into requirements.lock"
  echo "setuptools>=68,<81" | .venv/bin/uv pip compile pyproject.toml - --all-extras --generate-hashes --universal \
    --python-version 3.11 --no-header --annotation-style line --upgrade -o requirements.lock
  say "done: review 'git diff requirements.lock', then run 'bash setup.sh test'"
  exit 0
fi

if ! command -v java >/dev/null; then
  say "installing a Java runtime (default-jre-headless) with apt: ZooKeeper is a Java server"
  apt_install default-jre-headless
fi
if [ -z "${ZOOKEEPER_HOME:-}" ] && { [ ! -f /usr/share/java/zookeeper.jar ] || [ ! -x /usr/share/zookeeper/bin/zkCli.sh ]; }; then
  say "installing Debian's zookeeper package with apt: the tests and the demo start real servers from it"
  apt_install zookeeper
fi

stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -f .venv/.installed-*
  say "installing $(grep -c '^[a-zA-Z]' requirements.lock) pinned packages from requirements.lock into .venv (a minute the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
  say "installing masterworker itself into .venv (editable: your changes to the source take effect at once)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  touch "$stamp"
fi

if [ "$job" = demo ]; then
  say "running: mw demo $*"
  exec .venv/bin/mw demo "$@"
else
  say "running: pytest $*"
  exec .venv/bin/python -m pytest "$@"
fi
