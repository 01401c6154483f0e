"""A corpus of bad inputs. Each gets the exact SQLSTATE, a message naming what
is wrong, a HINT where one helps, no Python traceback, no secret value echoed
(every case carries the canary), and leaves the catalog exactly as it was."""


import psycopg
import pytest

from conftest import assert_clean_error, fresh_database
from duckdb_secrets import catalog

C = "CANARY-bad-51f0"
DB = "bad_inputs"


def srv(type_sql, opts_sql=None, name="x"):
    return (f"CREATE SERVER {name} TYPE {type_sql} FOREIGN DATA WRAPPER duckdb"
            + (f" OPTIONS ({opts_sql})" if opts_sql else ""))


def case(cid, sql, sqlstate, names=None, hint=False, params=None):
    return pytest.param(sql, params, sqlstate, names, hint, id=cid)


def _cases():
    out = []
    # 1. Sensitive options on a SERVER, in every spelling, on CREATE and ALTER.
    for name in sorted(catalog.SENSITIVE):
        for spelled in (name, f'"{name.upper()}"', f'"{name.title()}"'):
            out.append(case(f"sensitive-create-{spelled}", srv("'s3'", f"{spelled} '{C}'"), "42501", name, True))
        out.append(case(f"sensitive-alter-{name}", f"ALTER SERVER base_s3 OPTIONS (ADD {name} '{C}')",
                        "42501", name, True))
    # 2. An option of some other type/provider, per type/provider.
    for t in catalog.TYPES.values():
        for p in t.providers.values():
            valid = set(catalog.options_for(t.name, p.name))
            foreign = sorted(catalog.ALL_OPTIONS - valid - catalog.SENSITIVE)[0]
            prov = f"provider '{p.name}', " if p.name != t.default_provider else ""
            out.append(case(f"foreign-option-{t.name}-{p.name}", srv(f"'{t.name}'", f"{prov}{foreign} '{C}'"),
                            "HV00D", foreign, True))
    # Options nobody knows, and names that are odd.
    out += [
        case("unknown-server", srv("'s3'", f"foo '{C}'"), "HV00D", "foo", True),
        case("unknown-mapping", f"CREATE USER MAPPING FOR PUBLIC SERVER base_s3 OPTIONS (foo '{C}')",
             "HV00D", "foo", True),
        case("unknown-unicode", srv("'s3'", f"\"régión\" '{C}'"), "HV00D", "régión", True),
        case("unknown-rtl", srv("'s3'", f"\"\u05e9\u05dc\u05d5\u05dd\" '{C}'"), "HV00D", "\u05e9", True),
        case("unknown-zero-width", srv("'s3'", f"\"region\u200b\" '{C}'"), "HV00D", "region", True),
        case("unknown-alter-add", f"ALTER SERVER base_s3 OPTIONS (ADD nosuch '{C}')", "HV00D", "nosuch", True),
        case("unknown-mapping-alter", f"ALTER USER MAPPING FOR PUBLIC SERVER base_s3_mapped OPTIONS (ADD bogus '{C}')",
             "HV00D", "bogus", True),
    ]
    # 3. Mapping-only / server-only / type-specific in mappings.
    out += [
        case("scope-in-mapping", f"CREATE USER MAPPING FOR PUBLIC SERVER base_s3 OPTIONS (scope '{C}')",
             "HV00D", "scope", True),
        case("provider-in-mapping", f"CREATE USER MAPPING FOR PUBLIC SERVER base_s3 OPTIONS (provider '{C}')",
             "HV00D", "provider", True),
        case("token-on-s3-mapping", f"CREATE USER MAPPING FOR PUBLIC SERVER base_s3 OPTIONS (token '{C}')",
             "HV00D", "token", True),
        case("connection-string-on-s3", f"CREATE USER MAPPING FOR PUBLIC SERVER base_s3 "
                                        f"OPTIONS (connection_string '{C}')", "HV00D", "connection_string", True),
        case("password-on-s3", f"CREATE USER MAPPING FOR PUBLIC SERVER base_s3 OPTIONS (password '{C}')",
             "HV00D", "password", True),
        case("secret-on-postgres", f"CREATE USER MAPPING FOR PUBLIC SERVER base_pg OPTIONS (secret '{C}')",
             "HV00D", "secret", True),
    ]
    # 4. Values of the wrong kind.
    seen = set()
    for t in catalog.TYPES.values():
        for p in t.providers.values():
            for o in p.options.values():
                if o.sensitive or (o.name, o.kind, bool(o.choices)) in seen:
                    continue
                prov = f"provider '{p.name}', " if p.name != t.default_provider else ""
                bad = {catalog.BOOL: f"notabool-{C}", catalog.INT: f"12x-{C}", catalog.MAP: f"noequals-{C}"}
                if o.choices:
                    value = f"{o.choices[0]}{o.sep}bogus-{C}" if o.sep else f"bogus-{C}"
                elif o.kind in bad:
                    value = bad[o.kind]
                else:
                    continue
                seen.add((o.name, o.kind, bool(o.choices)))
                out.append(case(f"value-{t.name}-{p.name}-{o.name}", srv(f"'{t.name}'", f"{prov}{o.name} '{value}'"),
                                "HV024", o.name, bool(o.choices) or o.kind == catalog.BOOL))
    out += [
        case("scope-empty-member", srv("'s3'", f"scope 's3://{C},,s3://b'"), "HV024", "scope"),
        case("scope-blank", srv("'s3'", "scope '  '"), "HV024", "scope"),
        case("headers-no-key", srv("'s3'", f"extra_http_headers '={C}'"), "HV024", "extra_http_headers"),
        case("bool-empty", srv("'s3'", "use_ssl ''"), "HV024", "use_ssl", True),
        case("bool-huge", srv("'s3'", f"use_ssl '{C}{'x' * 100000}'"), "HV024", "use_ssl", True),
        case("int-float", srv("'postgres'", "port '5432.5'"), "HV024", "port"),
        case("chain-empty-member", srv("'s3'", f"provider 'credential_chain', chain 'env;;{C}'"), "HV024", "chain",
             True),
    ]
    # 5. Options that cannot go together.
    out += [
        case("uri-with-host", f"CREATE USER MAPPING FOR PUBLIC SERVER base_pg OPTIONS (uri 'postgresql://u:{C}@h/db')",
             "HV024", "uri", True),
        case("uri-with-dbname", (srv("'postgres'", "dbname 'd'", "x"),
             f"CREATE USER MAPPING FOR PUBLIC SERVER x OPTIONS (uri 'postgresql://{C}@h/db')"), "HV024", "uri", True),
        case("rds-with-password", (srv("'postgres'", "aws_rds_secret 'my_rds'"),
             f"CREATE USER MAPPING FOR PUBLIC SERVER x OPTIONS (password '{C}')"), "HV024", "aws_rds_secret", True),
        case("alias-database-dbname", srv("'postgres'", f"database 'a', dbname '{C}'"), "42710", "dbname"),
        case("alias-hostname-host", srv("'postgres'", f"hostname 'a', host '{C}'"), "42710", "host"),
        case("alias-username-user", srv("'postgres'", f"username 'a', \"user\" '{C}'"), "42710", "user"),
        case("alias-mapping-vs-server", f"CREATE USER MAPPING FOR PUBLIC SERVER base_pg OPTIONS (hostname '{C}')",
             "42710", "host"),
        case("both-server-and-mapping", f"CREATE USER MAPPING FOR PUBLIC SERVER base_s3 OPTIONS (region '{C}')",
             "42710", "region", True),
        case("same-option-twice-server", srv("'s3'", f"region 'a', \"REGION\" '{C}'"), "42710", "region", True),
        case("same-option-twice-mapping", f"CREATE USER MAPPING FOR PUBLIC SERVER base_s3 "
                                          f"OPTIONS (secret 'a', \"Secret\" '{C}')", "42710", "secret", True),
        case("assume-role-without-chain", srv("'s3'", f"provider 'credential_chain', assume_role_arn '{C}'"),
             "HV024", "assume_role_arn"),
        case("server-alter-conflicts-with-mapping", "ALTER SERVER base_s3_mapped OPTIONS (ADD key_id 'k2')",
             "42710", "key_id", True),
    ]
    # 6. Missing required options.
    out += [
        case("sp-missing-tenant", srv("'azure'", f"provider 'service_principal', client_id '{C}', account_name 'a'"),
             "HV024", "tenant_id"),
        case("sp-mapping-missing-secret", f"CREATE USER MAPPING FOR PUBLIC SERVER base_sp "
                                          f"OPTIONS (proxy_password '{C}')", "HV024", "client_secret"),
        case("token-mapping-missing-token", f"CREATE USER MAPPING FOR PUBLIC SERVER base_at "
                                            f"OPTIONS (proxy_password '{C}')", "HV024", "access_token"),
        case("azure-chain-missing-account", srv("'azure'", f"provider 'credential_chain', endpoint '{C}'"),
             "HV024", "account_name"),
        case("azure-mi-missing-account", srv("'azure'", f"provider 'managed_identity', client_id '{C}'"),
             "HV024", "account_name"),
    ]
    rds_all = {"chain": "env", "region": "r", "rds_user": "u", "rds_host": "h", "rds_port": "5432"}
    for missing in rds_all:
        opts = ", ".join(f"{k} '{v}'" for k, v in rds_all.items() if k != missing)
        out.append(case(f"rds-missing-{missing}", srv("'rds'", f"{opts}, session_name '{C}'"), "HV024", missing))
    # 7. TYPE.
    out += [
        case("type-missing", f"CREATE SERVER x FOREIGN DATA WRAPPER duckdb OPTIONS (region '{C}')", "HV024", "TYPE",
             True),
        case("type-empty", srv("''", f"region '{C}'"), "HV024", "TYPE", True),
        case("type-unknown", srv("'nosuchtype'", f"region '{C}'"), "HV024", "nosuchtype", True),
        case("type-smuggle-quote", srv(f"'s3, secret ''{C}'''"), "HV024", "TYPE", True),
        case("type-smuggle-space", srv(f"'s3 secret {C}'"), "HV024", "TYPE", True),
        case("type-smuggle-paren", srv(f"'s3) (secret ''{C}'''"), "HV024", "TYPE", True),
        case("type-zero-width", srv(f"'s3\u200b{C}'"), "HV024", "TYPE", True),
        case("type-fullwidth", srv("'ｓ３'", f"region '{C}'"), "HV024", "TYPE", True),
        case("type-canary", srv(f"'{C}'"), "HV024", "TYPE", True),
        case("type-huge", srv(f"'{'s' * 100000}{C}'"), "HV024", "TYPE", True),
        case("type-newline", srv(f"E's3\\n{C}'"), "HV024", "TYPE", True),
        case("type-motherduck", srv("'motherduck'", f"region '{C}'"), "0A000", "motherduck"),
    ]
    # 8. Lakehouse types: what they require, and credentials where every role could read them.
    out += [
        case("ducklake-no-metadata-path", srv("'ducklake'", f"data_path 's3://b/{C}'"), "HV024", "metadata_path"),
        case("ducklake-password-in-path", srv("'ducklake'", f"metadata_path 'postgres:dbname=x password={C}'"),
             "42501", "metadata_path", True),
        case("ducklake-password-parameter", srv("'ducklake'", f"metadata_path 'm', metadata_parameters "
                                                            f"'PASSWORD={C}'"), "42501", "PASSWORD", True),
        case("ducklake-token-parameter", srv("'ducklake'", f"metadata_path 'm', metadata_parameters "
                                                         f"'TOKEN={C}'"), "42501", "TOKEN", True),
        case("http-authorization-header", srv("'http'", f"extra_http_headers 'Authorization=Bearer {C}'"),
             "42501", "Authorization", True),
        case("iceberg-grant-type", srv("'iceberg'", f"oauth2_grant_type '{C}'"), "HV024", "oauth2_grant_type", True),
        case("iceberg-expires-in", srv("'iceberg'", f"expires_in '{C}'"), "HV024", "expires_in"),
        case("quack-host", srv("'quack'", f"host '{C}'"), "HV00D", "host", True),
        case("uc-scope-option", srv("'uc'", f"region '{C}'"), "HV00D", "region", True),
    ]
    # 8. PROVIDER.
    out += [
        case("provider-unknown", srv("'s3'", f"provider 'nosuch', region '{C}'"), "HV024", "nosuch", True),
        case("provider-smuggle", srv("'s3'", f"provider 'config; secret {C}'"), "HV024", "PROVIDER", True),
        case("provider-empty", srv("'s3'", f"provider '', region '{C}'"), "HV024", "PROVIDER", True),
        case("provider-of-other-type", srv("'s3'", f"provider 'env', region '{C}'"), "HV024", "env", True),
        case("provider-of-azure-on-gcs", srv("'gcs'", f"provider 'service_principal', region '{C}'"),
             "HV024", "service_principal", True),
    ]
    # 9. Names DuckDB would confuse.
    out += [
        case("name-collides-upper", srv("'s3'", f"region '{C}'", '"BASE_S3"'), "42710", "BASE_S3", True),
        case("name-collides-mixed", srv("'s3'", f"region '{C}'", '"Base_S3"'), "42710", "Base_S3", True),
        case("rename-collides", 'ALTER SERVER base_pg RENAME TO "BASE_S3"', "42710", "BASE_S3", True),
    ]
    # 10. The wrapper itself.
    out += [
        case("fdw-option", f"ALTER FOREIGN DATA WRAPPER duckdb OPTIONS (ADD region '{C}')", "HV00D", "region", True),
        case("fdw-secret", f"ALTER FOREIGN DATA WRAPPER duckdb OPTIONS (ADD secret '{C}')", "HV00D", "secret", True),
        case("foreign-table", f"CREATE FOREIGN TABLE ft (i int) SERVER base_s3 OPTIONS (secret '{C}')",
             "HV00D", "secret", True),
    ]
    # 11. Helpers: NULLs, types, values.
    args = ["type", "key_id", "secret", "session_token", "region", "url_style", "provider", "endpoint",
            "scope", "validation", "use_ssl"]
    for a in args:
        vals = {k: ("S3" if k == "type" else C if k == "secret" else "") for k in args}
        vals[a] = None
        out.append(case(f"simple-null-{a}", "SELECT duckdb.create_simple_secret("
                        + ", ".join(f"{k} := %s" for k in args) + ")", "22004", a, True,
                        params=[vals[k] for k in args]))
    out += [
        case("azure-null-cs", "SELECT duckdb.create_azure_secret(NULL::text)", "22004", "connection_string", True),
        case("azure-null-scope", "SELECT duckdb.create_azure_secret(%s, NULL)", "22004", "scope", True, params=[C]),
        case("azure-empty-cs", "SELECT duckdb.create_azure_secret('')", "HV024", "connection_string"),
    ]
    for t in ("azure", "postgres", "", "mysql", "s3' OR '1'='1", C):
        out.append(case(f"simple-type-{t[:12]}", "SELECT duckdb.create_simple_secret(%s, 'k', %s)", "22023",
                        "simple secret", True, params=[t, C]))
    out += [
        case("simple-bad-bool", "SELECT duckdb.create_simple_secret('S3', 'k', %s, use_ssl := 'maybe')",
             "HV024", "use_ssl", True, params=[C]),
        case("simple-bad-url-style", "SELECT duckdb.create_simple_secret('S3', 'k', %s, url_style := 'diag')",
             "HV024", "url_style", True, params=[C]),
        case("simple-validation-on-config", "SELECT duckdb.create_simple_secret('S3', 'k', %s, validation := 'none')",
             "HV00D", "validation", True, params=[C]),
        case("simple-bad-provider", "SELECT duckdb.create_simple_secret('S3', 'k', %s, provider := 'bogus')",
             "HV024", "bogus", True, params=[C]),
        case("simple-bad-scope", "SELECT duckdb.create_simple_secret('S3', 'k', %s, scope := ',')",
             "HV024", "scope", params=[C]),
        case("simple-scope-taken", "SELECT duckdb.create_simple_secret('S3', 'k', %s, scope := 's3://taken')",
             "42710", "s3://taken", True, params=[C]),
        case("simple-huge-bool", "SELECT duckdb.create_simple_secret('S3', 'k', %s, use_ssl := %s)",
             "HV024", "use_ssl", True, params=[C, C * 10000]),
    ]
    # 12. drop_secret.
    out += [
        case("drop-missing", "SELECT duckdb.drop_secret('no_such_secret')", "42704", "does not exist", True),
        case("drop-other-fdw", "SELECT duckdb.drop_secret('not_duckdb')", "42809", "not a duckdb secret"),
        case("drop-null", "SELECT duckdb.drop_secret(NULL)", "42704", "does not exist", True),
    ]
    return out


