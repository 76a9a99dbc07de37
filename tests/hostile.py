"""Hostile inputs for every stage: fixed examples and hypothesis strategies of raw events and log lines.

Each fixed example says what the producer side must make of it:

- `EVENT`: a valid call (perhaps absurd, e.g. 10^9 tokens): it must arrive, exactly once, redacted;
- `DEAD`: it cannot be a call: it must be in the dead-letter topic with a reason, and nothing else;
- `EITHER`: the contract decides (e.g. the year 9999): it must end up in exactly one of the two.

Secrets are planted as recognisable fakes (`CANARIES`, all containing `CANARY_MARK`) in error
messages, metadata values, metadata keys, model names and URLs: a test greps every output (topics,
spool, logs) for `CANARY_MARK` and for each entry of `CANARIES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from hypothesis import strategies as st

CANARY_MARK = "CANARY"
Expect = Literal["event", "dead", "either"]
EVENT: Expect = "event"
DEAD: Expect = "dead"
EITHER: Expect = "either"

# Built at run time, never written out whole: hypothesis draws strings from the literal
# constants of loaded modules, and a whole canary drawn out of its context is no leak.
M = CANARY_MARK
# Fake credentials in every format the redaction policy knows; each contains CANARY_MARK.
CANARIES: tuple[str, ...] = (
    f"sk-proj-{M}0123456789abcdefXYZ",
    f"sk-ant-api03-{M}0123456789abcdef",
    f"sk-{M}0123456789abcdef",
    f"AIza{M}0123456789abcdefghijklmnopq",
    f"ghp_{M}0123456789abcdefghijklmnopqrs",
    f"github_pat_{M}0123456789_abcdefghijklmnop",
    f"AKIA{M}0000000000",
    f"hf_{M}0123456789abcdefghijklmnopqrs",
    f"xai-{M}0123456789abcdefghijkl",
    f"gsk_{M}0123456789abcdefghijkl",
    f"eyJhbGciOiJIUzI1NiJ9.eyJDQU5BUlkiOiJDQU5BUlkifQ.{M}signature",
    # issue 21: formats the patterns used to miss
    f"xapp-1-A{M}0123456789-abcdef",
    f"whsec_{M}0123456789abcdefghij",
    (f"wJalr/K7{M}" + "bPxRfiCYEXAMPLEKEY0123456789")[:40],  # a bare AWS secret access key
    f"IQoJb3JpZ2luX2Vj{M}EJr//////////wEaCXVz",  # an AWS session token
    f"r8_{M}0123456789abcdefghij",
    f"pplx-{M}0123456789abcdefghij",
    f"glpat-{M}0123456789abcdef",
    f"SG.{M}0123456789abcdef.{M}0123456789abcdefgh",
    f"https://hooks.slack.com/services/T0{M}/B0{M}/webhooksecret11",
)
# Secrets recognisable only by where they are (a sensitive key, a URL's password, a bearer header).
KEYED_CANARIES: dict[str, str] = {
    "password": f"{M}password1",
    "api_key": f"{M}plainkey2",
    "x-api-key": f"{M}headerkey3",
    "client_secret": f"{M}clientsecret4",
    "session_token": f"{M}session5",
    "openai_key": f"{M}openaikey15",
    "azure_key": f"{M}azurekey16",
    "x-functions-key": f"{M}functionskey17",
    "creds": f"{M}creds18",
    "sessionid": f"{M}sessionid19",
    "JSESSIONID": f"{M}jsessionid20",
}
# Secrets recognisable only in their context: (the secret, the text it is planted in).
CONTEXT_CANARIES: dict[str, str] = {
    f"{M}oauthcode12": f"redirected to https://app.example/cb?code={M}oauthcode12&state=x",
    f"{M}pa/ss13": f"amqp://svc:{M}pa/ss13@broker.internal/vhost",
    f"lQOYBF{M}pgpsecret10": (
        f"-----BEGIN PGP PRIVATE KEY BLOCK----- lQOYBF{M}pgpsecret10 -----END PGP PRIVATE KEY BLOCK-----"
    ),
    "deadbeef" * 4: f"Azure OpenAI rejected key {'deadbeef' * 4}",  # 32 hex digits: no room for the mark
    f"{M}harvalue14": f'{{"name": "X-Api-Key", "value": "{M}harvalue14"}}',
}
# A user id that is an e-mail address: never downstream as such (pseudonymised, or dropped).
EMAIL_CANARY = f"{M}.alice@example.com"
URL_CANARY = f"https://svc:{M}urlpassword6@gateway.internal/v1"
BEARER_CANARY = f"Bearer {M}bearertoken7abc"
ALL_CANARIES: tuple[str, ...] = (
    *CANARIES,
    *KEYED_CANARIES.values(),
    f"{M}urlpassword6",
    f"{M}bearertoken7abc",
    *CONTEXT_CANARIES,
    EMAIL_CANARY,
)

# Prompt and response text a gateway logged beside a call: never kept anywhere downstream.
PROMPT_CANARY = f"{M}prompttext8 tell me everything"
RESPONSE_CANARY = f"{M}responsetext9 here it is"
ALL_CANARIES += (PROMPT_CANARY, RESPONSE_CANARY)
LOGGED_CONVERSATION: dict[str, Any] = {
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT_CANARY}],
    "response": {"role": "assistant", "content": RESPONSE_CANARY},
}
# Text from the data that a terminal or a browser could take for markup or a command: every output
# must show it as written (rich markup, rich links, escape sequences, HTML, plotly's HTML subset).
MARKUP_TEXT: tuple[str, ...] = (
    "[/bold]gpt-4.1",
    "[bold red]gpt[/]",
    "[link=https://evil.example]click[/link]",
    "[/]",
    "[",
    "\\[bold]",
    "<!--<script>",
    "</script><script>alert(1)</script>",
    "<a href='https://evil.example'>x</a>",
    "<b>bold</b><br>",
    "&amp; &lt;",
    "a\u2028b",
    ":smile: :red_heart:",
)
# Model names as the stream keeps them (lower case, no `provider/` prefix), so that the report's
# keys are still markup, a link and HTML.
MARKUP_MODELS: tuple[str, ...] = (
    "[bold red]gpt-4.1",
    "[link=https:evil.example]gpt",
    "<img src=x onerror=alert(1)>",
)
ESCAPE_SEQUENCES: tuple[str, ...] = ("\x1b[2J\x1b[H", "\x1b]0;owned\x07", "\x9b31m", "a\rb", "\x07\x7f")

EXPENSIVE_MODEL = "claude-opus-4-1"
TEN_TO_THE_NINE = 10**9


def planted_message(i: int = 0) -> str:
    """An error message with every text-recognisable canary in it."""
    return (
        f"upstream {i} failed calling {URL_CANARY} with {BEARER_CANARY}; key {CANARIES[i % len(CANARIES)]} "
        f"rejected; also {' '.join(CANARIES)}; {' ; '.join(CONTEXT_CANARIES.values())}"
    )


def valid_event(i: int, **fields: Any) -> dict[str, Any]:
    """A valid callstream wire event (the recorder's and `--format callstream`'s shape)."""
    return {
        "event_id": f"hostile-{i}",
        "event_time": "2025-03-01T12:00:00Z",
        "request_model": "gpt-4.1",
        "input_tokens": 10,
        "output_tokens": 5,
        "duration_ms": 120.0,
        "status_code": 200,
    } | fields


def valid_gateway_record(i: int, log_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid record of an LLM gateway client's JSON-lines log."""
    return {
        "log_id": log_id or f"gw-{i}",
        "timestamp": "2025-03-01T12:00:01.500000Z",
        "model": "gpt-4.1",
        "endpoint": "https://api.gateway.example/v1/chat/completions",
        "request_tokens": 100 + i,
        "response_tokens": 20,
        "total_tokens": 120 + i,
        "response_time_ms": 250.0,
        "status_code": 200,
        "error_message": None,
        "cost_usd": 0.001,
        "session_id": "s-1",
        "user_id": f"user-{i % 3}",
        "metadata": {"client_ip": "203.0.113.7"},
    } | fields


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """{"d": {"d": ... leaf}} `depth` levels deep, built without recursion."""
    doc: Any = leaf
    for _ in range(depth):
        doc = {"d": doc}
    return doc  # type: ignore[no-any-return]


