"""The one exception type for mistakes a user can make (paths, names, shapes, formats)."""

from corruptions.errors import CorruptionError


class RobustSegError(ValueError):
    """A user-caused error; the CLI prints its message as one line and exits non-zero."""


# Both are shown by the CLI as one line.
USER_ERRORS = (RobustSegError, CorruptionError)
