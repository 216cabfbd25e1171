from __future__ import annotations

from tests.playground.jobs.conftest import data_dir, stranger, stranger_client

__all__ = ["data_dir", "stranger", "stranger_client"]
