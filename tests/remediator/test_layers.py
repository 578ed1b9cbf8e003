"""No import cycle inside remediator/ (the layer contracts themselves are import-linter's, in `make lint`)."""

from __future__ import annotations

import grimp


def test_no_import_cycle_in_the_remediator():
    graph = grimp.build_graph("remediator")
    cycles = [(m, d) for m in sorted(graph.modules) for d in graph.find_modules_directly_imported_by(m)
              if graph.chain_exists(importer=d, imported=m)]
    assert not cycles, cycles


def test_the_cycle_check_can_fail():
    graph = grimp.build_graph("remediator")
    graph.add_import(importer="remediator.domain.models", imported="remediator.runtime.engine")
    assert graph.chain_exists(importer="remediator.runtime.engine", imported="remediator.domain.models")
