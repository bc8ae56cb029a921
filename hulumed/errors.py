"""The hulumed exception hierarchy.

Every error a user can cause (bad checkpoint, bad media, bad request) is a `HulumedError`, with a message
that says what was wrong and what to do. Callers catch the family they care about.
"""

from __future__ import annotations


class HulumedError(Exception):
    """Base class of every error raised on purpose by hulumed."""


class CheckpointError(HulumedError):
    """A checkpoint folder or file cannot be loaded: missing files, missing/unexpected tensors, bad config."""


class MediaError(HulumedError, ValueError):
    """An image, video or volume cannot be read or is unusable (missing, corrupt, empty, too large...)."""


class RequestTooLarge(HulumedError, ValueError):
    """A request needs more than a configured limit allows (e.g. visual tokens); make it smaller. ``code`` names
    the limit (``too_many_visual_tokens``, ``prompt_too_long``) for the server's error replies."""

    def __init__(self, message: str, code: str = "request_too_large") -> None:
        super().__init__(message)
        self.code = code


class MediaAccessError(MediaError):
    """A media path the caller may not open: it resolves outside the allowed media root (HTTP 403)."""


class ConversationError(HulumedError, ValueError):
    """A conversation does not follow the schema of ``hulumed.conversation`` (the message says where)."""


class DataError(HulumedError, ValueError):
    """A data file or record (training data, benchmark files) is missing, malformed, or cannot be encoded."""


class RecipeError(HulumedError, ValueError):
    """A training recipe or its options are inconsistent, or the requested set-up is unsupported here."""


class StructuredOutputError(HulumedError, ValueError):
    """A structured-output grammar could not be followed (llguidance's resource limits); only that request fails."""


class EndpointError(HulumedError, RuntimeError):
    """A model server refused a request or could not be reached after the retries (``hulumed eval --endpoint``)."""


class ApiError(HulumedError):
    """A request the server answers with an OpenAI-style error: HTTP ``status``, ``code`` and ``kind``."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


class MediaRejected(ApiError):
    """A media part the server will not take; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_media") -> None:
        super().__init__(status, message, code)
