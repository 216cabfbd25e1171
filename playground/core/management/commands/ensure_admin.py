from __future__ import annotations

from django.core.management.base import BaseCommand

from playground.core import services


class Command(BaseCommand):
    help = "Make sure an admin account exists and print a one-time login link for it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin", help="name for a new admin (default: admin)")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the site is served")

    def handle(self, *args, **opts) -> None:
        user, created = services.ensure_admin(opts["username"])
        if created:
            self.stdout.write(f"Created the admin account {user.get_username()!r} (no password yet).")
        link = opts["base_url"].rstrip("/") + services.login_link_path(user)
        self.stdout.write(
            self.style.SUCCESS(f"Log in as {user.get_username()!r} with this one-time link:\n\n    {link}\n")
        )
        self.stdout.write(
            "  (It works once and expires; `python manage.py login_link` prints a new one, and\n"
            f"   `python manage.py changepassword {user.get_username()}` sets a password.)"
        )
