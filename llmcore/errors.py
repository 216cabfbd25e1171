"""The one base of the errors a person should read.

`UserError`: the message is written for the person who asked (what is wrong with the input or the
request, and what to do instead), and whoever called shows it where that person is, never a traceback.
Every such error in `llmcore` derives from it (many also from ValueError or RuntimeError, as before); an
exception that does not is a bug and reads as one. The web side adds its own (playground.core.services
PlaygroundError, which carries a status) and answers both in one place.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message is for the person who asked: shown to them as it is."""
