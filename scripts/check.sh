#!/usr/bin/env bash
# make check: the fast loop (a standing budget of 4 minutes on a 2-core machine,
# after make setup and make install): ruff, pg_regress, and the pytest tests
# not marked slow. make test runs everything. Options go to pytest, as for
# scripts/test.sh.
exec "$(dirname "$0")/test.sh" --fast "$@"
