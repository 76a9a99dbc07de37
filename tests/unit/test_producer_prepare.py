"""The safety rules applied to every recorded event: secrets, bodies, metadata caps."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from callstream.errors import ConfigurationError
from callstream.producers.contract import MAX_METADATA_KEYS, RawCallEvent
from callstream.producers.deadletter import dead_letter
from callstream.producers.prepare import (
    DROPPED_KEY,
    MAX_METADATA_DEPTH,
    METADATA_TRUNCATED_KEY,
    REDACTED,
    Policy,
    build_event,
    pseudonym,
    safe_original,
    sanitize_metadata,
    scrub,
)
from callstream.producers.settings import ProducerSettings
from callstream.streams.contract import DeadLetter

START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def item(**fields: object) -> dict[str, object]:
    return {"request_model": "gpt-4.1", "duration_ms": 12.5, "start_time": START} | fields


def test_start_time_becomes_utc_event_time() -> None:
    wire = build_event(item(), Policy())
    assert RawCallEvent.model_validate(wire).event_time == datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert wire["event_time"] == "2025-03-01T12:00:00.000000Z"


def test_api_keys_are_scrubbed_from_error_messages_and_metadata() -> None:
    policy = Policy(secrets=frozenset({"my-gateway-key-123"}))
    wire = build_event(
        item(
            error_message=(
                "Incorrect API key provided: sk-proj-abc***wxyz; Bearer eyJhbGciOi.x; key my-gateway-key-123"
            ),
            metadata={
                "Authorization": "Bearer abc",
                "x-api-key": "k",
                "note": "url?api_key=zzz&x=1",
                "plain": "ok",
            },
        ),
        policy,
    )
    text = str(wire)
    for secret in ("sk-proj-abc", "eyJhbGciOi", "my-gateway-key-123", "zzz", "Bearer abc"):
        assert secret not in text
    assert wire["metadata"]["Authorization"] == REDACTED
    assert wire["metadata"]["x-api-key"] == REDACTED
    assert wire["metadata"]["plain"] == "ok"


def test_error_message_is_truncated_with_a_marker() -> None:
    wire = build_event(item(error_message="e" * 5000), Policy(error_message_max_chars=100))
    assert len(wire["error_message"]) == 100
    assert wire["error_message"].endswith("…[truncated]")


def test_bodies_are_dropped_unless_enabled() -> None:
    fields = item(request_body=[{"role": "user", "content": "secret plan"}], response_body="the answer")
    assert "secret plan" not in str(build_event(dict(fields), Policy()))
    assert "the answer" not in str(build_event(dict(fields), Policy()))
    wire = build_event(dict(fields), Policy(record_bodies=True, body_max_chars=200))
    assert "secret plan" in wire["metadata"]["request_body"]
    assert wire["metadata"]["response_body"] == "the answer"


def test_metadata_is_flattened_to_scalars() -> None:
    clean = sanitize_metadata({"a": {"b": 1, "c": {"d": True}}, "l": [1, 2], "n": None}, Policy())
    assert clean == {"a.b": 1, "a.c.d": True, "l": "[1,2]", "n": None}


def test_oversized_metadata_is_capped_with_a_clear_marker() -> None:
    many = {f"k{i}": "v" * 100 for i in range(200)}
    clean = sanitize_metadata(many, Policy(metadata_max_bytes=2048))
    assert METADATA_TRUNCATED_KEY in clean
    kept = len(clean) - 1
    assert clean[METADATA_TRUNCATED_KEY].startswith(f"{200 - kept} of 200 keys dropped")
    assert len(str(clean)) < 2048 + 200
    # also the key-count cap of the contract
    clean = sanitize_metadata({f"k{i}": i for i in range(500)}, Policy(metadata_max_bytes=1_000_000))
    assert len(clean) == MAX_METADATA_KEYS
    RawCallEvent.model_validate(build_event(item(metadata={f"k{i}": i for i in range(500)}), Policy()))


def test_long_metadata_values_are_truncated() -> None:
    clean = sanitize_metadata({"prompt_name": "x" * 5000}, Policy(metadata_value_max_chars=64))
    assert len(clean["prompt_name"]) == 64 and clean["prompt_name"].endswith("…[truncated]")


def test_service_and_environment_defaults() -> None:
    wire = build_event(item(), Policy(service_name="bot", environment="prod"))
    assert (wire["service_name"], wire["environment"]) == ("bot", "prod")
    wire = build_event(item(service_name="other"), Policy(service_name="bot"))
    assert wire["service_name"] == "other"


def test_invalid_items_raise() -> None:
    with pytest.raises(ValidationError):
        build_event(item(duration_ms=-1), Policy())
    with pytest.raises(ValueError, match="neither event_time nor start_time"):
        build_event({"request_model": "m", "duration_ms": 1}, Policy())


def test_scrub_leaves_ordinary_text_alone() -> None:
    assert scrub("max_tokens=100 and a task-list") == "max_tokens=100 and a task-list"


def test_dead_letter_matches_the_stream_contract() -> None:
    letter = dead_letter("invalid event: x", "producer", {"request_model": "m"}, batch_index=3)
    parsed = DeadLetter.model_validate(letter)
    assert parsed.stage == "producer" and parsed.batch_index == 3


# ---- every string field, hostile metadata ----


def test_every_string_field_is_scrubbed() -> None:
    canary = "sk-proj-CANARY0123456789abcdef"
    wire = build_event(
        item(
            request_model=f"gpt {canary}",
            response_model=canary,
            provider_name=canary,
            service_name=canary,
            environment=canary,
            session_id=canary,
            user_id=canary,
            error_type=canary,
            server_address=canary,
            metadata={canary: "v", "note": canary},
        ),
        Policy(),
    )
    assert "CANARY" not in str(wire)
    assert wire["request_model"] == f"gpt {REDACTED}"


def test_deep_and_odd_metadata_is_flattened_without_failing() -> None:
    deep: dict[str, object] = {}
    cursor = deep
    for _ in range(1_000):
        cursor["x"] = {}
        cursor = cursor["x"]  # type: ignore[assignment]
    odd = {"deep": deep, "nan": float("nan"), "inf": float("-inf"), "big": 2**80, "obj": object()}
    clean = sanitize_metadata(odd, Policy())
    assert clean["deep." + ".".join(["x"] * 7)] == "[nested deeper than 8 levels]"
    assert (clean["nan"], clean["inf"], clean["big"]) == ("nan", "-inf", str(2**80))
    assert str(clean["obj"]).startswith('"<object object')
    RawCallEvent.model_validate(build_event(item(metadata=odd), Policy()))


def test_metadata_that_is_not_an_object_is_invalid() -> None:
    with pytest.raises(ValueError, match="metadata must be a JSON object, got list"):
        build_event(item(metadata=[1, 2]), Policy())


def test_start_time_out_of_range_is_a_readable_error() -> None:
    with pytest.raises(ValueError, match="start_time 1e\\+20 is not a time in range"):
        build_event(item(start_time=1e20), Policy())


def test_megabyte_strings_are_bounded_before_validation() -> None:
    wire = build_event(item(error_message="x" * 5_000_000 + " sk-proj-CANARY0123456789"), Policy())
    assert len(wire["error_message"]) == 500
    with pytest.raises(ValidationError, match="request_model"):
        build_event(item(request_model="m" * 10_000), Policy())


# ---- the privacy option ----


def test_privacy_keep_hash_drop() -> None:
    fields = item(user_id="alice", metadata={"client_ip": "203.0.113.7", "region": "eu"})
    kept = build_event(dict(fields), Policy())
    assert (kept["user_id"], kept["metadata"]["client_ip"]) == ("alice", "203.0.113.7")

    hashed = build_event(dict(fields), Policy(user_id_mode="hash", client_ip_mode="hash", hash_key=b"k1"))
    again = build_event(dict(fields), Policy(user_id_mode="hash", client_ip_mode="hash", hash_key=b"k1"))
    other_key = build_event(dict(fields), Policy(user_id_mode="hash", hash_key=b"k2"))
    assert hashed["user_id"] == again["user_id"] == pseudonym("alice", b"k1") != other_key["user_id"]
    assert len(hashed["user_id"]) == 32 and "alice" not in str(hashed)
    assert hashed["metadata"]["client_ip"] == pseudonym("203.0.113.7", b"k1")
    # independently computed: HMAC-SHA256 of the value with the key, hex, first 32 characters
    assert pseudonym("alice", b"k1") == hmac.new(b"k1", b"alice", hashlib.sha256).hexdigest()[:32]

    dropped = build_event(dict(fields), Policy(user_id_mode="drop", client_ip_mode="drop"))
    assert "user_id" not in dropped and dropped["metadata"] == {"region": "eu"}


def test_hash_without_a_key_is_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match="CALLSTREAM_PRODUCER_PRIVACY_HASH_KEY"):
        Policy(user_id_mode="hash")
    with pytest.raises(ValidationError, match="CALLSTREAM_PRODUCER_USER_ID_MODE=hash needs"):
        ProducerSettings(user_id_mode="hash")
    settings = ProducerSettings(client_ip_mode="hash", privacy_hash_key="s3cret-key")  # type: ignore[arg-type]
    assert Policy.from_settings(settings).hash_key == b"s3cret-key"
    assert "s3cret-key" not in repr(settings) and "s3cret-key" not in repr(Policy.from_settings(settings))


def test_registered_secrets_are_a_bounded_lru() -> None:
    policy = Policy()
    for i in range(100):
        policy = policy.with_secrets([f"secret-{i:03d}"])
    assert len(policy.secrets) == 64 and policy.secrets[0] == "secret-036"
    assert policy.with_secrets(["secret-099"]) is policy  # already the most recent: no new object
    touched = policy.with_secrets(["secret-036"])
    assert touched.secrets[-1] == "secret-036" and len(touched.secrets) == 64
    assert policy.with_secrets(["short", ""]) is policy  # under 6 characters: not registered


def test_policy_from_settings_carries_every_safety_setting() -> None:
    settings = ProducerSettings(
        record_bodies=True,
        body_max_chars=100,
        metadata_max_bytes=1_000,
        metadata_value_max_chars=50,
        error_message_max_chars=70,
        service_name="checkout",
        environment="staging",
        user_id_mode="hash",
        client_ip_mode="drop",
        privacy_hash_key="k" * 32,  # type: ignore[arg-type]
    )
    assert Policy.from_settings(settings, ["sk-live-123456"]) == Policy(
        record_bodies=True,
        body_max_chars=100,
        metadata_max_bytes=1_000,
        metadata_value_max_chars=50,
        error_message_max_chars=70,
        service_name="checkout",
        environment="staging",
        secrets=("sk-live-123456",),
        user_id_mode="hash",
        client_ip_mode="drop",
        hash_key=b"k" * 32,
    )


def test_a_key_for_hashing_is_asked_for_by_name_and_kind() -> None:
    with pytest.raises(ConfigurationError) as refused:
        Policy(user_id_mode="hash", client_ip_mode="hash")
    assert str(refused.value) == (
        "user_id and client_ip mode 'hash' needs a key: set CALLSTREAM_PRODUCER_PRIVACY_HASH_KEY "
        "(a long random secret, the same in every process whose events are aggregated together)"
    )


def test_registering_secrets_skips_only_the_short_and_the_repeated() -> None:
    """Six characters is the shortest secret registered; a skipped one never ends the list."""
    assert Policy().with_secrets(["", "12345", "123456", "123456", "abcdefg"]).secrets == (
        "123456",
        "abcdefg",
    )


# ---- what leaves in a dead letter; exact limits ----


def test_safe_original_applies_privacy_and_redaction() -> None:
    policy = Policy(user_id_mode="hash", client_ip_mode="hash", hash_key=b"k", secrets=("my-secret-value",))
    item = {
        "event_id": "e1",
        "_deferred": print,
        "request_body": "the prompt",
        "user_id": "alice",
        "metadata": {"client_ip": "203.0.113.7", "req": {"CLIENT_IP": "198.51.100.1", "n": 1}, "k": "v"},
        "error_message": "with my-secret-value",
        7: "non-text key",
    }
    safe = safe_original(item, policy)
    assert safe == {
        "event_id": "e1",
        "user_id": pseudonym("alice", b"k"),
        "metadata": {
            "client_ip": pseudonym("203.0.113.7", b"k"),
            "req.CLIENT_IP": pseudonym("198.51.100.1", b"k"),
            "req.n": 1,
            "k": "v",
        },
        "error_message": f"with {REDACTED}",
        DROPPED_KEY: ["request_body", "7"],  # named, never kept; the producer's own `_deferred` left out
    }
    dropped = safe_original(item, Policy(user_id_mode="drop", client_ip_mode="drop"))
    assert "user_id" not in dropped and dropped["metadata"] == {"req.n": 1, "k": "v"}
    assert dropped["event_id"] == "e1" and dropped[DROPPED_KEY] == ["request_body", "7"]
    kept = safe_original(item, Policy(record_bodies=True))
    assert "request_body" not in kept and kept["user_id"] == "alice" and "_deferred" not in kept
    assert kept["metadata"]["client_ip"] == "203.0.113.7"


def test_a_dead_letter_keeps_only_the_contracts_fields_and_names_the_rest() -> None:
    prompt, answer = "PROMPT-TEXT tell me a secret", "ANSWER-TEXT here it is"
    item = {
        "event_id": "e1",
        "event_time": "not a time",
        "request_model": "gpt-4.1",
        "messages": [{"role": "user", "content": prompt}],
        "response": {"content": answer},
        "request_model_extra": prompt,
        "error_message": {"content": prompt},  # a known field, but not text: dropped too
        "metadata": {"note": "x" * 5_000, "request_body": "y" * 5_000},
    }
    safe = safe_original(item, Policy(metadata_value_max_chars=100))
    assert safe[DROPPED_KEY] == ["messages", "response", "request_model_extra", "error_message"]
    assert {k: safe[k] for k in ("event_id", "event_time", "request_model")} == {
        "event_id": "e1",
        "event_time": "not a time",
        "request_model": "gpt-4.1",
    }
    assert len(safe["metadata"]["note"]) == 100 and len(safe["metadata"]["request_body"]) == 100
    assert "PROMPT-TEXT" not in str(safe) and "ANSWER-TEXT" not in str(safe)
    letter = dead_letter("invalid event", "producer", safe)
    assert "PROMPT-TEXT" not in letter["original"] and '"callstream.dropped"' in letter["original"]
    many = safe_original({f"k{i}": i for i in range(100)}, Policy())
    assert many[DROPPED_KEY][:2] == ["k0", "k1"] and many[DROPPED_KEY][-1] == "…and 68 more"
    assert len(many) == 1


def test_safe_original_metadata_beyond_the_depth_limit_is_a_marker() -> None:
    def wrapped(levels: int) -> dict[str, object]:
        doc: dict[str, object] = {"client_ip": "10.0.0.1", "n": 1}
        for _ in range(levels):
            doc = {"x": doc}
        return doc

    policy = Policy(client_ip_mode="drop")
    at_limit = safe_original({"metadata": wrapped(MAX_METADATA_DEPTH - 1)}, policy)["metadata"]
    assert at_limit == {".".join(["x"] * (MAX_METADATA_DEPTH - 1)) + ".n": 1}
    beyond = safe_original({"metadata": wrapped(MAX_METADATA_DEPTH)}, policy)["metadata"]
    assert "10.0.0.1" not in str(beyond)


def test_metadata_integers_within_64_bits_stay_numbers() -> None:
    values = {"lo": -(2**63), "hi": 2**63 - 1, "over": 2**63, "under": -(2**63) - 1}
    clean = sanitize_metadata(values, Policy(metadata_max_bytes=10_000))
    assert clean == {"lo": -(2**63), "hi": 2**63 - 1, "over": str(2**63), "under": str(-(2**63) - 1)}
    deep: list[object] = []
    cursor = deep
    for _ in range(300):
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    assert sanitize_metadata({"deep": deep}, Policy())["deep"] == "[unencodable list]"


def test_metadata_byte_budget_is_exact() -> None:
    # budget = metadata_max_bytes - 96; the map costs 2, each entry len(key) + len(JSON value) + 4
    entry = len("k0") + len('"' + "v" * 20 + '"') + 4
    fits = 10
    max_bytes = 96 + 2 + fits * entry
    values = {f"k{i}": "v" * 20 for i in range(fits + 1)}
    clean = sanitize_metadata(values, Policy(metadata_max_bytes=max_bytes))
    assert len(clean) == fits + 1 and clean[METADATA_TRUNCATED_KEY].startswith("1 of 11 keys dropped")
    exact = sanitize_metadata(dict(list(values.items())[:fits]), Policy(metadata_max_bytes=max_bytes))
    assert METADATA_TRUNCATED_KEY not in exact and len(exact) == fits
    short = sanitize_metadata(dict(list(values.items())[:fits]), Policy(metadata_max_bytes=max_bytes - 1))
    assert short[METADATA_TRUNCATED_KEY].startswith("1 of 10 keys dropped")


def test_key_count_cap_leaves_room_for_bodies() -> None:
    many = {f"k{i}": i for i in range(100)}
    wire = build_event(
        item(metadata=many, request_body="p", response_body="r"),
        Policy(record_bodies=True, metadata_max_bytes=100_000),
    )
    metadata = wire["metadata"]
    assert (
        len(metadata) == MAX_METADATA_KEYS
        and metadata["request_body"] == "p"
        and metadata["response_body"] == "r"
    )
    assert metadata[METADATA_TRUNCATED_KEY].startswith(f"{100 - (MAX_METADATA_KEYS - 3)} of 100 keys dropped")
    with pytest.raises(ValueError, match=r"^metadata must be a JSON object, got list$"):
        build_event(item(metadata=[1], request_body="p"), Policy(record_bodies=True))


def test_client_ip_is_found_as_the_last_part_of_a_flattened_key() -> None:
    metadata = {"req": {"edge": {"client_ip": "10.0.0.1"}}, "client_ip_note": "kept", "client_ip.v": "kept"}
    clean = sanitize_metadata(metadata, Policy(client_ip_mode="drop"))
    assert clean == {"client_ip_note": "kept", "client_ip.v": "kept"}


def test_registered_secrets_are_scrubbed_from_every_place() -> None:
    secret = "my-registered-secret"
    policy = Policy(record_bodies=True, secrets=(secret,), environment="prod")
    wire = build_event(
        item(
            request_model=f"m {secret}",
            metadata={f"key {secret}": "x", "note": f"value {secret}"},
            request_body=f"body {secret}",
            error_message=f"error {secret}",
        ),
        policy,
    )
    assert secret not in str(wire) and wire["environment"] == "prod"
    assert build_event(item(environment="dev"), policy)["environment"] == "dev"
    assert "environment" not in build_event(item(), Policy())


def test_exact_reasons() -> None:
    with pytest.raises(ValueError, match=r"^event has neither event_time nor start_time$"):
        build_event({"request_model": "m", "duration_ms": 1}, Policy())
    with pytest.raises(ValueError, match=f"^start_time {'9' * 40} is not a time in range$"):
        build_event(item(start_time="9" * 60), Policy())


def test_pseudonym_of_text_that_is_not_valid_unicode() -> None:
    assert (
        pseudonym("\ud800", b"k")
        == hmac.new(b"k", "\ud800".encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:32]
    )


def test_safe_original_drops_objects_outside_the_contract_and_metadata_that_is_not_one() -> None:
    safe = safe_original(
        {"extra": {"client_ip": "10.0.0.1", "n": 1}, "metadata": "text"}, Policy(client_ip_mode="drop")
    )
    assert safe == {DROPPED_KEY: ["extra", "metadata"]}


def test_a_body_the_caller_set_in_metadata_is_scrubbed_and_bounded_like_a_recorded_one() -> None:
    policy = Policy(record_bodies=True, body_max_chars=64)
    caller = {"request_body": "password=hunter2 sk-proj-abcdefghijklmnop0123 " + "x" * 1_000}
    wire = build_event(item(metadata=caller, response_body="the answer"), policy)
    body = wire["metadata"]["request_body"]
    assert "hunter2" not in body and "sk-proj-abc" not in body and len(body) == 64
    assert wire["metadata"]["response_body"] == "the answer"


def test_a_header_pair_in_metadata_hides_its_value_once_flattened() -> None:
    clean = sanitize_metadata(
        {
            "header": {"name": "x-api-key", "value": "hk-0123456"},
            "list": [{"name": "Cookie", "value": "c=1"}],
        },
        Policy(),
    )
    assert clean["header.name"] == "x-api-key" and clean["header.value"] == REDACTED
    assert "c=1" not in str(clean["list"]) and REDACTED in str(clean["list"])


@pytest.mark.parametrize(
    "key",
    ["ip", "IP", "ip_address", "client_ip", "clientIp", "x-forwarded-for", "X-Forwarded-For", "x-real-ip",
     "X-Real-IP", "remote_addr", "req.clientIP", "cf-connecting-ip"],
)  # fmt: skip
def test_every_ip_like_key_follows_the_client_ip_option(key: str) -> None:
    metadata = {key: "203.0.113.7", "zip": "12345", "tip": "x"}
    assert sanitize_metadata(metadata, Policy(client_ip_mode="drop")) == {"zip": "12345", "tip": "x"}
    hashed = sanitize_metadata(metadata, Policy(client_ip_mode="hash", hash_key=b"k"))
    assert hashed[key] == pseudonym("203.0.113.7", b"k")
    assert sanitize_metadata(metadata, Policy())[key] == "203.0.113.7"  # kept by default, as documented


def test_an_e_mail_in_user_id_is_pseudonymised_by_default_and_kept_only_when_asked() -> None:
    mail = "Alice.Smith+llm@example.co.uk"
    keyed = build_event(item(user_id=mail), Policy(hash_key=b"k"))
    assert keyed["user_id"] == pseudonym(mail, b"k")
    assert build_event(item(user_id="user-42"), Policy(hash_key=b"k"))["user_id"] == "user-42"
    keyless = build_event(item(user_id=f"tenant/{mail}"), Policy())
    assert "user_id" not in keyless and "example.co.uk" not in str(keyless)
    assert keyless["metadata"]["callstream.user_id"].startswith("an e-mail address, dropped")
    assert build_event(item(user_id=mail), Policy(user_id_mode="keep"))["user_id"] == mail
    assert ProducerSettings().user_id_mode == "hash_email"
    assert safe_original({"user_id": mail}, Policy(hash_key=b"k"))["user_id"] == pseudonym(mail, b"k")


def test_the_privacy_summary_says_what_is_kept() -> None:
    lines = ProducerSettings().privacy_summary()
    assert lines[0].startswith("user_id: kept, except one holding an e-mail address: dropped")
    assert "x-forwarded-for" in lines[1] and "kept as given" in lines[1]
    assert "never recorded" in lines[2]
    hashed = ProducerSettings(client_ip_mode="drop", privacy_hash_key="k" * 32, record_bodies=True)  # type: ignore[arg-type]
    assert "keyed pseudonym" in hashed.privacy_summary()[0] and "dropped" in hashed.privacy_summary()[1]
