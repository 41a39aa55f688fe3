"""The exceptions the runner and the CLI turn into one line: bad user input, and a cell that broke down."""


class HarnessError(Exception):
    """A user-facing error: the message names the file, key or value at fault."""


class CellFailed(Exception):
    """A cell's computation broke down (a NaN or infinite loss): it is recorded as failed, the run goes on."""

    def __init__(self, reason: str, step: int):
        super().__init__(reason)
        self.step = step
