from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from playground.core import services


class Command(BaseCommand):
    help = "Print a one-time login link for a user (default: the first admin)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", nargs="?")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, **opts) -> None:
        users = get_user_model().objects.filter(is_active=True)
        user = (
            users.filter(username=opts["username"]).first()
            if opts["username"]
            else users.filter(is_superuser=True).order_by("pk").first()
        )
        if user is None:
            raise CommandError("No such active user (run `python manage.py ensure_admin` to create one).")
        self.stdout.write(opts["base_url"].rstrip("/") + services.login_link_path(user))
