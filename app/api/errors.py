"""API errors: one exception type, one JSON shape, one place that renders them.

Every error a client sees is ``{"error": {"type", "message", "param"?}}`` with a fitting
status; never a stack trace, never an upstream key.
"""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}

    def response(self) -> Response:
        response = jsonify(self.body())
        response.status_code = self.status
        response.headers.update(self.headers)
        return response


def invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request", message, param)


def not_found(message: str = "no such stream") -> ApiError:
    return ApiError(404, "not_found", message)
