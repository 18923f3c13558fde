"""API tokens: who may read the audit trail (read) and who may change something (write).

Where they come from, all of them valid at once (so a token is rotated by adding the new one,
moving the clients over, then removing the old one):
- ``API_TOKEN``: one write token;
- ``API_TOKENS``: ``scope:token`` pairs, comma-separated (``read:abc...,write:def...``);
- ``API_TOKENS_FILE``: a file of ``scope token`` lines (``#`` comments), read again within a
  second of being changed: a token added or removed there needs no restart;
- none of these: DATA_DIR/api-tokens, made at the first start with a read and a write token of
  32 random bytes each (mode 0600). Its place is logged at every start, never a token;
  ``simple-time-service token`` prints them.

A write token may also read. A token is compared as a SHA-256 digest, in constant time, with
every token known; nothing about a token is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.core.config import Settings

log = logging.getLogger("appliance.tokens")
READ, WRITE = "read", "write"
SCOPES = (READ, WRITE)
RELOAD_EVERY = 1.0  # seconds between two looks at API_TOKENS_FILE's modification time
GENERATED_HEADER = ("# simple-time-service API tokens, made at the first start: one per line, "
                    "'scope token'.\n# read: /events, /status, /kafka/status, /metrics. write: "
                    "also /kafka/publish and /kafka/flush.\n")


class TokenFileError(ValueError):
    """A tokens file that cannot be read or has a line that is not 'scope token'."""


@dataclass(frozen=True)
class Known:
    scope: str
    digest: bytes  # SHA-256 of the token


def digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def parse_lines(text: str, where: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        scope, _, token = line.partition(" ")
        token = token.strip()
        if scope not in SCOPES or len(token) < 8 or any(c.isspace() for c in token):
            raise TokenFileError(f"{where} line {number}: expected 'read TOKEN' or 'write TOKEN' "
                                 f"(a token of at least 8 characters without spaces)")
        pairs.append((scope, token))
    return pairs


def configured(settings: Settings) -> bool:
    return bool(settings.api_token or settings.api_tokens or settings.api_tokens_file)


def token_file(settings: Settings) -> Path:
    """The file the tokens are in: API_TOKENS_FILE, else the generated DATA_DIR/api-tokens."""
    return settings.api_tokens_file or settings.layout.tokens


def ensure_generated(settings: Settings) -> Path | None:
    """With no token configured, DATA_DIR/api-tokens, made now if it is not there yet (0600,
    written to a temporary name first: a crash never leaves half a file). None when tokens
    are configured."""
    if configured(settings):
        return None
    path = settings.layout.tokens
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{scope} {secrets.token_urlsafe(32)}\n" for scope in SCOPES)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(GENERATED_HEADER + lines)
    try:
        os.link(temporary, path)  # fails if another process made it meanwhile: keep theirs
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path


def read_file(path: Path) -> list[tuple[str, str]]:
    try:
        return parse_lines(path.read_text(), str(path))
    except OSError as exc:
        raise TokenFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None


class Tokens:
    """Every token known, by digest; ``scope_of`` says what an offered token may do."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fixed = [Known(WRITE, digest(settings.api_token.encode()))] if settings.api_token else []
        self.fixed += [Known(scope, digest(token.encode())) for scope, token in settings.api_tokens]
        self.path = token_file(settings) if settings.api_tokens_file or not configured(settings) else None
        self._from_file: list[Known] = []
        self._stamp: float | None = None
        self._looked = 0.0
        self._lock = threading.Lock()
        self._reload(strict=settings.api_tokens_file is not None)

    def scope_of(self, offered: bytes) -> str | None:
        """WRITE, READ, or None for a token nobody configured."""
        self._reload_if_changed()
        wanted, found = digest(offered), None
        for known in self.fixed + self._from_file:
            if hmac.compare_digest(known.digest, wanted):  # every one compared: no early exit
                found = WRITE if WRITE in (found, known.scope) else known.scope
        return found

    def any_token(self, scope: str) -> str | None:
        """A token of ``scope`` (or write) in clear, for the appliance's own clients (the agent,
        the local dashboard): from the file or the settings, None when there is none."""
        candidates = []
        if self.path is not None and self.path.exists():
            candidates += read_file(self.path)
        if self.settings.api_token:
            candidates.append((WRITE, self.settings.api_token))
        candidates += list(self.settings.api_tokens)
        for wanted in (scope, WRITE):
            for have, token in candidates:
                if have == wanted:
                    return token
        return None

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self._looked < RELOAD_EVERY:
            return
        self._looked = now
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._reload()

    def _reload(self, strict: bool = False) -> None:
        """Read the file again; at start (``strict``) a file that cannot be read is a
        TokenFileError, later the tokens read last time stay valid."""
        if self.path is None or (not strict and not self.path.exists() and not self._from_file):
            return  # the generated file is not made yet: no token from it
        with self._lock:
            try:
                self._stamp = self.path.stat().st_mtime_ns
                self._from_file = [Known(s, digest(t.encode())) for s, t in read_file(self.path)]
            except (OSError, TokenFileError) as exc:
                if strict:
                    raise TokenFileError(str(exc)) from None
                log.warning("API tokens file not read; the tokens read before stay valid",
                            extra={"path": str(self.path), "error": str(exc)})
