"""The README is a user guide that stays true: its commands parse, it covers every command and bundle, its links work.

- every line of a README code block that starts with ``pipelines `` parses with :func:`pipelines.cli.build_parser`
  (upper-case placeholders such as ``DIR`` become ``1``; ``a|b`` alternatives are tried one by one);
- every subcommand of the CLI appears in such a line, and every bundle folder in the "Which bundle?" table;
- the README is at most 220 lines, and neither it nor ``docs/`` names issue numbers;
- every relative link of the README and of ``docs/`` points to an existing file (and heading, for ``#anchor``).

Nothing here runs a command: it reads markdown and parses arguments, in well under a second.
Run: ``pytest tests/test_readme.py``.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from pipelines.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
MAX_LINES = 220

CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")  # DIR, FILE, ED_LABELS, N: free values in a command synopsis
ALTERNATIVES = re.compile(r"[\w.-]+(?:\|[\w.-]+)+")  # sunnybrook|acdc, K|seed
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\s*\d+|(?<![\w&/#])#\d+\b", re.IGNORECASE)
COMMIT_NAMED = re.compile(r"\bcommit\s+`?[0-9a-f]{7,40}\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def command_lines(markdown: str) -> list[str]:
    """The ``pipelines ...`` lines of the code blocks, with ``\\``-continued lines joined."""
    lines = []
    for block in CODE_BLOCK.findall(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("pipelines "):
                lines.append(line)
    return lines


def argvs(line: str) -> list[list[str]]:
    """The argument lists a documented command line stands for: each alternative of each ``a|b`` token once (the
    other tokens at their first alternative), with placeholders as ``1``."""
    tokens = [token.split("|") if ALTERNATIVES.fullmatch(token) else [token]
              for token in shlex.split(line, comments=True)[1:]]
    first = [choices[0] for choices in tokens]
    variants = [first] + [first[:i] + [choice] + first[i + 1:]
                          for i, choices in enumerate(tokens) for choice in choices[1:]]
    return [["1" if PLACEHOLDER.fullmatch(token) else token for token in argv] for argv in variants]


def cli_subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def section(markdown: str, heading: str) -> str:
    return markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    text = CODE_BLOCK.sub("", markdown)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}


README_COMMANDS = command_lines(readme_text())


def test_the_readme_shows_commands() -> None:
    assert len(README_COMMANDS) >= 10


@pytest.mark.parametrize("line", README_COMMANDS)
def test_a_readme_command_parses(line: str) -> None:
    parser = build_parser()
    for argv in argvs(line):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse reports the unknown option or value on stderr
            pytest.fail(f"README command does not parse ({exc.code}): {' '.join(argv)}")


def test_every_subcommand_is_in_the_readme() -> None:
    documented = {argv[0] for line in README_COMMANDS for argv in argvs(line)}
    assert cli_subcommands() <= documented, cli_subcommands() - documented


def test_every_bundle_is_in_the_bundle_table() -> None:
    table = section(readme_text(), "Which bundle?")
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.MULTILINE))
    bundles = {p.parent.parent.name for p in (ROOT / "bundles").glob("*/configs/metadata.json")}
    assert listed == bundles


def test_the_readme_is_short() -> None:
    assert len(readme_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_issue_numbers(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not ISSUE_NUMBER.findall(text)
    if path == README:
        assert not COMMIT_NAMED.findall(text)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(CODE_BLOCK.sub("", text)):
        if "://" in target or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(target)
    assert not broken


def test_placeholders_and_alternatives_are_expanded() -> None:
    assert argvs("pipelines data sunnybrook|acdc --output DIR  # a comment") == [
        ["data", "sunnybrook", "--output", "1"],
        ["data", "acdc", "--output", "1"],
    ]
    assert argvs("pipelines evaluate B --fold K|seed --set 'a#b=[0, 1]'") == [
        ["evaluate", "1", "--fold", "1", "--set", "a#b=[0, 1]"],
        ["evaluate", "1", "--fold", "seed", "--set", "a#b=[0, 1]"],
    ]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "x", "--input", "a", "--output", "b", "--no-such-option"])
