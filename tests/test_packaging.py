"""What a wheel (and so the container image) carries."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_frontend_file_is_installed_by_the_wheel() -> None:
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"
    ]
    patterns = [p for group in data_files.values() for p in group]
    files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "frontend").rglob("*") if p.is_file()]
    assert files, "no frontend files found"
    # setuptools globs do not cross directories: a pattern covers files in its own folder only
    missing = [
        f
        for f in files
        if not any(
            Path(p).parent == Path(f).parent and fnmatch.fnmatchcase(Path(f).name, Path(p).name)
            for p in patterns
        )
    ]
    assert missing == [], "add these to [tool.setuptools.data-files] in pyproject.toml"
