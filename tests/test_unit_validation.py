"""The catalogue and validation as plain Python (no PostgreSQL needed)."""


import pytest

from duckdb_secrets import catalog, validation
from duckdb_secrets.errors import PgError
from duckdb_secrets.masking import Scrubber

pytestmark = pytest.mark.inprocess


def test_every_sensitive_option_is_refused_on_a_server_in_any_case():
    for name in catalog.SENSITIVE:
        for spelling in (name, name.upper(), name.title()):
            with pytest.raises(PgError) as e:
                validation.validate_options([f"{spelling}=value"], validation.SERVER_CATALOG)
            assert e.value.sqlstate == "42501"
            assert "value" not in e.value.message


def test_option_names_split_at_the_first_equals_sign_like_postgresql():
    # OPTIONS ("secret=abc" 'x') is stored as "secret=abc=x": the name is secret.
    with pytest.raises(PgError) as e:
        validation.validate_options(["secret=abc=x"], validation.SERVER_CATALOG)
    assert e.value.sqlstate == "42501"          # the sensitive option secret, not an unknown "secret=abc"
    assert 'option "secret"' in e.value.message and "abc" not in e.value.message


def test_every_type_provider_option_is_known_to_stage_one():
    for t in catalog.TYPES.values():
        for p in t.providers.values():
            assert set(p.options) <= catalog.ALL_OPTIONS


def test_spec_types_values():
    spec = validation.secret_spec("s", "S3", ["use_ssl=off", "scope=s3://a, s3://b", "extra_http_headers=a=1"],
                                  ["key_id=k", "secret=s"])
    assert spec == {"type": "s3", "provider": "config", "scope": ["s3://a", "s3://b"],
                    "params": {"use_ssl": False, "extra_http_headers": {"a": "1"}, "key_id": "k", "secret": "s"}}


@pytest.mark.parametrize("srvtype", [None, "", "nosuch", "s3, secret 'x'", "S3 "])
def test_type_checks(srvtype):
    if srvtype == "S3 ":
        assert validation.secret_type_name("s", srvtype) == "s3"
        return
    with pytest.raises(PgError) as e:
        validation.secret_type_name("s", srvtype)
    assert e.value.sqlstate == "HV024", e.value.sqlstate
    assert "secret 'x'" not in e.value.message + (e.value.detail or "")


def test_scrubber_masks_plain_and_url_encoded_values():
    scrub = Scrubber(["s3cr/et+1", "ab"])
    assert scrub("x s3cr/et+1 y s3cr%2Fet%2B1 z ab") == "x ******** y ******** z ab"
    assert Scrubber([])("unchanged") == "unchanged"


def test_collision_is_case_insensitive():
    with pytest.raises(PgError) as e:
        validation.check_name_collision("S3_OK", ["s3_ok", "S3_OK"])
    assert e.value.sqlstate == "42710" and "s3_ok" in e.value.message.lower()
    validation.check_name_collision("s3_ok", ["s3_ok", "other"])


def _s3(scope=None, type_="s3"):
    return {"type": type_, "provider": "config", "scope": scope, "params": {}}


def test_covering_server_follows_longest_prefix_rules():
    from duckdb_secrets import storage
    servers = {"wide": ("wide", _s3()), "bucket": ("bucket", _s3(["s3://bucket/a"])),
               "web": ("web", _s3(None, "http"))}
    scopes = storage.server_scopes(servers)
    assert storage.covering_server(_s3(["s3://bucket/a/b"]), scopes) == "bucket"   # narrower: would win
    assert storage.covering_server(_s3(["s3://other"]), scopes) == "wide"          # under s3:// (default)
    assert storage.covering_server(_s3(["gs://x"], "gcs"), scopes) is None          # another type
    assert storage.covering_server(_s3(["https://x/"], "http"), scopes) == "web"    # no scope covers all
    only_bucket = storage.server_scopes({"bucket": ("bucket", _s3(["s3://bucket/a"]))})
    # broader: the server still wins its part
    assert storage.covering_server(_s3(["s3://bucket/"]), only_bucket) is None
    assert storage.covering_server(_s3(), only_bucket) is None
