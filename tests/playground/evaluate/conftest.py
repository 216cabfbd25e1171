from __future__ import annotations

from tests.playground.jobs.conftest import stranger, stranger_client

__all__ = ["stranger", "stranger_client"]  # data_dir comes from tests/playground/conftest.py
