from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from playground.catalog import services
from playground.catalog.models import ModelEntry
from playground.catalog.templatetags.catalog import human_bytes, human_count


def access(entry: ModelEntry) -> str:
    if entry.shared:
        return "shared"
    return f"private:{entry.owner.get_username() if entry.owner else '(admins only)'}"


class Command(BaseCommand):
    help = "Manage the model store: pull-default, pull NAME, import PATH, list, remove NAME."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("pull-default", help=f"pull {services.DEFAULT_MODEL} if it is not in the store yet")
        pull = sub.add_parser("pull", help="pull a model by name (see `models pullable`)")
        pull.add_argument("name")
        sub.add_parser("pullable", help="list the models that can be pulled by name")
        imp = sub.add_parser("import", help="import a .gguf file or a Hugging Face folder with safetensors")
        imp.add_argument("path")
        imp.add_argument("--name", help="name in the store (default: from the file or folder name)")
        sub.add_parser("list", help="list the models in the store")
        rm = sub.add_parser("remove", help="remove a model from the store")
        rm.add_argument("name")

    def handle(self, *args, **opts) -> None:
        action = opts["action"]
        try:
            if action in ("pull-default", "pull"):
                name = services.DEFAULT_MODEL if action == "pull-default" else opts["name"]
                meta, added = services.pull_model(name, progress=self.say)
                self.stdout.write(
                    self.style.SUCCESS(f"{meta.name} {'pulled' if added else 'is already here'}.")
                )
            elif action == "pullable":
                for spec in services.pullable_models():
                    self.stdout.write(f"{spec.name:24} {spec.license:20} {spec.description}")
            elif action == "import":
                meta = services.import_model(opts["path"], opts.get("name"), progress=self.say)
                self.stdout.write(self.style.SUCCESS(f"Imported {meta.name}."))
            elif action == "list":
                entries = services.list_models()
                if not entries:
                    self.stdout.write("No models yet; run `python manage.py models pull-default`.")
                for e in entries:
                    self.stdout.write(
                        f"{e.name:28} {e.family:10} {human_count(e.parameters):>8} params "
                        f"{human_bytes(e.size_bytes):>9}  {e.dtype:9} "
                        f"parent={e.parent.name if e.parent else '-'} {access(e)}"
                    )
            elif action == "remove":
                services.remove_model(opts["name"])
                self.stdout.write(self.style.SUCCESS(f"Removed {opts['name']}."))
        except services.StoreError as exc:
            raise CommandError(str(exc)) from None

    def say(self, message: str) -> None:
        self.stdout.write(f"  {message}")
