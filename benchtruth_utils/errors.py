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


class ArtifactsChangedError(BenchtruthError):
    """Artifacts a truth file was built from have changed since the audit."""

    def __init__(self, changed: list[str], missing: list[str]) -> None:
        self.changed = changed
        self.missing = missing
        listed = ", ".join([*changed, *missing][:5])
        super().__init__(
            f"{len(changed)} artifacts changed and {len(missing)} went missing since the audit "
            f"({listed}); rerun 01_audit, or pass allow_changed_artifacts=True to build anyway"
        )
