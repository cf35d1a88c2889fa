"""The documentation's Python examples run as written, and print what the page shows.

How a page of README.md or docs/ is checked (docs/contributing.md says the same
for writers):

1. Every ```python block runs, in page order, in one namespace per page, in a
   fresh interpreter started in an empty directory. The environment is what
   docs/index.md tells a reader to set up: ``OXYLABS_BASE_URL`` points at a
   default emulator (what ``oxystats emulator`` serves) and ``OXYLABS_API_KEY``
   is its key; nothing else is prepared. A block preceded by the line
   ``<!-- docs: no-run -->`` is not run.
2. A page with runnable blocks says what to install for them, in a
   ``pip install ...`` line (``oxystats[extra,...]`` and any other package).
   While its blocks run, only that is importable: every other optional
   dependency of oxystats (the extras' packages and the test tools) is left out.
3. A block that prints shows what it prints, right under it: the line
   ``<!-- docs: output -->``, then a ```text block. Lines are compared one by
   one, trailing spaces aside; ``...`` in a line matches any text within the
   line, and a line that is only ``...`` matches any number of lines. A block
   that prints and has no output block fails, showing what it printed.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterable
from pathlib import Path

import attrs
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from oxystats.emulator import RunningEmulator
from oxystats.testing import DEFAULT_KEY

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNER = Path(__file__).parent / "docs_runner.py"

_PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS: dict[str, list[str]] = _PROJECT["project"]["optional-dependencies"]
CORE: list[str] = _PROJECT["project"]["dependencies"]

# Markers stand alone on their line; fences may be longer than three backticks
# (a page showing a fenced block inside one), and close with the same run.
TOKEN = re.compile(
    r"^<!-- docs: (?P<marker>[\w-]+) -->[ \t]*$"
    r"|^(?P<fence>`{3,})(?P<language>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
MARKERS = ("no-run", "output")
INSTALL = re.compile(r"pip install (?P<arguments>[^`\n#&;|]+)")


def installed_with(requirements: Iterable[str]) -> set[str]:
    """Every package that ``pip install REQUIREMENTS`` brings, dependencies included.

    oxystats' own extras come from pyproject.toml (what a reader would get
    from this tree); other packages' dependencies from their installed metadata.
    """
    found: set[str] = set()
    pending = [Requirement(requirement) for requirement in requirements]
    done: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in done:
            continue
        done.add(key)
        found.add(name)
        if name == "oxystats":
            unknown = requirement.extras - set(EXTRAS)
            assert not unknown, f"oxystats has no extra {sorted(unknown)}: see pyproject.toml"
            pending += [Requirement(r) for r in CORE]
            for extra in requirement.extras:
                pending += [Requirement(r) for r in EXTRAS[extra]]
            continue
        try:
            needs = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in needs:
            need = Requirement(line)
            wanted = requirement.extras or {""}
            if need.marker is None or any(need.marker.evaluate({"extra": e}) for e in wanted):
                pending.append(need)
    return found


# What an example could import that `pip install oxystats` alone does not bring.
OPTIONAL = {
    canonicalize_name(Requirement(requirement).name)
    for requirement in [
        *(r for extra in EXTRAS.values() for r in extra),
        *_PROJECT["dependency-groups"]["tests"],
    ]
} - installed_with(["oxystats"])


@attrs.frozen
class Example:
    """A runnable ```python block, and the output the page shows for it (if any)."""

    name: str
    code: str
    output: str | None


@attrs.frozen
class Page:
    """What a page asks for: its examples, and what its ``pip install`` lines name."""

    examples: list[Example]
    requirements: list[str]
    install_lines: list[str]


class PageError(Exception):
    """A page breaks the conventions: an unknown or misplaced marker."""


def read_page(path: Path) -> Page:
    """Parse a page.

    Raises:
        PageError: A marker is unknown or misplaced; the message says where.
    """
    text = path.read_text(encoding="utf-8")
    tokens = list(TOKEN.finditer(text))
    examples: list[Example] = []
    last_runnable = -1  # the token index of the last runnable block
    for index, token in enumerate(tokens):
        previous = tokens[index - 1] if index else None
        after_previous = previous is not None and _adjacent(text, previous, token)
        where = f"{_shown(path)}:{text.count(chr(10), 0, token.start()) + 1}"
        if token["language"] == "python":
            if not (after_previous and previous is not None and previous["marker"] == "no-run"):
                examples.append(
                    Example(f"{where} (example {len(examples) + 1})", token["body"], None)
                )
                last_runnable = index
            continue
        marker = token["marker"]
        if marker is None:
            continue
        if marker not in MARKERS:
            raise PageError(f"{where}: unknown marker {marker!r}; the markers are {MARKERS}")
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        wanted = "python" if marker == "no-run" else "text"
        if following is None or following["language"] != wanted:
            raise PageError(
                f"{where}: <!-- docs: {marker} --> goes right before a ```{wanted} block"
            )
        if not _adjacent(text, token, following):
            raise PageError(
                f"{where}: <!-- docs: {marker} --> goes right before a ```{wanted} block"
            )
        if marker == "output":
            if not (after_previous and last_runnable == index - 1):
                raise PageError(
                    f"{where}: <!-- docs: output --> goes right after a runnable ```python block"
                )
            examples[-1] = attrs.evolve(examples[-1], output=following["body"])
    install_lines = [match["arguments"].strip() for match in INSTALL.finditer(text)]
    requirements = [
        # "." is this project, from a clone, as README.md installs it.
        "oxystats" + requirement[1:] if requirement.startswith(".") else requirement
        for line in install_lines
        for requirement in shlex.split(line)
        if not requirement.startswith("-")
    ]
    return Page(examples, requirements, install_lines)


