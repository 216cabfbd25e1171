"""The playground's model core: loading, tokenizing, looking inside and generating.

Framework-free on purpose: it imports torch and the Hugging Face libraries, never Django, Celery or
Channels. It reports progress through callbacks and yields tokens through iterators.
"""

from __future__ import annotations

import os

# Models come only from the local store; never reach out to a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
