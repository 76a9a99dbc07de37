"""The one redaction policy: what counts as a secret, in free text and in metadata keys.

Every path by which recorded data leaves a process (recorded events, every kind of dead letter,
the spool, logs) scrubs through this module, so one pattern list decides what is a credential.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

# Metadata keys whose values are credentials whatever they look like.
SENSITIVE_KEY = re.compile(
    r"(authorization|api[-_.]?key|secret|passw(or)?d|cookie|bearer|credential|private[-_.]?key|"
    r"(access|refresh|session|id|auth)[-_.]?token)",
    re.IGNORECASE,
)
# Credentials inside free text (error messages, metadata values, dead-letter originals).
SECRET_TEXT = re.compile(
    r"(\bsk-[A-Za-z0-9_\-*]{3,})"  # OpenAI-style keys, also masked ones in 401 messages
    r"|(\b[Bb]earer\s+[A-Za-z0-9._~+/\-]+=*)"
    r"|(\b(?:api[-_]?key|key|token|access_token|password|secret)=[^&\s\"']+)"
    r"|(\bAIza[0-9A-Za-z_\-]{20,})",  # Google API keys
)


def is_sensitive_key(key: str) -> bool:
    return SENSITIVE_KEY.search(key) is not None


def scrub(text: str, secrets: frozenset[str] = frozenset()) -> str:
    """`text` without credentials: the caller's registered secrets, then every known key format."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return SECRET_TEXT.sub(REDACTED, text)
