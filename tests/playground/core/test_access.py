from __future__ import annotations

import pytest
from django.test import Client
from django.urls import NoReverseMatch, URLResolver, get_resolver, reverse

pytestmark = pytest.mark.django_db

# The only views a stranger may see: health for monitors, and the ways to log in.
OPEN_VIEWS = {"healthz", "login", "login-link", "admin:login", "admin:logout", "admin:javascript-catalog"}
# Views that answer a stranger 401 instead of a redirect to the login page: monitors and API clients
# send a token or key, and a program cannot follow a login page.
REFUSING_VIEWS = {"engine:metrics"}
API_PREFIX = "openai_api:"  # every /v1 route: OpenAI's 401 error object


def all_url_names(resolver=None, prefix: str = "") -> list[tuple[str, object]]:
    resolver = resolver or get_resolver()
    found = []
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = f"{pattern.namespace}:" if pattern.namespace else ""
            found += all_url_names(pattern, prefix + ns)
        elif pattern.name:
            found.append((prefix + pattern.name, pattern))
    return found


def sample_path(name: str, pattern) -> str:
    args = {key: "1" if conv.regex == "[0-9]+" else "x" for key, conv in pattern.pattern.converters.items()}
    if pattern.default_args:
        args = {k: v for k, v in args.items() if k not in pattern.default_args}
    try:
        return reverse(name, kwargs=args)
    except NoReverseMatch:
        return reverse(name, args=list(args.values()))


def test_every_page_but_health_and_login_needs_a_login(client: Client) -> None:
    checked = []
    for name, pattern in all_url_names():
        # Django's admin guards its own pages (checked through admin:index); its regex routes
        # can't be reversed with sample arguments.
        if name in OPEN_VIEWS or (name.startswith("admin:") and name != "admin:index"):
            continue
        path = sample_path(name, pattern)
        response = client.get(path)
        if name.startswith(API_PREFIX) or name in REFUSING_VIEWS:
            if response.status_code == 405:  # a POST-only endpoint
                response = client.post(path, data="{}", content_type="application/json")
            assert response.status_code == 401, (
                f"{name} ({path}) answered {response.status_code} to a stranger"
            )
            checked.append(name)
            continue
        assert response.status_code == 302, f"{name} ({path}) answered {response.status_code} to a stranger"
        assert "/login/" in response.url, f"{name} ({path}) redirected to {response.url}"
        checked.append(name)
    assert {"home", "catalog:list", "catalog:detail", "inspect:tokenize", "chat:index", "admin:index"} <= set(
        checked
    )
    assert {"engine:metrics", "openai_api:models", "openai_api:chat-completions"} <= set(checked)


def test_it_sends_strangers_away_from_a_model_detail_page(client: Client) -> None:
    response = client.get(reverse("catalog:detail", args=["anything"]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("name", ["evaluate:list"])  # suites and runs are built; arena and judges are not
def test_sections_still_to_be_built_say_so(client_in: Client, name: str) -> None:
    response = client_in.get(reverse(name))
    assert response.status_code == 200
    assert b"not built yet" in response.content


def test_the_layout_links_every_section(client_in: Client, model_dir) -> None:
    html = client_in.get(reverse("catalog:list")).content.decode()
    for label in ["Models", "Tokenizer", "Attention", "Next token", "Logit lens", "Chat", "Jobs", "Evaluate"]:
        assert f">{label}</a>" in html


def test_htmx_is_served_from_this_site_and_sends_the_csrf_token(client_in: Client, model_dir) -> None:
    html = client_in.get(reverse("catalog:list")).content.decode()
    assert '<script src="/static/django_htmx/htmx-2' in html
    assert "https://" not in html.split("<body")[0]  # nothing loaded from another host
    token = client_in.cookies["csrftoken"].value
    assert token
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_forms_are_refused_without_a_csrf_token(user) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("login"), {"username": "alice", "password": "correct horse battery staple"}
    )
    assert response.status_code == 403


def test_password_login_works_with_the_csrf_token(user) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get(reverse("login"))
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("login"),
        {"username": "alice", "password": "correct horse battery staple", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response.url == reverse("catalog:list")


def test_logout_is_a_post_and_ends_the_session(client_in: Client) -> None:
    response = client_in.post(reverse("logout"))
    assert response.status_code == 302
    assert client_in.get(reverse("catalog:list")).status_code == 302
