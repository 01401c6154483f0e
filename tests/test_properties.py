"""Property: whatever servers and mappings are thrown at the extension, it
answers with a clean PostgreSQL error or accepts them, and what it accepts
the engine then holds. Never a traceback, never a value echoed."""


import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

from conftest import assert_clean_error, fresh_database
from duckdb_secrets import catalog, validation
from duckdb_secrets.errors import MissingMapping

DB = "properties"
# Option names whose export would make DuckDB call AWS: never generated here.
NETWORK = {"assume_role_arn", "external_id", "session_name", "web_identity_token_file", "chain"}
NAMES = sorted(catalog.ALL_OPTIONS - NETWORK)
ODD = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def spelled(name):
    return st.sampled_from([name, name.upper(), name.title()])


ODD_NAME = st.text(ODD, min_size=1, max_size=20).filter(lambda n: "Zv" not in n and "=" not in n)
# Values carry a marker so an echo is recognisable; some are valid on purpose.
value = st.one_of(
    st.sampled_from(["true", "off", "5432", "path", "vhost", "X-A=1", "s3://b", "exists", "none", "env"]),
    st.text(ODD, min_size=2, max_size=30).map(lambda v: "Zv" + v),
)


def _names_for(type_name):
    """Mostly the type's own (default provider's) option names, some of any type, some odd."""
    if type_name in catalog.TYPES:
        own = sorted(set(catalog.options_for(type_name, None)) - NETWORK - {"provider"})
    else:
        own = NAMES
    return st.one_of(st.sampled_from(own).flatmap(spelled), st.sampled_from(own), st.sampled_from(own),
                     st.sampled_from(NAMES), ODD_NAME)


secret_type = st.one_of(st.sampled_from(sorted(catalog.TYPES)), st.sampled_from(sorted(catalog.TYPES)).flatmap(spelled),
                        st.text(ODD, min_size=0, max_size=15))
case = secret_type.flatmap(lambda t: st.tuples(
    st.just(t),
    st.dictionaries(_names_for(t.strip().lower()), value, max_size=5),
    st.dictionaries(_names_for(t.strip().lower()), value, max_size=3)))

ALLOWED_STATES = {"HV00D", "HV024", "HV000", "42501", "42710", "42602", "42622", "28000"}


@pytest.fixture(scope="module")
def conn(cluster):
    c = fresh_database(cluster, DB)
    yield c
    c.close()


def _opts_sql(opts):
    return sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in opts.items())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case)
def test_anything_is_refused_cleanly_or_works_in_the_engine(conn, generated):
    stype, server_opts, mapping_opts = generated
    # Sensitive options go where they belong often enough to reach stage 2.
    for k in list(server_opts):
        if k.lower() in catalog.SENSITIVE and len(k) % 2 == 0:
            mapping_opts.setdefault(k, server_opts.pop(k))
    values = [v for v in list(server_opts.values()) + list(mapping_opts.values()) if v.startswith("Zv")]
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    try:
        with conn.transaction(force_rollback=True):
            stmt = sql.SQL("CREATE SERVER prop TYPE {} FOREIGN DATA WRAPPER duckdb").format(sql.Literal(stype))
            if server_opts:
                stmt += sql.SQL(" OPTIONS ({})").format(_opts_sql(server_opts))
            conn.execute(stmt)
            if mapping_opts:
                conn.execute(sql.SQL("CREATE USER MAPPING FOR CURRENT_USER SERVER prop OPTIONS ({})")
                             .format(_opts_sql(mapping_opts)))
            # Accepted: the engine must hold it, with nothing skipped -- unless
            # it still waits for a sensitive option that only a mapping can give.
            rows = conn.execute("SELECT name, type FROM duckdb.secrets() WHERE origin = 'server' "
                                "AND storage <> 'skipped'").fetchall()
            try:
                validation.secret_spec("prop", stype, [f"{k}={v}" for k, v in server_opts.items()],
                                       [f"{k}={v}" for k, v in mapping_opts.items()] or None)
                expected = [("prop", stype.strip().lower())]
            except MissingMapping:
                expected = []
            assert rows == expected, (rows, notices)
            event("accepted" if expected else "accepted, waiting for a mapping")
            assert not any("skipping" in n for n in notices), notices
    except psycopg.Error as e:
        event(f"refused {e.sqlstate}")
        assert e.sqlstate in ALLOWED_STATES, (e.sqlstate, str(e))
        assert_clean_error(e, *values)
    finally:
        conn._notice_handlers.clear()
