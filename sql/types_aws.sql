-- AWS-style object stores and credentials: s3, r2, gcs, aws (providers config and
-- credential_chain) and rds. See docs/secret-types.md for every option.
\set SHOW_CONTEXT never
SET client_min_messages = warning;   -- the same output on a fresh and an upgraded install
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

-- config: keys in the user mapping.
CREATE SERVER aws_s3 TYPE 's3' FOREIGN DATA WRAPPER duckdb
  OPTIONS (region 'eu-west-1', url_style 'PATH', requester_pays 'on', extra_http_headers 'X-Team=data');
CREATE USER MAPPING FOR CURRENT_USER SERVER aws_s3 OPTIONS (key_id 'AKIAEX', secret 'regress-aws-1', session_token 'regress-aws-2');
-- r2: account_id on the server.
CREATE SERVER aws_r2 TYPE 'r2' FOREIGN DATA WRAPPER duckdb OPTIONS (account_id 'acct123');
CREATE USER MAPPING FOR CURRENT_USER SERVER aws_r2 OPTIONS (key_id 'r2key', secret 'regress-aws-3');
-- gcs: HMAC keys, or a bearer token.
CREATE SERVER aws_gcs TYPE 'gcs' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 'gs://bucket');
CREATE USER MAPPING FOR CURRENT_USER SERVER aws_gcs OPTIONS (bearer_token 'regress-aws-4');
-- credential_chain: the chain is resolved when the secret is exported (here
-- from the environment only; "validation 'none'" accepts an empty result).
CREATE SERVER aws_chain TYPE 'aws' FOREIGN DATA WRAPPER duckdb
  OPTIONS (provider 'credential_chain', chain 'env', validation 'none', region 'us-east-2');
-- rds: what generates IAM tokens for a postgres server's aws_rds_secret.
CREATE SERVER aws_rds TYPE 'rds' FOREIGN DATA WRAPPER duckdb
  OPTIONS (chain 'env', validation 'none', region 'eu-west-1', rds_user 'app', rds_host 'db.example', rds_port '5432');

SELECT name, type, provider, scope, secret_string FROM duckdb.secrets() ORDER BY name;

-- Values are checked per option.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (url_style 'diagonal');
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'credential_chain', chain 'env;teleport');
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'credential_chain', validation 'maybe');
-- assume_role_arn needs a chain to assume it from.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'credential_chain', assume_role_arn 'arn:aws:iam::1:role/x');
-- rds needs all of chain, region, rds_user, rds_host and rds_port.
CREATE SERVER bad TYPE 'rds' FOREIGN DATA WRAPPER duckdb OPTIONS (chain 'env', region 'r', rds_user 'u', rds_host 'h');
-- Options of another type or provider.
CREATE SERVER bad TYPE 'gcs' FOREIGN DATA WRAPPER duckdb OPTIONS (account_id 'x');
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (profile 'default');
-- refresh is not offered: DuckDB would copy every secret into an unredacted field.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (refresh 'auto');

DROP SERVER aws_s3, aws_r2, aws_gcs, aws_chain, aws_rds CASCADE;
