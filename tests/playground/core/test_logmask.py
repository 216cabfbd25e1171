from __future__ import annotations

import logging

from playground.core.logmask import MaskSecretsFilter, mask_secrets
from playground.core.logsafe.daphne import masked_action_logger


def test_it_masks_login_link_tokens_and_token_parameters() -> None:
    line = '127.0.0.1:5 - - [02/Dec/2026] "POST /login/link/eyJ1IjoxfQ:1vQ:abc-_/ " 302 -'
    assert mask_secrets(line) == '127.0.0.1:5 - - [02/Dec/2026] "POST /login/link/[hidden]/ " 302 -'
    assert mask_secrets("GET /healthz?token=s3cret&x=1") == "GET /healthz?token=[hidden]&x=1"
    assert mask_secrets("GET /models/?q=token") == "GET /models/?q=token"


def test_the_log_filter_masks_formatted_messages() -> None:
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "%s: %s", ("Bad Request", "/login/link/abc/"), None
    )
    assert MaskSecretsFilter().filter(record)
    assert record.getMessage() == "Bad Request: /login/link/[hidden]/"


def test_daphnes_access_log_sees_the_path_masked() -> None:
    seen = []
    log = masked_action_logger(lambda protocol, action, details: seen.append(details))
    log("http", "complete", {"path": "/login/link/secret-token/", "status": 302, "method": "POST"})
    assert seen == [{"path": "/login/link/[hidden]/", "status": 302, "method": "POST"}]
