"""Run one page's Python examples in this fresh interpreter, as a reader would.

``python -S tests/docs_runner.py REQUEST RESULT``: REQUEST is a JSON file with
``site`` (the site-packages directory to use: the test's, less the packages
the page does not tell the reader to install) and ``blocks`` (``name`` and
``code`` of each example, in page order). The blocks run in one namespace,
each with its standard output captured; RESULT receives a JSON list with, per
block run, its ``output`` and ``error`` (a traceback, or null). The first error
stops the page.

tests/test_docs.py starts it; it is not a test module itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import site
import sys
import traceback
from pathlib import Path


def main(request_path: str, result_path: str) -> None:
    """Block the modules, run the blocks in order, write what each printed."""
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    # Started with -S: only this directory's packages (and its .pth files) are there.
    site.addsitedir(request["site"])
    namespace: dict[str, object] = {"__name__": "__main__"}
    results: list[dict[str, str | None]] = []
    for block in request["blocks"]:
        printed = io.StringIO()
        error = None
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(block["code"], block["name"], "exec"), namespace)
        except BaseException:
            error = traceback.format_exc()
        results.append({"output": printed.getvalue(), "error": error})
        if error is not None:
            break
    Path(result_path).write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
