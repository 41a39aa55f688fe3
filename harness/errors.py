"""The one exception type for bad user input; the CLI prints it as a single line."""


class HarnessError(Exception):
    """A user-facing error: the message names the file, key or value at fault."""
