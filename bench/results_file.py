"""bench/RESULTS.md is one file with a section per benchmark script: each script replaces its own section."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(heading: str, lines: list[str], path: Path = RESULTS) -> None:
    """Replace the section whose heading line starts with `heading` ('## ...') by `lines`, or append it."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    sections = text.split("\n## ")
    head, rest = sections[0], ["## " + s for s in sections[1:]]
    body = "\n".join(lines).strip() + "\n"
    kept = [s if not s.startswith(heading) else body for s in rest]
    if not any(s.startswith(heading) for s in rest):
        kept.append(body)
    path.write_text(head.rstrip() + "\n\n" + "\n".join(s.rstrip() + "\n" for s in kept))
