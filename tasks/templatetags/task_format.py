"""Small display filters for the task pages (formatting only)."""

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration(value) -> str:
    """A timedelta as a short human duration: 0.42s, 12.3s, 4m 05s, 2h 03m."""
    if not isinstance(value, timedelta):
        return "—"
    seconds = max(0.0, value.total_seconds())
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def seconds(value) -> str:
    """A Decimal number of seconds without trailing zeros: 5, 0.5, 1.25."""
    try:
        text = f"{value.normalize():f}"
    except AttributeError:
        return str(value)
    return text
