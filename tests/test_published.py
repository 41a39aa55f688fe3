"""A published page's prose states only what its tables carry: every number in its NOTES.md (the hand-written
notes) appears in the generated part of its README.md (tables, verdict, notes under tables). The pages: the
leaderboard (harness 0.5), the chat study and any republish page in progress with notes of its own."""

import re
from pathlib import Path

import pytest

LEADERBOARD = Path(__file__).parent.parent / "leaderboard"
PAGES = [LEADERBOARD, LEADERBOARD / "studies" / "chat",
         *sorted(p.parent for p in LEADERBOARD.glob("republish-*/NOTES.md"))]


@pytest.mark.parametrize("page_dir", PAGES, ids=lambda p: p.name)
def test_every_number_in_the_notes_is_in_a_table(page_dir):
    written = (page_dir / "NOTES.md").read_text()
    notes = written.split("## How it was made")[0]
    page = (page_dir / "README.md").read_text()
    assert written.strip() in page, f"{page_dir.name}/README.md was not built with its NOTES.md"
    generated = page.replace(written.strip(), "")
    missing = []
    for number in re.findall(r"(?<![\w.])[−+-]?\d+\.\d+|(?<![\w.])\d{3,}(?![\w.])", notes):
        plain = number.replace("−", "-").lstrip("+-")
        if not any(form in generated for form in (plain, f"-{plain}", f"+{plain}", f"−{plain}")):
            missing.append(number)
    assert not missing, f"numbers in {page_dir.name}/NOTES.md that no table carries: {missing}"
