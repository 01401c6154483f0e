"""The catalogue against DuckDB 1.5.5: every option of every type/provider is
accepted by the engine, every type/provider exports with the right type,
provider, scope and redaction, and the docs are generated from it."""

import os

import pytest

from duckdb_secrets import aws, catalog, docs, engine, validation
from duckdb_secrets.errors import PgError
from inprocess import PLPY

CANARY = "CANARY-cat-4b2e"
PAIRS = [(t, p) for t in catalog.TYPES.values() for p in t.providers.values()]


# Credential chains in these tests stay local: "env" only, and no role to
# assume (DuckDB would call AWS STS for it). Nothing here may leave 127.0.0.1.
NETWORK_OPTIONS = {"assume_role_arn", "external_id", "session_name", "web_identity_token_file"}
# Accepted at DDL time, but exporting it needs the server's AWS files (tests/test_aws.py has those).
NOT_EXPORTED_HERE = NETWORK_OPTIONS | {"profile"}


def sample(o):
    if o.name == "aws_rds_secret":
        return "cat_rds"
    if o.name == "chain":
        return "env"
    if o.choices:
        return "none" if o.name == "validation" else o.choices[0]
    if o.sensitive:
        return f"{CANARY}-{o.name}"
    return {catalog.BOOL: "true", catalog.INT: "5432", catalog.MAP: "X-A=1"}.get(o.kind, f"v-{o.name}")


def lit(v):
    return "'" + v.replace("'", "''") + "'"


def required_options(t, p):
    opts = {}
    for r in p.required:
        name = r[0] if isinstance(r, tuple) else r
        opts[name] = sample(p.options[name])
    if p.name != t.default_provider:
        opts["provider"] = p.name
    if "validation" in p.options:       # credential chains: do not resolve at export
        opts["validation"] = "none"
    return opts


def create(conn, name, type_name, opts):
    srv = {k: v for k, v in opts.items() if k not in catalog.SENSITIVE}
    um = {k: v for k, v in opts.items() if k in catalog.SENSITIVE}
    conn.execute(f"CREATE SERVER {name} TYPE '{type_name}' FOREIGN DATA WRAPPER duckdb"
                 + (f" OPTIONS ({', '.join(f'{k} {lit(v)}' for k, v in srv.items())})" if srv else ""))
    if um:
        conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER {name} "
                     f"OPTIONS ({', '.join(f'{k} {lit(v)}' for k, v in um.items())})")


def test_docs_are_generated_from_the_catalogue():
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "secret-types.md")
    with open(path, encoding="utf-8") as f:
        assert f.read() == docs.render(), "docs/secret-types.md is stale: run make docs"


def rds_target(conn):
    """The rds server that sample() names in aws_rds_secret; static keys keep
    token signing offline."""
    conn.execute("CREATE SERVER cat_rds TYPE 'rds' FOREIGN DATA WRAPPER duckdb OPTIONS (chain 'env', "
                 "validation 'none', region 'eu-west-1', rds_user 'u', rds_host 'db.example', rds_port '5432')")
    conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER cat_rds OPTIONS (key_id 'AKIAX', secret '{CANARY}')")


def test_behaviour_of_types_is_read_from_their_entries():
    """What the code does differently per type is an attribute of the type's
    entry; the lists that name types or chain members agree with the catalogue."""
    import re
    src = os.path.join(os.path.dirname(__file__), "..", "plpython", "duckdb_secrets")
    by_name = re.compile(r"""\[["']type["']\]\s*(==|!=|in)\s|\btype_name\s*(==|!=)\s|\bt\s*==\s*["']""")
    for name in sorted(os.listdir(src)):
        if name.endswith(".py") and name != "catalog.py":
            with open(os.path.join(src, name)) as f:
                hits = [line.strip() for line in f if by_name.search(line)]
            assert hits == [], f"{name} decides by a type's name: {hits}"
    assert set(aws.CHAIN_PROVIDERS) == set(catalog.AWS_CHAIN_MEMBERS)
    assert set(aws.DEFAULT_CHAIN) <= set(catalog.AWS_CHAIN_MEMBERS)
    for t in catalog.TYPES.values():
        for p in t.providers.values():
            chain = p.options.get("chain")
            if chain is not None and t.aws_credentials:
                assert set(chain.choices) == set(catalog.AWS_CHAIN_MEMBERS)
    # the object-store prefixes a non-superuser's engine may name come from the default scopes
    from duckdb_secrets import policy
    assert policy.object_store_prefixes({"httpfs"}) == {p for t in catalog.TYPES.values() if t.extension == "httpfs"
                                                         for p in t.default_scope if "://" in p}


def one_per_option():
    """(type, provider, option, options): one server per option of every
    type/provider, with what the provider requires and what the option needs."""
    for t, p in PAIRS:
        for name, o in p.options.items():
            opts = {**required_options(t, p), name: sample(o)}
            for needed in o.needs:
                opts.setdefault(needed, sample(p.options[needed]))
            if name == "uri":
                opts = {k: v for k, v in opts.items() if k not in catalog.LIBPQ_KEYWORDS}
            yield t, p, name, opts


