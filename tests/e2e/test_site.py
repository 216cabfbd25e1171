"""End to end: Daphne serves the real app, a real worker runs beside it, a real browser logs in."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.parse

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import ARTIFACTS, Site, get, healthz, start_site

pytestmark = pytest.mark.integration


def test_healthz_reports_every_part_and_a_live_cpu_worker(site: Site) -> None:
    body = healthz(site.url)
    assert body["status"] == "ok"
    assert all(check["ok"] for check in body["checks"].values())
    workers = body["checks"]["workers"]["workers"]
    assert [w["device"] for w in workers] == ["cpu"]
    assert workers[0]["queues"] == ["cpu"]


def test_strangers_are_sent_to_the_login_page(site: Site) -> None:
    status, _, html = get(f"{site.url}/models/")
    assert status == 200  # after the redirect
    assert "Log in" in html
    assert 'name="password"' in html


def test_a_newcomer_logs_in_with_the_link_and_sees_the_default_model(site: Site, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.goto(site.login_link())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site.url}/models/")
    row = page.locator("tr", has=page.get_by_role("link", name="smollm2-135m-instruct"))
    assert row.locator('[data-fact="layers"]').inner_text() == "30"
    assert row.locator('[data-fact="heads"]').inner_text() == "9"
    assert row.locator('[data-fact="kv_heads"]').inner_text() == "3"
    assert row.locator('[data-fact="parameters"]').inner_text() == "134.5 M"
    assert row.locator("[data-kind]").inner_text() == "base"
    wrap = page.locator(".table-wrap")
    fits = wrap.evaluate("w => w.scrollWidth <= w.clientWidth")
    assert fits, "the catalog table fits a 1,400-pixel window"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "catalog.png"), full_page=True)
    # More columns on request: a box ticked sends the form at once, and the choice is kept.
    page.get_by_text("Columns").click()
    page.get_by_label("Vocabulary").check()
    page.wait_for_url("**/models/?columns=1*")
    assert row.locator('[data-fact="vocab"]').inner_text() == "49152"
    page.get_by_label("Hidden").check()
    page.wait_for_url("**col=hidden*")
    assert row.locator('[data-fact="hidden"]').inner_text() == "576"
    page.goto(f"{site.url}/models/")
    assert row.locator('[data-fact="vocab"]').inner_text() == "49152"
    page.get_by_text("Columns").click()
    page.get_by_label("Vocabulary").uncheck()
    page.wait_for_function("!document.querySelector('[data-fact=vocab]')")
    page.get_by_label("Hidden").uncheck()
    page.wait_for_function("!document.querySelector('[data-fact=hidden]')")
    # htmx is loaded from this site and the filter box swaps rows in place.
    page.get_by_label("Filter models").fill("no-such-model")
    page.get_by_text("No model matches").wait_for()
    page.get_by_label("Filter models").fill("smol")
    page.get_by_role("link", name="smollm2-135m-instruct").click()
    page.wait_for_url(f"{site.url}/models/smollm2-135m-instruct/")
    assert "Apache-2.0" in page.content()
    page.screenshot(path=str(ARTIFACTS / "model-detail.png"), full_page=True)
    # Every tool opens on this model from its page.
    tools = page.locator("#tools")
    tools.get_by_role("link", name="Logit lens").click()
    page.wait_for_url("**/logit-lens/?model=smollm2-135m-instruct")
    assert page.locator("#id_model").input_value() == "smollm2-135m-instruct"
    # An unknown address and an unknown model: the site's own page, with its navigation, even with
    # DEBUG on (as `make run` has it), never Django's technical page with the site's routes.
    for address, says in [
        ("/no-such-page/", "There is nothing at this address."),
        ("/models/no-such-model/", "No model named 'no-such-model' in the catalog."),
    ]:
        response = page.goto(f"{site.url}{address}")
        assert response.status == 404
        assert page.locator("h1").inner_text() == "Not found"
        assert says in page.locator("main").inner_text()
        assert page.get_by_role("navigation", name="Sections").is_visible()
        assert "URLconf" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "not-found.png"), full_page=True)


def session_cookie(site: Site) -> str:
    """Log in over plain HTTP with a one-time link (GET for the CSRF cookie, then POST)."""
    import http.cookiejar
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    link = site.login_link()
    opener.open(link).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf}).encode()
    request = urllib.request.Request(link, data=data, headers={"Referer": link})
    opener.open(request).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def test_websockets_check_origin_and_login(site: Site) -> None:
    import websockets
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    ws_url = site.url.replace("http://", "ws://") + "/ws/health/"
    cookie = session_cookie(site)

    async def scenario() -> tuple[object, object, dict]:
        # A page on another origin may not open a socket to the site, even with the user's cookie.
        try:
            async with websockets.connect(
                ws_url, origin="http://evil.example", additional_headers={"Cookie": cookie}
            ):
                foreign = "accepted"
        except InvalidStatus as exc:
            foreign = exc.response.status_code
        # The right origin without a session is closed as unauthenticated.
        async with websockets.connect(ws_url, origin=site.url) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
                anonymous = "accepted"
            except ConnectionClosed as exc:
                anonymous = exc.rcvd.code if exc.rcvd else None
        async with websockets.connect(ws_url, origin=site.url, additional_headers={"Cookie": cookie}) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"type": "ping"}))
            pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return foreign, anonymous, {"hello": hello, "pong": pong}

    foreign, anonymous, answers = asyncio.run(scenario())
    assert foreign == 403
    assert anonymous == 4401
    assert answers["hello"] == {"type": "hello", "user": "admin"}
    assert answers["pong"] == {"type": "pong"}


def port_open(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((parsed.hostname, parsed.port)) == 0


def test_ctrl_c_stops_the_server_and_the_worker_together(real_model_store, tmp_path) -> None:
    site = start_site(tmp_path)
    assert port_open(site.url)
    site.process.send_signal(signal.SIGINT)
    code = site.process.wait(timeout=60)
    assert code == 0, site.log()
    assert not port_open(site.url)
    log = site.log()
    assert "Stopped." in log
    # The worker shut down cleanly too: it removed its own heartbeat row on the way out.
    import sqlite3

    with sqlite3.connect(tmp_path / "playground.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM core_workerheartbeat").fetchone()[0] == 0
    wait_for(lambda: not port_open(site.url), 5, "the port to close")
