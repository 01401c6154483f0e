"""docs/security.md lists every function of the extension with its rights;
the catalog must agree, so nothing slips in with EXECUTE for PUBLIC unnoticed."""

import os
import re

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "security.md")
ROW = re.compile(r"^\| `(duckdb\.[^`]+)` \| (\w+) \| (yes|no) \| (yes|no) \| .+ \|$")

CATALOG = """
SELECT p.oid::regprocedure::text, l.lanname, p.prosecdef,
       has_function_privilege('public', p.oid, 'EXECUTE'),
       coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
  FROM pg_proc p
  JOIN pg_language l ON l.oid = p.prolang
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'duckdb_secrets'
"""


def documented():
    rows = {}
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            m = ROW.match(line.strip())
            if m:
                rows[m.group(1)] = (m.group(2), m.group(3) == "yes", m.group(4) == "yes")
    return rows


def test_every_function_is_documented_with_its_rights(db):
    actual = {}
    for sig, lang, secdef, public, pinned in db.conn.execute(CATALOG):
        assert pinned, f"{sig} does not pin search_path"
        actual[sig] = (lang, secdef, public)
    assert documented() == actual


def test_other_objects(db):
    c = db.conn
    assert c.execute("SELECT has_foreign_data_wrapper_privilege('public', 'duckdb', 'USAGE')").fetchone() == (False,)
    assert c.execute("SELECT has_schema_privilege('public', 'duckdb', 'USAGE')").fetchone() == (True,)
    assert c.execute("SELECT has_table_privilege('public', 'duckdb._generation', 'SELECT'), "
                     "has_table_privilege('public', 'duckdb._generation', 'UPDATE')").fetchone() == (True, False)
    assert c.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'duckdb_secrets_ddl'").fetchone() == (1,)
