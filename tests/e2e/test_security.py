"""Security on a real `manage.py serve` site: login tokens stay out of the access log, logins are
throttled through Daphne, /healthz keeps its details for monitors, and pages carry the CSP."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.conftest import manage, wait_for
from tests.e2e.conftest import Site, get, healthz, logged_in_page

pytestmark = pytest.mark.integration


def opener() -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)), jar


def post(open_, jar, url: str, fields: dict[str, str]) -> tuple[int, str]:
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, **fields}).encode()
    try:
        with open_.open(urllib.request.Request(url, data=data, headers={"Referer": url}), timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_access_log_never_shows_a_login_token(site: Site) -> None:
    link = site.login_link()
    token = link.rstrip("/").rsplit("/", 1)[-1]
    open_, jar = opener()
    open_.open(link, timeout=20).read()
    status, _ = post(open_, jar, link, {})
    assert status == 200  # followed the redirect to the models page
    wait_for(lambda: "POST /login/link/[hidden]/" in site.log_path.read_text(), 10, "the masked POST line")
    log = site.log_path.read_text()
    assert "GET /login/link/[hidden]/" in log
    assert token not in log
    assert token.split(":")[0] not in log  # not even the token's payload part


def test_too_many_wrong_passwords_through_daphne_get_the_429_page(site: Site) -> None:
    url = f"{site.url}/accounts/login/"
    open_, jar = opener()
    open_.open(url, timeout=20).read()
    try:
        statuses = [
            post(open_, jar, url, {"username": "admin", "password": f"wrong {i}"})[0] for i in range(5)
        ]
        assert statuses == [200, 200, 200, 200, 429]
        status, html = post(open_, jar, url, {"username": "nobody", "password": "x"})
        assert status == 429
        assert re.search(r"Too many failed attempts; try again in 1[45] minutes\.", html)
    finally:
        manage(site.env, "axes_reset")  # the other tests log in from this same address
    assert get(url)[0] == 200


def test_strangers_see_health_flags_and_monitors_the_details(site: Site) -> None:
    status, _, body = get(f"{site.url}/healthz")
    assert status == 200
    assert "hostname" not in body
    assert "vendor" not in body
    assert healthz(site.url)["checks"]["workers"]["workers"][0]["device"] == "cpu"


def test_pages_carry_the_policy_with_the_sites_websocket_origin(site: Site) -> None:
    _, headers, _ = get(f"{site.url}/accounts/login/")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp + ";"
    assert "unsafe-inline" not in csp
    assert f"connect-src 'self' {site.url.replace('http://', 'ws://')}" in csp


def test_a_page_that_breaks_the_policy_is_caught(site: Site, browser) -> None:
    page = logged_in_page(site, browser)
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">inline</p>')")
    page.wait_for_timeout(200)
    assert any("Content Security Policy" in v for v in browser.violations)
    browser.violations.clear()  # this page broke it on purpose