def site_without(absent: Iterable[str], directory: Path) -> Path:
    """A site-packages made of links to this interpreter's, less the ``absent`` packages."""
    hidden: set[str] = set()
    for name in absent:
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        hidden |= {file.parts[0] for file in files}
    directory.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name not in hidden:
            (directory / entry.name).symlink_to(entry)
    return directory


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def _adjacent(text: str, first: re.Match[str], second: re.Match[str]) -> bool:
    return not text[first.end() : second.start()].strip()


def shows(expected: str, printed: str) -> bool:
    """Whether ``printed`` is what ``expected`` shows, ``...`` standing for any text."""
    pattern = ""
    for line in expected.rstrip("\n").split("\n"):
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += ".*?".join(map(re.escape, line.rstrip().split("..."))) + r"\n"
    lines = [line.rstrip() for line in printed.rstrip("\n").split("\n")]
    return re.fullmatch(pattern, "\n".join(lines) + "\n") is not None


def runnable_pages() -> list[Path]:
    """The pages with at least one runnable example."""
    return [page for page in PAGES if read_page(page).examples]


@pytest.mark.parametrize("path", runnable_pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_examples_run_and_print_what_the_page_shows(
    path: Path, oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """The page's examples run with what it says to install, and print what it shows."""
    page = read_page(path)
    assert page.install_lines, (
        f"{path.relative_to(ROOT)} has examples but no `pip install ...` line saying what "
        "they need (python -m pip install oxystats, or 'oxystats[extra,...]')"
    )
    absent = OPTIONAL - installed_with(["oxystats", *page.requirements])
    request = tmp_path / "request.json"
    result = tmp_path / "result.json"
    request.write_text(
        json.dumps(
            {
                "site": str(site_without(absent, tmp_path / "site-packages")),
                "blocks": [{"name": e.name, "code": e.code} for e in page.examples],
            }
        ),
        encoding="utf-8",
    )
    workdir = tmp_path / "reader"
    workdir.mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OXYLABS_")}
    environment |= {"OXYLABS_BASE_URL": oxystats_emulator.url, "OXYLABS_API_KEY": DEFAULT_KEY}
    done = subprocess.run(
        [sys.executable, "-S", str(RUNNER), str(request), str(result)],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcomes = json.loads(result.read_text(encoding="utf-8"))
    for example, outcome in zip(page.examples, outcomes, strict=False):
        assert outcome["error"] is None, (
            f"{example.name} failed with only {page.install_lines} installed:\n{outcome['error']}"
        )
        printed = outcome["output"]
        if example.output is None:
            assert not printed, (
                f"{example.name} prints; show it right under the block:\n\n"
                f"<!-- docs: output -->\n```text\n{printed}```"
            )
        else:
            assert shows(example.output, printed), f"{example.name} printed otherwise:\n" + "".join(
                difflib.unified_diff(
                    example.output.splitlines(keepends=True),
                    printed.splitlines(keepends=True),
                    "shown",
                    "printed",
                )
            )
    assert len(outcomes) == len(page.examples)


@pytest.mark.parametrize(
    ("expected", "printed", "same"),
    [
        ("a\nb\n", "a\nb\n", True),
        ("a\nb\n", "a\nb  \n\n", True),
        ("a\nb\n", "a\nc\n", False),
        ("a\n", "a\nb\n", False),
        ("x = ...\n", "x = 42\n", True),
        ("x = ... s\n", "x = 0.25 s\n", True),
        ("x = ...\n", "x = 1\ny = 2\n", False),
        ("first\n...\nlast\n", "first\nlast\n", True),
        ("first\n...\nlast\n", "first\n1\n2\nlast\n", True),
        ("first\n...\nlast\n", "first\n1\n2\n", False),
    ],
)
def test_output_comparison(expected: str, printed: str, same: bool) -> None:
    """Lines compare one by one; ... matches any text in a line, or any lines alone."""
    assert shows(expected, printed) is same


def test_markers_are_checked(tmp_path: Path) -> None:
    """A marker that is unknown or not next to its block fails, naming the line; fences nest."""
    page = tmp_path / "page.md"
    cases = {
        "<!-- docs: skip -->\n```python\npass\n```\n": "unknown marker 'skip'",
        "```python\nprint(1)\n```\n\nprose\n\n<!-- docs: output -->\n```text\n1\n```\n": (
            "goes right after a runnable"
        ),
        "```python\nprint(1)\n```\n<!-- docs: output -->\n\n```python\n1\n```\n": (
            "goes right before a ```text block"
        ),
        (
            "<!-- docs: no-run -->\n```python\nprint(1)\n```\n"
            "<!-- docs: output -->\n```text\n1\n```\n"
        ): "goes right after a runnable",
    }
    for text, message in cases.items():
        page.write_text(text, encoding="utf-8")
        with pytest.raises(PageError, match=re.escape(message)):
            read_page(page)
    page_text = (
        "Run `python -m pip install 'oxystats[trio]' starlette` first.\n\n"
        "````markdown\n```python\nraise SystemExit\n```\n````\n\n"
        "```python\nprint(1)\n```\n\n<!-- docs: output -->\n```text\n1\n```\n"
    )
    page.write_text(page_text, encoding="utf-8")
    parsed = read_page(page)
    assert [(e.code, e.output) for e in parsed.examples] == [("print(1)\n", "1\n")]
    assert parsed.requirements == ["oxystats[trio]", "starlette"]
    assert {"trio", "starlette", "httpx"} <= installed_with(parsed.requirements)
    assert "pandas" not in installed_with(parsed.requirements)
