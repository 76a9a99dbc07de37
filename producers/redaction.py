"""The one redaction policy: what counts as a secret, in free text, in keys and in JSON values.

Every path by which recorded data leaves a process (recorded events, every kind of dead letter,
the spool, log lines) goes through this module, so one list decides what is a credential:

- the caller's registered secrets (e.g. the API key of an instrumented client), replaced wherever
  they appear;
- known credential formats in free text (`TEXT_PATTERNS`: vendor API keys, bearer and basic
  authorization, JWTs, passwords in URLs, private-key blocks);
- values assigned to a sensitive name in free text (`password=...`, `"api_key": "..."`,
  `x-api-key: ...`, `?key=...`);
- values under a sensitive key in metadata and JSON (`is_sensitive_key`): `token`, `api_key`,
  `client_secret`, `Authorization`, ... but not `max_tokens`, `tokenizer`, `keyword` or `monkey`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
TOO_DEEP = "[nested too deep]"
TRUNCATED = "…[truncated]"
MAX_REDACT_DEPTH = 64
SCRUB_MARGIN_CHARS = 1_024
"""Text is cut this far beyond its final length before scrubbing, so that a secret straddling the
final cut is still recognised whole (and then falls away with the rest)."""

# ---- sensitive names (metadata keys, JSON keys, `name=value` in text) ----

_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# A word that names a credential wherever it appears in a key ...
SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "secret", "secrets", "token", "auth",
        "authorization", "cookie", "cookies", "credential", "credentials", "bearer", "apikey", "jwt",
        "signature", "sig",
    }
)  # fmt: skip
# ... unless the next word says the value is about the credential, not the credential itself
# (`token_count`, `auth_type`, `password_required`).
QUALIFIERS = frozenset(
    {
        "count", "counts", "usage", "used", "limit", "limits", "budget", "total", "type", "types",
        "estimate", "length", "len", "number", "num", "ratio", "rate", "price", "cost", "index",
        "idx", "method", "methods", "mode", "scheme", "provider", "status", "required", "enabled",
        "expiry", "expires", "expiration", "ttl", "url", "uri", "endpoint",
        # units and statistics: `cost_per_token_usd`, `time_to_first_token_ms` are measurements
        "usd", "ms", "us", "ns", "s", "sec", "secs", "seconds", "bytes", "size", "min", "max", "avg",
        "mean", "p50", "p90", "p95", "p99",
    }
)  # fmt: skip
# `<kind>_key` is a credential for these kinds (`api_key`, `AccessKey`, `x-api-key`), while
# `cache_key`, `partition_key` or `idempotency_key` are ordinary.
KEY_KINDS = frozenset(
    {"api", "access", "private", "secret", "signing", "encryption", "master", "license", "subscription",
     "client", "account", "session"}
)  # fmt: skip
_JOINED = re.compile(
    r"^(?:x?api|access|refresh|id|session|auth|bearer|csrf|xsrf|client|private|secret|signing|master|account)"
    r"(?:key|token|secret)s?$"
)
# Names that are credentials only as `name=value` in text (URL query parameters, config lines).
TEXT_ONLY_NAMES = frozenset({"key", "code_verifier"})
AUTH_SCHEMES = frozenset({"basic", "bearer", "digest", "token", "negotiate", "ntlm", "apikey", "sso-key"})


def is_sensitive_key(key: str) -> bool:
    """Whether a metadata or JSON key names a credential (its value is then redacted whatever it is)."""
    words = [w.lower() for w in _WORDS.findall(key)]
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else None
        if following in QUALIFIERS:
            continue
        if word in SECRET_WORDS or _JOINED.match(word):
            return True
        if word == "key" and i > 0 and words[i - 1] in KEY_KINDS:
            return True
    return False


# ---- credentials in free text ----

TEXT_PATTERNS: dict[str, str] = {
    # OpenAI (sk-, sk-proj-, masked in 401 messages: sk-proj-abc***wxyz, sk-...abcd), Anthropic (sk-ant-)
    "openai_anthropic": r"\bsk-(?:[A-Za-z0-9_\-]*(?:\*{3,}|\.{3}|…)[A-Za-z0-9_\-]*|[A-Za-z0-9_\-]{10,})",
    "stripe": r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{10,}",
    "google": r"\bAIza[0-9A-Za-z_\-]{20,}",
    "github": r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",
    "aws_access_key_id": r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
    "huggingface": r"\bhf_[A-Za-z0-9]{30,}",
    "xai": r"\bxai-[A-Za-z0-9]{20,}",
    "groq": r"\bgsk_[A-Za-z0-9]{20,}",
    "slack": r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
    "private_key_block": r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
}
_VENDOR = re.compile("|".join(f"(?:{p})" for p in TEXT_PATTERNS.values()))
# `Authorization: Basic dXNlcjpwYXNz` -> `Authorization: Basic [redacted]` (the scheme stays readable)
_AUTHORIZATION = re.compile(
    r"\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(basic|bearer|digest|token|negotiate|ntlm|apikey|sso-key|aws4-hmac-sha256)\s+)?"
    r"[^\s\"',;]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*", re.IGNORECASE)
# scheme://user:password@host -> scheme://user:[redacted]@host
_URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s:/@\"'<>]*):([^\s@/\"'<>]+)@")
# name=value, name: value, "name": "value", \"name\": \"value\" (JSON inside a JSON string). Names are
# found without consuming their values, so `https://host/v1?key=...` still finds `key` after `https:`.
_NAME = re.compile(r"(?<![\w\-.])(?P<q>\\?[\"']?)(?P<name>[A-Za-z_][\w.\-]{0,127})(?P=q)\s*(?P<op>[:=])\s*")
_VALUE = re.compile(r"\\\"(?:[^\"\\]|\\(?!\"))*\\\"|\"(?:[^\"\\]|\\.)*\"|'[^'\n]*'|[^\s&,;\"'<>{}\[\]()\\]+")


def _authorization(match: re.Match[str]) -> str:
    scheme = match.group(2)
    return match.group(1) + (f"{scheme} " if scheme else "") + REDACTED


def _redacted_value(value: str) -> str | None:
    """The replacement of an assigned value, or None when there is nothing to hide."""
    quote = value[:2] if value.startswith('\\"') else value[:1] if value[:1] in "\"'" else ""
    inner = value[len(quote) : len(value) - len(quote)] if quote else value
    if not inner or inner == REDACTED or inner.lower() in AUTH_SCHEMES or inner in ("null", "true", "false"):
        return None
    return quote + REDACTED + quote


def _scrub_assignments(text: str) -> str:
    if "=" not in text and ":" not in text:
        return text
    out: list[str] = []
    pos = 0
    while (name := _NAME.search(text, pos)) is not None:
        out.append(text[pos : name.end()])
        pos = name.end()
        key = name.group("name")
        # `key=...` in a URL query or a config line is a credential; a JSON field named "key" (an
        # aggregate's, an alert's) is not.
        text_only = key.lower() in TEXT_ONLY_NAMES and name.group("op") == "=" and not name.group("q")
        if is_sensitive_key(key) or text_only:
            value = _VALUE.match(text, pos)
            replacement = _redacted_value(value.group()) if value is not None else None
            if value is not None and replacement is not None:
                out.append(replacement)
                pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without credentials: the registered secrets, every known format, sensitive assignments."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    text = _AUTHORIZATION.sub(_authorization, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    text = _VENDOR.sub(REDACTED, text)
    return _scrub_assignments(text)


def truncate(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars` characters, with a visible marker when cut."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(TRUNCATED))] + TRUNCATED


def scrub_bounded(text: str, max_chars: int, secrets: Iterable[str] = ()) -> str:
    """Scrubbed and cut to `max_chars`, without scanning more than needed of a very long text, and
    never leaving the readable head of a secret that the cut went through."""
    if len(text) > max_chars + SCRUB_MARGIN_CHARS:
        text = text[: max_chars + SCRUB_MARGIN_CHARS]
    return truncate(scrub(text, secrets), max_chars)


# ---- JSON-like values ----


def redact(value: Any, secrets: Iterable[str] = (), *, depth: int = 0) -> Any:
    """A JSON-like value with values under sensitive keys replaced, keys and strings scrubbed, and
    anything nested deeper than `MAX_REDACT_DEPTH` replaced by a marker. Never raises on depth."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return scrub(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_REDACT_DEPTH:
        return TOO_DEEP
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = scrub(str(key), secrets)
            out[name] = REDACTED if is_sensitive_key(str(key)) else redact(item, secrets, depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [redact(item, secrets, depth=depth + 1) for item in value]
    return scrub(repr(value)[:65_536], secrets)


class ScrubbingFilter(logging.Filter):
    """A logging filter that scrubs each record's message (for loggers fed by libraries, e.g. librdkafka)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = scrub(record.getMessage())
            record.args = None
        except Exception:  # a log line must never raise
            record.msg, record.args = "[log message could not be scrubbed]", None
        return True
