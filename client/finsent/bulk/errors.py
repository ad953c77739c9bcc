"""The error of bulk work. It lives below every bulk module (storage raises it too), so none reaches up for it."""


class ScoreError(RuntimeError):
    """A problem with the files or arguments, reported without a traceback."""
