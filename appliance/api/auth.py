"""The bearer token: with API_TOKEN set, a route wrapped in ``token_required`` answers 401
without ``Authorization: Bearer <token>`` (compared in constant time)."""

from __future__ import annotations

import functools
import hmac
from typing import Callable

import bottle

from appliance.api.jsonio import HttpError
from appliance.core.config import Settings


def authorized(token: str | None, header: str) -> bool:
    if token is None:
        return True
    scheme, _, offered = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())


def token_required(settings: Settings) -> Callable[[Callable], Callable]:
    def decorate(route: Callable) -> Callable:
        @functools.wraps(route)
        def checked(*args, **kwargs):
            if not authorized(settings.api_token, bottle.request.get_header("Authorization", "")):
                raise HttpError(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
            return route(*args, **kwargs)
        return checked
    return decorate
