"""Benchmarks, written as JSON: `make bench` (or `python -m bench [NAME ...]`).

Every module in bench/ with a `run()` function is a benchmark; each returns a dict of numbers (and the
targets it checks, with whether they were met). All results of one run go to one JSON file under
bench/results/ and to standard output. Targets live here, never in timed tests.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import sys
import time
import traceback
from datetime import UTC, datetime

from bench.common import ROOT

RESULTS = ROOT / "bench" / "results"


def main(selected: list[str]) -> int:
    import torch

    names = [
        m.name for m in pkgutil.iter_modules([str(ROOT / "bench")]) if m.name not in {"common", "__main__"}
    ]
    if selected:
        unknown = set(selected) - set(names)
        if unknown:
            print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(names)}")
            return 2
        names = selected
    report: dict = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cpu": platform.machine(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "benchmarks": {},
    }
    failed = False
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "run"):
            continue
        started = time.perf_counter()
        try:
            result = module.run()
        except Exception:
            failed = True
            result = {"error": traceback.format_exc()}
        result["bench_seconds"] = round(time.perf_counter() - started, 1)
        report["benchmarks"][name] = result
        print(json.dumps({name: result}, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"written to {path.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
