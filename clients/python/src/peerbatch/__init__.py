"""A client for the HTTP API of a peerbatch node (standard library only)."""

from .client import Client
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    JobFailed,
    NotFound,
    PeerbatchError,
    Unauthorized,
    Unavailable,
    Unreachable,
    WaitTimeout,
)

__all__ = [
    "Client",
    "PeerbatchError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "Unavailable",
    "Unreachable",
    "JobFailed",
    "WaitTimeout",
]
