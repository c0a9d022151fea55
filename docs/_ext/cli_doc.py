"""Sphinx extension: render the ``intake-cpg`` command line reference from its argparse parsers.

The ``cli-reference`` directive (in MyST: a ```` ```{cli-reference} ```` fence) asks
:func:`intake_cpg.cli.command_parsers` for the parsers and writes, for the program and for each
command, its description, usage, a table of arguments and its examples, at build time, so the
page cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive

#: Title of the option group every command shares (documented once, under the program).
GLOBAL_GROUP = "global options"
_WIDTH = "88"


@contextmanager
def _columns() -> Iterator[None]:
    """argparse wraps to the terminal width: fix it so the page is the same everywhere."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = _WIDTH
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar or action.dest
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar or action.dest.upper()
    return ", ".join(f"{o} {metavar}" for o in action.option_strings)


def argument_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str, str]]:
    """``(group title, invocation, help)`` for every argument a parser documents.

    Help and version flags are left out; sub-command choices are listed by the caller.
    """
    rows = []
    for group in parser._action_groups:
        for action in group._group_actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:
                continue
            text = (action.help or "") % {"prog": parser.prog, "default": action.default}
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                text += " (one of: " + ", ".join(map(str, action.choices)) + ")"
            rows.append((group.title or "", _invocation(action), text))
    return rows


def subcommand_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """``(command, one-line help)`` of a parser's sub-commands."""
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                rows.append((choice.dest, choice.help or ""))
    return rows


def render_text(parsers: dict[str, argparse.ArgumentParser]) -> str:
    """The whole reference as plain text (what the directive shows, for tests and debugging)."""
    out = []
    with _columns():
        for name, parser in parsers.items():
            out.append(f"== {parser.prog}")
            out.append(parser.description or "")
            out.append(parser.format_usage())
            for group, invocation, text in argument_rows(parser):
                if name and group == GLOBAL_GROUP:
                    continue
                out.append(f"{invocation}\t{text}")
            for command, text in subcommand_rows(parser):
                out.append(f"{command}\t{text}")
            if name and parser.epilog:
                out.append(parser.epilog)
    return "\n".join(out)


def _para(*children: nodes.Node) -> nodes.paragraph:
    p = nodes.paragraph()
    p.extend(children)
    return p


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> nodes.table:
    table = nodes.table(classes=["cli-table"])
    group = nodes.tgroup(cols=2)
    table += group
    group += nodes.colspec(colwidth=35)
    group += nodes.colspec(colwidth=65)
    head = nodes.thead()
    head += nodes.row("", *(nodes.entry("", _para(nodes.Text(h))) for h in header))
    group += head
    body = nodes.tbody()
    for left, right in rows:
        body += nodes.row(
            "",
            nodes.entry("", _para(nodes.literal(text=left))),
            nodes.entry("", _para(nodes.Text(right))),
        )
    group += body
    return table


def _section(title: str, ident: str) -> nodes.section:
    sec = nodes.section(ids=[nodes.make_id(ident)], names=[nodes.fully_normalize_name(ident)])
    sec += nodes.title(text=title)
    return sec


def render_nodes(parsers: dict[str, argparse.ArgumentParser]) -> list[nodes.Node]:
    """docutils nodes: one section for the program, one per command."""
    out: list[nodes.Node] = []
    with _columns():
        for name, parser in parsers.items():
            sec = _section(parser.prog if name else f"{parser.prog} (global options)", parser.prog)
            if parser.description:
                sec += _para(nodes.Text(parser.description))
            sec += nodes.literal_block(text=parser.format_usage().strip())
            args = argument_rows(parser)
            groups: dict[str, list[tuple[str, str]]] = {}
            for group, invocation, text in args:
                if name and group == GLOBAL_GROUP:
                    continue
                groups.setdefault(group, []).append((invocation, text))
            for group, rows in groups.items():
                sec += nodes.rubric(text=group.capitalize())
                sec += _table(rows, ("argument", "meaning"))
            commands = subcommand_rows(parser)
            if commands:
                sec += nodes.rubric(text="Commands")
                sec += _table(commands, ("command", "what it does"))
            if parser.epilog:
                sec += nodes.literal_block(text=parser.epilog.strip())
            out.append(sec)
    return out


class CliReference(Directive):
    """``.. cli-reference::``: the command line reference, generated from the parsers."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from intake_cpg.cli import command_parsers

        return render_nodes(command_parsers())


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("cli-reference", CliReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
