"""Signal handlers: close a user's sockets when that session logs out."""

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from . import realtime


@receiver(user_logged_out)
def close_sockets_of_session(sender, request, user, **kwargs):
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        realtime.session_ended(session_key)
