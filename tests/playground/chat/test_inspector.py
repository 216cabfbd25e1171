"""The token inspector's JSON API on an answer the tiny model really generated through the chat services:
labels, probabilities, alternatives, attention rows, owners only, and clear errors."""

from __future__ import annotations

import dataclasses
import gzip
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from llmcore.engine import DoneEvent, StatsEvent, TokenEvent
from playground.chat import services
from playground.chat.models import Message
from playground.chat.services import inspector as inspector_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="another long passphrase")


def send_data(**overrides: Any) -> dict[str, Any]:
    return {
        **services.DEFAULT_SETTINGS,
        "model": "tiny-llama",
        "content": "Hello world",
        "conversation": None,
        "system": "",
        "temperature": 0.0,
        "seed": 1,
        "max_new_tokens": 6,
        **overrides,
    }


def generate_answer(owner, **overrides: Any) -> Message:
    """One turn as the consumer runs it: start_turn, the engine's events, finish_turn with the tokens."""
    turn = services.start_turn(owner, send_data(**overrides))
    request = dataclasses.replace(turn.request, ignore_stop_tokens=True)  # random weights: no early end
    events = turn.engine.generate(request)
    tokens = [
        [e.id, e.text, e.prob, [list(a) for a in e.alternatives]] for e in events if isinstance(e, TokenEvent)
    ]
    stats = next(e for e in events if isinstance(e, StatsEvent))
    done = next(e for e in events if isinstance(e, DoneEvent))
    return services.finish_turn_from_done(turn.message_id, done, stats, tokens)


@pytest.fixture
def answer(user, tiny_model) -> Message:
    inspector_services._cache.clear()
    message = generate_answer(user)
    assert len(message.tokens) == 6
    return message


def tokens_url(message_id: int) -> str:
    return reverse("chat:message-tokens", args=[message_id])


def token_url(message_id: int, index: int) -> str:
    return reverse("chat:message-token", args=[message_id, index])


def test_the_tokens_of_an_answer_come_with_readable_labels(client_in: Client, answer: Message) -> None:
    body = client_in.get(tokens_url(answer.pk)).json()
    assert body["message"] == answer.pk
    assert body["model"] == "tiny-llama"
    assert [t["index"] for t in body["tokens"]] == list(range(6))
    assert [t["id"] for t in body["tokens"]] == [t[0] for t in answer.tokens]
    assert "".join(t["text"] for t in body["tokens"]) + body["tail"] == answer.content
    for token in body["tokens"]:
        assert token["label"]
        assert " " not in token["label"]
        assert 0 < token["prob"] <= 1


def test_a_token_shows_its_probability_alternatives_and_attention(client_in: Client, answer: Message) -> None:
    index = 3
    response = client_in.get(token_url(answer.pk, index))
    assert response.status_code == 200
    body = response.json()
    token_id, text, prob, alternatives = answer.tokens[index]
    assert body["token"]["id"] == token_id
    assert body["token"]["prob"] == prob
    assert [a["id"] for a in body["alternatives"]] == [a[0] for a in alternatives]
    assert [a["chosen"] for a in body["alternatives"]].count(True) == 1  # greedy: the top one was chosen
    assert body["alternatives"][0]["chosen"]
    assert body["greedy"] is True
    context = len(answer.prompt_ids) + index
    assert len(body["context"]["labels"]) == context
    assert body["context"]["prompt_tokens"] == len(answer.prompt_ids)
    attention = body["attention"]
    assert (attention["layers"], attention["heads"], attention["kv_heads"]) == (2, 4, 2)
    rows = attention["rows"]
    assert len(rows) == 2
    assert all(len(layer) == 4 for layer in rows)
    for layer in rows:
        for row in layer:
            assert len(row) == context
            assert abs(sum(row) - 1) < 5e-3
    assert body["attention_error"] is None


