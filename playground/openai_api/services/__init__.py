"""The OpenAI-compatible API's services, one module per part: who calls (access), the catalog as model
objects, planning a generation (generation), running it (streams, shapes) and embeddings. The views use
this package's names; these are the only modules of the app that import llmcore."""

from __future__ import annotations

from playground.openai_api.services.access import Caller, admit, caller_of
from playground.openai_api.services.catalog import model_detail, model_list
from playground.openai_api.services.embeddings import check_embeddings, embeddings
from playground.openai_api.services.generation import Generation, check_chat, check_completion, prepare
from playground.openai_api.services.streams import Run

__all__ = [
    "Caller",
    "Generation",
    "Run",
    "admit",
    "caller_of",
    "check_chat",
    "check_completion",
    "check_embeddings",
    "embeddings",
    "model_detail",
    "model_list",
    "prepare",
]
