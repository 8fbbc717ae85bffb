"""What a victim keeps to come back: a case reference and a passphrase.

The reference is 8 characters of Crockford's base32 (no I, L, O, U: nothing to confuse),
shown as `7K3Q-M9PX`. The passphrase is random words from a list in the victim's language,
enough of them for at least 64 bits. Only an Argon2id hash of the passphrase is stored. Both
are normalised on input: case, spaces and dashes do not matter.
"""

from __future__ import annotations

import math
import re
import secrets
from functools import cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_LENGTH = 8
MIN_PASSPHRASE_BITS = 64
LANGUAGES = ("nl", "en")
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})

passphrase_hasher = PasswordHasher()  # Argon2id


def new_reference() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(REFERENCE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalise_reference(text: str) -> str | None:
    """`7k3q m9px`, `7K3Q-M9PX`, `7K3QM9PX` → `7K3Q-M9PX`; None if it cannot be one."""
    raw = re.sub(r"[\s\-_.]", "", text.upper()).translate(_CONFUSABLE)
    if len(raw) != REFERENCE_LENGTH or any(c not in ALPHABET for c in raw):
        return None
    return f"{raw[:4]}-{raw[4:]}"


@cache
def words(language: str) -> tuple[str, ...]:
    if language not in LANGUAGES:
        raise ValueError(f"no word list for {language!r}")
    text = (files("helpline.cases") / "wordlists" / f"{language}.txt").read_text()
    return tuple(sorted({w.strip() for w in text.split() if w.strip()}))


def words_needed(language: str) -> int:
    return math.ceil(MIN_PASSPHRASE_BITS / math.log2(len(words(language))))


def passphrase_bits(language: str) -> float:
    return words_needed(language) * math.log2(len(words(language)))


def new_passphrase(language: str) -> str:
    pool = words(language)
    return " ".join(secrets.choice(pool) for _ in range(words_needed(language)))


def normalise_passphrase(text: str) -> str:
    """Lower case, words separated by one space, whatever the victim typed between them."""
    return " ".join(re.split(r"[\s\-_.,;:/]+", text.strip().lower())).strip()


def hash_passphrase(passphrase: str) -> str:
    return passphrase_hasher.hash(normalise_passphrase(passphrase))


def check_passphrase(stored_hash: str | None, passphrase: str) -> bool:
    """Constant work whether or not there is a hash (unknown references cost the same)."""
    try:
        return passphrase_hasher.verify(
            stored_hash or _dummy_hash(), normalise_passphrase(passphrase)
        )
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return passphrase_hasher.hash("no such case")
