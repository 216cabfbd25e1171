"""Load the suites shipped with the project (llmcore/data/suites/). A later migration that runs the same
function brings the database in step when those files change."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from playground.evaluate.services import ensure_shipped_suites


def load(apps: Any, schema_editor: Any) -> None:
    ensure_shipped_suites(apps.get_model("evaluate", "Suite"), apps.get_model("evaluate", "SuiteItem"))


def unload(apps: Any, schema_editor: Any) -> None:
    apps.get_model("evaluate", "Suite").objects.filter(shipped=True).delete()


class Migration(migrations.Migration):
    dependencies = [("evaluate", "0001_initial")]
    operations = [migrations.RunPython(load, unload)]
