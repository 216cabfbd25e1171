"""Keep secrets that travel in URLs out of logs: one-time login tokens (`/login/link/<token>/`) and the
/healthz token (`?token=`). Used by the Daphne that `manage.py serve` starts (its access log) and by the
console log handler (Django's "Bad Request: /login/link/..." lines, django-axes' failure lines).

No Django imports: Daphne's command line loads this before Django is set up.
"""

from __future__ import annotations

import logging
import re

HIDDEN = "[hidden]"
_SECRETS = (
    (re.compile(r"(/login/link/)[^/\s?\"']+"), rf"\g<1>{HIDDEN}"),
    (re.compile(r"([?&]token=)[^&\s\"']+"), rf"\g<1>{HIDDEN}"),
)


def mask_secrets(text: str) -> str:
    """The text with every login-link token and `token=` query value replaced by [hidden]."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class MaskSecretsFilter(logging.Filter):
    """A logging filter that rewrites a record's message with its secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
