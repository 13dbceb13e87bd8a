"""Errors that are the user's to fix: the CLI prints them as one line and exits non-zero."""


class AutoproxError(ValueError):
    """A user error (bad name, bad file, bad value) with a message meant to be read as is."""


class AutoproxWarning(UserWarning):
    """Something the user should know (a repaired file, a dropped duplicate); the CLI prints it as
    one line, `autoprox: warning: ...`, and goes on."""


class IdleWorkersWarning(AutoproxWarning):
    """A discovery step scores fewer programs than there are workers: the others wait through it."""
