"""The documentation's fenced blocks and links, read from README.md and docs/*.md.

A fenced block is tagged ```bash or ```python (commands, collected) or ```text (output examples and
folder layouts, not collected); any other tag, or none, is an error. HTML comments on the lines just
above a fence say how the documentation test treats the block, one directive each::

    <!-- docs-test: tiny -->              add TINY_OVERRIDES to each training command
    <!-- docs-test: config-only -->       compose each command's config; run nothing
    <!-- docs-test: expect-rc 2 -->       the block must exit with this status (default 0)
    <!-- docs-test: skip: REASON -->      not run; the reason is required

A block's commands may name ``outputs/<run>``: the test's trained run (PLACEHOLDERS).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
COMMAND_LANGUAGES = ("bash", "python")
OUTPUT_LANGUAGES = ("text",)
# Written in a block -> what the test puts there: outputs/<run> is the run trained for the test.
PLACEHOLDERS = {"<run>": "run"}
# Added to each training command of a `tiny` block, unless the command sets that key itself.
TINY_OVERRIDES = ("debug=tiny", "train.max_iters=2", "train.keep_checkpoints=0")

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")


def pages() -> list[Path]:
    """README.md and every docs/*.md page."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """A fenced command block: its page, the 1-based line of its opening fence, its language,
    its text and its directives."""

    page: Path
    line: int
    language: str
    text: str
    skip: Optional[str] = None
    tiny: bool = False
    config_only: bool = False
    expect_rc: int = 0

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def same_check(self, other: Block) -> bool:
        """True when ``other`` is the same block, checked the same way (a page repeating another's)."""
        return (self.language, self.text, self.skip, self.tiny, self.config_only, self.expect_rc) == (
            other.language, other.text, other.skip, other.tiny, other.config_only, other.expect_rc)  # fmt: skip


def parse_directives(directives: list[str], where: str) -> dict:
    """``Block`` fields of the marker directives above a fence; ValueError for an unknown or
    incomplete one."""
    fields: dict = {}
    for directive in directives:
        name, _, argument = directive.partition(" ")
        if directive.startswith("skip:"):
            reason = directive[len("skip:") :].strip()
            if not reason:
                raise ValueError(f"{where}: `docs-test: skip:` needs a reason")
            fields["skip"] = reason
        elif directive == "tiny":
            fields["tiny"] = True
        elif directive == "config-only":
            fields["config_only"] = True
        elif name == "expect-rc" and argument.strip().isdigit():
            fields["expect_rc"] = int(argument)
        else:
            raise ValueError(f"{where}: unknown docs-test directive {directive!r}")
    return fields


def read_blocks(page: Path) -> list[Block]:
    """The ```bash and ```python blocks of ``page``, with their directives."""
    lines = page.read_text(encoding="utf-8").splitlines()
    name = page.relative_to(REPO)
    blocks: list[Block] = []
    directives: list[str] = []
    index = 0
    while index < len(lines):
        where = f"{name}:{index + 1}"
        marker, fence = _MARKER.match(lines[index]), _FENCE.match(lines[index])
        if marker:
            directives.append(marker.group(1))
        elif fence:
            language = fence.group(1)
            end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise ValueError(f"{where}: the fence is never closed")
            if language not in COMMAND_LANGUAGES + OUTPUT_LANGUAGES:
                raise ValueError(f"{where}: tag the block ```bash, ```python or ```text, not {language!r}")
            fields = parse_directives(directives, where)
            if language in OUTPUT_LANGUAGES and fields:
                raise ValueError(f"{where}: a docs-test marker above a ```text block")
            if language == "python" and fields.get("config_only"):
                raise ValueError(f"{where}: config-only is for ```bash commands")
            if language in COMMAND_LANGUAGES:
                text = "\n".join(lines[index + 1 : end]) + "\n"
                blocks.append(Block(page, index + 1, language, text, **fields))
            directives, index = [], end
        elif directives:
            raise ValueError(f"{where}: a docs-test marker must stand just above a fence")
        index += 1
    return blocks


def distinct_blocks(all_pages: list[Path]) -> list[Block]:
    """The blocks of ``all_pages``; a block that repeats an earlier one (same text, same
    directives: the README's recipe again on its topic page) is checked once, as the first."""
    kept: list[Block] = []
    for page in all_pages:
        for block in read_blocks(page):
            if not any(block.same_check(seen) for seen in kept):
                kept.append(block)
    return kept


def with_placeholders(text: str) -> str:
    """``text`` with each placeholder replaced by what stands in for it."""
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


def command_lines(text: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, blank and comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def override_key(argument: str) -> str:
    """``train.max_iters=2`` -> ``train.max_iters``; ``~experiment`` -> ``experiment``."""
    return argument.split("=", 1)[0].lstrip("+~")


def with_tiny_overrides(text: str) -> str:
    """The bash block ``text`` with TINY_OVERRIDES added to each ``scripts/train.py`` command
    (before its comment) whose arguments do not set that key."""
    lines = []
    for line in command_lines(text):
        command, hash_, comment = line.partition(" #")
        arguments = shlex.split(command)
        if any(argument.endswith("scripts/train.py") for argument in arguments):
            given = {override_key(argument) for argument in arguments}
            extra = [override for override in TINY_OVERRIDES if override_key(override) not in given]
            command = " ".join([command.rstrip(), *extra])
        lines.append(command + (f" {hash_.strip()}{comment}" if hash_ else ""))
    return "\n".join(lines) + "\n"


def script_commands(text: str) -> list[tuple[str, list[str]]]:
    """(program, arguments) of each command of a bash block: ``scripts/train.py a=1`` (also after
    ``python`` or ``torchrun ...``) -> ("train", ["a=1"])."""
    commands = []
    for line in command_lines(text):
        arguments = shlex.split(line, comments=True)
        script = next((i for i, argument in enumerate(arguments) if argument.endswith(".py")), None)
        if script is None:
            raise ValueError(f"not a scripts/*.py command: {line}")
        commands.append((Path(arguments[script]).stem, arguments[script + 1 :]))
    return commands


def config_jobs(arguments: list[str]) -> list[list[str]]:
    """The overrides of each job a command's ``arguments`` run: Hydra's flags (``-m``, ``--cfg X``)
    dropped, and with ``-m`` one job per value of each ``key=a,b`` sweep, as Hydra's basic sweeper runs them."""
    overrides, sweep, skip_value = [], False, False
    for argument in arguments:
        if skip_value:  # the value of --cfg (job, hydra, all)
            skip_value = False
        elif argument in ("-m", "--multirun"):
            sweep = True
        elif argument in ("-c", "--cfg"):
            skip_value = True
        elif argument.startswith("-"):
            raise ValueError(f"config-only does not know the flag {argument}")
        else:
            overrides.append(argument)
    jobs: list[list[str]] = [[]]
    for override in overrides:
        key, equals, values = override.partition("=")
        choices = values.split(",") if sweep and "," in values and not values.startswith("[") else [values]
        jobs = [[*job, f"{key}{equals}{value}"] for job in jobs for value in choices]
    return jobs


def relative_links(page: Path) -> list[str]:
    """The relative link targets of ``page``'s text (outside code), e.g. ``docs/training.md#presets``."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    text = _INLINE_CODE.sub("", text)
    return [target for target in _LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives ``page``'s headings: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    headings = re.findall(r"^#+\s+(.*?)\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
