"""The command line's package, doc_runs/cli/: its imports go one way (common at the bottom, the
command groups above, the package's __init__ on top), so no module needs another to have
been imported first."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys

import pytest

from doc_runs_tests.helpers import PROJECT_ROOT

CLI = PROJECT_ROOT / "doc_runs" / "cli"
PACKAGE = "doc_runs.cli"
# `python -m doc_runs.cli` runs it; nothing imports it, and it alone may import the package.
MAIN = "__main__"
MODULES = sorted(path.stem for path in CLI.glob("*.py"))


def imported_siblings(module: str) -> set[str]:
    """The modules of the package that `module` imports, at its top or in a function; the
    package itself counts as its "__init__"."""
    found: set[str] = set()
    tree = ast.parse((CLI / f"{module}.py").read_text(), f"{module}.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:  # `from . import x`, `from .common import y`
                base = f"{PACKAGE}.{base}" if base else PACKAGE
            elif node.level > 1:  # outside the package
                continue
            # `from doc_runs.cli import process` imports a module, `... import main` a name.
            names = [f"{base}.{alias.name}" if base == PACKAGE
                     and alias.name in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE:
                found.add("__init__")
            elif name.startswith(PACKAGE + "."):
                found.add(name.removeprefix(PACKAGE + ".").split(".")[0])
    found.discard(module)
    return found


def test_the_cli_modules_import_one_way() -> None:
    graph = {module: imported_siblings(module) for module in MODULES}
    importing_the_package = [m for m, siblings in graph.items()
                             if "__init__" in siblings and m != MAIN]
    assert not importing_the_package, \
        f"these import the package doc_runs.cli, which imports them: {importing_the_package}"
    assert not graph["common"], f"common is the bottom: it imports {sorted(graph['common'])}"
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as cycle:
        raise AssertionError(f"an import cycle: {' -> '.join(cycle.args[1])}") from None


# The package's __init__ imports every command group, and `import doc_runs.cli.X` runs it
# first: X is imported here with an empty package in its place, so it gets only what it
# imports itself.
ALONE = """
import importlib, sys, types
package = types.ModuleType({package!r})
package.__path__ = [{folder!r}]
sys.modules[{package!r}] = package
importlib.import_module({package!r} + "." + {module!r})
"""


@pytest.mark.processes
@pytest.mark.parametrize("module", MODULES)
def test_each_cli_module_imports_alone(module: str) -> None:
    if module in ("__init__", MAIN):
        code = f"import {PACKAGE}" if module == "__init__" else f"import {PACKAGE}.{module}"
    else:
        code = ALONE.format(package=PACKAGE, folder=str(CLI), module=module)
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
