"""Errors of duckdb.query that say why (issue 29, item 4): a URL a skipped
secret would cover names that server and the reason; URLs never get DuckDB's
file-system message; a path the caller typed is shown unless it is one of the
server's; one CONTEXT line of the extension's own."""

import psycopg
import pytest

from conftest import assert_clean_error, s3_mapping_sql, s3_server_sql


def _err(conn, text):
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT * FROM duckdb.query(%s) AS t(x text)", (text,))
    assert_clean_error(e.value)
    assert e.value.diag.context.count("\n") == 0, e.value.diag.context
    return e.value


@pytest.fixture
def reader(db, s3):
    """A role with USAGE on two servers and a mapping for neither: one with a
    scope, one covering its type's default (s3://)."""
    role = db.role("why")
    db.conn.execute(s3_server_sql("why_scoped", s3, scope="s3://data"))
    db.conn.execute(s3_mapping_sql("why_scoped", s3, "postgres"))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER why_scoped TO "{role}"; GRANT duckdb_query TO "{role}"')
    return role, db.connect(role)


def test_a_skipped_secret_is_named_with_its_reason(db, reader):
    role, c = reader
    e = _err(c, "SELECT count(*)::VARCHAR FROM read_parquet('s3://data/x.parquet')")
    assert e.sqlstate == "42704"
    assert e.diag.message_primary == f'the secret of server "why_scoped" is not available to role "{role}"'
    assert "s3://data/x.parquet" in e.diag.message_detail
    assert "no user mapping for this role or PUBLIC" in e.diag.message_detail
    assert "duckdb.set_user_mapping" in e.diag.message_hint
    # a URL no skipped secret covers keeps DuckDB's (or the proxy's) own error
    other = _err(c, "SELECT count(*)::VARCHAR FROM read_parquet('s3://elsewhere/x.parquet')")
    assert "why_scoped" not in str(other)


def test_a_scopeless_server_covers_its_types_urls(db, s3):
    role = db.role("why")
    db.conn.execute(s3_server_sql("why_default", s3))
    db.conn.execute(s3_mapping_sql("why_default", s3, "postgres"))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER why_default TO "{role}"; GRANT duckdb_query TO "{role}"')
    e = _err(db.connect(role), "SELECT count(*)::VARCHAR FROM read_parquet('s3://bucket/data/numbers.parquet')")
    assert '"why_default"' in e.diag.message_primary


def test_urls_never_get_a_file_system_message(db, reader):
    _, c = reader
    for url in ("https://example.com/x.parquet", "http://127.0.0.1:9/x.csv"):
        e = _err(c, f"SELECT count(*)::VARCHAR FROM read_csv('{url}')")
        assert e.sqlstate == "42501"
        assert "file system" not in str(e)
        assert e.diag.message_primary == f'permission denied to reach "{url}" from the DuckDB engine'


def test_a_typed_path_is_shown_unless_it_is_the_servers(db, reader, cluster):
    _, c = reader
    e = _err(c, "SELECT content FROM read_text('/etc/passwd')")
    assert e.diag.message_primary == 'permission denied to read "/etc/passwd" in the DuckDB engine'
    assert "pg_read_server_files" in e.diag.message_detail
    datadir = db.conn.execute("SHOW data_directory").fetchone()[0]
    e = _err(c, f"SELECT content FROM read_text('{datadir}/postgresql.conf')")
    assert datadir not in str(e) and "permission denied to read" in str(e)
    home = db.conn.execute("SELECT pg_catalog.current_setting('data_directory')").fetchone()[0]
    assert home not in str(e)


def test_a_credential_in_the_sql_stays_masked(db, reader):
    _, c = reader
    # looks like a credential: the literal that is not a path is masked, the typed path shown
    e = _err(c, "SELECT 'password=Hunter2Hunter2' || content FROM read_text('/etc/hosts')")
    assert "Hunter2Hunter2" not in str(e)
    assert '"/etc/hosts"' in str(e)
    # a URL's own password is masked even where the URL is shown
    e = _err(c, "SELECT count(*)::VARCHAR FROM read_csv('https://user:Pa55wordPa55@example.com/x.csv')")
    assert "Pa55wordPa55" not in str(e)


def test_errors_while_rows_are_fetched_carry_one_context_line(db):
    c = db.connect()
    c.execute("SET statement_timeout = '300ms'")
    for stmt in ("SELECT count(*) FROM duckdb.query('SELECT count(*) FROM range(100000000000) t(i) "
                 "WHERE i % 7 = 3') AS t(n bigint)",
                 "SELECT count(*) FROM duckdb.query_json('SELECT count(*) FROM range(100000000000) t(i) "
                 "WHERE i % 7 = 3')"):
        with pytest.raises(psycopg.errors.QueryCanceled) as e:
            c.execute(stmt)
        assert e.value.diag.context.count("\n") == 0, e.value.diag.context
        assert "_query_chunks" not in e.value.diag.context
    c.execute("RESET statement_timeout")
    c.execute("SELECT duckdb.create_query_view('dup', 'SELECT 1 AS a')")
    with pytest.raises(psycopg.errors.DuplicateTable) as e:
        c.execute("SELECT duckdb.create_query_view('dup', 'SELECT 2 AS b')")
    assert e.value.diag.context.count("\n") == 0 and "CREATE TEMP VIEW" not in e.value.diag.context
    # a schema-qualified name would have made a temporary view literally named "analytics.v"
    with pytest.raises(psycopg.errors.InvalidName) as e:
        c.execute("SELECT duckdb.create_query_view('analytics.v', 'SELECT 1 AS a')")
    assert "pg_temp" in e.value.diag.message_detail
    assert c.execute("SELECT count(*) FROM pg_class WHERE relname = 'analytics.v'").fetchone() == (0,)


def test_an_unknown_catalog_is_invalid_catalog_name(db):
    e = _err(db.conn, "SELECT x FROM nosuchcatalog.main.t")
    assert e.sqlstate == "3D000", str(e)


def test_a_server_the_role_has_no_usage_on_is_named(db, s3):
    role = db.role("nousage")
    db.conn.execute(s3_server_sql("why_nousage", s3, scope="s3://bucket/data/"))
    db.conn.execute(s3_mapping_sql("why_nousage", s3))
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    e = _err(db.connect(role), "SELECT count(*)::VARCHAR FROM read_parquet('s3://bucket/data/numbers.parquet')")
    assert e.sqlstate == "42501"
    assert e.diag.message_primary == 'permission denied for foreign server "why_nousage"'
    assert "has no USAGE" in e.diag.message_detail and "GRANT USAGE" in e.diag.message_hint


def test_an_attach_as_catalog_of_a_server_without_usage_is_named(db, cluster):
    role = db.role("cat")
    db.conn.execute(f"CREATE SERVER why_pg TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS "
                    f"(host '127.0.0.1', port '{cluster.port}', dbname 'postgres', user 'postgres', "
                    "attach_as 'whycat')")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    e = _err(db.connect(role), "SELECT count(*)::VARCHAR FROM whycat.public.t")
    assert e.sqlstate == "42501"
    assert e.diag.message_primary == 'permission denied for foreign server "why_pg"'
    assert "whycat" in e.diag.message_detail


def test_an_object_store_url_no_secret_covers_says_so(db):
    role = db.role("none")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    e = _err(db.connect(role), "SELECT count(*)::VARCHAR FROM read_parquet('s3://nobodys/x.parquet')")
    assert 'No secret of role' in (e.diag.message_hint or ""), str(e)
