from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def human_count(value: int | None) -> str:
    """134515008 -> '134.5 M'."""
    if value is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return str(value)


@register.filter
def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


@register.filter
def https_url(value: object) -> str:
    """The value if it is an https URL, else ''; metadata never turns into a javascript: link."""
    text = str(value or "")
    return text if text.startswith("https://") else ""
