#!/usr/bin/env bash
# Installs the duckdb_secrets Python package and its pinned dependencies into
# DEST (default: $(pg_config --pkglibdir)/duckdb_secrets) for the interpreter
# that plpython3u runs. Idempotent: dependencies are reinstalled only when
# requirements-server.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:?usage: install-python.sh DEST}
PY=${SERVER_PYTHON:-/usr/bin/python3}
umask 022

mkdir -p "$DEST/python"
rm -rf "$DEST/python/duckdb_secrets"
cp -R plpython/duckdb_secrets "$DEST/python/"
cp plpython/duckdb_secrets_boot.py "$DEST/python/"
# The versions, derived from the control file and sql/install/ (written once there).
{ echo "# Written by make install (scripts/install-python.sh) from duckdb_secrets.control and sql/install/."
  "$PY" plpython/duckdb_secrets/_tree.py "$PWD"; } > "$DEST/python/duckdb_secrets/_version.py"
find "$DEST/python" -name '__pycache__' -prune -exec rm -rf {} +
# Bytecode now: the server's OS user cannot write __pycache__ here, and
# compiling in every new backend costs tens of milliseconds.
"$PY" -m compileall -q "$DEST/python" >/dev/null

if ! cmp -s requirements-server.txt "$DEST/deps/.requirements-server.txt" 2>/dev/null; then
    rm -rf "$DEST/deps.new"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$DEST/deps.new" -r requirements-server.txt
    cp requirements-server.txt "$DEST/deps.new/.requirements-server.txt"
    rm -rf "$DEST/deps"
    mv "$DEST/deps.new" "$DEST/deps"
fi
chmod -R a+rX "$DEST"
# The extension directories engines load from (hard links to the wheels'
# binaries, in DuckDB's layout), then DuckDB's signature check, once per
# install instead of at every engine start (plpython/duckdb_secrets/shipped.py):
# the record names the files that passed (last: it records their change times).
PYTHONPATH="$DEST/python:$DEST/deps" "$PY" -m duckdb_secrets.shipped "$DEST/deps"
echo "duckdb_secrets Python package, dependencies and extensions installed in $DEST ($(du -sh "$DEST" | cut -f1) on disk)"
