"""The one redaction policy: each credential format is caught, ordinary text and keys are left alone."""

from __future__ import annotations

import logging

import orjson
import pytest

from callstream.producers.redaction import (
    MAX_REDACT_DEPTH,
    REDACTED,
    TOO_DEEP,
    TRUNCATED,
    ScrubbingFilter,
    is_sensitive_key,
    redact,
    scrub,
    scrub_bounded,
    truncate,
)

# (text, the secret part that must disappear, what must stay)
CAUGHT = [
    ("key sk-abcdefghij0123456789 here", "sk-abcdefghij0123456789", "key "),
    ("sk-proj-AbCdEf0123456789_-xyz", "AbCdEf0123456789", ""),
    ("Incorrect API key provided: sk-proj-abc***wxyz.", "abc***wxyz", "Incorrect API key provided: "),
    ("Incorrect API key provided: sk-test******6789", "sk-test", "provided"),
    ("masked sk-...abcd in the message", "...abcd", "masked "),
    ("anthropic sk-ant-api03-AbCdEfGhIjKlMnOpQrSt-0123", "sk-ant-api03", "anthropic "),
    ("google AIzaSyA1234567890abcdefghijklmnopqrstu", "AIzaSy", "google "),
    ("gh ghp_0123456789abcdefghij0123456789abcdef", "ghp_0123", "gh "),
    ("gh gho_0123456789abcdefghij0123456789abcdef", "gho_0123", "gh "),
    ("gh ghu_0123456789abcdefghij0123456789abcdef", "ghu_0123", "gh "),
    ("gh ghs_0123456789abcdefghij0123456789abcdef", "ghs_0123", "gh "),
    ("gh ghr_0123456789abcdefghij0123456789abcdef", "ghr_0123", "gh "),
    ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_pat_11", "pat "),
    ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "aws "),
    ("aws ASIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE", "aws "),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI", "aws_secret"),
    ('{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}', "wJalrXUtnFEMI", "aws_secret_access_key"),
    ("hf hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "hf_abcdef", "hf "),
    ("xai xai-abcdefghijklmnopqrstuvwxyz0123", "xai-abcdef", "xai "),
    ("groq gsk_abcdefghijklmnopqrstuvwxyz0123", "gsk_abcdef", "groq "),
    ("stripe sk_live_abcdefghij0123", "sk_live_abc", "stripe "),
    ("slack xoxb-0123456789-abcdefghij", "xoxb-0123", "slack "),
    ("header Bearer abc.def-ghi_jkl~mno", "abc.def", "header Bearer "),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA", "Authorization: Basic "),
    ("authorization=Token 0123456789", "0123456789", "authorization=Token "),
    ("Proxy-Authorization: Basic dXNlcjpw", "dXNlcjpw", "Proxy-Authorization: Basic "),
    ("x-api-key: 12345abcdef", "12345abcdef", "x-api-key: "),
    ("api-key: abcdef123", "abcdef123", "api-key: "),
    ("Api-Key=abcdef123", "abcdef123", "Api-Key="),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc_DEF-123 done", "eyJhbGci", "jwt "),
    ("postgres://admin:hunter2@db.internal:5432/app", "hunter2", "postgres://admin:"),
    ("redis://:s3cret@cache:6379", "s3cret", "@cache:6379"),
    ("https://host/v1?key=AIzaXX&x=1", "AIzaXX", "&x=1"),
    ("https://host/v1?token=abc123&x=1", "abc123", "?token="),
    ("https://host/v1?a=1&password=p%40ss", "p%40ss", "?a=1&password="),
    ("login with password=hunter2 failed", "hunter2", "login with password="),
    ("Password: hunter2!", "hunter2", "Password: "),
    ('{"client_secret": "cs-123456"}', "cs-123456", "client_secret"),
    ('{"nested": "{\\"api_key\\": \\"inner-key-1\\"}"}', "inner-key-1", "nested"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY----- ok",
        "MIIEpAIB",
        " ok",
    ),
    ("-----BEGIN PRIVATE KEY-----\nMIIEpAIBAAKCAQEA cut off", "MIIEpAIB", ""),
    # issue 21: formats that used to pass
    ("slack app xapp-1-A0123456789-0123456789012-abcdef0123456789", "A0123456789", "slack app "),
    ("slack xoxe-1-abcdefghij0123456789", "xoxe-1-abc", "slack "),
    (
        "posting to https://hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdefghijklmnopqrstuvwx failed",
        "T0123ABCD/B0123ABCD",
        "https://hooks.slack.com/services/",
    ),
    ("stripe whsec_abcdefghijklmnop0123456789ABCD", "whsec_abc", "stripe "),
    (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0123456789\n-----END PGP PRIVATE KEY BLOCK----- ok",
        "lQOYBF",
        " ok",
    ),
    ("aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in the log", "wJalrXUtnFEMI", "aws secret "),
    (
        "session IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD0123456789abcdef end",
        "IQoJb3JpZ2lu",
        " end",
    ),
    ("old session FwoGZXIvYXdzEJr//////////wEaDM0123456789abcdef end", "FwoGZXIvYXdz", " end"),
    ("replicate r8_0123456789abcdefghijABCDEFGHIJ01234", "r8_0123", "replicate "),
    ("pplx pplx-0123456789abcdefghijABCDEFGHIJ0123456789abcdef", "pplx-0123", "pplx "),
    ("gitlab glpat-0123456789abcdefABCD", "glpat-0123", "gitlab "),
    (
        "sendgrid SG.abcdefghijklmnopqrstuv.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg",
        "SG.abcdef",
        "sendgrid ",
    ),
    ("redirected to https://app/callback?code=4/0AbCdEf123&state=xyz", "4/0AbCdEf123", "&state=xyz"),
    ("https://app/callback?state=1&code=SplxlOBeZQQYbYS6WxSbIA", "SplxlOBeZQQYbYS6WxSbIA", "state=1&code="),
    ("amqp://svc:pa/ss/word@broker:5672/vhost", "pa/ss/word", "amqp://svc:"),
    ("header Bearer abc12", "abc12", "header Bearer "),
    (
        "Azure OpenAI rejected key 0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef",
        "key ",
    ),
    ("subscription key: 0123456789ABCDEF0123456789ABCDEF.", "0123456789ABCDEF", "subscription key: "),
    ("openai_key=abc-123-def", "abc-123-def", "openai_key="),
    ('{"azure_key": "azk-123456"}', "azk-123456", "azure_key"),
    ("x-functions-key: fk0123456789", "fk0123456789", "x-functions-key: "),
    ("creds=user1:pa55", "user1:pa55", "creds="),
    ("set sessionid=abc123def; other=1", "abc123def", "sessionid="),
    ("JSESSIONID=0123ABCD4567EF", "0123ABCD4567EF", "JSESSIONID="),
    (
        '[{"name": "x-api-key", "value": "hk-0123456"}, {"name": "accept", "value": "json"}]',
        "hk-0123456",
        '"accept", "value": "json"',
    ),
    ('{"key": "Authorization", "value": "Token abc123"}', "abc123", "Authorization"),
]

