"""The one exception type for mistakes a user of the corruption library can make."""


class CorruptionError(ValueError):
    """A bad corruption name, severity, image or argument; the message is one clear line."""
