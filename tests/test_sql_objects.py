"""The SQL surface is a contract: a committed snapshot lists every object of
the extension with its signature (tests/snapshots/sql-objects.txt). A change to
the SQL objects updates the snapshot in the same commit; once a version is
released (a `# released` line in the snapshot), its objects never change again:
a change needs a new version and an update script (CHANGELOG.md, "Versions")."""

import difflib
import hashlib
import os
import re

from conftest import sql_objects
from duckdb_secrets import _tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "tests", "snapshots", "sql-objects.txt")
HEADER = """\
# Every SQL object of duckdb_secrets {version}, as tests/test_sql_objects.py lists it.
# Regenerate after a deliberate change: UPDATE_SQL_SNAPSHOT=1 .venv/bin/pytest tests/test_sql_objects.py
# When a version is released, add: # released <version> <md5 of the object lines, as the test prints>
"""


def _read():
    with open(SNAPSHOT) as f:
        lines = f.read().splitlines()
    objects = [x for x in lines if x and not x.startswith("#")]
    released = dict(re.findall(r"^# released (\S+) ([0-9a-f]{32})$", "\n".join(lines), re.M))
    return objects, released


def _digest(objects):
    return hashlib.md5("\n".join(objects).encode()).hexdigest()


def test_the_sql_objects_are_the_snapshot(db):
    got = sql_objects(db.conn)
    if os.environ.get("UPDATE_SQL_SNAPSHOT") == "1":
        _, released = _read() if os.path.exists(SNAPSHOT) else ([], {})
        with open(SNAPSHOT, "w") as f:
            f.write(HEADER.format(version=_tree.version()))
            f.writelines(f"# released {v} {d}\n" for v, d in released.items())
            f.writelines(line + "\n" for line in got)
    expected, _ = _read()
    diff = "\n".join(difflib.unified_diff(expected, got, "snapshot", "installed", lineterm="", n=0))
    assert got == expected, ("the SQL objects differ from tests/snapshots/sql-objects.txt; if the change is meant, "
                             "regenerate it (UPDATE_SQL_SNAPSHOT=1) in the same commit:\n" + diff)
    assert len(got) > 50 and any("function duckdb.query(text)" in x for x in got)


def test_a_released_version_keeps_its_objects():
    objects, released = _read()
    current = _tree.version()
    if current in released:
        assert _digest(objects) == released[current], (
            f"{current} is released (tests/snapshots/sql-objects.txt) but its SQL objects changed: give the change a "
            f"new version in duckdb_secrets.control and an update script from {current} (sql/install/)")


def test_one_update_script_from_the_previous_version():
    """sql/install/ holds the current version's script and one update script,
    from the version the Makefile names as UPGRADE_FROM (its install script is a
    test fixture, tests/fixtures/)."""
    current = _tree.version()
    with open(os.path.join(ROOT, "Makefile")) as f:
        previous = re.search(r"^UPGRADE_FROM = (\S+)$", f.read(), re.M).group(1)
    names = sorted(os.listdir(os.path.join(ROOT, "sql", "install")))
    assert [n for n in names if n.startswith("duckdb_secrets--")] == [f"duckdb_secrets--{previous}--{current}.sql.in"]
    assert os.path.exists(os.path.join(ROOT, "tests", "fixtures", f"duckdb_secrets--{previous}.sql.in"))
