"""Case references and passphrases."""

from __future__ import annotations

import re

import pytest

from helpline.cases.receipts import (
    ALPHABET,
    LANGUAGES,
    check_passphrase,
    hash_passphrase,
    new_passphrase,
    new_reference,
    normalise_passphrase,
    normalise_reference,
    passphrase_bits,
    words,
)


def test_references_use_unambiguous_characters() -> None:
    seen = {new_reference() for _ in range(500)}
    assert len(seen) == 500
    for reference in seen:
        assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", reference)
        assert not set(reference.replace("-", "")) & set("ILOU")
        assert set(reference.replace("-", "")) <= set(ALPHABET)


@pytest.mark.parametrize(
    "typed", ["7k3q-m9px", " 7K3Q M9PX ", "7K3QM9PX", "7k3q_m9px", "7K3Q--M9PX"]
)
def test_a_reference_is_normalised_however_it_is_typed(typed: str) -> None:
    assert normalise_reference(typed) == "7K3Q-M9PX"


def test_confusable_letters_read_as_the_digits_they_look_like() -> None:
    assert normalise_reference("OILU-0000") == "011V-0000"
    assert normalise_reference("short") is None
    assert normalise_reference("7K3Q-M9PX-2") is None
    assert normalise_reference("7K3Q-M9P!") is None


@pytest.mark.parametrize("language", LANGUAGES)
def test_passphrases_have_at_least_64_bits(language: str) -> None:
    assert len(words(language)) >= 1024
    assert passphrase_bits(language) >= 64
    phrase = new_passphrase(language)
    assert all(word in words(language) for word in phrase.split())
    assert len({new_passphrase(language) for _ in range(50)}) == 50


def test_passphrase_input_is_normalised() -> None:
    assert normalise_passphrase("  Appel-Boom  wolk\tZee ") == "appel boom wolk zee"


def test_only_an_argon2id_hash_is_kept_and_it_checks_normalised_input() -> None:
    stored = hash_passphrase("appel boom wolk zee maan ster")
    assert stored.startswith("$argon2id$")
    assert "appel" not in stored
    assert check_passphrase(stored, "APPEL-boom-wolk  zee maan-ster")
    assert not check_passphrase(stored, "appel boom wolk zee maan")
    assert not check_passphrase(None, "anything")
