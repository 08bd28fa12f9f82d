#!/bin/bash
# Set up everything bootc-py's tests and demo need on a fresh Debian 12 machine (as root):
# the Debian packages in scripts/apt-packages.txt and a virtualenv in .venv with bootc-py
# installed in editable mode with its dev extras. Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^\s*$/d' scripts/apt-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# docker-registry's Debian package starts a system instance with htpasswd auth on :5000;
# the tests start their own on free loopback ports, so keep that one out of the way.
if systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q -e '.[dev]'
echo "setup: ready (.venv/bin/bootc-py, .venv/bin/pytest)"
