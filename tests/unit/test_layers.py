"""The package's import graph: the layers of docs/architecture.md hold and no module is part of a cycle.

import-linter (``lint-imports``, run by ``run.py test``) checks the layers contract in setup.cfg;
this test runs the same contract from pytest, and also proves what a layers contract does not: that
no two modules inside one package import each other in a circle. Imports inside functions count
(grimp sees them); ``TYPE_CHECKING`` imports do not (they never run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("rockstar_ws", exclude_type_checking_imports=True, cache_dir=None)


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One chain per module that imports itself through others: the module, what it imports, ..., itself."""
    found = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                found.append((module, *back))
                break
    return found


def test_no_module_imports_itself_through_others() -> None:
    found = cycles(_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_cycle_check_sees_an_import_inside_a_function() -> None:
    # The check above must be able to fail: an import written inside a function closes a cycle.
    graph = _graph()
    graph.add_import(importer="rockstar_ws.core.errors", imported="rockstar_ws.engine.server",
                     line_number=1, line_contents="from ..engine.server import default_server")
    found = cycles(graph)
    assert ("rockstar_ws.core.errors", "rockstar_ws.engine.server") in [c[:2] for c in found], found


def test_layers_contract_is_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout, result.stdout
