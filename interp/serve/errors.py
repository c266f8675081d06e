"""Errors a request can cause, each with its HTTP status and an OpenAI-style body."""

from __future__ import annotations


class APIError(Exception):
    """A client-visible error: ``status`` (4xx/5xx), ``message`` (cause and fix), OpenAI ``type``/``param``."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param

    def body(self) -> dict:
        return {
            "error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}
        }
