from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_llmcore_leaves_the_web_framework_out() -> None:
    code = (
        "import sys, pkgutil, importlib, llmcore\n"
        "for m in pkgutil.walk_packages(llmcore.__path__, 'llmcore.'):\n"
        "    importlib.import_module(m.name)\n"
        "web = {'django', 'celery', 'channels', 'playground'}\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in web)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_llmcore_never_asks_a_model_hub() -> None:
    code = "import os, llmcore; print(os.environ.get('HF_HUB_OFFLINE'))"
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "0"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "1"
