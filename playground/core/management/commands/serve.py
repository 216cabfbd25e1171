"""Serve the playground on one machine: Daphne (HTTP and WebSockets) and a Celery worker together.

Ctrl-C, SIGTERM or a closed terminal (SIGHUP) stops both: the children get SIGTERM, a grace period, then
SIGKILL. If either child dies on its own, the other is stopped too and the command exits non-zero, so
nothing runs half-alive. On Linux the children also get SIGTERM if this process is killed outright.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

GRACE_SECONDS = 20
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to send SIGTERM when the parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(BaseCommand):
    help = "Start Daphne and a Celery worker together; Ctrl-C stops both."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="serve the site only")

    def handle(self, *args, **opts) -> None:
        commands = {
            "web": [
                sys.executable,
                "-m",
                # Daphne with login tokens masked in its access log (see that module).
                "playground.core.logsafe.daphne",
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

        def on_signal(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal)
        # New sessions: a terminal's Ctrl-C reaches only this process, which then stops the children in
        # order, instead of each child reacting on its own to the same SIGINT.
        procs = {
            name: subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent)
            for name, cmd in commands.items()
        }
        exit_code = 0
        try:
            self._say(f"Serving http://{opts['host']}:{opts['port']}/ ({', '.join(procs)}); Ctrl-C stops.")
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None and not stopping:
                        self._say(f"{name} exited with status {proc.returncode}; stopping the rest.")
                        exit_code = proc.returncode or 1
                        stopping = True
                time.sleep(0.2)
        finally:
            # Always reached, even if writing to a closed terminal fails: no child outlives this command.
            self._say("Stopping...")
            self._stop(procs.values())
            self._say("Stopped.")
        if exit_code:
            sys.exit(exit_code)

    @staticmethod
    def _stop(procs) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _say(self, message: str) -> None:
        try:
            self.stdout.write(message)
            self.stdout.flush()
        except (BrokenPipeError, OSError):
            pass  # the terminal (or a pipe such as `| tee`) is gone; keep stopping the children
