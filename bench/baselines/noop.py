"""The bare RQ job: returns immediately."""


def noop():
    return None
