"""The Content-Security-Policy: only this site's scripts, styles and sockets, and nothing inline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in header.split(";")) if d}


def test_pages_allow_only_this_sites_scripts_and_styles(client_in: Client, model_dir) -> None:
    csp = policy(client_in.get("/models/"))
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert not any("unsafe" in source for sources in csp.values() for source in sources)
    assert csp["default-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["form-action"] == ["'self'"]


def test_connect_src_names_the_sites_own_websocket_origin(client_in: Client, model_dir) -> None:
    assert policy(client_in.get("/chat/"))["connect-src"] == ["'self'", "ws://testserver"]
    secure = policy(client_in.get("/chat/", secure=True))
    assert secure["connect-src"] == ["'self'", "wss://testserver"]


def test_the_login_page_has_the_policy_too(client: Client) -> None:
    assert policy(client.get("/accounts/login/"))["script-src"] == ["'self'"]


TEMPLATE_DIRS = [ROOT / "templates", *sorted((ROOT / "playground").glob("*/templates"))]
INLINE = re.compile(
    r"""\sstyle=["']|<style[\s>]|\son[a-z]+=["']|<script(?![^>]*\bsrc=)(?![^>]*application/json)|javascript:|hx-on"""
)


@pytest.mark.parametrize("path", [p for d in TEMPLATE_DIRS for p in sorted(d.rglob("*.html"))], ids=str)
def test_no_template_has_inline_styles_scripts_or_handlers(path: Path) -> None:
    found = [m.group(0).strip() for m in INLINE.finditer(path.read_text())]
    assert not found, f"{path.relative_to(ROOT)} has {found}: the Content-Security-Policy refuses them"