def nested_json(depth: int) -> str:
    """The JSON text of `nested(depth)`, built as text (encoders refuse such depths)."""
    return '{"d":' * depth + "1" + "}" * depth


@dataclass(frozen=True)
class HostileEvent:
    name: str
    item: dict[str, Any]  # what a caller hands to the recorder (callstream wire fields)
    expect: Expect


def hostile_events() -> list[HostileEvent]:
    """Items for CallRecorder.record / publisher.put: absurd, broken or secret-laden calls."""
    planted_metadata = dict(KEYED_CANARIES) | {
        CANARIES[0]: "key as a metadata key",
        "note": planted_message(),
    }
    cases: list[HostileEvent] = [
        HostileEvent("year 1", valid_event(0, event_time="0001-01-01T00:00:00Z"), EITHER),
        HostileEvent(
            "year 1 east of UTC", valid_event(1, event_time=datetime(1, 1, 1, tzinfo=_plus_one())), DEAD
        ),
        HostileEvent("year 9999", valid_event(2, event_time="9999-12-31T23:59:59Z"), EITHER),
        HostileEvent("year 2100", valid_event(3, event_time="2100-01-01T00:00:00Z"), EITHER),
        HostileEvent("epoch 1e20", {**_without(valid_event(4), "event_time"), "start_time": 1e20}, DEAD),
        HostileEvent("duration 1e300", valid_event(5, duration_ms=1e300), DEAD),
        HostileEvent("duration NaN", valid_event(6, duration_ms=float("nan")), DEAD),
        HostileEvent("duration inf", valid_event(7, duration_ms=float("inf")), DEAD),
        HostileEvent("metadata floats", valid_event(8, metadata={"a": float("nan"), "b": 1e300}), EVENT),
        HostileEvent("metadata 300 deep", valid_event(9, metadata=nested(300)), EVENT),
        HostileEvent("metadata 1000 deep", valid_event(10, metadata=nested(1_000)), EVENT),
        HostileEvent(
            "model with control characters", valid_event(11, request_model="gpt\x00\x07\x1b[31m"), EITHER
        ),
        HostileEvent("model of 10,000 characters", valid_event(12, request_model="m" * 10_000), DEAD),
        HostileEvent("error of 3 MB", valid_event(13, error_message="e" * 3_000_000 + CANARIES[0]), EVENT),
        HostileEvent("metadata value of 2 MB", valid_event(14, metadata={"blob": "b" * 2_000_000}), EVENT),
        HostileEvent("missing event_id", _without(valid_event(15), "event_id"), EVENT),
        HostileEvent("secrets in the error message", valid_event(16, error_message=planted_message()), EVENT),
        HostileEvent("secrets in metadata", valid_event(17, metadata=planted_metadata), EVENT),
        HostileEvent("secret in the model name", valid_event(18, request_model=f"gpt {CANARIES[2]}"), EVENT),
        HostileEvent(
            "secrets in an invalid event",
            valid_event(19, duration_ms=-1, error_message=planted_message()),
            DEAD,
        ),
        HostileEvent("metadata that is a list", valid_event(20, metadata=[CANARIES[1]]), DEAD),
        HostileEvent("huge integer in metadata", valid_event(21, metadata={"n": 2**200}), EVENT),
        # issue 21
        HostileEvent("prompt and response beside a call", valid_event(22, **LOGGED_CONVERSATION), EVENT),
        HostileEvent(
            "prompt and response beside an invalid call",
            valid_event(23, duration_ms="slow", **LOGGED_CONVERSATION),
            DEAD,
        ),
        HostileEvent(
            "prompt in an unknown field of an invalid call",
            valid_event(24, event_time="yesterday", prompt_text=PROMPT_CANARY),
            DEAD,
        ),
        HostileEvent(
            "caller-set body in metadata",
            valid_event(
                25, metadata={"request_body": f"password=hunter2 {CANARIES[0]}", "response_body": "x" * 9000}
            ),
            EVENT,
        ),
        HostileEvent("model named as markup", valid_event(26, request_model=MARKUP_MODELS[0]), EVENT),
        HostileEvent("model named as a link", valid_event(27, request_model=MARKUP_MODELS[1]), EVENT),
        HostileEvent("model named as HTML", valid_event(28, request_model=MARKUP_MODELS[2]), EVENT),
        HostileEvent(
            "model closing markup it never opened", valid_event(35, request_model=MARKUP_TEXT[0]), EVENT
        ),
        HostileEvent("model with a C1 escape", valid_event(29, request_model="gpt\x9b31m"), DEAD),
        HostileEvent(
            "error message with escape sequences",
            valid_event(30, error_message="boom " + " ".join(ESCAPE_SEQUENCES), status_code=500),
            EVENT,
        ),
        HostileEvent("e-mail as user id", valid_event(31, user_id=EMAIL_CANARY), EVENT),
        HostileEvent(
            "IP addresses under other names",
            valid_event(
                32,
                metadata={
                    "ip_address": "203.0.113.9",
                    "clientIp": "203.0.113.9",
                    "x-forwarded-for": "203.0.113.9",
                },
            ),
            EVENT,
        ),
        HostileEvent(
            "header list in metadata",
            valid_event(33, metadata={"headers": [{"name": "X-Api-Key", "value": f"{M}harvalue14"}]}),
            EVENT,
        ),
        HostileEvent(
            "credentials only their context shows",
            valid_event(34, error_message=" ; ".join(CONTEXT_CANARIES.values()), status_code=401),
            EVENT,
        ),
    ]
    cases += [
        HostileEvent(
            f"10^9 tokens #{i}",
            valid_event(
                100 + i,
                request_model=EXPENSIVE_MODEL,
                input_tokens=TEN_TO_THE_NINE,
                output_tokens=TEN_TO_THE_NINE,
            ),
            EVENT,
        )
        for i in range(40)
    ]
    return cases


