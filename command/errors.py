"""The error every API layer raises: an HTTP status, a code and a message a person can act on.

Kept apart from command/web.py so the SQL modules behind the routes can
refuse a request (a 409 naming the unit that is no longer available) without
importing aiohttp's routing.
"""

from __future__ import annotations


class ApiError(Exception):
    """Rendered by command/web.py as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