LEFT_ALONE = [
    "max_tokens=100 and a task-list",
    "Error: rate limit reached for gpt-4.1 at 12:30:45",
    "see https://example.com/a:b and http://host:8080/path",
    "tokenizer=cl100k keyword=x monkey=y input_tokens: 5",
    "The bearer of bad news",
    "sk-learn is a library; disk-space is low; task-runner",
    "status: 429, type: rate_limit_exceeded",
    "user@example.com wrote to ops@host",
    '{"max_tokens": 100, "model": "gpt-4.1", "token_count": 7}',
    "password_required: true",
    'token: null, "secret": ""',
    "error code=429 after 3 tries",
    "event 0123456789abcdef0123456789abcdef failed; trace 4bf92f3577b34da6a3ce929d0e0e4736",
    "commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 built",
    "missing Bearer token in the request; use the Bearer scheme",
    '[{"name": "accept", "value": "application/json"}]',
    "see https://host:8080/path?email=a",
]


@pytest.mark.parametrize(("text", "secret", "kept"), CAUGHT)
def test_credential_formats_are_caught(text: str, secret: str, kept: str) -> None:
    clean = scrub(text)
    assert secret not in clean, clean
    assert REDACTED in clean and kept in clean


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub(text) == text


def test_json_stays_json_after_scrubbing() -> None:
    text = '{"api_key": "abc", "max_tokens": 100, "headers": {"x-api-key": "k-123456"}}'
    doc = orjson.loads(scrub(text))
    assert doc == {"api_key": REDACTED, "max_tokens": 100, "headers": {"x-api-key": REDACTED}}


def test_registered_secrets_are_replaced_anywhere() -> None:
    assert scrub("key=x my-gateway-key-123 and again my-gateway-key-123", ["my-gateway-key-123"]) == (
        f"key={REDACTED} {REDACTED} and again {REDACTED}"
    )
    assert scrub("nothing here", [""]) == "nothing here"


