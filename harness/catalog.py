"""Where task files and templates are found: the user's folders in front of the shipped ones.

`--tasks-dir` / `--prompts-dir` (or $HARNESS_TASKS_DIR / $HARNESS_PROMPTS_DIR, several joined by the path
separator) add folders before the shipped `tasks/` and `prompts/`, as lm-eval's --include_path does. A name
found in two folders is an error naming both files: which one to use is the user's call, not ours.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.errors import HarnessError

# what a task, template, model folder or regime variant may be called where it becomes a file or folder name
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
TASKS_DIR_ENV = "HARNESS_TASKS_DIR"
PROMPTS_DIR_ENV = "HARNESS_PROMPTS_DIR"
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # a source checkout (an editable install reads it)
PACKAGE_DATA = Path(__file__).resolve().parent / "shipped"  # a wheel carries tasks/ and prompts/ here


def shipped(kind: str) -> Path:
    """The shipped `tasks` or `prompts` folder: inside the installed package, else the source checkout's."""
    inside = PACKAGE_DATA / kind
    return inside if inside.is_dir() else SOURCE_ROOT / kind


def search_path(kind: str) -> list[Path]:
    """The user's folders for `kind` ('tasks' or 'prompts'), each checked to exist, then the shipped one."""
    env = TASKS_DIR_ENV if kind == "tasks" else PROMPTS_DIR_ENV
    folders = []
    for value in filter(None, os.environ.get(env, "").split(os.pathsep)):
        folder = Path(value)
        if not folder.is_dir():
            raise HarnessError(f"{kind} folder '{value}' (from --{kind}-dir or ${env}) does not exist")
        folders.append(folder)
    ship = shipped(kind)
    if ship.is_dir() and all(ship.resolve() != f.resolve() for f in folders):
        folders.append(ship)
    return folders


def find_one(kind: str, relative: str) -> Path | None:
    """The one file `relative` below the folders of `kind`; two files of that name are an error naming both."""
    found = [folder / relative for folder in search_path(kind) if (folder / relative).is_file()]
    if len(found) > 1:
        raise HarnessError(f"'{relative}' is found twice: {found[0]} and {found[1]}; rename or remove one")
    return found[0] if found else None


def names(kind: str, pattern: str) -> list[str]:
    """Stems of every file matching `pattern` below any folder of `kind`, sorted, each once."""
    return sorted({p.stem for folder in search_path(kind) for p in folder.glob(pattern) if p.is_file()})


def check_name(what: str, value: str) -> str:
    """A name that becomes part of a path: letters, digits, '.', '_', '+', '-', not starting with a dot; anything
    else (a path, '..') is one line."""
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise HarnessError(f"{what} '{value}' is not a name (letters, digits, '.', '_', '+', '-'; no path)")
    return value
