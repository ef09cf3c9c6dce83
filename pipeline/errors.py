"""The one exception type whose message is shown to the user as is, without a traceback."""


class PipelineError(Exception):
    """A failure the user can act on; its message is one line that says what and where."""
