#!/usr/bin/env python3
"""Dump the command lines of real Barman (`barman`, `barman-wal-archive`, `barman-wal-restore`,
the `barman-cloud-*` tools) as JSON, walked from their own argparse parsers.

Run with the interop venv's Python (`/opt/barman-venv/bin/python`); the conformance test
`integration/tests/cli_conformance.rs` compares the dump with our clap definitions.

Output: {"version": "3.20.1", "tools": {tool: {"options": [...], "positionals": [...],
"subcommands": [{"name", "aliases", "options", "positionals"}]}}}, where an option is
{"strings": ["-j", "--jobs"], "arity": "0" | "1" | "?" | "*" | "+" | "N", "choices": [...]}
and a positional is {"dest", "arity", "choices"}.
"""

import argparse
import importlib
import json
import sys

import barman
import barman.cli
from barman.clients import walarchive, walrestore

# barman[cloud]'s clients, by module name (barman-cloud-wal-archive is cloud_walarchive).
CLOUD_CLIENTS = [
    "cloud_walarchive",
    "cloud_walrestore",
    "cloud_backup",
    "cloud_restore",
    "cloud_backup_list",
    "cloud_backup_show",
    "cloud_backup_delete",
    "cloud_backup_keep",
    "cloud_check_wal_archive",
]

ZERO_ARG_ACTIONS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._AppendConstAction,
    argparse._CountAction,
    argparse._HelpAction,
    argparse._VersionAction,
)


def arity(action):
    """The number of values an action takes, in argparse's nargs notation."""
    if isinstance(action, ZERO_ARG_ACTIONS):
        return "0"
    if action.nargs is None:
        return "1"
    return str(action.nargs)


def choices(action):
    return sorted(str(c) for c in action.choices) if action.choices else []


def describe(parser):
    """Options and positionals of one parser (subparser actions excluded)."""
    options, positionals = [], []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            options.append({"strings": list(action.option_strings), "arity": arity(action), "choices": choices(action)})
        else:
            positionals.append({"dest": action.dest, "arity": arity(action), "choices": choices(action)})
    return {"options": options, "positionals": positionals}


def subcommands(parser):
    """Each subparser once, with every other name that reaches it as an alias."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = {}
    for name, sub in action._name_parser_map.items():
        names.setdefault(id(sub), (sub, []))[1].append(name)
    result = []
    for sub, all_names in names.values():
        # The first name registered is the command's own (add_parser), the rest aliases.
        entry = {"name": all_names[0], "aliases": all_names[1:]}
        entry.update(describe(sub))
        result.append(entry)
    return sorted(result, key=lambda e: e["name"])


def client_parser(parse_arguments):
    """The parser a client's parse_arguments() builds, caught before it parses anything."""
    caught = []

    class Caught(Exception):
        pass

    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        caught.append(self)
        raise Caught()

    argparse.ArgumentParser.parse_args = capture
    try:
        parse_arguments([])
    except Caught:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original
    return caught[0]


def main():
    top = describe(barman.cli.p)
    top["subcommands"] = subcommands(barman.cli.p)
    tools = {
        "barman": top,
        "barman-wal-archive": describe(client_parser(walarchive.parse_arguments)),
        "barman-wal-restore": describe(client_parser(walrestore.parse_arguments)),
    }
    for module in CLOUD_CLIENTS:
        client = importlib.import_module("barman.clients." + module)
        tools["barman-" + module.replace("_", "-").replace("walarchive", "wal-archive").replace("walrestore", "wal-restore")] = describe(
            client_parser(client.parse_arguments)
        )
    json.dump({"version": barman.__version__, "tools": tools}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
