#!/usr/bin/env bash
# make test: pg_regress (make installcheck) against a throwaway cluster, then
# the pytest suites (which start their own cluster and S3 server).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
PY=.venv/bin/python
BASE=$(mktemp -d /tmp/duckdb_secrets_regress.XXXXXX)
chmod 755 "$BASE"
PGPORT=$($PY -c 'import sys; sys.path.insert(0, "tests"); import localenv; print(localenv.free_port())')
cleanup() {
    $PY tests/localenv.py pg-stop "$BASE/pg" || true
    rm -rf "$BASE"
}
trap cleanup EXIT

echo "== pg_regress"
$PY tests/localenv.py pg-start "$BASE/pg" "$PGPORT"
status=0
PGHOST=127.0.0.1 PGPORT=$PGPORT PGUSER=postgres make installcheck || status=$?
if [ $status -ne 0 ]; then
    [ -f regression.diffs ] && cat regression.diffs
    echo "== pg_regress FAILED"; exit $status
fi
$PY tests/localenv.py pg-stop "$BASE/pg"

echo "== pytest"
status=0
.venv/bin/pytest -p no:cacheprovider tests "$@" || status=$?
if [ $status -eq 5 ]; then
    echo "== pytest collected no tests: that is a failure"; exit 1
fi
exit $status