def test_scrubbing_is_idempotent() -> None:
    for text, _, _ in CAUGHT:
        once = scrub(text)
        assert scrub(once) == once


@pytest.mark.parametrize(
    "key",
    [
        "token", "pwd", "passwd", "password", "db_pass", "api_key", "apikey", "apiKey", "APIKey", "x-api-key",
        "X-API-KEY", "auth", "session_token", "sessionToken", "refresh_token", "id_token", "accesstoken",
        "private_key", "privateKey", "client_secret", "Authorization", "headers.Authorization", "cookie",
        "Set-Cookie", "credentials", "aws_secret_access_key", "AccessKey", "Ocp-Apim-Subscription-Key",
        "signature", "sig", "jwt", "bearer", "secret_key", "passphrase",
    ],
)  # fmt: skip
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens", "input_tokens", "output_tokens", "tokens", "tokenizer", "keyword", "monkey", "keys",
        "token_count", "auth_type", "author", "authority", "cache_key", "partition_key", "idempotency_key",
        "session_id", "user_id", "client_ip", "passenger", "bypass", "oauth", "model", "key_count",
        "password_required", "secretary",
    ],
)  # fmt: skip
def test_ordinary_keys(key: str) -> None:
    assert not is_sensitive_key(key)


def test_redact_by_key_and_pattern_and_depth() -> None:
    doc = {
        "api_key": "plain-looking",
        "credentials": {"user": "u", "note": "x"},
        "list": ["Bearer abcdefghijkl", {"token": 5}],
        "sk-proj-KEYASKEY0123456789": 1,
        "n": 1.5,
        "ok": None,
    }
    clean = redact(doc)
    assert clean == {
        "api_key": REDACTED,
        "credentials": REDACTED,
        "list": [f"Bearer {REDACTED}", {"token": REDACTED}],
        REDACTED: 1,
        "n": 1.5,
        "ok": None,
    }
    deep: dict[str, object] = {}
    cursor = deep
    for _ in range(1_000):
        cursor["x"] = {}
        cursor = cursor["x"]  # type: ignore[assignment]
    text = orjson.dumps(redact(deep)).decode()
    assert text.count('"x"') == MAX_REDACT_DEPTH and TOO_DEEP in text


def test_scrub_bounded_never_leaves_the_head_of_a_secret_cut_in_two() -> None:
    text = "a" * 95 + " sk-proj-CANARY0123456789" + "b" * 10_000
    clean = scrub_bounded(text, 100)
    assert len(clean) == 100 and "sk-proj" not in clean and "CAN" not in clean
    assert scrub_bounded("short", 100) == "short"


def test_log_filter_scrubs_library_messages() -> None:
    record = logging.LogRecord(
        "lib", logging.WARNING, __file__, 1, "connect %s", ("redis://u:pw1234@h",), None
    )
    assert ScrubbingFilter().filter(record)
    assert record.getMessage() == f"connect redis://u:{REDACTED}@h"


