"""Pure rules guarding the WebSocket endpoint: which pages may open it, and
how fast a console may talk.

Origin: a browser always sends ``Origin`` on a WebSocket handshake and, for a
cookie-authenticated socket, it is the only thing that tells our own page
from a hostile one (cross-site WebSocket hijacking). Allowed: the server's own
origin (same scheme-less host and port as the ``Host`` header) and the
configured list. A client that sends no Origin is not a browser and must
bring a token; it is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    if origin is None:
        return True
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return host is not None and parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


@dataclass(slots=True)
class FrameBudget:
    """A token bucket for client frames: ``rate`` per second, bursts of ``burst``.

    The edge passes the clock in; the bucket never reads it.
    """

    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    last: float = 0.0

    def take(self, now: float) -> bool:
        """Spend one frame; False when the console is over its budget."""
        if self.tokens < 0:
            self.tokens, self.last = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
