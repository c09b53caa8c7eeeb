"""The one exception type for bad input: the launcher prints its message as a single line and exits 2."""


class UsageError(ValueError):
    """Bad user input (a config value, a missing dataset). The message names the value and what is allowed."""
