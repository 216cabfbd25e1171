"""End to end: the official `openai` SDK, as a user's script calls it, against Daphne serving the real
default model (the session's site) and the real all-MiniLM-L6-v2 encoder."""

from __future__ import annotations

import re
import time
import urllib.request

import numpy as np
import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import manage
from tests.e2e.conftest import Site
from tests.e2e.test_site import session_cookie

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MAKE_KEY = (
    "from django.contrib.auth.models import User; from playground.apikeys.services import create_key; "
    "print(create_key(User.objects.get(username='admin'), 'sdk test')[1])"
)


@pytest.fixture(scope="module")
def client(site: Site):
    import openai

    secret = manage(site.env, "shell", "-c", MAKE_KEY).strip().splitlines()[-1]
    return openai.OpenAI(base_url=f"{site.url}/v1", api_key=secret, max_retries=0, timeout=300)


def test_models_lists_the_default_model(client) -> None:
    models = {m.id: m for m in client.models.list()}
    assert DEFAULT_MODEL in models
    assert models[DEFAULT_MODEL].owned_by == "playground"
    assert client.models.retrieve(DEFAULT_MODEL).id == DEFAULT_MODEL


def test_a_chat_completion_answers_with_usage(client) -> None:
    answer = client.chat.completions.create(
        model=DEFAULT_MODEL, messages=QUESTION, temperature=0, max_tokens=48
    )
    (choice,) = answer.choices
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert answer.usage.prompt_tokens > 10
    assert 0 < answer.usage.completion_tokens <= 48
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert re.fullmatch(r"fp_[0-9a-f]{12}", answer.system_fingerprint)


def test_a_streamed_chat_completion_ends_with_usage(client) -> None:
    stream = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=48,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert reasons == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0


def test_logprobs_come_with_the_top_alternatives(client) -> None:
    answer = client.chat.completions.create(
        model=DEFAULT_MODEL, messages=QUESTION, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3
    )
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token  # greedy: the likeliest token each time
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob >= entry.top_logprobs[2].logprob
    assert "".join(e.token for e in content) == answer.choices[0].message.content


def test_n_choices_and_a_seed_that_repeats_them(client) -> None:
    ask = {"model": DEFAULT_MODEL, "messages": QUESTION, "temperature": 1.0, "max_tokens": 24, "seed": 7}
    first = client.chat.completions.create(n=2, **ask)
    assert len(first.choices) == 2
    again = client.chat.completions.create(n=2, **ask)
    assert [c.message.content for c in again.choices] == [c.message.content for c in first.choices]


def test_a_stop_sequence_ends_the_answer_before_it(client) -> None:
    ask = {"model": DEFAULT_MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 48}
    free = client.chat.completions.create(**ask).choices[0].message.content
    assert "Paris" in free
    stopped = client.chat.completions.create(stop=["Paris"], **ask).choices[0]
    assert stopped.finish_reason == "stop"
    assert stopped.message.content == free[: free.index("Paris")]


def test_a_completion_with_echo_and_logprobs(client) -> None:
    prompt = "The capital of France is"
    answer = client.completions.create(
        model=DEFAULT_MODEL, prompt=prompt, max_tokens=5, temperature=0, echo=True, logprobs=2
    )
    (choice,) = answer.choices
    assert choice.text.startswith(prompt + " Paris")
    assert choice.logprobs.token_logprobs[0] is None
    assert len(choice.logprobs.tokens) == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert "".join(choice.logprobs.tokens) == choice.text


def test_embeddings_on_minilm_put_similar_sentences_together(client, minilm_store) -> None:
    sentences = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "Stock markets fell sharply today.",
    ]
    answer = client.embeddings.create(model="minilm", input=sentences)  # the SDK asks for base64
    vectors = np.array([d.embedding for d in answer.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3, (similar, unrelated)
    assert answer.usage.prompt_tokens > 15
    floats = client.embeddings.create(model="minilm", input=sentences[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vectors[0], atol=1e-5)


def test_errors_are_the_sdks_exceptions(client, site: Site) -> None:
    import openai

    too_long = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(openai.BadRequestError, match="maximum context length") as long:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=too_long, max_tokens=16)
    assert long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="2048"):
        client.chat.completions.create(model=DEFAULT_MODEL, messages=QUESTION, max_tokens=5000)
    with pytest.raises(openai.BadRequestError, match="presence_penalty") as bad:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=QUESTION, presence_penalty=1.0)
    assert bad.value.param == "presence_penalty"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert missing.value.code == "model_not_found"
    stranger = openai.OpenAI(base_url=f"{site.url}/v1", api_key="pg-" + "0" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def engine_numbers(site: Site, cookie: str) -> tuple[float, float]:
    """(cancelled requests, active requests) of the default model's engines, from /metrics."""
    request = urllib.request.Request(f"{site.url}/metrics", headers={"Cookie": cookie})
    text = urllib.request.urlopen(request, timeout=10).read().decode()
    totals = {"cancelled": 0.0, "active": 0.0}
    for name, labels, number in re.findall(r"^playground_engine_(\w+)\{(.*)\} (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("model") != DEFAULT_MODEL:
            continue
        if name == "finished_requests_total" and found.get("reason") == "cancelled":
            totals["cancelled"] += float(number)
        elif name == "active_requests":
            totals["active"] += float(number)
    return totals["cancelled"], totals["active"]


def test_a_client_that_disconnects_mid_stream_cancels_its_generation(client, site: Site) -> None:
    cookie = session_cookie(site)
    cancelled_before, _ = engine_numbers(site, cookie)
    long_answer = [{"role": "user", "content": "Write a very long story about a dragon."}]
    with client.chat.completions.create(
        model=DEFAULT_MODEL, messages=long_answer, max_tokens=2000, stream=True, temperature=0.8
    ) as stream:
        for i, _ in enumerate(stream):
            if i == 3:
                break  # leaving the block closes the connection
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cancelled, active = engine_numbers(site, cookie)
        if cancelled > cancelled_before and active == 0:
            break
        time.sleep(0.2)
    assert cancelled == cancelled_before + 1
    assert active == 0
