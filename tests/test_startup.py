"""A backend's first query pays only for what it needs (issue 17): DuckDB's
signature check of the shipped extensions runs once, at make install, and an
engine skips it only while every shipped file is the one verified; importing
DuckDB neither binds all of its symbols at once nor imports importlib.metadata;
DDL-only and non-superuser-only modules are not imported by a superuser's
query. None of it widens what a non-superuser's engine may do."""

import json
import os
import shutil
import subprocess

import psycopg
import pytest

from conftest import q, refused, reverify_shipped

PKGLIB = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip()
ROOT = os.path.join(PKGLIB, "duckdb_secrets")
DEPS = os.path.join(ROOT, "deps")
RECORD = os.path.join(DEPS, ".verified-extensions.json")
HTTPFS = os.path.join(DEPS, "duckdb_extension_httpfs", "extensions", "v1.5.5", "httpfs.duckdb_extension")
UNSIGNED = "SELECT current_setting('allow_unsigned_extensions')::text"


def unsigned_allowed(db):
    with db.connect() as c:
        return q(c, UNSIGNED)[0][0]


def test_make_install_verified_every_shipped_extension(db):
    with open(RECORD) as f:
        record = json.load(f)
    import duckdb_secrets.shipped as shipped
    assert set(record["files"]) == ({f"superuser/{n}" for n in shipped.EXTENSIONS}
                                    | {f"role/{n}" for n in shipped.role_extensions()})
    for key, entry in record["files"].items():
        klass, name = key.split("/")
        assert entry[0] == os.path.join(ROOT, "extensions", klass, "v1.5.5", "linux_amd64", f"{name}.duckdb_extension")
    st = os.stat(RECORD)
    assert st.st_uid == 0 and not st.st_mode & 0o022      # out of the server's OS user's reach
    assert unsigned_allowed(db) == "true"


def test_a_changed_extension_file_is_checked_by_duckdb_again(db, s3):
    """Touching the file (new change time) is enough to lose the trust; DuckDB
    then checks the signature itself, and the unchanged file still loads."""
    backup = HTTPFS + ".startup-backup"
    shutil.copy2(HTTPFS, backup)
    try:
        os.utime(HTTPFS)
        assert unsigned_allowed(db) == "false"
        with db.connect() as c:        # loads httpfs with DuckDB's own check: still fine
            assert q(c, "SELECT 1", "x integer") == [(1,)]
        with open(RECORD) as f:
            doctored = json.load(f)
        doctored["files"]["superuser/httpfs"][2] = 1            # a record that does not match is no record
        with open(RECORD, "w") as f:
            json.dump(doctored, f)
        assert unsigned_allowed(db) == "false"
    finally:
        os.replace(backup, HTTPFS)
        reverify_shipped()
    assert unsigned_allowed(db) == "true"


def test_a_record_the_server_user_could_write_is_ignored(db):
    mode = os.stat(RECORD).st_mode
    try:
        os.chmod(RECORD, 0o666)
        assert unsigned_allowed(db) == "false"
    finally:
        os.chmod(RECORD, mode & 0o777)
    assert unsigned_allowed(db) == "true"


@pytest.mark.parametrize("files", [False, True], ids=["no-file-access", "server-files-roles"])
def test_no_role_but_a_superuser_can_load_an_extension(db, files):
    """allow_unsigned_extensions is on in every engine, but a non-superuser's
    engine loads nothing: not a shipped file, not a copy it wrote itself."""
    name = db.role("loader")
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text), duckdb.raw_query(text) TO "{name}"')
    if files:
        db.conn.execute(f'GRANT pg_read_server_files, pg_write_server_files TO "{name}"')
    copy = f"/tmp/duckdb_secrets_startup_{name}.duckdb_extension"
    with db.connect(name) as c:
        assert q(c, UNSIGNED) == [("true",)]
        refused(c, f"LOAD '{HTTPFS}'", {"42501", "58000", "XX000"})
        refused(c, "LOAD httpfs", {"42501", "58000", "XX000"})
        if files:
            try:
                shutil.copy(HTTPFS, copy)
                os.chmod(copy, 0o644)
                e = refused(c, f"LOAD '{copy}'", {"42501", "58000", "XX000"})
                assert "disabled" in str(e) or "permission" in str(e).lower()
            finally:
                os.remove(copy)
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT duckdb.load_extension('aws')")
        assert e.value.sqlstate == "42501"


def test_the_first_query_imports_only_what_it_needs(db):
    with db.connect() as c:
        assert q(c, "SELECT 1", "x integer") == [(1,)]
        c.execute("""DO LANGUAGE plpython3u $$
import sys
unwanted = [m for m in ('importlib.metadata', 'email', 'zipfile', 'duckdb_secrets.ddl', 'duckdb_secrets.egress',
                        'difflib', 'shutil', 'boto3', 'cryptography', 'duckdb', '_duckdb') if m in sys.modules]
if unwanted:
    plpy.error('first query imported %s' % unwanted)
$$""")


DIST_VERSION_CHECK = """
import importlib.metadata, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from duckdb_secrets import worker as engine
assert engine._dist_version("duckdb") == importlib.metadata.version("duckdb") == "1.5.5"
assert engine._dist_version("pytz") == importlib.metadata.version("pytz")
real = sys.modules["importlib.metadata"]
try:
    engine._dist_version("no_such_distribution")
except importlib.metadata.PackageNotFoundError:
    pass
assert sys.modules["importlib.metadata"] is real
print("ok")
"""


def test_dist_version_answers_as_importlib_metadata():
    out = subprocess.run(["/usr/bin/python3", "-c", DIST_VERSION_CHECK, os.path.join(ROOT, "python"), DEPS],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
