"""Pure rules for the HTTP side's doors: cross-site requests and security headers.

Cross-site request forgery: the browser attaches our session cookie to
requests that another site's page makes. ``SameSite=Strict`` already keeps
it off cross-site requests in current browsers; this is the second lock, for
older browsers and for same-site-but-other-origin pages (another service on a
sibling host of the same site). A state-changing request authenticated by the
cookie must say where it comes from (``Origin``, or failing that ``Referer``)
and that must be our own origin or one in ``EMERGENCY_ALLOWED_ORIGINS``.
Requests with a bearer token are not at risk: no browser adds that header by
itself. Any unsafe request that names a foreign origin is refused too, which
also stops login CSRF (a hostile page logging the victim into the attacker's
account).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from command.ws_guard import origin_allowed

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def cross_site_refusal(
    method: str,
    origin: str | None,
    referer: str | None,
    host: str | None,
    allowed: frozenset[str],
    *,
    cookie_auth: bool,
) -> str | None:
    """Why this request must be refused as cross-site, or None to let it through.

    Args:
        method: the HTTP method; safe methods are never refused (they change nothing).
        origin: the ``Origin`` header, if any.
        referer: the ``Referer`` header, if any (consulted when there is no Origin).
        host: the ``Host`` header: our own origin is ``scheme://host``.
        allowed: other origins that may call us (``EMERGENCY_ALLOWED_ORIGINS``).
        cookie_auth: the request is authenticated by the session cookie (no bearer token).
    """
    if method.upper() in SAFE_METHODS:
        return None
    source = origin
    if source is None and referer:
        source = _origin_of(referer)
    if source is None:
        if cookie_auth:
            return "a request authenticated by the session cookie must carry an Origin or Referer header"
        return None  # not a browser: it carries no cookie, so nothing to forge
    # "null" is what sandboxed frames and privacy modes send: never our page.
    if source == "null" or not origin_allowed(source, host, allowed):
        return f"requests from {source[:100]!r} may not change anything here"
    return None


def tile_source(tile_url: str) -> str | None:
    """The CSP source that lets the map load tiles from ``EMERGENCY_TILE_URL``
    (a Leaflet template: its ``{s}`` subdomains become a wildcard), or None
    for our own server or no tile server."""
    if not tile_url.startswith(("http://", "https://")):
        return None
    parts = urlsplit(tile_url.replace("{s}", "tiles-subdomain"))
    if not parts.hostname:
        return None
    host = parts.netloc.replace("tiles-subdomain", "*")
    return f"{parts.scheme}://{host}"


def page_csp(img_sources: tuple[str, ...] = ()) -> str:
    """Our pages load scripts, styles and images from this server only (and
    map tiles from the configured tile server), run no inline script and may
    not be framed (clickjacking). connect-src 'self' covers the same-origin
    ws:/wss: feed (CSP Level 3)."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            " ".join(("img-src 'self' data: blob:", *img_sources)),
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


# Anything that is not a page (JSON, files) needs no capability at all.
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

COMMON_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: under no-referrer a browser sends
    # "Origin: null" even on our own page's POSTs (Fetch standard, "append a
    # request Origin header"), and the cross-site check above would refuse them.
    # same-origin still sends nothing to any other site.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # The field app uses the device's position: allowed for our own pages only.
    "Permissions-Policy": "geolocation=(self), camera=(), microphone=(), payment=(), usb=()",
}

#: Sent over HTTPS only (a browser ignores it over HTTP anyway).
HSTS = "max-age=31536000"


def security_headers(is_page: bool, path: str, *, secure: bool, page_policy: str) -> dict[str, str]:
    """The headers every response gets, by what it is.

    Args:
        is_page: an HTML page (or a 304 revalidating one: a browser takes the
            headers of a 304 over those it cached, so it needs the page's policy).
        page_policy: the CSP for pages (:func:`page_csp`).
        path: the request path: API answers are never cached (they carry
            people's locations and must not outlive a logout in a shared cache).
        secure: the request came over HTTPS.
    """
    headers = dict(COMMON_HEADERS)
    headers["Content-Security-Policy"] = page_policy if is_page else OTHER_CSP
    if path.startswith("/api/") or path == "/ws":
        headers["Cache-Control"] = "no-store"
    if secure:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def outcome_of(status: int) -> str:
    """An HTTP status as an audit outcome: ok, denied (not allowed), failed (refused), error."""
    if status < 400:
        return "ok"
    if status in (401, 403, 429):
        return "denied"
    if status < 500:
        return "failed"
    return "error"
