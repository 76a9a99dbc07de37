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
MIN_SECRET_PIECE_CHARS = 8
"""A text this long or longer that is part of a registered secret is a piece of it: redacted."""
SCRUB_MARGIN_CHARS = 1_024
"""Text is cut this far beyond its final length before scrubbing, so that a secret straddling the
final cut is still recognised whole (and then falls away with the rest)."""

# ---- sensitive names (metadata keys, JSON keys, `name=value` in text) ----

_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# A word that names a credential wherever it appears in a key ...
SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "secret", "secrets", "token", "auth",
        "authorization", "cookie", "cookies", "credential", "credentials", "creds", "cred", "bearer",
        "apikey", "jwt", "signature", "sig", "sessionid", "jsessionid", "phpsessid", "sessid",
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
     "client", "account", "session", "functions", "function", "host", "admin", "service", "webhook",
     # a vendor's key: `openai_key`, `azure_key`, `AnthropicKey`
     "openai", "azure", "anthropic", "mistral", "cohere", "groq", "gemini", "google", "aws", "stripe",
     "slack", "github", "gitlab", "hf", "huggingface", "replicate", "perplexity", "pplx", "sendgrid",
     "together", "fireworks", "deepseek", "xai", "voyage", "pinecone", "llm", "provider"}
)  # fmt: skip
# ... and a key cut in parts is a credential in each part (`api_key_part1`, `key_prefix`, `key_2`).
KEY_PARTS = frozenset(
    {"part", "parts", "prefix", "suffix", "rest", "head", "tail", "half", "chunk", "1", "2"}
)
_JOINED = re.compile(
    r"^(?:x?api|access|refresh|id|session|auth|bearer|csrf|xsrf|client|private|secret|signing|master|account)"
    r"(?:key|token|secret)s?$"
)
# Names that are credentials only as `name=value` in text (URL query parameters, config lines).
TEXT_ONLY_NAMES = frozenset({"key", "code_verifier"})
# ... and only in a URL query (`?code=...&state=`: an OAuth authorization code), not `error code=429`.
QUERY_ONLY_NAMES = frozenset({"code"})
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
        if word == "key" and ((i > 0 and words[i - 1] in KEY_KINDS) or following in KEY_PARTS):
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
    "slack": r"\b(?:xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-\d-[A-Za-z0-9\-]{10,})",
    # the secret path of an incoming webhook: https://hooks.slack.com/services/T0/B0/[redacted]
    "slack_webhook": r"(?<=hooks\.slack\.com/services/)[A-Za-z0-9_/\-]{8,}",
    "stripe_webhook": r"\bwhsec_[A-Za-z0-9+/=]{16,}",
    "replicate": r"\br8_[A-Za-z0-9]{20,}",
    "perplexity": r"\bpplx-[A-Za-z0-9]{20,}",
    "gitlab": r"\bgl(?:pat|dt|rt|ptt|cbt|ft|imt|agent|oas|soat)-[A-Za-z0-9_\-]{20,}",
    "sendgrid": r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    # an AWS session token (base64 of a protobuf: always the same head) and a bare secret access
    # key (40 characters of base64 with both cases and a digit or / or +; a hex digest has no capital)
    "aws_session_token": r"\b(?:F[Qw]oGZXIvYXdz|IQo[A-Za-z]b3JpZ2lu)[A-Za-z0-9/+=]{16,}",
    "aws_secret_access_key": (
        r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
        r"(?=[A-Za-z0-9/+]{0,39}[0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
    ),
    "jwt": r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
    "private_key_block": (
        r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
    ),
    # 32 hex digits (an Azure OpenAI or Cognitive Services key) after words naming a key; alone,
    # 32 hex digits are as often an event id, a trace id or a pseudonym, and are kept
    "hex_key_after_key_word": (
        r"(?i:(?<=key)|(?<=key )|(?<=key: )|(?<=key is )|(?<=key was )|(?<=key used )|(?<=secret )"
        r"|(?<=token ))[0-9a-fA-F]{32}\b"
    ),
}
_VENDOR = re.compile("|".join(f"(?:{p})" for p in TEXT_PATTERNS.values()))
# `Authorization: Basic dXNlcjpwYXNz` -> `Authorization: Basic [redacted]` (the scheme stays readable)
_AUTHORIZATION = re.compile(
    r"\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(basic|bearer|digest|token|negotiate|ntlm|apikey|sso-key|aws4-hmac-sha256)\s+)?"
    r"[^\s\"',;]+",
    re.IGNORECASE,
)
# A bearer value: of 8 characters or more after "bearer" in any case; of any length after the
# scheme as written in a header ("Bearer abc"), but not the words that follow it in prose.
_BEARER = re.compile(
    r"\b(?:(?i:(bearer))\s+[A-Za-z0-9._~+/\-]{8,}=*"
    r"|(Bearer|BEARER)\s+(?!(?i:tokens?|auth|authentication|authorization|header|scheme|realm|credentials?"
    r"|of|is|was|and|or|the|a|an|to|in|on)\b)[A-Za-z0-9._~+/\-]+=*)"
)
# scheme://user:password@host -> scheme://user:[redacted]@host (a password may hold a `/`)
_URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s:/@\"'<>]*):([^\s@\"'<>?#]+)@")
# {"name": "x-api-key", "value": "..."}: a header list (HAR, Postman, OpenAPI examples) as JSON text
_NAMED_VALUE = re.compile(
    r"(?P<head>(?P<q>\\?\")(?:name|key|header)(?P=q)\s*:\s*(?P=q)(?P<name>[^\"\\]{1,128})(?P=q)\s*,\s*"
    r"(?P=q)value(?P=q)\s*:\s*)(?P<value>(?P=q)(?:[^\"\\]|\\.)*?(?P=q))",
    re.IGNORECASE,
)
PAIR_NAME_KEYS = ("name", "key", "header")
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
        in_query = (
            key.lower() in QUERY_ONLY_NAMES
            and name.group("op") == "="
            and text[name.start() - 1 : name.start()] in ("?", "&")
        )
        if is_sensitive_key(key) or text_only or in_query:
            value = _VALUE.match(text, pos)
            replacement = _redacted_value(value.group()) if value is not None else None
            if value is not None and replacement is not None:
                out.append(replacement)
                pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without credentials: the registered secrets (and a text that is a piece of one, as
    when a key is split across two fields), every known format, sensitive assignments."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
        elif len(text) >= MIN_SECRET_PIECE_CHARS and text in secret:
            return REDACTED
    text = _AUTHORIZATION.sub(_authorization, text)
    text = _BEARER.sub(lambda m: f"{m.group(1) or m.group(2)} {REDACTED}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    text = _VENDOR.sub(REDACTED, text)
    if "alue" in text:
        text = _NAMED_VALUE.sub(_named_value, text)
    return _scrub_assignments(text)


def _named_value(match: re.Match[str]) -> str:
    if not is_sensitive_key(match.group("name")):
        return match.group()
    quote = match.group("q")
    return f"{match.group('head')}{quote}{REDACTED}{quote}"


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
        pair = sensitive_pair(value)
        for key, item in value.items():
            name = scrub(str(key), secrets)
            hidden = is_sensitive_key(str(key)) or (pair and key == "value")
            out[name] = REDACTED if hidden else redact(item, secrets, depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [redact(item, secrets, depth=depth + 1) for item in value]
    return scrub(repr(value)[:65_536], secrets)


def sensitive_pair(value: Mapping[Any, Any]) -> bool:
    """Whether an object is a `{"name": <sensitive>, "value": ...}` pair (a HAR or Postman header,
    `key`/`header` for `name` alike): its value is then a credential."""
    if "value" not in value:
        return False
    return any(isinstance(value.get(k), str) and is_sensitive_key(value[k]) for k in PAIR_NAME_KEYS)


class ScrubbingFilter(logging.Filter):
    """A logging filter that scrubs each record's message (for loggers fed by libraries, e.g. librdkafka)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = scrub(record.getMessage())
            record.args = None
        except Exception:  # a log line must never raise
            record.msg, record.args = "[log message could not be scrubbed]", None
        return True