# ---- exact shapes and limits ----


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("Authorization: abcdef123", f"Authorization: {REDACTED}"),
        ("'password': 'hunter2'", f"'password': '{REDACTED}'"),
        ('\\"password\\": \\"hunter2\\"', f'\\"password\\": \\"{REDACTED}\\"'),
        ("password=true token=false secret=null", "password=true token=false secret=null"),
        ("password: TRUE", f"password: {REDACTED}"),
        ('{"token": "[redacted]"}', '{"token": "[redacted]"}'),
    ],
)
def test_exact_replacements(text: str, clean: str) -> None:
    assert scrub(text) == clean


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [("count_token", True), ("token_count_password", True), ("key_for_api", False), ("api_key_count", False)],
)
def test_qualifiers_apply_to_the_word_they_follow(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


def test_truncate_limits() -> None:
    assert truncate("abcde", 5) == "abcde"
    assert truncate("abcdefghijklmnopqrstuvwxyz", 3) == TRUNCATED  # the marker alone, nothing of the text
    assert truncate("a" * 30, 20) == "a" * (20 - len(TRUNCATED)) + TRUNCATED


def test_scrub_bounded_keeps_a_text_under_its_limit_whole() -> None:
    text = "x" * 1_500 + " sk-proj-CANARY0123456789"
    assert scrub_bounded(text, 2_000) == "x" * 1_500 + f" {REDACTED}"


def test_redact_uses_registered_secrets_everywhere_and_scrubs_other_objects() -> None:
    secret = "registered-value-1"
    doc = {f"k {secret}": [f"v {secret}", {"n": f"deep {secret}"}], "obj": ValueError(f"boom {secret}")}
    assert redact(doc, [secret]) == {
        f"k {REDACTED}": [f"v {REDACTED}", {"n": f"deep {REDACTED}"}],
        "obj": f"ValueError('boom {REDACTED}')",
    }
    assert redact([[[["x"]]]]) == [[[["x"]]]]
    deep_list: list[object] = ["leaf"]
    for _ in range(MAX_REDACT_DEPTH - 1):
        deep_list = [deep_list]
    assert TOO_DEEP not in orjson.dumps(redact(deep_list)).decode()  # exactly at the limit: kept
    assert TOO_DEEP in orjson.dumps(redact([deep_list])).decode()


def test_log_filter_survives_a_broken_record() -> None:
    record = logging.LogRecord("lib", logging.WARNING, __file__, 1, "%d items", ("not a number",), None)
    assert ScrubbingFilter().filter(record)
    assert (record.msg, record.args) == ("[log message could not be scrubbed]", None)
    assert record.getMessage() == "[log message could not be scrubbed]"
    ok = logging.LogRecord("lib", logging.WARNING, __file__, 1, "plain %s", ("text",), None)
    ScrubbingFilter().filter(ok)
    assert (ok.msg, ok.args) == ("plain text", None)


def test_unquoted_values_are_replaced_whole() -> None:
    assert scrub("password=Xylophone1 next") == f"password={REDACTED} next"


def test_scrub_bounded_reads_enough_of_a_long_text() -> None:
    text = "x" * 1_500 + " sk-proj-CANARY0123456789 " + "y" * 3_000
    clean = scrub_bounded(text, 2_000)
    assert len(clean) == 2_000 and clean.startswith("x" * 1_500 + f" {REDACTED} ")


def test_redact_cuts_long_object_texts() -> None:
    class Long:
        def __repr__(self) -> str:
            return "z" * 70_000

    assert redact(Long()) == "z" * 65_536


def test_no_field_of_callstreams_own_contracts_reads_as_a_credential() -> None:
    """Dead letters of enriched events and aggregates are redacted by key too: a measurement such as
    cost_per_token_usd or time_to_first_token_ms must survive."""
    from callstream.streams.contract import EnrichedCallEvent, TokenSums, WindowAggregate

    for model in (EnrichedCallEvent, WindowAggregate, TokenSums):
        assert [name for name in model.model_fields if is_sensitive_key(name)] == [], model.__name__


def test_a_json_field_named_key_is_not_a_credential_but_a_key_parameter_is() -> None:
    """Aggregates and alert events have a "key" (the model, the user): dead letters keep it."""
    assert (
        scrub('{"dimension":"model","key":"gemini-2.5-flash"}')
        == '{"dimension":"model","key":"gemini-2.5-flash"}'
    )
    assert "abc123secretvalue" not in scrub("GET https://api.example/v1?key=abc123secretvalue&x=1")
    assert "abc123secretvalue" not in scrub("key=abc123secretvalue")
    assert "abc123secretvalue" not in scrub('{"api_key": "abc123secretvalue"}')


def test_name_value_pairs_naming_a_credential_hide_their_value() -> None:
    har = {
        "headers": [
            {"name": "X-Api-Key", "value": "hk-0123456"},
            {"name": "Accept", "value": "application/json"},
            {"key": "Authorization", "value": "Token abc123"},
        ]
    }
    assert redact(har) == {
        "headers": [
            {"name": "X-Api-Key", "value": REDACTED},
            {"name": "Accept", "value": "application/json"},
            {"key": "Authorization", "value": REDACTED},
        ]
    }


def test_new_key_names_are_sensitive_and_ordinary_ones_stay() -> None:
    for key in ("openai_key", "azure_key", "AnthropicKey", "x-functions-key", "creds", "sessionid",
                "JSESSIONID", "api_key_part1", "key_prefix", "key_2"):  # fmt: skip
        assert is_sensitive_key(key), key
    for key in ("session_id", "cache_key", "partition_key", "code", "error_code", "monkey", "keyword"):
        assert not is_sensitive_key(key), key


def test_a_registered_secret_split_across_two_fields_is_caught_in_each() -> None:
    secret = "azure-0123456789abcdef0123456789abcdef"
    halves = {"k1": secret[:19], "k2": secret[19:]}
    assert redact(halves, (secret,)) == {"k1": REDACTED, "k2": REDACTED}
    assert scrub("abcdefg", (secret,)) == "abcdefg"  # shorter than a piece: could be anything
