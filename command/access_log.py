"""The HTTP access log, without query strings.

aiohttp's default line (``%r``) carries the whole request line. Our own
clients never put a token in a URL, but a misconfigured one might
(``?token=…``); the server refuses it, and the log must not keep it either.
So the line names the path only, with the client address as the audit log
records it (X-Forwarded-For only from a trusted proxy).
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from command.audit_http import client_of


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        address = client_of(request) if isinstance(request, web.Request) else (request.remote or "-")
        self.logger.info(
            '%s "%s %s" %d %d %.1f ms',
            address,
            request.method,
            request.rel_url.path,
            response.status,
            response.body_length,
            time * 1000,
        )
