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
    """A request needs more than a configured limit allows (e.g. visual tokens); make it smaller."""


class MediaAccessError(MediaError):
    """A media path the caller may not open: it resolves outside the allowed media root (HTTP 403)."""
