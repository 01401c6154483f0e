#!/usr/bin/env bash
# make test: the linter (ruff, configured in pyproject.toml), pg_regress (make
# installcheck) against a throwaway cluster, then the pytest suites (which
# start their own cluster and S3 server).
set -euo pipefail
. "$(dirname "$0")/lib.sh" regress

echo "== ruff"
.venv/bin/ruff check plpython tests bench
PGPORT=$(free_port)
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
echo "== pg_regress on a database created at the previous version (0.6.0) and updated"
PGHOST=127.0.0.1 PGPORT=$PGPORT PGUSER=postgres make installcheck-upgrade || status=$?
if [ $status -ne 0 ]; then
    [ -f results-upgrade/regression.diffs ] && cat results-upgrade/regression.diffs
    echo "== pg_regress (upgraded) FAILED"; exit $status
fi
$PY tests/localenv.py pg-stop "$BASE/pg"

echo "== pytest"
status=0
.venv/bin/pytest -p no:cacheprovider tests "$@" || status=$?
if [ $status -eq 5 ]; then
    echo "== pytest collected no tests: that is a failure"; exit 1
fi
exit $status
