"""The one error type a user sees: a single line naming the problem and the fix."""


class CurationError(Exception):
    """A user-facing error. The CLI prints it as one line and exits with code 2."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)
