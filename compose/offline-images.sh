#!/usr/bin/env bash
# Stand-ins for the registry images the compose demo uses, for engines that cannot pull.
#
#   bash compose/offline-images.sh          # against the engine of DOCKER_HOST (or the default one)
#   bash compose/offline-images.sh --list   # only print the registry images the demo needs
#
# For each image named by compose/docker-compose.yml (zookeeper:3.8) and compose/Dockerfile
# (python:3.11-slim): present already, nothing to do; pulled from a registry, done; otherwise a
# local stand-in is built under the same name:
#   - debian:bookworm-slim, the base of both: debootstrap --variant=minbase, then docker import;
#   - zookeeper:3.8: Debian's zookeeper package, with an entrypoint honouring the official
#     image's ZOO_* variables (compose/offline/zookeeper/);
#   - python:3.11-slim: Debian's Python 3.11 and pip, trusting this machine's CA certificates
#     so that pip works inside a build behind an intercepting proxy (compose/offline/python/).
# On a machine that can pull, or that already has the images, it builds nothing. A stand-in
# carries the label mw.standin=<hash of its files> and is rebuilt when those files change.
# Building needs root (debootstrap), Debian's package mirror and the image builds' network: host.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin needed, --network host works as is
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

zookeeper_image="$(sed -n 's/^ *image: *\(zookeeper:[^ ]*\) *$/\1/p' "$here/docker-compose.yml" | head -1)"
python_image="$(sed -n 's/^FROM *\([^ ]*\).*$/\1/p' "$here/Dockerfile" | head -1)"
debian_image=debian:bookworm-slim
if [ "${1:-}" = --list ]; then
  echo "$zookeeper_image $python_image"
  exit 0
fi

say() { printf 'offline-images: %s\n' "$*" >&2; }
seconds() { echo "$(($(date +%s) - $1)) s"; }

# The hash of a stand-in's own files: what its label records.
definition() { (cd "$here/offline/$1" && sha256sum ./* | sha256sum | cut -c1-16); }

label_of() { docker image inspect -f '{{with .Config.Labels}}{{index . "mw.standin"}}{{end}}' "$1" 2>/dev/null || true; }

# Present and current (a pulled image, or a stand-in built from the files as they are now)?
current() {
  local image="$1" kind="$2" label
  docker image inspect "$image" >/dev/null 2>&1 || return 1
  label="$(label_of "$image")"
  [ -z "$label" ] || [ "$label" = "<no value>" ] || [ "$label" = "$(definition "$kind")" ] # pulled, or current
}

pulled() {
  local started
  started=$(date +%s)
  if docker pull -q "$1" >/dev/null 2>&1; then
    say "$1 pulled ($(seconds "$started"))"
    return 0
  fi
  say "$1 cannot be pulled ($(seconds "$started")): building a local stand-in"
  return 1
}

debian_base() {
  docker image inspect "$debian_image" >/dev/null 2>&1 && return 0
  pulled "$debian_image" && return 0
  if ! command -v debootstrap >/dev/null; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { say "please install debootstrap"; exit 2; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  local started rootfs
  started=$(date +%s)
  rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/mw-debian-rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
    { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log" "$rootfs"/var/cache/apt/archives/*.deb
  rm -rf "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$debian_image" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  say "$debian_image built with debootstrap from $mirror ($(seconds "$started"))"
}

stand_in() {
  local image="$1" kind="$2" context="$3" started
  debian_base
  started=$(date +%s)
  docker build -q --network host --label "mw.standin=$(definition "$kind")" -t "$image" "$context" >/dev/null
  say "$image built as a stand-in from compose/offline/$kind ($(seconds "$started"))"
}

if current "$zookeeper_image" zookeeper; then
  say "$zookeeper_image present"
elif ! pulled "$zookeeper_image"; then
  stand_in "$zookeeper_image" zookeeper "$here/offline/zookeeper"
fi

if current "$python_image" python; then
  say "$python_image present"
elif ! pulled "$python_image"; then
  context="$(mktemp -d)"
  cp "$here/offline/python/Dockerfile" "$context/"
  cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$context/host-ca-certificates.crt"
  stand_in "$python_image" python "$context"
  rm -rf "$context"
fi
