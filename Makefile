# duckdb_secrets: a PGXS Makefile plus the project's set-up, demo, test and bench commands.

EXTENSION   = duckdb_secrets
EXTVERSION  = 0.4.0
# Install scripts of earlier versions and the upgrade path from each
# (CREATE EXTENSION ... VERSION '0.1.0'; ALTER EXTENSION ... UPDATE).
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql sql/$(EXTENSION)--0.1.0.sql sql/$(EXTENSION)--0.1.0--0.2.0.sql \
              sql/$(EXTENSION)--0.2.0--0.3.0.sql sql/$(EXTENSION)--0.3.0--0.4.0.sql
REGRESS     = validation simple_secret engine types_aws types_azure types_http types_databases table_storage
REGRESS_OPTS = --load-extension=plpython3u
EXTRA_CLEAN = results results-upgrade regression.diffs regression.out

PG_CONFIG  ?= pg_config
# The interpreter plpython3u links (Debian 12: libpython3.11 -> /usr/bin/python3.11).
SERVER_PYTHON ?= /usr/bin/python3

# The PGXS makefile only exists once postgresql-server-dev is installed, which
# `make setup` does: guard the include so set-up can run on a fresh machine.
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
endif

PKGLIBDIR := $(shell $(PG_CONFIG) --pkglibdir 2>/dev/null)
PYROOT    = $(PKGLIBDIR)/$(EXTENSION)
PYDIR     = $(PYROOT)/python

.PHONY: setup install-python demo test bench docs installcheck-upgrade

# The pg_cron pattern: the same regression tests on a database that was created
# at the oldest version and then updated (PGHOST/PGPORT/PGUSER as for installcheck).
installcheck-upgrade:
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS contrib_regression_upgrade" \
	    -c "CREATE DATABASE contrib_regression_upgrade TEMPLATE template0"
	psql -X -q -v ON_ERROR_STOP=1 -d contrib_regression_upgrade -c "CREATE EXTENSION plpython3u" \
	    -c "CREATE EXTENSION $(EXTENSION) VERSION '0.1.0'" -c "ALTER EXTENSION $(EXTENSION) UPDATE"
	test "$$(psql -X -A -t -d contrib_regression_upgrade -c "SELECT extversion FROM pg_extension WHERE extname = '$(EXTENSION)'")" = "$(EXTVERSION)"
	$(pg_regress_installcheck) --use-existing --dbname=contrib_regression_upgrade --outputdir=results-upgrade $(REGRESS)

# Every SQL script is built from a template: @VERSION@ is the version its
# objects belong to, @PYDIR@ where the Python package is, @API@ the loaded package.
SUBST = sed -e 's|@API@|(GD.get("duckdb_secrets.api") or plpy.execute("SELECT duckdb._boot()") and GD["duckdb_secrets.api"])|g' \
	    -e 's|@PYDIR@|$(PYDIR)|g'
sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql.in Makefile
	$(SUBST) -e 's|@VERSION@|$(EXTVERSION)|g' $< > $@
sql/$(EXTENSION)--0.1.0.sql: sql/$(EXTENSION)--0.1.0.sql.in Makefile
	$(SUBST) -e 's|@VERSION@|0.1.0|g' $< > $@
sql/$(EXTENSION)--0.1.0--0.2.0.sql: sql/$(EXTENSION)--0.1.0--0.2.0.sql.in Makefile
	$(SUBST) -e 's|@VERSION@|0.2.0|g' $< > $@
sql/$(EXTENSION)--0.2.0--0.3.0.sql: sql/$(EXTENSION)--0.2.0--0.3.0.sql.in Makefile
	$(SUBST) -e 's|@VERSION@|0.3.0|g' $< > $@
sql/$(EXTENSION)--0.3.0--0.4.0.sql: sql/$(EXTENSION)--0.3.0--0.4.0.sql.in Makefile
	$(SUBST) -e 's|@VERSION@|0.4.0|g' $< > $@

# The Python package and its pinned dependencies, for the server's interpreter,
# in a private directory that the SQL functions put on sys.path.
install: install-python
install-python:
	SERVER_PYTHON=$(SERVER_PYTHON) scripts/install-python.sh "$(DESTDIR)$(PYROOT)"

setup:
	scripts/setup.sh

demo: setup
	$(MAKE) install
	scripts/demo.sh

test: setup
	$(MAKE) install
	scripts/test.sh

bench: setup
	$(MAKE) install
	.venv/bin/python bench/run.py

# docs/secret-types.md is generated from the catalogue.
docs:
	cd plpython && /usr/bin/python3 -m duckdb_secrets.docs > ../docs/secret-types.md
