"""The published page's prose states only what its tables carry: every number in leaderboard/NOTES.md (the
hand-written notes) appears in the generated part of leaderboard/README.md (tables, verdict, notes under tables)."""

import re
from pathlib import Path

LEADERBOARD = Path(__file__).parent.parent / "leaderboard"


def test_every_number_in_the_notes_is_in_a_table():
    notes = (LEADERBOARD / "NOTES.md").read_text().split("## How it was made")[0]
    page = (LEADERBOARD / "README.md").read_text()
    generated = page[: page.index("## What the numbers show")] + page[page.index("## How it was made"):]
    missing = []
    for number in re.findall(r"(?<![\w.])[−+-]?\d+\.\d+|(?<![\w.])\d{3,}(?![\w.])", notes):
        plain = number.replace("−", "-").lstrip("+-")
        if not any(form in generated for form in (plain, f"-{plain}", f"+{plain}", f"−{plain}")):
            missing.append(number)
    assert not missing, f"numbers in NOTES.md that no table carries: {missing}"
