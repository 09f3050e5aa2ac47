"""docs/cli.md cannot drift from the argument parser.

For every command (``## `confbounds <cmd> ...` `` section), the flags in the first column of the section's
tables must be exactly the parser's option strings (``-h/--help`` aside), each listed once.  For ``certify`` the
"applies to" column must say "always" exactly for the flags without a rule in ``radius.cli.INAPPLICABLE``.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from radius.cli import INAPPLICABLE, build_parser

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
ROW = re.compile(r"^\| `(--[a-z0-9-]+)` \| ([^|]+) \|")


def _sections():
    """``{command: [(flag, applies_to), ...]}`` from the page's tables."""
    out, cmd = {}, None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^## `confbounds (\w+)", line)
        if m:
            cmd = m.group(1)
            out[cmd] = []
            continue
        m = ROW.match(line)
        if m and cmd is not None:
            out[cmd].append((m.group(1), m.group(2).strip()))
    return out


def _parser_flags():
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return {name: [s for a in p._actions for s in a.option_strings if s not in ("-h", "--help")]
            for name, p in sub.choices.items()}


def test_every_command_has_a_section():
    assert set(_sections()) == set(_parser_flags()) == {"certify", "recertify", "report", "demo"}


@pytest.mark.parametrize("cmd", ["certify", "recertify", "report", "demo"])
def test_the_page_lists_exactly_the_parser_flags(cmd):
    doc = [f for f, _ in _sections()[cmd]]
    parser = _parser_flags()[cmd]
    assert len(doc) == len(set(doc)), f"listed twice: {sorted({f for f in doc if doc.count(f) > 1})}"
    assert sorted(set(parser) - set(doc)) == [], "flags of the parser missing from docs/cli.md"
    assert sorted(set(doc) - set(parser)) == [], "flags in docs/cli.md that the parser does not have"


def test_certify_applies_to_column_matches_the_rules():
    ruled = {"--" + k.replace("_", "-") for k, _, _ in INAPPLICABLE}
    rows = dict(_sections()["certify"])
    always = {f for f, where in rows.items() if where == "always"}
    assert always == set(rows) - ruled, (sorted(always & ruled), sorted(set(rows) - ruled - always))


def test_the_new_flags_are_named():
    text = DOC.read_text(encoding="utf-8")
    part = text.split("### Flags added with the model loader and sound noise", 1)[1].split("\n## ", 1)[0]
    for f in ("--x-key", "--y-key", "--labels", "--input-shape", "--num-classes", "--normalize", "--factory",
              "--noise", "--grid", "--clip", "--backend"):
        assert f"`{f}`" in part, f
