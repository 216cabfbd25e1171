"""Daphne's command line (`python -m playground.core.logsafe.daphne`, the same arguments as `daphne`),
with its access log passed through logmask: a one-time login link is a password until it is used, and
Daphne would otherwise print it in every `GET /login/link/<token>/` line."""

from __future__ import annotations

import os
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server

from playground.core.logmask import mask_secrets

_MASKED = ("path", "query_string")


def masked_action_logger(action_logger: Any) -> Any:
    """Daphne's action logger (protocol, action, details), called with the request's path masked."""

    def log(protocol: str, action: str, details: dict[str, Any]) -> None:
        clean = dict(details)
        for key in _MASKED:
            value = clean.get(key)
            if isinstance(value, str):
                clean[key] = mask_secrets(value)
            elif isinstance(value, bytes):
                clean[key] = mask_secrets(value.decode("latin-1")).encode("latin-1")
        action_logger(protocol, action, clean)

    return log


class MaskingServer(Server):
    def __init__(self, *args: Any, action_logger: Any = None, **kwargs: Any) -> None:
        if action_logger is not None:
            action_logger = masked_action_logger(action_logger)
        super().__init__(*args, action_logger=action_logger, **kwargs)


class MaskingCommandLine(CommandLineInterface):
    server_class = MaskingServer


if __name__ == "__main__":
    # The ASGI module then preloads the default model in the background (PRELOAD_DEFAULT_MODEL).
    os.environ["PLAYGROUND_WEB_SERVER"] = "1"
    MaskingCommandLine.entrypoint()
