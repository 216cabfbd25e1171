"""A conversation's branch as JSON (with each answer's provenance) or Markdown, for download."""

from __future__ import annotations

from typing import Any

from playground.chat.models import Conversation, Message
from playground.chat.services.tree import history


def export_json(conversation: Conversation) -> dict[str, Any]:
    """The branch shown, with each answer's provenance, for download or a script. Each message's id and
    parent id (null for the first) place it in the conversation's tree; `versions` counts its siblings."""
    branch = history(conversation)
    return {
        "title": conversation.title,
        "model": conversation.model_name,
        "system_prompt": conversation.system_prompt,
        "sampler_settings": conversation.sampler_settings,
        "created": conversation.created.isoformat(),
        "messages": [
            {
                "id": m.pk,
                "parent": branch[i - 1].pk if i else None,
                "versions": m.versions.count,  # type: ignore[attr-defined]
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "error": m.error or None,
                "created": m.created.isoformat(),
                "provenance": m.provenance or None,
            }
            for i, m in enumerate(branch)
        ],
    }


def export_markdown(conversation: Conversation) -> str:
    """The conversation as a readable Markdown document; message text is written as it was said."""
    lines = [f"# {conversation.title}", "", f"Model: `{conversation.model_name}`", ""]
    if conversation.system_prompt:
        lines += ["## System", "", conversation.system_prompt, ""]
    for m in history(conversation):
        heading = {"user": "You", "assistant": "Assistant", "system": "System"}.get(m.role, m.role)
        badge = "" if m.status == Message.Status.COMPLETE else f" ({m.status})"
        lines += [f"## {heading}{badge}", "", m.content, ""]
        stats = (m.provenance or {}).get("stats") or {}
        if m.role == Message.Role.ASSISTANT and m.provenance:
            seed = m.provenance.get("seed")
            lines += [
                f"*{m.provenance.get('model')}, seed {seed}, stop: {stats.get('stop_reason', '-')}*",
                "",
            ]
    return "\n".join(lines)