CASES = _cases()

SNAPSHOT = """
SELECT (SELECT array_agg(row(srvname, srvtype, srvoptions)::text ORDER BY srvname) FROM pg_foreign_server),
       (SELECT array_agg(row(srvname, usename, umoptions)::text ORDER BY srvname, usename) FROM pg_user_mappings),
       (SELECT array_agg(row(fdwname, fdwoptions)::text ORDER BY fdwname) FROM pg_foreign_data_wrapper),
       (SELECT count(*) FROM pg_foreign_table)
"""


@pytest.fixture(scope="module")
def conn(cluster):
    c = fresh_database(cluster, DB)
    for sql in [
        "CREATE SERVER base_s3 TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region 'us-east-1')",
        "CREATE SERVER base_s3_mapped TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://mapped')",
        "CREATE USER MAPPING FOR PUBLIC SERVER base_s3_mapped OPTIONS (key_id 'k', secret 's')",
        "CREATE SERVER taken TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://taken')",
        "CREATE SERVER base_pg TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (host 'h')",
        "CREATE SERVER base_sp TYPE 'azure' FOREIGN DATA WRAPPER duckdb "
        "OPTIONS (provider 'service_principal', tenant_id 't', client_id 'c', account_name 'a')",
        "CREATE SERVER base_at TYPE 'azure' FOREIGN DATA WRAPPER duckdb "
        "OPTIONS (provider 'access_token', account_name 'a')",
        "CREATE FOREIGN DATA WRAPPER not_duckdb_fdw",
        "CREATE SERVER not_duckdb FOREIGN DATA WRAPPER not_duckdb_fdw",
    ]:
        c.execute(sql)
    yield c
    c.close()


def test_corpus_is_large_enough():
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("sql,params,sqlstate,names,hint", CASES)
def test_bad_input(conn, sql, params, sqlstate, names, hint):
    before = conn.execute(SNAPSHOT).fetchone()
    with pytest.raises(psycopg.Error) as e:
        with conn.transaction():
            for stmt in (sql if isinstance(sql, tuple) else [sql]):
                conn.execute(stmt, params)
    err = e.value
    assert err.sqlstate == sqlstate, f"{err.sqlstate} {err.diag.message_primary}"
    if names:
        assert names in err.diag.message_primary, err.diag.message_primary
    if hint:
        assert err.diag.message_hint, "expected a HINT"
    assert_clean_error(err, C)
    assert conn.execute(SNAPSHOT).fetchone() == before
