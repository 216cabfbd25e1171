"""Replay on the real default model: sampling with temperature > 0, the same seed and settings give the
same text again where the engine computes a split prompt as the whole one (its probe says so), and the
answer says what differed where it does not."""

from __future__ import annotations

import pytest

from playground.chat.models import Message
from tests.conftest import REAL_MODEL_STORE
from tests.playground.chat.test_branches_socket import action, talk

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_replay_on_the_default_model_reproduces_a_sampled_answer(user, real_model_store, settings) -> None:
    from llmcore.pulls import DEFAULT_MODEL

    settings.MODEL_DIR = REAL_MODEL_STORE
    settings.MODEL_SEED_DIR = None
    sampled = {"temperature": 1.0, "top_p": 0.95, "top_k": 0, "seed": None, "max_new_tokens": 40}
    frame = {
        "type": "send",
        "conversation": None,
        "model": DEFAULT_MODEL,
        "content": "Invent a name for a new color and describe it.",
        "settings": sampled,
    }
    ((*_, first),) = talk(user, frame)
    original = Message.objects.get(pk=first["message"])
    conversation = original.conversation_id
    ((*_, other),) = talk(user, action("regenerate", conversation, original.pk, settings=sampled))
    ((started, *_, again),) = talk(user, action("replay", conversation, original.pk))

    replayed = Message.objects.get(pk=again["message"])
    # a sampled answer may be short ("Tropical Ragee." was one in CI): it needs tokens to compare
    assert len(original.tokens) >= 2, original.content
    assert started["seed"] == original.provenance["seed"]
    # the default model's 4-bit layers ran packed (llmcore.packed), and the page says so
    assert original.provenance["decode"]["kind"] == replayed.provenance["decode"]["kind"] == "int4-packed"
    report = replayed.provenance["replay"]
    same = [t[0] for t in replayed.tokens] == [t[0] for t in original.tokens]
    assert report["matches"] is same
    batches = {original.provenance["stats"]["batch_size_max"], replayed.provenance["stats"]["batch_size_max"]}
    alone = batches == {1}
    if alone and replayed.provenance["split_invariant"]:
        # the replay took most of its prompt from the prefix cache, the original computed it whole
        assert replayed.provenance["stats"]["cached_prompt_tokens"] > 0
        assert same, report
        assert replayed.content == original.content
    else:  # a CPU whose kernels round a split prompt otherwise: the answer must say why it parted
        assert same or (report["parted_at"] is not None and "none that" not in report["reasons"][0]), report
    # A fresh seed samples another answer: the sameness above comes from the seed, not from greedy decoding.
    assert Message.objects.get(pk=other["message"]).content != original.content
