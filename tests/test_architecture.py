"""The layering rules (import-linter contracts in pyproject.toml): engine/ never imports Qt or the
desktop app; the window's layers point one way; families are independent; the core and file reading
know no family; no import cycles in engine/; no private names imported across modules; no family
names compared in the desktop app."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contract_holds():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 kept, 0 broken" in proc.stdout


def test_every_registered_family_is_in_the_contracts_that_keep_families_apart():
    """A family added to the registry but not to the contracts would be free to import another family
    (or be imported by the Engine) without the linter noticing."""
    import tomllib

    from engine.families import REGISTRY

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    independent = next(c["modules"] for c in contracts if c["type"] == "independence")
    kept_from_engine = next(c["forbidden_modules"] for c in contracts if c.get("source_modules") == ["engine.engine"])
    for family in REGISTRY:
        assert family in independent, f"{family} is missing from the independence contract"
        assert family in kept_from_engine, f"{family} is missing from the Engine's forbidden modules"


def _engine_graph():
    import grimp

    return grimp.build_graph("engine", include_external_packages=False, exclude_type_checking_imports=True)


def test_no_import_cycles_in_the_engine():
    graph = _engine_graph()
    modules = sorted(graph.modules)
    cycles = []
    for module in modules:
        for other in graph.find_modules_directly_imported_by(module):
            if module != other and graph.chain_exists(importer=other, imported=module):
                cycles.append(f"{module} <-> {other}: {graph.find_shortest_chain(importer=other, imported=module)}")
    assert cycles == []


def _py_files(*folders: str):
    for folder in folders:
        yield from (ROOT / folder).rglob("*.py")


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in _py_files("engine", "desktop_app"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("engine", "desktop_app"):
                offenders += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_the_desktop_app_never_compares_family_names():
    import re

    pattern = re.compile(r"""family\s*(==|!=)\s*["']|family\s+(not\s+)?in\s*[\(\[{]\s*["']""")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in _py_files("desktop_app")
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_no_engine_module_mentions_qt_even_lazily():
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("PySide6", "desktop_app", "qasync")]
    assert offenders == []
