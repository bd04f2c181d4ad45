"""The one exception tree of Shipyard.

Every failure a user can see is a :class:`ShipyardError`. Each class carries a stable ``code``
(what REST returns and what the remote client maps back to a class) and an HTTP status::

    ShipyardError (code)                         HTTP
    ├── InvalidArgument(ValueError)              400
    │   └── SQLError                             400   line, column, highlight
    ├── NotFound(LookupError)                    404
    ├── AlreadyExists                            409
    ├── FailedPrecondition                       409   e.g. model not trained
    │   └── ArtifactCorrupted                    409   checksum mismatch or missing bytes
    ├── PayloadTooLarge                          413
    ├── Unauthenticated                          401
    ├── PermissionDenied                         403
    ├── Unsupported(NotImplementedError)         501   a backend lacks a capability
    ├── Unavailable                              503
    ├── DeadlineExceeded                         504   past a configured timeout
    ├── JobFailed                                500   job id and log tail
    └── Internal                                 500   a bug: never shown with a traceback

This module imports only the standard library, so any layer (and the remote client) can use it.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    "error_class_for_code",
]


class ShipyardError(Exception):
    """Base class of every error Shipyard raises on purpose."""

    code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body REST returns: ``{code, message, details}``."""
        return {"code": self.code, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ShipyardError, ValueError):
    code = "INVALID_ARGUMENT"
    http_status = 400


class SQLError(InvalidArgument):
    """A statement that cannot be parsed or does not make sense.

    ``line`` and ``column`` are 1-based; ``highlight`` is the offending text.
    """

    code = "SQL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        highlight: str | None = None,
        sql: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message, line=line, column=column, highlight=highlight, **details)
        self.line = line
        self.column = column
        self.highlight = highlight
        self.sql = sql

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        where = f"line {self.line}, column {self.column}"
        if self.highlight:
            where += f", near {self.highlight!r}"
        return f"{self.message} ({where})"


class NotFound(ShipyardError, LookupError):
    code = "NOT_FOUND"
    http_status = 404

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return self.message


class AlreadyExists(ShipyardError):
    code = "ALREADY_EXISTS"
    http_status = 409


class FailedPrecondition(ShipyardError):
    code = "FAILED_PRECONDITION"
    http_status = 409


class ArtifactCorrupted(FailedPrecondition):
    code = "ARTIFACT_CORRUPTED"


class PayloadTooLarge(ShipyardError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class Unauthenticated(ShipyardError):
    code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(ShipyardError):
    code = "PERMISSION_DENIED"
    http_status = 403


class Unsupported(ShipyardError, NotImplementedError):
    code = "UNSUPPORTED"
    http_status = 501


class Unavailable(ShipyardError):
    code = "UNAVAILABLE"
    http_status = 503


class DeadlineExceeded(ShipyardError):
    """An operation ran past its configured timeout (e.g. an endpoint's ``timeout_s``)."""

    code = "DEADLINE_EXCEEDED"
    http_status = 504


class JobFailed(ShipyardError):
    code = "JOB_FAILED"
    http_status = 500


class Internal(ShipyardError):
    code = "INTERNAL"
    http_status = 500


_BY_CODE: dict[str, type[ShipyardError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        SQLError,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ArtifactCorrupted,
        PayloadTooLarge,
        Unauthenticated,
        PermissionDenied,
        Unsupported,
        Unavailable,
        DeadlineExceeded,
        JobFailed,
        Internal,
    )
}


def error_class_for_code(code: str) -> type[ShipyardError]:
    """The class for a wire ``code``; unknown codes become :class:`ShipyardError`.

    The remote client uses this table, never a class name taken from a payload.
    """
    return _BY_CODE.get(code, ShipyardError)
