#!/usr/bin/env bash
# make demo: a throwaway PostgreSQL and a local S3 server that checks
# signatures; create the extension and a secret; read Parquet from S3 through
# the embedded DuckDB; show what a wrong key gives; stop everything started.
set -euo pipefail
. "$(dirname "$0")/lib.sh" demo
PGPORT=$(free_port)
S3PORT=$(free_port)

cleanup() {
    $PY tests/localenv.py pg-stop "$BASE/pg" || true
    $PY tests/localenv.py s3-stop "$BASE/s3" || true
    rm -rf "$BASE"
}
trap cleanup EXIT

echo "== starting PostgreSQL 15 on 127.0.0.1:$PGPORT and an S3 server (moto, signatures checked) on 127.0.0.1:$S3PORT"
$PY tests/localenv.py pg-start "$BASE/pg" "$PGPORT"
$PY tests/localenv.py s3-start "$BASE/s3" "$S3PORT"
# shellcheck disable=SC1091
. "$BASE/s3/s3.env"
echo "== uploaded s3://$S3_BUCKET/demo/cities.parquet"

run_psql() {
    psql -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=0 \
         -v key_id="$S3_KEY_ID" -v secret="$S3_SECRET" -v endpoint="$S3_ENDPOINT" "$@"
}

OUT="$BASE/psql.out"
run_psql -e 2>&1 <<'SQL' | tee "$OUT" | sed -e "s|$S3_SECRET|<the S3 secret>|g"
CREATE EXTENSION duckdb_secrets CASCADE;

-- A secret for the local S3 server: a SERVER plus a USER MAPPING for you.
SELECT duckdb.create_simple_secret(type := 'S3', key_id := :'key_id', secret := :'secret',
       region := 'us-east-1', endpoint := :'endpoint', url_style := 'path', use_ssl := 'false');

-- What the engine holds for the current role (sensitive values redacted).
SELECT name, type, scope, secret_string FROM duckdb.secrets();

-- Read Parquet from S3 through the embedded DuckDB.
SELECT * FROM duckdb.query($$
    SELECT city, population FROM read_parquet('s3://bucket/demo/cities.parquet') ORDER BY population
$$) AS t(city text, population integer);

-- Now a wrong secret: S3 refuses the signature, and the error does not show the secret.
ALTER USER MAPPING FOR CURRENT_USER SERVER simple_s3_secret OPTIONS (SET secret 'not-the-right-secret-42');
SELECT * FROM duckdb.query($$ SELECT count(*) FROM read_parquet('s3://bucket/demo/cities.parquet') $$) AS t(n bigint);
SQL

echo
if grep -q "not-the-right-secret-42" <(grep -v "ALTER USER MAPPING" "$OUT") || grep -q "$S3_SECRET" <(grep -v "create_simple_secret\|key_id :=" "$OUT"); then
    echo "== FAIL: a secret value appeared in the output"; exit 1
fi
grep -q "Quito" "$OUT" || { echo "== FAIL: the rows were not read"; exit 1; }
grep -q "ERROR" "$OUT" || { echo "== FAIL: the wrong key did not give an error"; exit 1; }
echo "== demo OK: rows read through DuckDB with the S3 secret; the wrong secret gave an error without it."
echo "== stopping PostgreSQL and the S3 server"
