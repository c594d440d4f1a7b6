"""Structure of the package: both entry points offer every verb, and the library (all but cli.py, __main__.py and commands/) never imports the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cmrseg

VERBS = ("data", "train", "evaluate", "predict", "indices", "submit", "score", "models", "export", "ensemble", "cv", "sweep", "report")
PACKAGE = Path(cmrseg.__file__).resolve().parent
FORBIDDEN = re.compile(r"^\s*(import argparse|from argparse\b|.*\bcmrseg\.cli\b|.*\bcmrseg\.commands\b|from cmrseg import .*\bcli\b)",
                       re.MULTILINE)


@pytest.mark.parametrize("module", ["cmrseg", "cmrseg.cli"])
def test_every_verb_is_offered_by_both_entry_points(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
    listed = set(re.findall(r"^ {4}([a-z]+) ", result.stdout, re.MULTILINE))
    assert set(VERBS) <= listed, result.stdout


def test_library_modules_do_not_import_the_command_line() -> None:
    library = [path for path in PACKAGE.rglob("*.py")
               if path.name not in ("cli.py", "__main__.py") and "commands" not in path.relative_to(PACKAGE).parts]
    assert len(library) > 20
    offenders = [f"{path.relative_to(PACKAGE)}: {match.group(0).strip()}"
                 for path in library for match in FORBIDDEN.finditer(path.read_text())]
    assert not offenders, offenders


def test_benchmark_scripts_import_no_other_script_and_record_where_they_ran(tmp_path: Path) -> None:
    from cmrseg.utils import write_results

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    scripts = {path.stem for path in bench.rglob("*.py")}
    for path in bench.rglob("*.py"):
        imported = set(re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.M))
        assert not imported & scripts, f"{path} imports another benchmark script"
    out = write_results(tmp_path / "r.json", {"x": 1})
    measured = json.loads(out.read_text())["measured"]
    assert set(measured) == {"commit", "date", "machine"} and json.loads(out.read_text())["x"] == 1
