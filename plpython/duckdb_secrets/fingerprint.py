"""Change detection: has anything that decides the engine's secrets changed?

Before each engine use one prepared query (FINGERPRINT_SQL) reads the
extension's generation row, which every DDL on duckdb servers, mappings and
grants bumps inside its own transaction (so a rollback restores it, and its
xmin tells transactions apart), plus the current role, its superuser and file
privileges, role memberships, server owners and the engine settings, and which
servers the generations since the last sync changed (duckdb._changes); and,
when a secret table is configured and readable, a digest of its rows (a second
query, which reads the whole table: storage.probe). Observed.key is the
fingerprint: a different one means the sync (sync.py) brings the engine in line.
"""

from . import interrupts, storage
from .errors import OBJECT_NOT_IN_PREREQUISITE_STATE, PgError
from .session import caller

# $1 [schema], $2 name: where the administrator's secret table is;
# $3 the generation the last sync saw (-1: none).
FINGERPRINT_SQL = """
SELECT g.n, g.xmin::text AS gx, r.oid AS role, pg_catalog.statement_timestamp()::text AS st,
       pg_catalog.date_part('epoch', pg_catalog.statement_timestamp()) AS st_epoch,
       pg_catalog.current_setting('statement_timeout') AS stmt_timeout,
       r.rolname::text AS rolname, r.rolsuper,
       pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'USAGE') AS rd,
       pg_catalog.pg_has_role(r.oid, 'pg_write_server_files', 'USAGE') AS wr,
       pg_catalog.current_setting('duckdb.memory_limit', true) AS mem,
       pg_catalog.current_setting('duckdb.threads', true) AS thr,
       pg_catalog.current_setting('duckdb.secret_storage_table', true) AS tbl,
       pg_catalog.current_setting('duckdb.attach_lock_timeout', true) AS alt,
       t.oid AS tbl_oid, t.qualified AS tbl_name, t.distrust AS tbl_distrust, t.readable AS tbl_read,
       -- memberships, and which roles do not inherit (ALTER ROLE ... NOINHERIT)
       (SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(m.roleid::text || ':' || m.member::text,
                                                             ',' ORDER BY m.roleid, m.member), '')
                              || coalesce((SELECT pg_catalog.string_agg(n.oid::text, ',' ORDER BY n.oid)
                                             FROM pg_catalog.pg_roles n WHERE NOT n.rolinherit), ''))
          FROM pg_catalog.pg_auth_members m) AS am,
       -- who owns each server: REASSIGN OWNED changes it without an event trigger
       (SELECT pg_catalog.sum(s.oid::int8 * s.srvowner::int8) FROM pg_catalog.pg_foreign_server s)::text AS srvown,
       -- who is a superuser decides whose servers count as an administrator's
       -- (a change of owner bumps the generation: ALTER SERVER ... OWNER TO)
       (SELECT pg_catalog.string_agg(a.oid::text, ',' ORDER BY a.oid) FROM pg_catalog.pg_roles a
         WHERE a.rolsuper) AS owners,
       -- for the entry points of duckdb.query and duckdb.raw_query (their _impl functions are PUBLIC's)
       (pg_catalog.has_function_privilege('duckdb.query(text)', 'EXECUTE')
        OR pg_catalog.has_function_privilege('duckdb.query(text, jsonb)', 'EXECUTE')
        OR pg_catalog.has_function_privilege('duckdb.query_json(text)', 'EXECUTE')
        OR pg_catalog.has_function_privilege('duckdb.query_json(text, jsonb)', 'EXECUTE')
        OR pg_catalog.has_function_privilege('duckdb.create_query_view(text, text)', 'EXECUTE')) AS can_query,
       pg_catalog.has_function_privilege('duckdb.raw_query(text)', 'EXECUTE') AS can_raw,
       concat_ws(';', pg_catalog.current_setting('duckdb.allowed_url_prefixes', true),
                 pg_catalog.current_setting('duckdb.engine_settings', true),
                 pg_catalog.current_setting('duckdb.trusted_server_owners', true),
                 pg_catalog.current_setting('duckdb.max_memory_limit', true),
                 pg_catalog.current_setting('duckdb.max_threads', true),
                 pg_catalog.current_setting('duckdb.max_temp_directory_size', true),
                 pg_catalog.current_setting('duckdb.aws_config_file', true),
                 pg_catalog.current_setting('duckdb.aws_shared_credentials_file', true),
                 pg_catalog.current_setting('duckdb.aws_assume_role_duration', true),
                 pg_catalog.current_setting('duckdb.aws_refresh_margin', true),
                 pg_catalog.current_setting('duckdb.rds_token_max_age', true),
                 pg_catalog.current_setting('duckdb.encryption_key_file', true)) AS conf,
       -- which servers the generations after the last one seen changed (NULL:
       -- not known for each of them, so re-read all), and whether this
       -- transaction has written anything (then what it sees may still roll back)
       (SELECT CASE WHEN pg_catalog.count(DISTINCT c.n) = g.n - $3 AND pg_catalog.bool_and(c.server <> 0)
                    THEN pg_catalog.array_agg(DISTINCT c.server) END
          FROM duckdb._changes c WHERE c.n > $3 AND c.n <= g.n) AS changed,
       pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL AS writing
  FROM duckdb._generation g
  JOIN pg_catalog.pg_roles r ON r.rolname = pg_catalog.current_user()
  -- the relation at the place the administrator named ($1 schema, $2 name)
  LEFT JOIN LATERAL (
       SELECT c.oid, c.oid::regclass::text AS qualified,
              pg_catalog.has_table_privilege(c.oid, 'SELECT') AS readable,
              """ + storage.DISTRUST_SQL_EXPR.format(role="r.oid") + """ AS distrust
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = $2 AND n.nspname = ANY ($1)) t ON true
"""


