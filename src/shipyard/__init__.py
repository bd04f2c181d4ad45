"""Shipyard: the open ML platform you run on your own machines.

>>> import shipyard as sy
>>> ws = sy.connect()                                   # doctest: +SKIP
>>> ws.sql("CREATE MODEL demo.m OPTIONS(model_type='linear_reg') AS SELECT …")  # doctest: +SKIP
"""

from shipyard._version import __version__
from shipyard.client import connect
from shipyard.client.autolog import autolog
from shipyard.client.fluent import (
    active_run,
    end_run,
    log_artifact,
    log_figure,
    log_input,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_table,
    set_experiment,
    set_tag,
    set_tags,
    set_workspace,
    start_run,
)
from shipyard.errors import (
    AlreadyExists,
    ArtifactCorrupted,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ShipyardError,
    SQLError,
    Unauthenticated,
    Unavailable,
    Unsupported,
)

__all__ = [
    "AlreadyExists",
    "ArtifactCorrupted",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "JobFailed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "SQLError",
    "ShipyardError",
    "Unauthenticated",
    "Unavailable",
    "Unsupported",
    "__version__",
    "active_run",
    "autolog",
    "connect",
    "end_run",
    "log_artifact",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_workspace",
    "start_run",
]
