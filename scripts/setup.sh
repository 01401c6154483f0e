#!/usr/bin/env bash
# Everything make demo / make test need on a fresh Debian 12 machine:
# PostgreSQL 15 with PL/Python and PGXS, and a virtualenv with the pinned test
# tools. Idempotent: does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="postgresql-15 postgresql-plpython3-15 postgresql-server-dev-15 postgresql-contrib postgresql-15-pgaudit python3-venv python3-pip make"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing Debian packages:$missing"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! cmp -s requirements-test.txt .venv/.requirements-test.txt 2>/dev/null; then
    echo "setup: creating .venv with the pinned test tools"
    rm -rf .venv
    /usr/bin/python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
    cp requirements-test.txt .venv/.requirements-test.txt
fi
echo "setup: done"
