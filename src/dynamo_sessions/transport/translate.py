"""The one place a DynamoDB or botocore error becomes one of this library's typed errors.

Every caller - the session protocol's call step, table management, garbage collection, stats,
the command line - hands the exception it caught to :func:`translate` and raises what comes back
(``from`` the original): ``TableNotFound`` for a missing table, ``DynamoUnavailable`` for a call
botocore gave up on (throttling, 5xx, no answer).  Anything else (a refused condition, a
validation error, credentials) is an answer about the request, and is left to the caller.
"""

from __future__ import annotations

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import DynamoSessionsError, DynamoUnavailable, TableNotFound

CONDITION_FAILED = "ConditionalCheckFailedException"
NOT_FOUND = "ResourceNotFoundException"
THROTTLING_CODES = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException",
                              "RequestLimitExceeded"})
TRANSIENT_CODES = THROTTLING_CODES | {"InternalServerError", "ServiceUnavailable"}


def error_code(exc: BaseException) -> str:
    """DynamoDB's error code of a ``ClientError`` (``""`` for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_condition_failure(exc: BaseException) -> bool:
    """A conditional write was refused: an answer about the item, not a fault."""
    return error_code(exc) == CONDITION_FAILED


def is_transient(exc: BaseException) -> bool:
    """A fault that passes (throttling, 5xx, the network), not an answer about the item."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or status >= 500
    return isinstance(exc, (HTTPClientError, BotoConnectionError))


def unavailable(api: str, exc: BaseException) -> DynamoUnavailable:
    """The typed error for ``api`` that botocore gave up on with ``exc``."""
    code = error_code(exc) or type(exc).__name__
    return DynamoUnavailable(
        f"DynamoDB {api} failed past botocore's retries ({code}): it may or may not have been "
        "applied; retry the request later (boto_max_attempts, boto_retry_mode, "
        "read_timeout_seconds set how hard botocore tries)"
    )


def translate(api: str, exc: BaseException, table_name: str) -> DynamoSessionsError | None:
    """This library's error for ``exc`` raised by ``api`` on ``table_name``, or ``None`` when
    the caller should handle (or re-raise) ``exc`` itself.  Raise the result ``from exc``."""
    if isinstance(exc, DynamoSessionsError):
        return None  # already ours: re-raised as it is
    if error_code(exc) == NOT_FOUND:
        return TableNotFound(table_name)
    if is_transient(exc):
        return unavailable(api, exc)
    return None
