# duckdb_secrets: a PGXS Makefile plus the project's set-up, demo, test and bench commands.

EXTENSION   = duckdb_secrets
# The version is written once, in the control file; everything else derives it.
EXTVERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
# Install-script sources live in sql/install/ (the current version's script and
# the update script from the previous version); they are built into build/.
# pg_regress scripts are the .sql files directly in sql/.
INSTALL_SOURCES = $(wildcard sql/install/$(EXTENSION)--*.sql.in)
DATA_built  = build/$(EXTENSION)--$(EXTVERSION).sql \
              $(patsubst sql/install/%.sql.in,build/%.sql,$(INSTALL_SOURCES))
REGRESS     = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --load-extension=plpython3u
EXTRA_CLEAN = build results results-upgrade regression.diffs regression.out

PG_CONFIG  ?= pg_config
# The interpreter plpython3u links (Debian 12: libpython3.11 -> /usr/bin/python3.11).
SERVER_PYTHON ?= /usr/bin/python3

# The PGXS makefile only exists once postgresql-server-dev is installed, which
# `make setup` does: guard the include so set-up can run on a fresh machine.
# `make check` is ours (PGXS's says "not supported"): that goal goes without
# PGXS (its steps are sub-makes, which include it), the others without ours.
CHECK_GOAL := $(filter check,$(MAKECMDGOALS))
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
ifeq ($(CHECK_GOAL),)
include $(PGXS)
endif
endif

PKGLIBDIR := $(shell $(PG_CONFIG) --pkglibdir 2>/dev/null)
PYROOT    = $(PKGLIBDIR)/$(EXTENSION)
PYDIR     = $(PYROOT)/python

.PHONY: setup install-python demo test check bench docs installcheck-upgrade install-upgrade-fixture uninstall-upgrade-fixture prune-scripts

# make print-VAR: a variable's value (tests check the derived lists).
print-%:
	@echo $($*)

# The version an update script starts from. Its install script is not shipped:
# tests/fixtures/ keeps a copy that the upgrade tests install for their run only
# (make install-upgrade-fixture / uninstall-upgrade-fixture).
UPGRADE_FROM = 0.6.0
EXTDIR := $(shell $(PG_CONFIG) --sharedir 2>/dev/null)/extension
install-upgrade-fixture: build/$(EXTENSION)--$(UPGRADE_FROM).sql
	install -m 644 $< '$(EXTDIR)/'
uninstall-upgrade-fixture:
	rm -f '$(EXTDIR)/$(EXTENSION)--$(UPGRADE_FROM).sql'

# The pg_cron pattern: the same regression tests on a database that was created
# at the previous version and then updated (PGHOST/PGPORT/PGUSER as for installcheck).
installcheck-upgrade: install-upgrade-fixture
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS contrib_regression_upgrade" \
	    -c "CREATE DATABASE contrib_regression_upgrade TEMPLATE template0"
	psql -X -q -v ON_ERROR_STOP=1 -d contrib_regression_upgrade -c "CREATE EXTENSION plpython3u" \
	    -f tests/fixtures/as-$(UPGRADE_FROM).sql -c "CREATE EXTENSION $(EXTENSION) VERSION '$(UPGRADE_FROM)'" \
	    -c "ALTER EXTENSION $(EXTENSION) UPDATE"; \
	    status=$$?; $(MAKE) -s uninstall-upgrade-fixture; exit $$status
	test "$$(psql -X -A -t -d contrib_regression_upgrade -c "SELECT extversion FROM pg_extension WHERE extname = '$(EXTENSION)'")" = "$(EXTVERSION)"
	$(pg_regress_installcheck) --use-existing --dbname=contrib_regression_upgrade --outputdir=results-upgrade $(REGRESS)

# Every SQL script is built from a template: @BOOT@ becomes sql/install/boot.sql.in
# (duckdb._boot(), one body for all scripts), @QUERY_ROLE@ sql/install/query_role.sql.in
# (the duckdb_query role), a line @RAISE e@ a RAISE of error array e
# (sql/install/raise.sed), @VERSION@ the version its objects
# belong to (an upgrade script's target), @PYDIR@ where the Python package is,
# @API@ the loaded package.
SUBST = sed -e '/^@BOOT@$$/{r sql/install/boot.sql.in' -e 'd}' -e '/^@QUERY_ROLE@$$/{r sql/install/query_role.sql.in' -e 'd}' $< | \
	sed -f sql/install/raise.sed | \
	sed -e 's|@API@|(GD.get("duckdb_secrets.api") or plpy.execute("SELECT duckdb._boot()") and GD["duckdb_secrets.api"])|g' \
	    -e 's|@PYDIR@|$(PYDIR)|g' -e "s|@VERSION@|$$version|g"
build/$(EXTENSION)--$(EXTVERSION).sql: sql/install/$(EXTENSION).sql.in sql/install/boot.sql.in sql/install/query_role.sql.in sql/install/raise.sed Makefile $(EXTENSION).control
	@mkdir -p build
	version=$(EXTVERSION); $(SUBST) > $@
build/%.sql: sql/install/%.sql.in sql/install/boot.sql.in sql/install/query_role.sql.in sql/install/raise.sed Makefile
	@mkdir -p build
	version=$$(echo '$*' | sed 's/.*--//'); $(SUBST) > $@
build/%.sql: tests/fixtures/%.sql.in sql/install/boot.sql.in sql/install/query_role.sql.in sql/install/raise.sed Makefile
	@mkdir -p build
	version=$$(echo '$*' | sed 's/.*--//'); $(SUBST) > $@

# PGXN's metadata, with the control file's version (tests/test_layout.py checks it is current).
META.json: META.json.in $(EXTENSION).control
	sed -e 's|@VERSION@|$(EXTVERSION)|g' $< > $@

# The Python package and its pinned dependencies, for the server's interpreter,
# in a private directory that the SQL functions put on sys.path.
install: install-python prune-scripts
# Scripts an earlier `make install` left for versions this package no longer serves.
prune-scripts:
	@for f in '$(EXTDIR)'/$(EXTENSION)--*.sql; do \
	    case " $(notdir $(DATA_built)) " in *" $${f##*/} "*) ;; *) [ ! -e "$$f" ] || { rm -f "$$f"; echo "removed $$f"; } ;; esac; \
	done
install-python:
	SERVER_PYTHON=$(SERVER_PYTHON) scripts/install-python.sh "$(DESTDIR)$(PYROOT)"

setup:
	scripts/setup.sh

demo: setup
	$(MAKE) install
	scripts/demo.sh

# Everything (what .ci/run calls).
test: setup
	$(MAKE) install
	scripts/test.sh

# The fast loop: ruff, pg_regress and the pytest tests not marked slow.
ifneq ($(CHECK_GOAL),)
check: setup
	$(MAKE) install
	scripts/check.sh
endif

bench: setup
	$(MAKE) install
	.venv/bin/python bench/run.py

# docs/secret-types.md is generated from the catalogue.
docs:
	cd plpython && $(SERVER_PYTHON) -m duckdb_secrets.docs > ../docs/secret-types.md