@dataclass(frozen=True)
class HostileLine:
    name: str
    line: bytes  # one physical line, without its newline
    expect: Expect
    event_id: str | None = None  # the id it must arrive under, when it has one


def hostile_lines(max_line_bytes: int = 1 << 20, big_line_bytes: int = 50 * 1024 * 1024) -> list[HostileLine]:
    """Log lines for `callstream ingest`, each with what must become of it."""

    def gw(i: int, **fields: Any) -> bytes:
        return _dumps(valid_gateway_record(i, log_id=f"hl-{i}", **fields))

    def ev(i: int, **fields: Any) -> bytes:
        return _dumps(valid_event(i, event_id=f"hl-{i}", **fields))

    lines = [
        HostileLine("not JSON", b"{this is not json", DEAD),
        HostileLine("plain text with a secret", f"ERROR {planted_message()}".encode(), DEAD),
        HostileLine("invalid UTF-8", b'{"log_id": "x\xff\xfe", "model": "\xc3("}', DEAD),
        HostileLine("JSON array", b"[1, 2, 3]", DEAD),
        HostileLine("JSON string", b'"just a string"', DEAD),
        HostileLine("JSON null", b"null", DEAD),
        HostileLine("gateway response_time_ms 1e300", gw(1, response_time_ms=1e300), DEAD),
        HostileLine("gateway timestamp 1e20", gw(2, timestamp=1e20), DEAD),
        HostileLine("gateway timestamp year 1", gw(3, timestamp="0001-01-01T00:00:00+01:00"), DEAD),
        HostileLine("gateway timestamp 9999", gw(4, timestamp="9999-12-31T23:59:59Z"), EITHER, "hl-4"),
        HostileLine("gateway timestamp 2100", gw(5, timestamp="2100-01-01T00:00:00Z"), EITHER, "hl-5"),
        HostileLine("event year 1 UTC", ev(6, event_time="0001-01-01T00:00:00Z"), EITHER, "hl-6"),
        HostileLine("event epoch 1e20", ev(7, event_time=1e20), DEAD),
        HostileLine(
            "metadata 300 deep",
            _dumps(valid_event(8, event_id="hl-8")).replace(
                b'"status_code":200', b'"status_code":200,"metadata":' + nested_json(300).encode()
            ),
            EVENT,
            "hl-8",
        ),
        HostileLine(
            "metadata 1000 deep",
            _dumps(valid_event(9, event_id="hl-9")).replace(
                b'"status_code":200', b'"status_code":200,"metadata":' + nested_json(1_000).encode()
            ),
            EITHER,
            "hl-9",
        ),
        HostileLine("model with control characters", gw(10, model="gpt\u0000\u0007\u001b"), EITHER, "hl-10"),
        HostileLine("model of 10,000 characters", gw(11, model="m" * 10_000), DEAD),
        HostileLine("NaN literal", b'{"log_id": "hl-12", "timestamp": NaN}', DEAD),
        HostileLine(
            "secrets in a valid line",
            gw(13, error_message=planted_message(), metadata=dict(KEYED_CANARIES) | {"note": URL_CANARY}),
            EVENT,
            "hl-13",
        ),
        HostileLine(
            "secrets in an invalid line",
            gw(14, model="", error_message=planted_message(), metadata=dict(KEYED_CANARIES)),
            DEAD,
        ),
        HostileLine("secret in the model name", gw(15, model=f"gpt {CANARIES[3]}"), EVENT, "hl-15"),
        HostileLine(
            "error of half max_line_bytes",
            gw(16, error_message="e" * (max_line_bytes // 2) + CANARIES[4]),
            EVENT,
            "hl-16",
        ),
        HostileLine("line over max_line_bytes", gw(17, error_message="x" * (max_line_bytes + 10)), DEAD),
        HostileLine(
            "line of 50 MB",
            b'{"log_id": "hl-18", "error_message": "' + CANARIES[5].encode() + b"y" * big_line_bytes + b'"}',
            DEAD,
        ),
        HostileLine("missing event_id", _dumps(_without(valid_event(19), "event_id")), EVENT),
        HostileLine("metadata a list", gw(20, metadata=[1, 2]), DEAD),
        HostileLine("tokens as text", gw(21, request_tokens="many"), DEAD),
        HostileLine("numeric user id", gw(22, user_id=12345), EVENT, "hl-22"),
        # issue 21: a gateway that logs the conversation beside the call
        HostileLine("conversation beside a call", gw(23, **LOGGED_CONVERSATION), EVENT, "hl-23"),
        HostileLine(
            "conversation beside a bad timestamp", gw(24, timestamp="yesterday", **LOGGED_CONVERSATION), DEAD
        ),
        HostileLine(
            "conversation beside tokens that are no number",
            gw(25, request_tokens="many", **LOGGED_CONVERSATION),
            DEAD,
        ),
        HostileLine("model named as markup", gw(26, model=MARKUP_TEXT[1]), EVENT, "hl-26"),
        HostileLine(
            "error with escape sequences",
            gw(27, status_code=500, error_message=ESCAPE_SEQUENCES[1]),
            EVENT,
            "hl-27",
        ),
        HostileLine("e-mail as user id", gw(28, user_id=EMAIL_CANARY), EVENT, "hl-28"),
        HostileLine(
            "new credential formats in an invalid line",
            gw(29, timestamp="later", error_message=planted_message(1), metadata=dict(KEYED_CANARIES)),
            DEAD,
        ),
    ]
    lines += [
        HostileLine(
            f"10^9 tokens #{i}",
            gw(
                100 + i,
                model=EXPENSIVE_MODEL,
                request_tokens=TEN_TO_THE_NINE,
                response_tokens=TEN_TO_THE_NINE,
                total_tokens=2 * TEN_TO_THE_NINE,
            ),
            EVENT,
            f"hl-{100 + i}",
        )
        for i in range(40)
    ]
    for line in lines:
        assert b"\n" not in line.line, line.name
    return lines


def _plus_one() -> Any:
    from datetime import timedelta, timezone

    return timezone(timedelta(hours=1))


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def _dumps(doc: Any) -> bytes:
    # lone surrogates pass through as the invalid UTF-8 bytes a careless writer would produce
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )


# ---- hypothesis strategies ----

hostile_floats = st.one_of(
    st.sampled_from([1e300, -1e300, float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
)
hostile_ints = st.one_of(
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**9, 10**9 + 1, 2**200]), st.integers()
)
hostile_text = st.one_of(
    st.text(max_size=50),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=20),  # control characters
    st.sampled_from(["", " ", "\u0000", "m" * 10_000, "\ud800", *CANARIES, URL_CANARY, BEARER_CANARY]),
    st.builds(lambda c, t: f"{t} {c} {t}", st.sampled_from(CANARIES), st.text(max_size=20)),
)
hostile_times = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            1e20,
            -1e20,
            0,
            float("nan"),
            "",
            "now",
            True,
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    hostile_floats,
)
json_scalars = st.one_of(st.none(), st.booleans(), hostile_ints, hostile_floats, hostile_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=20,
)