@pytest.mark.inprocess
def test_every_option_of_every_type_is_accepted_by_duckdb(engine_env):
    """One secret per option, checked and dry-run as the DDL does it (the
    server's and the mapping's options through validation.secret_spec, then
    engine.Scratch: each secret created in a real DuckDB 1.5.5 with its
    extensions), in the test process. End to end, the DDL dry-runs every
    type/provider with all its options together (the next test)."""
    scratch = engine.Scratch()
    n = 0
    for t, p, name, opts in one_per_option():
        n += 1
        srv = [f"{k}={v}" for k, v in opts.items() if k not in catalog.SENSITIVE]
        um = [f"{k}={v}" for k, v in opts.items() if k in catalog.SENSITIVE]
        try:
            spec = validation.secret_spec(f"opt_{n}", t.name, srv or None, um or None)
            scratch.dry_run(PLPY, f"opt_{n}", spec)
        except (PgError, engine.RemoteError) as e:
            pytest.fail(f"{t.name}/{p.name} option {name}: {type(e).__name__}: {e}")
    scratch.close()
    assert n > 250


@pytest.mark.parametrize("t,p", PAIRS, ids=[f"{t.name}-{p.name}" for t, p in PAIRS])
def test_each_type_and_provider_exports_with_type_provider_scope_and_redaction(db, t, p):
    opts = required_options(t, p)
    # Add every option that goes with the others (uri goes alone).
    for name, o in p.options.items():
        if name in ("uri",) or name in t.aliases or name in NOT_EXPORTED_HERE:
            continue
        if name == "aws_rds_secret" and "password" in opts or name == "password" and "aws_rds_secret" in opts:
            continue
        opts.setdefault(name, sample(o))
        for needed in o.needs:
            opts.setdefault(needed, sample(p.options[needed]))
    scoped = bool(t.default_scope)
    if scoped:
        opts["scope"] = f"{t.default_scope[0]}my-bucket"
    create(db.conn, "full_secret", t.name, opts)
    row = db.conn.execute("SELECT name, server, type, provider, scope, secret_string FROM duckdb.secrets() "
                          "WHERE origin = 'server'").fetchone()
    name, server, typ, provider, scope, shown = row
    assert (name, server, typ, provider) == ("full_secret", "full_secret", t.name, p.name)
    if scoped:
        assert scope == [f"{t.default_scope[0]}my-bucket"]
    assert CANARY not in shown
    for k in opts:
        if k in catalog.SENSITIVE:
            assert f"{k}=redacted" in shown
    # What DuckDB itself holds agrees. AWS credential chains are resolved by the
    # extension and reach DuckDB as concrete keys; rds is a token source only.
    duck = db.conn.execute(
        "SELECT * FROM duckdb.query($$ SELECT type, provider FROM duckdb_secrets() $$) AS t(a text, b text)"
    ).fetchone()
    if not t.exported:
        assert duck is None
    elif p.name == "credential_chain" and t.aws_credentials and t.exported:
        assert duck == (t.name, "config")
    else:
        assert duck == (t.name, p.name)


def test_secret_types_known_to_duckdb_are_all_in_the_catalogue(db):
    # Every type DuckDB's shipped extensions register is in the table of truth.
    for t in ("azure", "mysql", "postgres", "rds"):
        create(db.conn, f"load_{t}", t, required_options(catalog.TYPES[t], catalog.TYPES[t].provider(None)))
    types = {r[0] for r in db.conn.execute(
        "SELECT * FROM duckdb.query($$ SELECT type FROM duckdb_secret_types() $$) AS t(type text)")}
    assert types <= set(catalog.TYPES), types - set(catalog.TYPES)


# --- "why is my secret not used?" ---------------------------------------------------

def _skipped(conn):
    return {n: why for n, storage, why in conn.execute(
        "SELECT name, storage, secret_string FROM duckdb.secrets()").fetchall() if storage == "skipped"}


def test_secrets_lists_what_the_role_may_use_but_does_not_get(db, s3):
    c = db.conn
    alice = db.role("why")
    c.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{alice}"')
    # A required sensitive option no mapping of this role gives.
    c.execute("CREATE SERVER az_token TYPE 'azure' FOREIGN DATA WRAPPER duckdb "
              "OPTIONS (provider 'access_token', account_name 'acct')")
    # Mappings, none of them this role's.
    c.execute("CREATE SERVER others TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://others')")
    c.execute("CREATE USER MAPPING FOR postgres SERVER others OPTIONS (key_id 'K', secret 'S-others-1')")
    # A type whose connections leave from the database server: superusers only.
    c.execute("CREATE SERVER pg_target TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (host '127.0.0.1')")
    for s in ("az_token", "others", "pg_target"):
        c.execute(f'GRANT USAGE ON FOREIGN SERVER {s} TO "{alice}"')
    got = _skipped(db.connect(alice))
    assert got["az_token"].startswith("no user mapping gives what it needs")
    assert got["others"] == "no user mapping for this role or PUBLIC"
    assert got["pg_target"].startswith("needs a superuser")
    assert "S-others-1" not in str(got)


def test_a_superuser_is_told_about_servers_of_untrusted_owners(db):
    c = db.conn
    owner = db.role("owner")
    c.execute(f'GRANT USAGE ON FOREIGN DATA WRAPPER duckdb TO "{owner}"')
    o = db.connect(owner)
    o.execute("CREATE SERVER by_owner TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://owner')")
    assert _skipped(c)["by_owner"].startswith("owned by a role that is not an administrator")
