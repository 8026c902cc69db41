"""Errors as vLLM and OpenAI return them: ``{"error": {"message", "type", "param", "code"}}`` with the HTTP status.

vLLM answers a bad request with 400 and ``type`` ``"BadRequestError"``, an unknown model with 404
``"NotFoundError"``, and an engine failure with 500 ``"InternalServerError"``; so does this server.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

__all__ = ["APIError", "bad_request", "error_response"]

_TYPES = {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError", 503: "ServiceUnavailableError"}


class APIError(Exception):
    """An error the client should see, with its HTTP status and the parameter at fault."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(message, status=400, param=param)


def error_response(message: str, status: int, param: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "error": {"message": message, "type": _TYPES.get(status, "BadRequestError"), "param": param, "code": status}
    }
    return JSONResponse(body, status_code=status)
