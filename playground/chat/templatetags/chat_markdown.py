"""Model output as Markdown: raw HTML is escaped and javascript: links are refused (markdown-it's
validateLink), so whatever the model writes shows as text, never as live markup."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

register = template.Library()
_markdown = MarkdownIt("commonmark", {"html": False})


@register.filter
def markdown(text: str) -> SafeString:
    return mark_safe(_markdown.render(text or ""))  # noqa: S308 - html is off: markdown-it escapes it
