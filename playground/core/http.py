"""The request a page's view gets, typed: what the middleware has set on it by then.

LoginRequiredMiddleware lets only a signed-in user reach a view that is not marked public (so `user` is
a User there), and django-htmx's middleware sets `htmx` (as django-htmx's documentation types it).
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class Request(HttpRequest):
    htmx: HtmxDetails
    user: User  # narrower than User | AnonymousUser: signed in, see above
