from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def num(value: object) -> str:
    """Integers with thousands separators, floats with four significant digits, anything else as is."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
