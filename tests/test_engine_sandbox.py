"""The kernel sandbox of a role's engine, proven without the statement check.

A non-superuser's engine runs in a worker process that Landlock restricts
before DuckDB starts: read-only access to what the interpreter and DuckDB
need, read-write access to its own spill directory, TCP connections to its
egress proxy's port only; seccomp refuses other sockets. Here the worker is
driven through the backend's own interface (engine.Engine, its internal
request, which runs no statement check) and DuckDB's own refusals are taken
out of its start request, on the test side only: what is left to stop a
function that slipped past both is the kernel. Each probe counts what
happened (bytes returned, files on disk, requests at a loopback server)."""

import os
import uuid

import pytest

import localenv
from duckdb_secrets import engine
from duckdb_secrets.errors import PgError
from duckdb_secrets.policy import RolePolicy
from inprocess import PLPY

pytestmark = pytest.mark.inprocess

# What DuckDB's own settings refuse; dropped here so that only the kernel stands.
_DUCKDB_REFUSALS = ("SET enable_external_access", "SET allowed_directories", "SET http_proxy", "SET lock_configuration")


class Unchecked(engine.Engine):
    def start_request(self, policy, extensions):
        start = super().start_request(policy, extensions)
        start["after_load"] = [s for s in start["after_load"] if not s.startswith(_DUCKDB_REFUSALS)]
        return start


def _engine(superuser=False):
    return Unchecked(RolePolicy("tester", superuser, False, False, "256MB", 1, {}), name="tester")


def _run(e, sql):
    """(rows, None) or (None, the error's text)."""
    try:
        return e.execute(PLPY, sql), None
    except PgError as err:
        return None, f"{err.message} {err.detail or ''}"


@pytest.fixture
def unchecked(engine_env):
    e = _engine()
    yield e
    e.close()


def test_the_kernel_refuses_files_outside_the_sandbox(unchecked, tmp_path):
    assert unchecked.sandbox["files"] and unchecked.status()["sandbox"] == "full"
    rows, err = _run(unchecked, "SELECT content FROM read_text('/etc/passwd')")
    assert rows is None and "Permission denied" in err, (rows, err)
    # a file where the server keeps its data (here: a directory of the test's)
    private = tmp_path / "postgresql.auto.conf"
    private.write_text("password = 'x'\n")
    rows, err = _run(unchecked, f"SELECT content FROM read_text('{private}')")
    assert rows is None and "Permission denied" in err
    # the same reads work where the sandbox allows them (the shipped extension directory)
    listed, err = _run(unchecked, f"SELECT count(*) FROM glob('{engine.shipped.extension_directory('role')}/**')")
    assert err is None and listed[0][0] > 0


def test_the_kernel_refuses_writes_outside_the_spill_directory(unchecked):
    target = f"/tmp/duckdb-secrets-escape-{uuid.uuid4().hex}.csv"
    rows, err = _run(unchecked, f"COPY (SELECT 1 AS a) TO '{target}'")
    assert rows is None and not os.path.exists(target), err
    escape = os.path.join(unchecked.spill, "..", f"escape-{uuid.uuid4().hex}.csv")
    rows, err = _run(unchecked, f"COPY (SELECT 1 AS a) TO '{escape}'")
    assert rows is None and not os.path.exists(escape), err
    inside = os.path.join(unchecked.spill, "inside.csv")
    rows, err = _run(unchecked, f"COPY (SELECT 1 AS a) TO '{inside}'")
    assert err is None and os.path.getsize(inside) > 0


def test_the_kernel_refuses_tcp_but_to_the_proxy(unchecked):
    counter = localenv.HTTPCounter()
    try:
        rows, err = _run(unchecked, f"SELECT content FROM read_text('http://127.0.0.1:{counter.port}/x.csv')")
        assert rows is None, rows
        assert counter.hits == []
    finally:
        counter.close()
    # the proxy's port is reachable: the proxy itself answers (and refuses the host)
    rows, err = _run(unchecked, f"SET http_proxy = '{unchecked.proxy.address}'")
    assert err is None
    rows, err = _run(unchecked, "SELECT content FROM read_text('http://127.0.0.1:9/x.csv')")
    assert rows is None and 'permission denied to reach "127.0.0.1:9"' in err, err


def test_every_engine_is_scoped(engine_env):
    for superuser in (False, True):
        e = _engine(superuser)
        try:
            assert e.sandbox["scope"] and e.sandbox["ptrace"], e.sandbox
            assert e.sandbox["files"] is (not superuser)
        finally:
            e.close()


@pytest.mark.parametrize("abi", [2, 0])
def test_an_older_kernel_is_named_not_hidden(engine_env, monkeypatch, abi):
    """Debian 12's own kernel (6.1) has Landlock ABI 2: files yes, TCP and
    scoping no. Without Landlock at all, nothing of it. Simulated by capping
    the ABI the worker uses; duckdb.engine() and the WARNING name what is not enforced."""
    monkeypatch.setenv("DUCKDB_SECRETS_LANDLOCK_ABI_MAX", str(abi))
    e = _engine()
    try:
        status = e.status()
        missing = " ".join(status["not_enforced"])
        assert "TCP" in missing and "scoping" in missing
        rows, err = _run(e, "SELECT content FROM read_text('/etc/passwd')")
        if abi == 2:
            assert status["sandbox"] == "partial" and rows is None and "Permission denied" in err
        else:
            assert "file" in missing and status["sandbox"] in ("none", "partial")
            assert rows is not None         # what a missing sandbox means: the check is all that is left
    finally:
        e.close()
