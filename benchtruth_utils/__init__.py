"""benchtruth: audit benchmark run folders and rebuild paper tables from the runs that really ran.

The notebooks call :func:`run_audit` (01) and :func:`build_tables` (02); everything
else is here so that it can be tested without a notebook.
"""

__version__ = "0.1.0"

from .audit import AuditResult, build_tables, run_audit
from .errors import (
    ArtifactsChangedError,
    BenchListError,
    BenchtruthError,
    ParameterError,
    TruthFileError,
)
from .evidence import StrictAuditError, check_executed_notebook, enforce_strict, strict_failures

__all__ = [
    "ArtifactsChangedError",
    "AuditResult",
    "BenchListError",
    "BenchtruthError",
    "ParameterError",
    "StrictAuditError",
    "TruthFileError",
    "__version__",
    "build_tables",
    "check_executed_notebook",
    "enforce_strict",
    "run_audit",
    "strict_failures",
]
