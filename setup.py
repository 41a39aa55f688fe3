"""Ships the top-level tasks/ and prompts/ inside the wheel (as harness/shipped/), so `pip install .` finds them.

Everything else is in pyproject.toml; an editable install reads the folders from the checkout instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithCatalog(build_py):
    def run(self) -> None:
        super().run()
        for kind in ("tasks", "prompts"):
            target = Path(self.build_lib) / "harness" / "shipped" / kind
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / kind, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithCatalog})
