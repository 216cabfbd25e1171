"""Serve the playground on one machine: Daphne (HTTP and WebSockets) and a Celery worker together.

Ctrl-C (or SIGTERM) stops both: the children get SIGTERM, a grace period, then SIGKILL. If either child
dies on its own, the other is stopped too and the command exits non-zero, so nothing runs half-alive.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

GRACE_SECONDS = 20


class Command(BaseCommand):
    help = "Start Daphne and a Celery worker together; Ctrl-C stops both."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="serve the site only")

    def handle(self, *args, **opts) -> None:  # type: ignore[no-untyped-def]
        commands = {
            "web": [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                opts["host"],
                "-p",
                str(opts["port"]),
                "playground.asgi:application",
            ],
        }
        if not opts["no_worker"]:
            commands["worker"] = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "playground",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "1",
            ]
        stopping = False

        def on_signal(signum, frame) -> None:  # type: ignore[no-untyped-def]
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        # New sessions: a terminal's Ctrl-C reaches only this process, which then stops the children in
        # order, instead of each child reacting on its own to the same SIGINT.
        procs = {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()}
        self.stdout.write(
            f"Serving http://{opts['host']}:{opts['port']}/ ({', '.join(procs)}); Ctrl-C stops."
        )
        exit_code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with status {proc.returncode}; stopping the rest.")
                    exit_code = proc.returncode or 1
                    stopping = True
            time.sleep(0.2)
        self.stdout.write("Stopping...")
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.stdout.write("Stopped.")
        if exit_code:
            sys.exit(exit_code)
