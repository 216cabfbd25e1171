"""One base for errors a person should read (llmcore.errors.UserError; the web side's PlaygroundError
carries a status), answered in one place: core.api.api_view for the JSON endpoints, and
core.errors.UserErrorMiddleware for whatever a page's view leaves unhandled, never a 500."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from llmcore.errors import UserError
from playground import urls as site_urls
from playground.catalog.services import ModelNotFound
from playground.core.services import PlaygroundError

ROOT = Path(__file__).resolve().parents[3]
# Exceptions that are not messages for a person: a job's own control flow between worker and runner.
NOT_FOR_USERS = {"llmcore.jobs.JobCancelled", "llmcore.jobs.JobFailed"}


def missing(request: HttpRequest) -> HttpResponse:
    raise ModelNotFound("no-such-model")


def refused(request: HttpRequest) -> HttpResponse:
    raise PlaygroundError("That cannot be done <now>.", status=409)


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug")


def forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("Only its owner may.")


# the site's own routes too: its pages' navigation names them
def quoted(request: HttpRequest) -> HttpResponse:
    raise PlaygroundError("Unknown layer 'q_proj'")


urlpatterns = [
    path("quoted/", quoted),
    path("missing/", missing),
    path("refused/", refused),
    path("broken/", broken),
    path("forbidden/", forbidden),
    *site_urls.urlpatterns,
]
handler404 = site_urls.handler404


@pytest.fixture
def client_in(django_user_model, settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    client.force_login(django_user_model.objects.create_user(username="erin", password="a long passphrase"))
    return client


@pytest.mark.django_db
def test_an_unhandled_user_error_is_a_page_with_its_status_and_an_escaped_message(client_in) -> None:
    page = client_in.get("/missing/")
    assert page.status_code == 404
    assert "No model named &#x27;no-such-model&#x27; in the catalog." in page.content.decode()
    assert "<h1>Not found</h1>" in page.content.decode()
    other = client_in.get("/refused/")
    assert other.status_code == 409
    assert "That cannot be done &lt;now&gt;." in other.content.decode()
    assert client_in.get("/broken/").status_code == 500  # a bug stays a bug


@pytest.mark.django_db
def test_htmx_gets_the_alert_alone_marked_for_the_page_to_show(client_in) -> None:
    response = client_in.get("/refused/", headers={"HX-Request": "true"})
    assert response.status_code == 200  # htmx swaps only a 2xx, into the element the answer was going to
    assert response["X-User-Error"] == "409"
    body = response.content.decode()
    alert = '<p class="message error" role="alert" data-testid="user-error">'
    alert += "That cannot be done &lt;now&gt;.</p>"
    assert body.strip() == alert


@pytest.mark.django_db
def test_a_script_gets_json(client_in) -> None:
    response = client_in.get("/missing/", headers={"Accept": "application/json"})
    assert response.status_code == 404
    quoted = client_in.get("/quoted/", headers={"Accept": "application/json"})
    assert json.loads(quoted.content)["error"] == "Unknown layer 'q_proj'"  # its closing quote kept
    said = "No model named 'no-such-model' in the catalog."
    assert json.loads(response.content) == {"error": said, "fields": {}}


def exception_classes(package: str) -> list[type[BaseException]]:
    found = []
    for file in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in file.parts or "management" in file.parts:
            continue
        name = ".".join(file.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found.append(value)
    return found


@pytest.mark.parametrize("package", ["llmcore", "playground"])
def test_every_error_of_the_project_is_a_user_error(package: str) -> None:
    """An exception class of llmcore or playground is a message for a person (UserError; on the web side a
    PlaygroundError, with its status) unless it is named here as control flow."""
    classes = exception_classes(package)
    assert len(classes) >= 8
    base = UserError if package == "llmcore" else PlaygroundError
    strays = [
        f"{c.__module__}.{c.__name__}"
        for c in classes
        if not issubclass(c, base) and f"{c.__module__}.{c.__name__}" not in NOT_FOR_USERS
    ]
    assert strays == []


def test_a_text_over_its_limit_is_refused_with_the_limit_and_never_cut() -> None:
    from django import forms

    from playground.core.text import TextField

    class Form(forms.Form):
        note = TextField(what="The note", max_length=10, widget=forms.Textarea)
        title = TextField(what="The title", max_length=10)

    for name in ("note", "title"):  # with maxlength a browser would drop the rest of a paste without a word
        assert "maxlength" not in str(Form()[name])
    form = Form({"note": "x" * 11, "title": "ok"})
    assert not form.is_valid()
    assert form.errors["note"] == ["The note is longer than 10 characters (it has 11): shorten it."]


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_unknown_addresses_and_objects_get_the_sites_own_404_with_debug_on_or_off(
    client_in, settings, debug: bool
) -> None:
    settings.DEBUG = debug
    for address, says in [
        ("/no-such-page/", "There is nothing at this address."),
        ("/chat/987654/", "No conversation 987654."),
        ("/models/no-such-model/", "No model named &#x27;no-such-model&#x27; in the catalog"),
    ]:
        page = client_in.get(address)
        body = page.content.decode()
        assert page.status_code == 404, address
        assert "<h1>Not found</h1>" in body, address
        assert says in body, address
        assert 'class="topbar"' in body, address  # the site's page, with its navigation
        assert "URLconf" not in body, address  # not Django's technical page, which lists every route
        assert "Django tried these URL patterns" not in body, address
    api = client_in.get("/api/no-such-endpoint")
    assert api.status_code == 404
    assert api.json() == {"error": "There is nothing at this address.", "fields": {}}
    htmx = client_in.get("/no-such-page/", headers={"HX-Request": "true"})
    assert htmx.status_code == 404  # htmx swaps nothing: the page stays as it was
    assert htmx["X-User-Error"] == "404"
    assert 'data-testid="user-error">There is nothing at this address.</p>' in htmx.content.decode()


@pytest.mark.django_db
def test_a_refusal_is_the_sites_own_403_page(client_in, settings) -> None:
    settings.DEBUG = True
    page = client_in.get("/forbidden/")
    assert page.status_code == 403
    assert "<h1>Not allowed</h1>" in page.content.decode()
    assert "Only its owner may." in page.content.decode()
