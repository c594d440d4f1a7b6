"""Structure of the package: both entry points offer every verb, the library (all but cli.py, __main__.py and
commands/) never imports the command line, and no module imports itself through others (no import cycle)."""

from __future__ import annotations

import ast
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


def module_name(path: Path) -> str:
    """``cmrseg.a.b`` for ``PACKAGE/a/b.py`` (``cmrseg.a`` for ``PACKAGE/a/__init__.py``)."""
    parts = ("cmrseg", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Which cmrseg modules each cmrseg module imports, at module level or inside functions alike: ``from X import
    Y`` counts as importing the module ``X.Y`` when that is a module, else ``X`` (as Python runs it)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}

    def known(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {known(alias.name) for alias in node.names if alias.name.split(".")[0] == "cmrseg"}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
                source = ".".join(part for part in (base, node.module or "") if part)
                if source.split(".")[0] == "cmrseg":
                    imported |= {f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else known(source)
                                 for alias in node.names}
        graph[name] = imported - {name, ""}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each is one import cycle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = [stack.pop()]
            while group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 80 and "cmrseg.formats.bundle" in graph["cmrseg.runs"]
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert "cmrseg.inference.onnx_engine" in import_graph()["cmrseg.inference.loading"]


def test_model_formats_sit_below_the_run_folder_and_inference() -> None:
    graph = import_graph()
    formats = [name for name in graph if name.startswith("cmrseg.formats")]
    upward = {name: sorted(other for other in graph[name] if other == "cmrseg.runs" or other.startswith(
              ("cmrseg.inference", "cmrseg.workflows", "cmrseg.training"))) for name in formats}
    assert len(formats) >= 5 and not any(upward.values()), upward
    assert not any(other.startswith("cmrseg.runs") for other in graph["cmrseg.models.voting"])


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


DATA_SCRIPTS = sorted(str(path.relative_to(Path(__file__).resolve().parent.parent))
                      for path in (Path(__file__).resolve().parent.parent / "benchmarks").rglob("*.py")
                      if '"--data", type=existing_folder' in path.read_text())


def test_every_benchmark_script_with_a_data_folder_checks_it() -> None:
    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    unchecked = [path.name for path in bench.rglob("*.py")
                 if 'add_argument("--data"' in path.read_text() and path.relative_to(bench.parent).as_posix() not in DATA_SCRIPTS]
    assert len(DATA_SCRIPTS) >= 7 and not unchecked, unchecked


def run_script(script: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """The exit code of ``python SCRIPT ARGS`` from the repo root, run in this process (a fresh interpreter per script
    costs seconds of imports); an exception other than an exit fails the test as a traceback would."""
    import runpy

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(script, run_name="__main__")
    return exit_info.value.code  # type: ignore[return-value]


@pytest.mark.parametrize("script", DATA_SCRIPTS)
def test_benchmark_script_names_a_missing_data_folder_in_one_line(script: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_data_here"
    code = run_script(script, ["--data", str(missing)], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"argument --data: no such folder: {missing}" in err
    assert not missing.exists()


def test_volume_benchmark_names_a_results_file_it_cannot_merge_in_one_line(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "acdc_volumes.py"
    spec = importlib.util.spec_from_file_location("acdc_volumes_under_test", script)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.earlier_report(tmp_path / "absent.json", {"phase"}) == {}
    broken = tmp_path / "acdc_volumes.json"
    broken.write_text('{"phase": {}}')
    with pytest.raises(SystemExit) as exit_info:
        module.earlier_report(broken, {"phase_28"})
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert f"{broken}: not a results file of this script (KeyError" in err


def test_epoch_speed_refuses_a_results_file_it_did_not_write_before_measuring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    theirs = tmp_path / "theirs.json"
    theirs.write_text("not mine")
    code = run_script("benchmarks/epoch_speed.py", ["--quick", "--out", str(theirs)], monkeypatch)
    out, err = capsys.readouterr()
    assert code == 2
    assert f"error: {theirs}: exists and was not written by cmrseg" in err
    assert theirs.read_text() == "not mine" and "s/epoch" not in out
