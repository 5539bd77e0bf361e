"""Who may call the server: a bearer token on every route but ``/health``, and where it may listen.

``cellcompare serve --token-file PATH`` (or the ``CELLCOMPARE_TOKEN`` environment variable)
sets the token; a request without ``Authorization: Bearer <token>`` gets 401. A server
listening beyond the loopback interface without a token is refused unless ``--insecure``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse

from cellcompare.serve.errors import ServeError

logger = logging.getLogger(__name__)

#: The environment variable holding the token when no ``--token-file`` is given.
TOKEN_ENV = "CELLCOMPARE_TOKEN"
#: Routes answered without a token (a container's health check has none).
OPEN_PATHS = ("/health",)


class AccessError(ServeError):
    """The token cannot be read, or the server would listen unprotected beyond this machine."""


def load_token(token_file: str | Path | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The server's token: the stripped contents of ``token_file``, else ``$CELLCOMPARE_TOKEN``.

    Raises
    ------
    AccessError
        ``token_file`` is missing, unreadable or empty (or the variable is set but empty).

    Examples
    --------
    >>> load_token(None, {"CELLCOMPARE_TOKEN": " s3cret\\n"})
    's3cret'
    >>> load_token(None, {}) is None
    True
    """
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AccessError(f"--token-file {path}: cannot read it ({exc.strerror or exc})") from exc
        if not token:
            raise AccessError(f"--token-file {path} is empty; write the token into it")
        if path.stat().st_mode & 0o077:
            logger.warning("token file %s is readable by other users (chmod 600 it)", path)
        return token
    if TOKEN_ENV in environ:
        token = environ[TOKEN_ENV].strip()
        if not token:
            raise AccessError(f"{TOKEN_ENV} is set but empty; unset it or set the token")
        return token
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is only reachable from this machine.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve beyond this machine
        return False


def check_binding(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to listen on ``host`` beyond loopback without a token, unless ``insecure``.

    Raises
    ------
    AccessError
        ``host`` is not a loopback address, no token is set and ``insecure`` is False.
    """
    if token is None and not is_loopback(host):
        if not insecure:
            raise AccessError(f"refusing to listen on {host} without a token: anyone who reaches "
                              f"it could use the model; give --token-file PATH (or {TOKEN_ENV}), "
                              "or --insecure to serve without one")
        logger.warning("serving on %s without a token (--insecure)", host)


class BearerToken:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>``, except on :data:`OPEN_PATHS`."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode("utf-8")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            detail = "missing bearer token" if not header else "wrong bearer token"
            response = JSONResponse({"detail": f"{detail}: send Authorization: Bearer <token>"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
