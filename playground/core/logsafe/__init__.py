"""Servers started with secrets kept out of their logs (see logsafe.daphne)."""