def read(plpy, sess):
    """The fingerprint row for this statement. Also notes who is calling and the
    statement's deadline, and drops a result another statement or role left."""
    plan = sess.plan(plpy, "fingerprint", FINGERPRINT_SQL, ["text[]", "text", "int8"])
    seen = [sess.seen if sess.seen is not None else -1]
    rows = plpy.execute(plan, list(sess.table_args[1:]) + seen)
    if rows and rows[0]["tbl"] != sess.table_args[0]:
        # duckdb.secret_storage_table may have changed: the configuration files'
        # value names the table (a role's own SET does not count).
        args = storage.lookup_args(storage.admin_setting(plpy, sess))
        sess.table_args = (rows[0]["tbl"],) + (args if args is not None else (None, None))
        rows = plpy.execute(plan, list(sess.table_args[1:]) + seen)
    if not rows:
        raise PgError(OBJECT_NOT_IN_PREREQUISITE_STATE, "duckdb_secrets is not set up in this database",
                      hint="CREATE EXTENSION duckdb_secrets CASCADE;")
    r = rows[0]
    sess.caller = caller()
    sess.deadline = interrupts.deadline(r["st_epoch"], r["stmt_timeout"])
    if sess.pending is not None and sess.pending.owner[1] != sess.caller[1]:
        sess.drop_pending()     # left by another statement (an error): gone
    if sess.orphans:
        sess.orphans = [p for p in sess.orphans if p.owner[1] == sess.caller[1]]
    return r


class Observed:
    """What the fingerprint query saw for this statement, with the secret table's
    state (table: storage.TableState); key is the fingerprint."""
    __slots__ = ("row", "table", "key", "changed", "writing")

    def __init__(self, row, table):
        self.row, self.table = row, table
        self.key = (row["n"], row["gx"], row["role"], row["rolsuper"], row["rd"], row["wr"], row["mem"],
                    row["thr"], row["am"], row["conf"], row["alt"], row["owners"], row["srvown"], table.key())
        self.changed = row["changed"]       # server oids changed since the last sync, or None
        self.writing = bool(row["writing"])


def observe(plpy, sess, row):
    """The Observed of a fingerprint row: the secret table probed (which reads it)."""
    table = storage.probe(plpy, sess, row["tbl_oid"] if sess.table_args[2] else None, row["tbl_read"],
                          row["tbl_distrust"], row["tbl_name"])
    return Observed(row, table)


def changed_servers(sess, obs, now):
    """The oids of the servers to re-read, when only some changed since the last
    sync; None: re-read everything (a role switch, settings, role memberships,
    a secret table, a rollback this session may have seen, credentials due)."""
    last, state = sess.fingerprint, sess.state
    if (last is None or state is None or sess.context is None or sess.tentative
            or obs.changed is None or sess.engine is None or not sess.engine.usable()
            or obs.key[2:] != last[2:] or obs.row["n"] <= last[0]
            or state.from_table
            or (sess.refresh_at is not None and now >= sess.refresh_at)):
        return None
    return set(obs.changed)
