"""The bearer token: with API_TOKEN set, a route wrapped in ``token_required`` answers 401
without ``Authorization: Bearer <token>`` (compared in constant time).

The header is compared as the bytes the client sent (WSGI hands them over as latin-1 text):
any byte at all gives an answer, 401 or through, never a decoding error."""

from __future__ import annotations

import functools
import hmac
from typing import Callable

import bottle

from appliance.api.http.errors import HttpError
from appliance.core.config import Settings


def authorized(token: str | None, header: str) -> bool:
    if token is None:
        return True
    scheme, _, offered = header.encode("latin-1", "replace").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(offered.strip(), token.encode())


def token_required(settings: Settings) -> Callable[[Callable], Callable]:
    def decorate(route: Callable) -> Callable:
        @functools.wraps(route)
        def checked(*args, **kwargs):
            if not authorized(settings.api_token, bottle.request.environ.get("HTTP_AUTHORIZATION", "")):
                raise HttpError(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
            return route(*args, **kwargs)
        return checked
    return decorate
