"""What the client raises: one exception class per kind of refusal.

Every refusal of the node's API carries a JSON body ``{"error": "..."}`` that
says what was wrong and where; it becomes the exception's message, and the
HTTP status picks the class.
"""


class PeerbatchError(Exception):
    """Anything the node refused or the client could not do."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = status


class Unreachable(PeerbatchError):
    """No node answers at the address (not running, wrong address)."""


class BadRequest(PeerbatchError):
    """400 (and 413): the request is malformed, e.g. a job file with an error."""


class Unauthorized(PeerbatchError):
    """401: a missing or wrong token (it changes at each start of the node)."""


class Forbidden(PeerbatchError):
    """403: this token or this node may not do that."""


class NotFound(PeerbatchError):
    """404: no such job, task, blob, schedule or pool here."""


class Conflict(PeerbatchError):
    """409: it contradicts what exists (a package version with other content)."""


class Unavailable(PeerbatchError):
    """503: the node is shutting down or not ready."""


class JobFailed(PeerbatchError):
    """A job waited for ended without every task succeeding."""

    def __init__(self, job):
        super().__init__(
            "job {} ended {}: {} failed, {} cancelled, {} skipped".format(
                job["id"], job["state"], job["failed"], job["cancelled"], job["skipped"]
            )
        )
        self.job = job


class WaitTimeout(PeerbatchError, TimeoutError):
    """A wait ran out of time before the job ended."""


BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    503: Unavailable,
}


def for_status(status, message):
    """The exception for an HTTP refusal."""
    cls = BY_STATUS.get(status, PeerbatchError)
    return cls("{} (HTTP {})".format(message, status), status)
