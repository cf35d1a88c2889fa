"""The documentation's Python examples run, as written, against the emulator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oxystats.emulator import DEFAULT_ACCOUNT, Emulator, EmulatorConfig, RunningEmulator
from oxystats.testing import DEFAULT_KEY

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Keys the examples use to show several keys of one account.
EXAMPLE_KEYS = {DEFAULT_KEY: DEFAULT_ACCOUNT, "key-of-team-a": "team", "key-of-team-b": "team"}
BLOCK = re.compile(r"(?P<marker><!-- docs: no-run -->\s*)?```python\n(?P<code>.*?)```", re.DOTALL)


def examples(page: Path) -> list[str]:
    """The page's runnable ```python blocks, in order."""
    text = page.read_text(encoding="utf-8")
    return [m["code"] for m in BLOCK.finditer(text) if not m["marker"]]


@pytest.mark.parametrize(
    "page",
    [page for page in PAGES if examples(page)],
    ids=lambda page: str(page.relative_to(ROOT)),
)
def test_examples_run(
    page: Path,
    oxystats_emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every Python block of the page runs, in order, in one namespace."""
    blocks = examples(page)
    oxystats_emulator.use(Emulator(EmulatorConfig(keys=EXAMPLE_KEYS)))
    monkeypatch.setenv("OXYLABS_BASE_URL", oxystats_emulator.url)
    monkeypatch.setenv("OXYLABS_API_KEY", DEFAULT_KEY)
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for number, code in enumerate(blocks, start=1):
        try:
            exec(compile(code, f"{page.name}[{number}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"example {number} of {page.name} failed: {exc!r}") from exc
    capsys.readouterr()
