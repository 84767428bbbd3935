"""The errors a provider raises, one small flat family.

    ProviderError                 (type)         retryable
    ├── AuthError                 "auth"         no    401/403 upstream, or a missing key
    ├── RateLimitError            "rate_limit"   yes   429; carries ``retry_after`` seconds
    ├── TimeoutError_             "timeout"      no    connect, first token, idle or total
    ├── BadRequestError           "bad_request"  no    400/404/422: the request can't succeed
    ├── UpstreamError             "upstream"     5xx yes, other no; an error the upstream sent
    ├── TransportError            "connection"   yes   refused, reset, DNS/TLS failure
    └── ProtocolError             "protocol"     no    bytes that break the wire protocol

Lower-level errors (httpx, JSON) are mapped to these in exactly one place, the HTTP shell
(``providers.http``), with ``raise … from exc``. Messages are written for the person reading
the UI: short, sanitised, never containing an API key or a request header.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every error a provider raises; ``type`` is the public error type."""

    type = "upstream"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_dict(self) -> dict[str, object]:
        """The ``error`` object of a ``model.error`` event."""
        out: dict[str, object] = {
            "type": self.type,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.status is not None:
            out["status"] = self.status
        return out


class AuthError(ProviderError):
    type = "auth"


class RateLimitError(ProviderError):
    type = "rate_limit"
    retryable = True

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class TimeoutError_(ProviderError):
    type = "timeout"


class BadRequestError(ProviderError):
    type = "bad_request"


class UpstreamError(ProviderError):
    type = "upstream"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        # A server-side failure may pass; a 4xx other than the ones above will not.
        self.retryable = status is None or status >= 500


class TransportError(ProviderError):
    type = "connection"
    retryable = True


class ProtocolError(ProviderError):
    type = "protocol"


def error_for_status(status: int, message: str, retry_after: float | None = None) -> ProviderError:
    """Map an upstream HTTP status to the error type a client sees."""
    if status in (401, 403):
        return AuthError(message, status=status)
    if status == 429:
        return RateLimitError(message, status=status, retry_after=retry_after)
    if status in (400, 404, 413, 422):
        return BadRequestError(message, status=status)
    if status in (408, 504):
        return TimeoutError_(message, status=status)
    return UpstreamError(message, status=status)