@st.composite
def raw_events(draw: st.DrawFn, min_changes: int = 0) -> dict[str, Any]:
    """A callstream wire event with some fields (at least `min_changes`) replaced by hostile values
    (or removed)."""
    event = valid_event(draw(st.integers(min_value=0, max_value=10**6)))
    event["event_id"] = f"hyp-{draw(st.uuids()).hex}"
    keys = [
        "event_time",
        "request_model",
        "input_tokens",
        "output_tokens",
        "duration_ms",
        "status_code",
        "error_message",
        "user_id",
        "metadata",
        "event_id",
    ]
    for key in draw(st.lists(st.sampled_from(keys), min_size=min_changes, max_size=4, unique=True)):
        replacement = draw(
            st.one_of(
                st.just(_MISSING),
                hostile_times,
                json_values,
                st.builds(nested, st.sampled_from([3, 300, 1_000])),
                st.dictionaries(st.sampled_from([*KEYED_CANARIES, "note"]), hostile_text, max_size=3),
            )
        )
        if replacement is _MISSING:
            event.pop(key, None)
        else:
            event[key] = replacement
    return event


_MISSING = object()


@st.composite
def log_lines(draw: st.DrawFn) -> bytes:
    """One physical log line: a valid gateway record, a hostile variant of one, or bytes that are not JSON."""
    kind = draw(st.sampled_from(["valid", "hostile", "bytes", "event"]))
    i = draw(st.integers(min_value=0, max_value=10**6))
    if kind == "valid":
        return _dumps(valid_gateway_record(i, log_id=f"hyp-{draw(st.uuids()).hex}"))
    if kind == "event":
        return _dumps(draw(raw_events()))
    if kind == "bytes":
        return draw(st.binary(max_size=200)).replace(b"\n", b" ")
    record = valid_gateway_record(i, log_id=f"hyp-{draw(st.uuids()).hex}")
    key = draw(st.sampled_from(sorted(record)))
    record[key] = draw(st.one_of(hostile_times, json_values))
    return _dumps(record).replace(b"\n", b" ")


