-- Validation of duckdb servers and user mappings.
-- Stage 1 (the FDW validator) checks option names per context; stage 2 (an
-- event trigger at the end of the DDL) knows the server's TYPE and checks
-- options per type, value types, and that DuckDB accepts the secret.
\set SHOW_CONTEXT never
SET client_min_messages = warning;   -- the same output on a fresh and an upgraded install
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

-- A valid server: non-sensitive options on the SERVER ...
CREATE SERVER s3_ok TYPE 's3' FOREIGN DATA WRAPPER duckdb
  OPTIONS (region 'us-east-1', endpoint '127.0.0.1:9000', url_style 'path', use_ssl 'false', scope 's3://bucket');
-- ... and the sensitive ones in a USER MAPPING.
CREATE USER MAPPING FOR CURRENT_USER SERVER s3_ok OPTIONS (key_id 'AKIAEXAMPLE', secret 'regress-secret-1');

-- Option names are case-insensitive, quoted or not.
CREATE SERVER s3_upper TYPE 'S3' FOREIGN DATA WRAPPER duckdb OPTIONS (REGION 'eu-west-1', "USE_SSL" 'true');

-- Sensitive options never go on a SERVER (every role can read server options),
-- in any spelling.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (secret 'x');
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS ("SECRET" 'x');
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS ("Session_Token" 'x');
ALTER SERVER s3_ok OPTIONS (ADD secret 'x');

-- Unknown options, per context.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (foo 'x');
CREATE USER MAPPING FOR PUBLIC SERVER s3_ok OPTIONS (foo 'x');
-- scope and provider describe the secret: server only.
CREATE USER MAPPING FOR PUBLIC SERVER s3_ok OPTIONS (scope 's3://other');
-- The same option twice, in two spellings.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region 'a', "REGION" 'b');

-- The wrapper itself takes no options.
ALTER FOREIGN DATA WRAPPER duckdb OPTIONS (ADD region 'x');

-- TYPE must be a known secret type, and present.
CREATE SERVER bad TYPE 'nosuchtype' FOREIGN DATA WRAPPER duckdb;
CREATE SERVER bad FOREIGN DATA WRAPPER duckdb;
-- A TYPE that tries to smuggle options is refused and not echoed.
CREATE SERVER bad TYPE 's3, secret ''smuggled''' FOREIGN DATA WRAPPER duckdb;

-- Options valid for one type but not another.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (account_id 'x');
CREATE SERVER r2_ok TYPE 'r2' FOREIGN DATA WRAPPER duckdb OPTIONS (account_id 'my-account');

-- Value types: booleans, lists, maps.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (use_ssl 'notabool');
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://a,,s3://b');
CREATE SERVER s3_two_scopes TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://a, s3://b');
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (extra_http_headers 'no-equals-sign');
CREATE SERVER s3_headers TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (extra_http_headers 'X-A=1, X-B=2');

-- An unknown provider.
CREATE SERVER bad TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'nosuchprovider');

-- An option set on both the server and its mapping is ambiguous.
CREATE USER MAPPING FOR PUBLIC SERVER s3_ok OPTIONS (region 'x');

-- Server names that DuckDB would see as one (it ignores case) are refused.
CREATE SERVER "S3_OK" TYPE 's3' FOREIGN DATA WRAPPER duckdb;

-- A failed DDL changes nothing.
SELECT srvname, srvtype, srvoptions FROM pg_foreign_server ORDER BY srvname;
SELECT srvname, umoptions IS NOT NULL AS has_options FROM pg_user_mappings ORDER BY srvname, usename;

DROP SERVER s3_ok, s3_upper, r2_ok, s3_two_scopes, s3_headers CASCADE;

-- Sources: servers that hold no secret; user mappings of other servers name them.
CREATE SERVER vault TYPE 'aws_secrets_manager' FOREIGN DATA WRAPPER duckdb
  OPTIONS (region 'us-east-1', endpoint 'http://127.0.0.1:9', allowed_ids 'prod/analytics/*, prod/shared', ttl '5min');
CREATE SERVER bad TYPE 'aws_ssm_parameter' FOREIGN DATA WRAPPER duckdb OPTIONS (region 'us-east-1');
CREATE SERVER bad TYPE 'aws_ssm_parameter' FOREIGN DATA WRAPPER duckdb OPTIONS (allowed_ids 'x', ttl 'soon');
CREATE SERVER bad TYPE 'aws_ssm_parameter' FOREIGN DATA WRAPPER duckdb OPTIONS (allowed_ids 'x', endpoint 'ftp://h');
CREATE SERVER bad TYPE 'aws_ssm_parameter' FOREIGN DATA WRAPPER duckdb OPTIONS (allowed_ids 'x', scope 's3://b');
CREATE SERVER bad TYPE 'file_directory' FOREIGN DATA WRAPPER duckdb OPTIONS (directory 'relative', allowed_ids '*');
-- The source's own credentials: in its user mapping; the server's identity only on the server or for PUBLIC.
CREATE USER MAPPING FOR PUBLIC SERVER vault OPTIONS (key_id 'AKIAEXAMPLE', secret 'example');
CREATE USER MAPPING FOR CURRENT_USER SERVER vault OPTIONS (provider 'credential_chain');
CREATE SERVER lake TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region 'us-east-1', scope 's3://lake');
-- A reference is checked at the DDL; nothing is fetched.
CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'vault');
CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'nope', source_id 'prod/analytics/x');
CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'lake', source_id 'prod/analytics/x');
CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'vault', source_id 'prod/other');
CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'vault', source_id 'prod/analytics/x', source_option 'endpoint');
CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'vault', source_id 'prod/analytics/x', source_option 'nope');
CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'vault', source_id 'prod/shared', source_option 'secret', key_id 'AKIAEXAMPLE');
SELECT srvname, umoptions FROM pg_user_mappings WHERE srvname = 'lake';
DROP SERVER vault, lake CASCADE;
