"""One table from an exception to the server's reply: HTTP status, OpenAI ``code`` and ``type``.

Every path that turns an error into a reply uses ``api_error``: the JSON routes (prompt check, prepare, the
batcher's answer) and the streamed one (an ``error`` event), so the same error gets the same status and code
however the request asked. Most specific class first; ``ApiError`` (and ``MediaRejected``) carry their own.
"""

from __future__ import annotations

from ..errors import (
    ApiError,
    CheckpointError,
    ConversationError,
    HulumedError,
    MediaAccessError,
    MediaError,
    RequestTooLarge,
    StructuredOutputError,
)

#: (class, HTTP status, code, type); ``RequestTooLarge`` answers with its own ``code`` (which limit).
TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (RequestTooLarge, 400, "request_too_large", "invalid_request_error"),
    (MediaAccessError, 403, "path_outside_media_root", "invalid_request_error"),
    (MediaError, 400, "invalid_media", "invalid_request_error"),
    (ConversationError, 400, "invalid_messages", "invalid_request_error"),
    (StructuredOutputError, 400, "structured_output_failed", "invalid_request_error"),
    (CheckpointError, 500, "checkpoint_error", "server_error"),  # the served checkpoint, not the request
    (HulumedError, 400, "invalid_request", "invalid_request_error"),
    (ValueError, 400, "invalid_request", "invalid_request_error"),
)


def api_error(error: BaseException) -> ApiError:
    """The reply for ``error``: itself when it is an ``ApiError``, else the first matching row of ``TABLE``;
    anything else is a 500 ``internal_error`` whose message is not shown to the client."""
    if isinstance(error, ApiError):
        return error
    for cls, status, code, kind in TABLE:
        if isinstance(error, cls):
            return ApiError(status, str(error), getattr(error, "code", None) or code, kind)
    return ApiError(500, "internal server error", "internal_error", "server_error")
