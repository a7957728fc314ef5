"""axe-core in the browser tests: inject the engine into a Playwright page and fail on serious or critical
violations (the WCAG rules axe ranks as blocking for some users: missing names and labels, contrast, ...).

The engine is axe-core's own ``axe.min.js``, bundled in the pinned ``axe-playwright-python`` package
(requirements-test.txt; its version is in ``AXE_VERSION``): nothing is downloaded when tests run.
"""

from __future__ import annotations

import re
from functools import cache

BLOCKING = ("serious", "critical")


@cache
def axe_source() -> str:
    from axe_playwright_python.base import AXE_FILE_PATH

    return AXE_FILE_PATH.read_text(encoding="utf-8")


def axe_version() -> str:
    found = re.search(r"axe v(\d+\.\d+\.\d+)", axe_source()[:200])
    return found.group(1) if found else "unknown"


def axe_violations(page, *, impacts: tuple[str, ...] = BLOCKING) -> list[dict]:
    """axe-core's violations on the page as it is now, of the given impacts."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node.get('failureSummary', '').splitlines()[-1:]}")
            lines.append(f"      {node['html'][:200]}")
    return "\n".join(lines)


def assert_accessible(page, what: str) -> None:
    """Fail with axe-core's own words when the page has a serious or critical violation."""
    violations = axe_violations(page)
    assert not violations, f"axe-core {axe_version()} on {what} ({page.url}):\n{describe(violations)}"
