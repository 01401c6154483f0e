# Shared by demo.sh and test.sh (sourced): the repo root, the venv's python,
# a private temporary directory removed on exit, and free loopback ports.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export AWS_EC2_METADATA_DISABLED=true
PY=.venv/bin/python
BASE=$(mktemp -d "/tmp/duckdb_secrets_$1.XXXXXX")
chmod 755 "$BASE"
free_port() { $PY -c 'import sys; sys.path.insert(0, "tests"); import localenv; print(localenv.free_port())'; }
