"""The ``simple-time-service`` command: one entry point, one subcommand per process."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable

from appliance.core.config import ConfigError, Settings, with_programs
from appliance.core.permissions import UMASK
from appliance.core.version import __version__


def process(target: str) -> Callable[[Settings, argparse.Namespace], int]:
    """A subcommand that runs ``module:function(settings)``, imported only when chosen, so
    `version` or `ps` never pay for Kafka, OpenTelemetry or Textual imports."""
    module_name, function = target.split(":")

    def run(settings: Settings, _args: argparse.Namespace) -> int:
        module = importlib.import_module(module_name, __package__)
        return getattr(module, function)(settings)

    return run


def run_api(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.programs import run_api as api
    return api(settings, args.worker)


def api_options(command: argparse.ArgumentParser) -> None:
    # Set by the API's parent for its workers (api/workers/parent.py), not by people.
    command.add_argument("--worker", metavar="SLOT", help=argparse.SUPPRESS)


def run_token(settings: Settings, args: argparse.Namespace) -> int:
    """The API tokens of this DATA_DIR (generated or API_TOKENS_FILE); --scope: one of them."""
    from appliance.schema import tokens
    path = tokens.token_file(settings)
    if tokens.configured(settings) and not settings.api_tokens_file:
        print("simple-time-service: the tokens are set by API_TOKEN/API_TOKENS, not kept in a "
              "file: not shown", file=sys.stderr)
        return 1
    try:
        pairs = tokens.read_file(path)
    except tokens.TokenFileError as exc:
        print(f"simple-time-service: {exc} (it is made when the API or `up` first starts)",
              file=sys.stderr)
        return 1
    if args.scope:
        found = next((token for scope, token in pairs if scope == args.scope), None)
        if found is None:
            print(f"simple-time-service: no {args.scope} token in {path}", file=sys.stderr)
            return 1
        print(found)
        return 0
    for scope, token in pairs:
        print(f"{scope} {token}")
    return 0


def token_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--scope", choices=("read", "write"),
                         help="print only the token of this scope (for scripts)")


def run_version(_settings: Settings, _args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def run_dashboard(settings: Settings, args: argparse.Namespace) -> int:
    """The dashboard of this host's appliance by default: its admin plane, with a read token
    of its DATA_DIR (or API_TOKEN)."""
    from appliance.schema.tokens import READ, TokenFileError, Tokens
    from dashboard.app import run
    token = args.token
    if token is None:
        try:
            token = Tokens(settings).any_token(READ)
        except TokenFileError:
            token = None  # the dashboard says 401, with how to pass one
    return run(args.url or settings.local_admin_url, token, args.interval,
               (args.host, args.port) if args.serve else None)


def dashboard_options(command: argparse.ArgumentParser) -> None:
    from dashboard.options import add_arguments  # argparse only: no Textual import here
    add_arguments(command, url_default=None,
                  token_help="a read token of this DATA_DIR: API_TOKEN, API_TOKENS or its tokens "
                             "file")


def run_up(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.supervise import up
    if args.programs is not None:
        try:
            settings = with_programs(settings, args.programs, "--programs")
        except ConfigError as exc:
            return configuration_error(exc)
    return up(settings)


def up_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--programs", metavar="LIST",
        help="the programs to supervise, comma-separated, of api, consumer, agent, broker "
             "(default: APPLIANCE_PROGRAMS, else api,consumer,agent and broker with "
             "KAFKA_BROKERS=embedded)")


def run_events(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.export import run
    return run(settings, args)


def events_options(command: argparse.ArgumentParser) -> None:
    from appliance.export import add_arguments
    add_arguments(command)


def run_backup(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.backup import run
    return run(settings, args)


def backup_options(command: argparse.ArgumentParser) -> None:
    from appliance.backup import add_arguments
    add_arguments(command)


def run_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.deadletters import run
    return run(settings, args)


def dead_letters_options(command: argparse.ArgumentParser) -> None:
    from appliance.deadletters import add_arguments
    add_arguments(command)


COMMANDS: dict[str, tuple[str, Callable[[Settings, argparse.Namespace], int]]] = {
    "api": ("serve the HTTP API in the foreground", run_api),
    "consumer": ("persist events from Kafka into SQLite in the foreground",
                 process(".programs:run_consumer")),
    "agent": ("probe every component and record its health", process(".programs:run_agent")),
    "up": ("run the whole appliance (supervisord) in the foreground", run_up),
    "down": ("stop the appliance running with this DATA_DIR", process(".supervise:down")),
    "ps": ("show the supervised processes", process(".supervise:ps")),
    "version": ("print the version", run_version),
    "token": ("print the admin plane's API tokens of this DATA_DIR", run_token),
    "dashboard": ("live terminal dashboard of an appliance (over HTTP)", run_dashboard),
    "events": ("the audit trail: events export", run_events),
    "backup": ("copy the SQLite audit database to a file while it runs", run_backup),
    "dead-letters": ("list, show or replay the dead letters (over the admin plane)", run_dead_letters),
}
OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "api": api_options, "dashboard": dashboard_options, "events": events_options,
    "token": token_options, "up": up_options, "backup": backup_options,
    "dead-letters": dead_letters_options}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="simple-time-service",
        description="Request metadata + event audit appliance. Configuration comes from "
                    "environment variables (see README).")
    root.add_argument("--version", action="version", version=__version__)
    sub = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, _) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        OPTIONS.get(name, lambda _command: None)(command)
    return root


def main(argv: list[str] | None = None) -> int:
    os.umask(UMASK)  # before anything is written: every file of every program is its own
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return configuration_error(exc)
    return COMMANDS[args.command][1](settings, args)


def configuration_error(exc: ConfigError) -> int:
    print(f"simple-time-service: configuration error: {exc}", file=sys.stderr)
    return 2
