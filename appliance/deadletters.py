"""`simple-time-service dead-letters list|show|replay`: the dead-letter workflow from a shell.

It asks this host's admin plane (ADMIN_PORT, else the public port) with a token of this
DATA_DIR, like the dashboard: a replay must go through an API process's spool (durable, and
delivered when Kafka is up), and the API is the one that reads the audit database for it.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from appliance.core.config import Settings
from appliance.schema.tokens import READ, WRITE, TokenFileError, Tokens

TIMEOUT = 30.0  # seconds for one answer of the admin plane


class AdminError(Exception):
    """The admin plane did not answer as hoped; the text says why, in one line."""


def ask(settings: Settings, method: str, path: str, scope: str, body: dict | None = None) -> Any:
    try:
        token = Tokens(settings).any_token(scope)
    except TokenFileError as exc:
        raise AdminError(f"no {scope} token: {exc}") from None
    if token is None:
        raise AdminError(f"no {scope} token in this DATA_DIR, API_TOKEN or API_TOKENS")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(settings.local_admin_url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise AdminError(f"{exc.code}: {message}") from None
    except (OSError, ValueError) as exc:
        raise AdminError(f"the admin plane at {settings.local_admin_url} did not answer: {exc}") from None


def shown(text: str, width: int = 100) -> str:
    """A reason or bytes of a client's as one printable line."""
    line = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return line if len(line) <= width else line[:width - 1] + "\u2026"


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    query = {name: value for name, value in (("reason", args.reason), ("after", args.after),
                                             ("before", args.before), ("limit", args.limit))
             if value is not None}
    answer = ask(settings, "GET", "/events/dead-letters?" + urllib.parse.urlencode(query), READ)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for group in answer["by_reason"]:
        print(f"{group['count']:>7}  {shown(group['reason'])}")
    if answer["by_reason"]:
        print()
    for letter in answer["dead_letters"]:
        replayed = f"replayed {letter['replay_outcome']}" if letter["replayed_at"] else "not replayed"
        print(f"{letter['id']:>7}  {letter['received_at']}  {replayed:<18}  {shown(letter['reason'], 80)}")
    if answer["next"]:
        print(f"(more: --limit, or ?cursor={answer['next']})", file=sys.stderr)
    return 0


def run_show(settings: Settings, args: argparse.Namespace) -> int:
    if args.id is None:
        raise AdminError("show needs --id")
    print(json.dumps(ask(settings, "GET", f"/events/dead-letters/{args.id}", READ), indent=2))
    return 0


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.id is not None:
        body["id"] = args.id
    if args.reason is not None:
        body["reason"] = args.reason
    if args.all:
        body["all"] = True
    answer = ask(settings, "POST", "/events/dead-letters/replay", WRITE, body)
    print(f"replayed {answer['replayed']} dead letter(s)"
          + (f" ({answer['outcome']}): ids {', '.join(map(str, answer['ids']))}" if answer["ids"] else ""))
    return 0


ACTIONS = {"list": run_list, "show": run_show, "replay": run_replay}


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("action", choices=sorted(ACTIONS))
    command.add_argument("--id", type=int, help="one dead letter (show, replay)")
    command.add_argument("--reason", help="dead letters whose reason contains this text")
    command.add_argument("--after", help="list: received after this ISO-8601 time")
    command.add_argument("--before", help="list: received before this ISO-8601 time")
    command.add_argument("--limit", type=int, help="list: at most this many (1-500, default 50)")
    command.add_argument("--all", action="store_true", help="replay: every dead letter (1000 at most)")
    command.add_argument("--json", action="store_true", help="list: the answer as JSON")


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return ACTIONS[args.action](settings, args)
    except AdminError as exc:
        print(f"simple-time-service: dead-letters {args.action}: {exc}", file=sys.stderr)
        return 1
