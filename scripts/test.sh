#!/usr/bin/env bash
# make test: the linter (ruff, configured in pyproject.toml), pg_regress (make
# installcheck) against a throwaway cluster, on a new database and on one
# created at the previous version and updated, then every pytest suite (they
# start their own clusters and S3 server).
# make check (scripts/check.sh) runs this with --fast: pg_regress on a new
# database only, and the pytest tests not marked slow (pyproject.toml).
set -euo pipefail
fast=0
if [ "${1:-}" = "--fast" ]; then fast=1; shift; fi
. "$(dirname "$0")/lib.sh" regress
# Hypothesis draws the same examples on every run (tests/conftest.py).
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"

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
# The throwaway cluster loads pg_stat_statements (pytest checks that no secret
# reaches it); with track_utility on, every CREATE USER MAPPING of the scripts
# would also get the NOTICE that the statement's text is kept. The scripts are
# about the extension's output at PostgreSQL's defaults: not tracked here.
regress_options="-c pg_stat_statements.track_utility=off"
status=0
PGOPTIONS="$regress_options" PGHOST=127.0.0.1 PGPORT=$PGPORT PGUSER=postgres make installcheck || status=$?
if [ $status -ne 0 ]; then
    [ -f regression.diffs ] && cat regression.diffs
    echo "== pg_regress FAILED"; exit $status
fi
if [ $fast -eq 0 ]; then
    echo "== pg_regress on a database created at the previous version (0.6.0) and updated"
    PGOPTIONS="$regress_options" PGHOST=127.0.0.1 PGPORT=$PGPORT PGUSER=postgres make installcheck-upgrade || status=$?
    if [ $status -ne 0 ]; then
        [ -f results-upgrade/regression.diffs ] && cat results-upgrade/regression.diffs
        echo "== pg_regress (upgraded) FAILED"; exit $status
    fi
fi
$PY tests/localenv.py pg-stop "$BASE/pg"

marks=()
if [ $fast -eq 1 ]; then marks=(-m "not slow"); fi
echo "== pytest ${marks[*]}"
status=0
.venv/bin/pytest -p no:cacheprovider "${marks[@]}" tests "$@" || status=$?
if [ $status -eq 5 ]; then
    echo "== pytest collected no tests: that is a failure"; exit 1
fi
exit $status
