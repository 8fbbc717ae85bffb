"""File names from uploads are display text only: no paths, no control characters."""

from __future__ import annotations

import pytest

from helpline.evidence.upload import MAX_FILENAME, clean_filename


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("foto.jpg", "foto.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\scherm.png", "scherm.png"),
        ("ik\x07\x00\r\n.jpg", "ik.jpg"),
        ("\u202egpj.exe", "gpj.exe"),  # the right-to-left override is a format character
        ("..", None),
        ("", None),
        (None, None),
    ],
)
def test_clean_filename(raw: str | None, clean: str | None) -> None:
    assert clean_filename(raw) == clean


def test_long_names_are_cut() -> None:
    cleaned = clean_filename("a" * 1000 + ".jpg")
    assert cleaned is not None and len(cleaned) == MAX_FILENAME
