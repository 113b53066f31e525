#!/usr/bin/env bash
# Prepare a Debian machine for bgw-conformance (idempotent, quick when done):
# the Docker engine (installed and started if absent), debootstrap for local
# base images, the host's PostgreSQL server and headers for the local target,
# Chromium for the report tests, and a virtualenv in .venv with the kit and tox.
set -euo pipefail
cd "$(dirname "$0")"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v pg_config >/dev/null 2>&1 && [ -f "$(pg_config --includedir-server 2>/dev/null)/postgres.h" ] \
    || need+=(postgresql postgresql-server-dev-all)
command -v make >/dev/null 2>&1 || need+=(make)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v patch >/dev/null 2>&1 || need+=(patch)  # mutants are patches
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # the report tests look at the pages
command -v gpg >/dev/null 2>&1 || need+=(gnupg)  # doctor parses apt sources' keys; tests sign a repository
command -v dpkg-scanpackages >/dev/null 2>&1 || need+=(dpkg-dev)  # the apt source test indexes a repository
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    echo "bootstrap: starting dockerd (log: /var/log/bgwc-dockerd.log)"
    $sudo sh -c 'nohup dockerd >/var/log/bgwc-dockerd.log 2>&1 &'
    for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "bootstrap: dockerd did not start; see /var/log/bgwc-dockerd.log" >&2; exit 1; }
fi

if [ ! -x .venv/bin/tox ] || [ pyproject.toml -nt .venv/.installed ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev]'
    touch .venv/.installed
fi
