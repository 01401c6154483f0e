# Shared by demo.sh and test.sh (sourced): the repo root, the venv's python,
# a private temporary directory removed on exit (in RAM where there is one:
# tests/localenv.py scratch_dir), and free loopback ports.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export AWS_EC2_METADATA_DISABLED=true
PY=.venv/bin/python
localenv() { $PY -c 'import sys; sys.path.insert(0, "tests"); import localenv; print(localenv.'"$1"')'; }
BASE=$(localenv "scratch_dir('duckdb_secrets_$1.')")
free_port() { localenv "free_port()"; }
