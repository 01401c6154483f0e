-- http (proxies, bearer tokens, headers for plain http/https reads) and huggingface.
\set SHOW_CONTEXT never
SET client_min_messages = warning;   -- the same output on a fresh and an upgraded install
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

CREATE SERVER web TYPE 'http' FOREIGN DATA WRAPPER duckdb
  OPTIONS (scope 'https://example.com/api', http_proxy 'proxy.local:3128', verify_ssl 'false',
           extra_http_headers 'X-Client=duckdb, X-Env=test');
CREATE USER MAPPING FOR CURRENT_USER SERVER web OPTIONS (bearer_token 'regress-http-1', http_proxy_password 'regress-http-2');
CREATE SERVER web_env TYPE 'http' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'env', scope 'https://other.example');
CREATE SERVER hf TYPE 'huggingface' FOREIGN DATA WRAPPER duckdb;
CREATE USER MAPPING FOR CURRENT_USER SERVER hf OPTIONS (token 'regress-http-3');
CREATE SERVER hf_chain TYPE 'huggingface' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'credential_chain', scope 'hf://datasets/org');

-- http_proxy_password is shown in clear by DuckDB itself; never here.
SELECT name, type, provider, scope, secret_string FROM duckdb.secrets() ORDER BY name;

CREATE SERVER bad TYPE 'http' FOREIGN DATA WRAPPER duckdb OPTIONS (extra_http_headers 'no-value');
CREATE SERVER bad TYPE 'huggingface' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'credential_chain', region 'x');
CREATE SERVER bad TYPE 'http' FOREIGN DATA WRAPPER duckdb OPTIONS (http_proxy_password 'x');

DROP SERVER web, web_env, hf, hf_chain CASCADE;
