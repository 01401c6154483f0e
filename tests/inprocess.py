"""A role's engine in the test process, driven the way a backend drives it.

In a backend, duckdb.query() and duckdb.raw_query() hand the role's engine
(an engine.Engine started for the role's policy.RolePolicy, holding the
secrets the sync created with engine.secret_sql) and the statement to
query.start() and query.execute(), which run the statement check
(statements.check) before DuckDB sees anything. Here the same calls run
without PostgreSQL: Role builds the policy and the engine as the sync does
(sync._prepare_engine, _apply) from server definitions the test gives, so a
refusal list costs milliseconds a case instead of a database and a backend
each. One case of each rule still runs end to end in a cluster
(tests/test_attacks.py, tests/test_attacks_engine.py, tests/test_security.py).
"""

import contextlib
import os
import shutil
import subprocess
import sys

import pytest

import localenv
from duckdb_secrets import derive, engine, query, shipped, validation
from duckdb_secrets.errors import PgError
from duckdb_secrets.policy import RolePolicy

CANARY = "CANARY-inprocess-5c1a"


class NoPostgres:
    """plpy for calls that must not reach PostgreSQL: the engine asks it only
    to raise a pending cancel, which nothing here sends."""

    class SPIError(Exception):
        pass

    def execute(self, *args):
        raise AssertionError("the engine called into PostgreSQL")


PLPY = NoPostgres()


@contextlib.contextmanager
def environment(scratch):
    """What a backend has and the test process lacks (the engine_env fixture
    in tests/conftest.py): the shipped DuckDB extensions (make install's
    dependency directory, after the test environment's own packages) and a
    spill directory (a backend's is under its data directory)."""
    root = os.path.join(subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True,
                                       check=True).stdout.strip(), "duckdb_secrets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "path", [*sys.path, os.path.join(root, "deps")])
        mp.setattr(shipped, "ROOT", root)       # the extension directories make install laid out
        mp.setattr(engine, "SPILL_PARENT", os.path.join(scratch, "pgsql_tmp"))
        yield
    shutil.rmtree(scratch, ignore_errors=True)


def server(name, srvtype, options=(), mapping=()):
    """A server and the role's user mapping, as (engine name, spec): what the
    sync makes of the catalog rows (validation.secret_spec)."""
    spec = validation.secret_spec(name, srvtype, list(options) or None, list(mapping) or None)
    return validation.engine_name(name), spec


class Role:
    """A role's engine: superuser or not, with or without file access, its
    secrets (server() results: servers an administrator owns), the
    administrator's settings (the test cluster's engine settings: reads no
    secret covers go to a closed port on 127.0.0.1)."""

    def __init__(self, superuser=False, files=False, secrets=(),
                 conf=(("duckdb.engine_settings", localenv.ENGINE_SETTINGS),)):
        secrets = dict(secrets)
        policy = RolePolicy("tester", superuser, files, files, None, None, dict(conf))
        facts = {name: derive.Facts(spec) for name, spec in secrets.items()}
        exported = {name: (None, name, spec, spec) for name, spec in secrets.items()}
        prefixes = policy.url_prefixes(exported, dict.fromkeys(secrets, "server"), dict.fromkeys(secrets, True))
        reach = () if superuser else policy.reach_of([(facts[n], spec, True) for n, spec in secrets.items()],
                                                     prefixes)
        policy = policy.opened(prefixes, reach)
        self.engine = engine.Engine(policy, set().union(*(f.extensions for f in facts.values())))
        made = self.engine.batch(PLPY, [engine.secret_sql(name, self.engine.adapt(spec))
                                        for name, spec in secrets.items()])
        assert all("error" not in r for r in made), made

    def query(self, sql):
        """duckdb.query(sql): its rows, each a tuple of text (None for NULL)."""
        pending = query.start(PLPY, self.engine, sql)
        if pending is None:
            return []
        rows = []
        for chunk in pending.chunks():
            if chunk.startswith(query.ALONE):
                raise AssertionError(f"a row with separators in it: {chunk!r}")
            for row in chunk.split(query.ROW):
                fields = row.split(query.FIELD)
                if len(pending.pg_types) == 1:
                    fields = fields[:1]
                rows.append(tuple(None if f == query.NULL else f for f in fields))
        if pending.error is not None:
            raise pending.error
        return rows

    def raw(self, sql):
        """duckdb.raw_query(sql): the text of its NOTICE."""
        self.engine.forget_refusals()
        return self.engine.raw(PLPY, sql)

    def which_secret(self, path, typ):
        """duckdb.which_secret(path, typ): the names of the secrets DuckDB picks."""
        rows = self.engine.execute(PLPY, "SELECT name FROM which_secret(?, ?)", [path, typ])
        return [r[0] for r in rows]

    def close(self):
        self.engine.close()


def refused(role, sql, sqlstate="42501", *, raw=False):
    """What duckdb.query (or raw_query) refuses: a PgError with that SQLSTATE
    (one of a set; None: any), never another exception, nothing of the role's
    secrets or of /etc/passwd in it. Returns the error."""
    with pytest.raises(Exception) as e:
        role.raw(sql) if raw else role.query(sql)
    err = e.value
    assert isinstance(err, PgError), f"{type(err).__name__}: {err}"
    states = {sqlstate} if isinstance(sqlstate, str) else sqlstate
    assert states is None or err.sqlstate in states, (err.sqlstate, err.message)
    for text in (err.message, err.detail, err.hint):
        assert CANARY not in (text or "") and "root:x:0:0" not in (text or ""), text
    return err
