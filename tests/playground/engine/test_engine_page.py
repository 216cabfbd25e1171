"""The Engine page on a real engine: what it shows, its live partial, other and gone workers, escaping."""

from __future__ import annotations

import re
import time

import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from playground.catalog.models import ModelEntry
from playground.catalog.services import sync_catalog
from playground.engine import services
from tests.playground.engine.conftest import Running

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def live_version(html: str) -> str:
    match = re.search(r'hx-vals=\'\{"v": "([0-9a-f]+)"\}\'', html)
    assert match, "the live block sends the version it shows"
    return match.group(1)


def engine_card(html: str, model: str) -> str:
    match = re.search(
        rf'<article class="card engine" data-testid="engine" data-model="{model}">(.*?)</article>', html, re.S
    )
    assert match, f"no card for {model}"
    return match.group(1)


def test_the_page_shows_the_model_its_worker_and_the_tokens_generated(
    client_in: Client, running: Running, generated: int
) -> None:
    response = client_in.get(reverse("engine:page"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f"<code>{running.worker}</code>" in html
    card = engine_card(html, "tiny-llama")
    assert f'<span data-testid="generated-total">{generated}</span> tokens' in card
    assert '<span data-testid="sequences">0 of 16</span>' in card  # nothing runs now; the limit is 16
    assert "0 requests running, 0 waiting" in card
    assert "used" in card
    assert "allocated" in card
    assert "budget" in card
    assert "stop 0 · stop_sequence 0 · length 1 · cancelled 0 · error 0" in card  # max_new_tokens ended it
    attention = running.engine.metrics()["attention"]  # the kernel's label, or its name
    assert f"attention {escape(attention['label'] if isinstance(attention, dict) else attention)}" in card
    assert '<a href="/engine/" aria-current="page">Engine</a>' in html  # the navigation marks the section
    repeat = running.engine.metrics()["split_invariant"]  # measured on this machine (the runner's probe)
    said = "split prompts repeat" if repeat else "split prompts round otherwise"
    assert f'data-testid="split-invariant">{said}</span>' in card


def test_the_partial_answers_the_numbers_then_204_until_one_changes(
    client_in: Client, running: Running, generated: int
) -> None:
    partial = client_in.get(reverse("engine:page"), **HTMX)
    html = partial.content.decode()
    assert partial.status_code == 200
    assert html.lstrip().startswith('<div id="engine-live"')
    assert "<html" not in html
    assert f'<span data-testid="generated-total">{generated}</span>' in html
    version = live_version(html)

    unchanged = client_in.get(reverse("engine:page"), {"v": version}, **HTMX)
    assert unchanged.status_code == 204

    running.generate(3)
    changed = client_in.get(reverse("engine:page"), {"v": version}, **HTMX)
    assert changed.status_code == 200
    assert f'<span data-testid="generated-total">{generated + 3}</span>' in changed.content.decode()
    assert live_version(changed.content.decode()) != version


def test_another_workers_engines_show_under_their_own_worker(client_in: Client, running: Running) -> None:
    theirs = {**running.engine.metrics(), "worker": "web-2:4242", "generated_tokens_total": 12345}
    services.publish("web-2:4242", [theirs])
    html = client_in.get(reverse("engine:page")).content.decode()
    assert "<code>web-2:4242</code>" in html
    assert f"<code>{running.worker}</code>" in html
    assert '<span data-testid="generated-total">12345</span>' in html
    assert html.count('data-testid="engine"') == 2


def test_a_worker_silent_for_longer_than_the_ttl_shows_as_gone(client_in: Client, running: Running) -> None:
    old = {**running.engine.metrics(), "worker": "web-3:99", "model": "old-model"}
    services.publish("web-3:99", [old], now=time.time() - services.SNAPSHOT_TTL - 5)
    html = client_in.get(reverse("engine:page")).content.decode()
    section = html[html.index('data-worker="web-3:99"') :]
    assert '<span class="badge gone">gone</span>' in section[:400]
    assert f"No snapshot for over {services.SNAPSHOT_TTL} s" in section
    assert "old-model" not in html  # a gone worker's numbers are not shown as if they were current


def test_html_in_a_model_or_worker_name_is_escaped(client_in: Client, running: Running) -> None:
    model, worker = '<script>alert("m")</script>', 'evil"><img src=x onerror=alert(1)>:1'
    services.publish(worker, [{**running.engine.metrics(), "model": model, "worker": worker}])
    html = client_in.get(reverse("engine:page")).content.decode()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;m&quot;)&lt;/script&gt;" in html
    assert 'data-worker="evil&quot;&gt;&lt;img src=x onerror=alert(1)&gt;:1"' in html


def test_with_no_engine_running_the_page_says_so_and_links_to_the_chat(rf, user) -> None:
    request = rf.get("/engine/")
    request.user = user
    context = {"overview": services.EngineOverview([], shared=True), "snapshot_ttl": services.SNAPSHOT_TTL}
    html = render_to_string("engine/page.html#live-body", context, request=request)
    assert "No engine is running" in html
    assert f'<a href="{reverse("chat:index")}">open the chat</a>' in html


def test_strangers_are_sent_to_log_in(client: Client) -> None:
    response = client.get(reverse("engine:page"))
    assert response.status_code == 302
    assert "/login/" in response.url


def test_an_engine_of_a_model_private_to_someone_else_is_left_out(
    client_in: Client, running: Running, generated: int, django_user_model, settings
) -> None:
    sync_catalog()
    bob = django_user_model.objects.create_user(username="bob", password="another long passphrase")
    ModelEntry.objects.filter(name="tiny-llama").update(owner=bob, shared=False)
    html = client_in.get(reverse("engine:page")).content.decode()
    assert "tiny-llama" not in html
    assert "1 engine of models private to others not shown." in html
    metrics = client_in.get(reverse("engine:metrics")).content.decode()
    assert "tiny-llama" not in metrics

    bobs = Client()
    bobs.force_login(bob)
    assert 'data-model="tiny-llama"' in bobs.get(reverse("engine:page")).content.decode()
    settings.METRICS_TOKEN = "monitor-token-1234"
    monitor = Client().get(reverse("engine:metrics"), HTTP_AUTHORIZATION="Bearer monitor-token-1234")
    assert 'model="tiny-llama"' in monitor.content.decode()  # a monitor sees every engine, as at /healthz
