"""The one exception type whose message is shown to the user as is, without a traceback."""

from urllib.parse import urlsplit, urlunsplit


class PipelineError(Exception):
    """A failure the user can act on; its message is one line that says what and where."""


def redact(uri: str) -> str:
    """The URI for a message or a log: a `user:password@` in it becomes `***@`."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
