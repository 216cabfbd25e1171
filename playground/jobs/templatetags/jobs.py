from __future__ import annotations

from django import template

from playground.catalog.templatetags.catalog import human_bytes

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


@register.filter
def measure(value: object, unit: str = "") -> str:
    """A reported number in its unit (llmcore.jobs.Measure.unit), rounded for reading: bytes in KB/MB/GB,
    a share in percent, seconds in ms below one, the rest with four significant digits (a KL of 1e-5 is
    not 0); '-' where the report has none."""
    if value is None or value == "":
        return "-"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if unit == "bytes":
        return human_bytes(int(value))
    if unit == "share":
        return f"{100 * value:.1f} %"
    if unit == "s":
        return f"{1000 * value:.0f} ms" if value < 1 else f"{value:,.1f} s"
    if unit == "tokens/s":
        return f"{value:,.1f} tokens/s"
    return f"{num(value)} {unit}".strip()
