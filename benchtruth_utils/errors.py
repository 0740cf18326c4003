"""The exceptions benchtruth raises when it must refuse to run at all.

Bad artifacts never raise: they become findings. These errors are for inputs the
audit cannot start from (a bad parameter, a bench list that is not there) and for
records it cannot trust (a truth file of an unknown schema version).
"""


class BenchtruthError(ValueError):
    """Root of every error benchtruth raises on purpose."""


class ParameterError(BenchtruthError):
    """A notebook or function parameter that the audit refuses before writing anything."""

    def __init__(self, name: str, found: object, expected: str) -> None:
        self.name = name
        self.found = found
        self.expected = expected
        super().__init__(f"parameter {name!r} is {found!r}; expected {expected}")


class BenchListError(BenchtruthError):
    """The bench list itself cannot be read, so there is nothing to audit."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"bench list {path}: {reason}")


class TruthFileError(BenchtruthError):
    """A truth document that cannot be loaded: unreadable, invalid or of an unknown version."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"truth file {path}: {reason}")