def _keyed_forms(key: str, value: str) -> tuple[str, ...]:
    return (f'"{key}":"{value}"', f'"{key}": "{value}"')


# Where a context-only canary is recognisable: outside these, it is just text (hypothesis may draw it
# bare, e.g. as a dictionary key), and no redaction policy can know it is a secret.
CONTEXTS: dict[str, tuple[str, ...]] = {
    **{value: _keyed_forms(key, value) for key, value in KEYED_CANARIES.items()},
    f"{M}urlpassword6": (URL_CANARY,),
    f"{M}bearertoken7abc": (BEARER_CANARY,),
    **{secret: (planted,) for secret, planted in CONTEXT_CANARIES.items()},
    EMAIL_CANARY: _keyed_forms("user_id", EMAIL_CANARY),
}


def canaries_in(data: str | bytes, source: str | bytes | None = None) -> list[str]:
    """Every planted canary found in `data` (empty when nothing leaked). With the `source` that
    produced `data`, a context-only canary (CONTEXTS) is not counted when the source also held it
    outside every context that makes it recognisable."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if source is not None:
        given = source.decode("utf-8", "replace") if isinstance(source, bytes) else source

        def excused(canary: str) -> bool:
            forms = CONTEXTS.get(canary)
            return forms is not None and given.count(canary) > sum(given.count(f) for f in forms)

        return [c for c in canaries_in(text) if not excused(c)]
    # Whole canaries only: hypothesis draws strings from loaded modules' constants ("CANARY0000"),
    # so a fragment of the mark is no evidence of a leak. Redaction runs before any cut, so a
    # planted secret cannot survive as a fragment either (tests/unit/test_producer_deadletter.py).
    return [c for c in ALL_CANARIES if c in text]