def test_a_sampled_token_shows_its_probability_after_the_sampler(client_in: Client, user, tiny_model) -> None:
    inspector_services._cache.clear()
    sampled = generate_answer(user, temperature=0.9, top_k=20, seed=7)
    body = client_in.get(token_url(sampled.pk, 1)).json()
    assert body["greedy"] is False
    assert sum(a["prob"] for a in body["alternatives"]) <= 1 + 1e-6
    chosen = [a for a in body["alternatives"] if a["chosen"]]
    assert len(chosen) == 1  # the drawn token is always listed, with the same probability
    assert chosen[0]["prob"] == pytest.approx(body["token"]["prob"])
    assert body["chosen_listed"] is True
    ranks = [a["rank"] for a in body["alternatives"]]
    assert ranks == sorted(ranks)
    assert ranks[:5] == list(range(1, min(5, len(ranks)) + 1))
    assert body["token"]["prob"] == sampled.tokens[1][2]


def test_each_step_attends_over_a_longer_context(client_in: Client, answer: Message) -> None:
    first = client_in.get(token_url(answer.pk, 0)).json()
    last = client_in.get(token_url(answer.pk, 5)).json()
    assert len(first["attention"]["rows"][0][0]) + 5 == len(last["attention"]["rows"][0][0])
    assert first["context"]["labels"] == last["context"]["labels"][: len(first["context"]["labels"])]


def test_someone_elses_answer_reads_like_a_missing_one(answer: Message, bob) -> None:
    client = Client()
    client.force_login(bob)
    for url in (tokens_url(answer.pk), token_url(answer.pk, 0)):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"error": f"No message {answer.pk}.", "fields": {}}  # the API's one shape


def test_a_token_past_the_end_is_a_clear_404(client_in: Client, answer: Message) -> None:
    response = client_in.get(token_url(answer.pk, 6))
    assert response.status_code == 404
    assert response.json()["error"] == "Token 6 does not exist: the answer has tokens 0-5."


def test_a_user_message_has_no_tokens_to_inspect(client_in: Client, answer: Message) -> None:
    question = answer.parent
    assert question is not None
    assert question.role == "user"
    response = client_in.get(tokens_url(question.pk))
    assert response.status_code == 400
    assert "Only the model's answers" in response.json()["error"]


def test_an_answer_still_streaming_waits(client_in: Client, answer: Message) -> None:
    Message.objects.filter(pk=answer.pk).update(status="streaming")
    response = client_in.get(token_url(answer.pk, 0))
    assert response.status_code == 409
    assert "still being written" in response.json()["error"]


def test_a_model_gone_from_the_catalog_is_said_so(client_in: Client, answer: Message, store) -> None:
    store.remove("tiny-llama")
    for url in (tokens_url(answer.pk), token_url(answer.pk, 1)):
        response = client_in.get(url)
        assert response.status_code == 410
        assert response.json()["error"] == (
            "The model tiny-llama is no longer in the catalog, so its tokens cannot be read."
        )


def test_a_context_over_the_limit_still_shows_the_token(client_in: Client, answer: Message, settings) -> None:
    settings.INSPECT_MAX_TOKENS = 4
    body = client_in.get(token_url(answer.pk, 2)).json()
    assert body["attention"] is None
    assert "the inspector looks at most 4 tokens" in body["attention_error"]
    assert body["token"]["id"] == answer.tokens[2][0]


def test_the_endpoints_only_answer_get(client_in: Client, answer: Message) -> None:
    assert client_in.post(token_url(answer.pk, 0)).status_code == 405


def test_a_logged_out_visitor_is_sent_to_log_in(answer: Message) -> None:
    response = Client().get(token_url(answer.pk, 0))
    assert response.status_code == 302
    assert "/login" in response["Location"]


def test_the_chat_page_loads_the_inspector_with_its_endpoints(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("chat:index")).content.decode()
    assert 'src="/static/chat/inspector.js"' in html
    assert 'href="/static/chat/inspector.css"' in html
    assert 'data-tokens-url="/chat/message/0/tokens/"' in html
    assert 'data-token-url="/chat/message/0/token/0/"' in html


def test_the_attention_travels_gzipped_when_the_browser_accepts_it(
    client_in: Client, answer: Message
) -> None:
    plain = client_in.get(token_url(answer.pk, 5))
    zipped = client_in.get(token_url(answer.pk, 5), HTTP_ACCEPT_ENCODING="gzip")
    assert zipped["Content-Encoding"] == "gzip"
    assert len(zipped.content) < len(plain.content)
    assert gzip.decompress(zipped.content) == plain.content
