"""The layers of docs/architecture.md, as imports: the page and the APIs reach jobs only
through the job service (and the record and view shapes it hands out)."""

from __future__ import annotations

import ast

from tests.helpers import PROJECT

THROUGH_THE_SERVICE = {"webui.jobs.service", "webui.jobs.record", "webui.jobs.views"}


def imported(path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_page_and_the_apis_reach_jobs_only_through_the_job_service() -> None:
    strays = {
        f"{path.relative_to(PROJECT)}: {module}"
        for folder in ("webui/ui", "webui/api")
        for path in sorted((PROJECT / folder).glob("*.py"))
        for module in imported(path)
        if module.startswith("webui.jobs") and module not in THROUGH_THE_SERVICE
    }
    assert strays == set()
