"""Envelope encryption and signatures: the only place in Helpline that touches key material.

- Master keys (KEKs, 256-bit) come from `HELPLINE_MASTER_KEY` or a key file. Each has an id
  derived from the key, stored beside everything it wraps, so the KEK can rotate.
- One data key (DEK) per case (scope `case:<id>`), generated on first use, stored wrapped.
- Field encryption binds table, row id and field name as associated data: a ciphertext copied
  into another row or column does not decrypt.
- Deleting a scope's wrapped DEK crypto-shreds every value encrypted under it.
- An Ed25519 key, its private half encrypted under the KEK, signs documents (detached).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.clock import Clock, SystemClock
from helpline.core.config import ConfigError, Settings
from helpline.core.models import DataKey, SigningKey

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT_V1 = b"\x01"
SEALED_MIN = len(FORMAT_V1) + NONCE_BYTES + TAG_BYTES  # an empty value, sealed
SESSION_CACHE = "helpline.data_keys"


class DecryptionError(Exception):
    """A value could not be decrypted: wrong place, tampered, or its key was shredded."""


class KeyShredded(DecryptionError):
    """The data key of this scope no longer exists."""


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def kek_id_of(key: bytes) -> str:
    return hashlib.sha256(b"helpline-kek-id|" + key).hexdigest()[:16]


def case_scope(case_id: str) -> str:
    return f"case:{case_id}"


def _decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ConfigError(f"{source}: not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{source}: must be {KEY_BYTES} bytes, got {len(key)}")
    return key


# ---------------------------------------------------------------- master keys and the key file


@dataclass(frozen=True)
class MasterKeys:
    """The KEKs this process knows: one current (wraps new keys), older ones still unwrap."""

    current_id: str
    keys: dict[str, bytes] = field(repr=False)  # never in a log line or a traceback
    source: Path | None = None  # the key file they came from, if any

    @classmethod
    def from_keys(cls, keys: list[bytes], source: Path | None = None) -> MasterKeys:
        if not keys:
            raise ValueError("at least one master key is needed")
        if any(len(k) != KEY_BYTES for k in keys):
            raise ValueError(f"master keys are {KEY_BYTES} bytes")
        by_id = {kek_id_of(k): k for k in keys}
        return cls(current_id=kek_id_of(keys[0]), keys=by_id, source=source)

    def derive(self, purpose: str) -> bytes:
        """A 256-bit key for one purpose (e.g. keyed hashes of rate-limit keys), derived from
        the current master key; it changes when the master key rotates."""
        return hmac.new(
            self.keys[self.current_id], b"helpline/derive/v1|" + purpose.encode(), hashlib.sha256
        ).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> MasterKeys:
        if settings.master_key is not None:
            parts = [p for p in settings.master_key.get_secret_value().split(",") if p.strip()]
            if not parts:
                raise ConfigError("HELPLINE_MASTER_KEY: is empty")
            return cls.from_keys([_decode_key(p, "HELPLINE_MASTER_KEY") for p in parts])
        path = settings.master_key_file
        assert path is not None
        if not path.exists():
            raise ConfigError(
                f"HELPLINE_MASTER_KEY: not set, and no key file at {path} "
                "(create one with `helpline keys init`)"
            )
        return read_key_file(path)

    def _aead(self, kek_id: str) -> AESGCM:
        try:
            return AESGCM(self.keys[kek_id])
        except KeyError:
            raise DecryptionError(f"master key {kek_id} is not loaded") from None

    def wrap(self, secret: bytes, context: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead(self.current_id).encrypt(nonce, secret, context)
        return self.current_id, FORMAT_V1 + nonce + sealed

    def unwrap(self, kek_id: str, blob: bytes, context: bytes) -> bytes:
        if blob[:1] != FORMAT_V1 or len(blob) < SEALED_MIN:
            raise DecryptionError("unknown wrapped-key format")
        try:
            return self._aead(kek_id).decrypt(blob[1:13], blob[13:], context)
        except InvalidTag:
            raise DecryptionError("wrapped key does not open with its master key") from None


def read_key_file(path: Path) -> MasterKeys:
    try:
        document = json.loads(path.read_text())
        current = document["current"]
        keys = [_decode_key(document["keys"][current], f"key file {path}")]
        keys += [
            _decode_key(v, f"key file {path}") for k, v in document["keys"].items() if k != current
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"HELPLINE_MASTER_KEY_FILE: cannot read {path}: {exc}") from None
    return MasterKeys.from_keys(keys, source=path)


def _key_file_document(keys: list[bytes]) -> str:
    document = {
        "version": 1,
        "current": kek_id_of(keys[0]),
        "keys": {kek_id_of(k): b64e(k) for k in keys},
    }
    return json.dumps(document, indent=2) + "\n"


def write_new_key_file(path: Path) -> MasterKeys:
    """Create a key file with one new KEK, mode 0600. Never overwrites an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # FileExistsError if present
    with os.fdopen(fd, "w") as handle:
        handle.write(_key_file_document([key]))
    return MasterKeys.from_keys([key], source=path)


def replace_key_file(path: Path, keys: list[bytes]) -> MasterKeys:
    """Atomically rewrite the key file (first key current), keeping mode 0600."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(_key_file_document(keys))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return MasterKeys.from_keys(keys, source=path)


# ---------------------------------------------------------------- data keys and fields


def _field_context(table: str, row_id: str, field: str) -> bytes:
    return f"helpline/field/v1|{table}|{row_id}|{field}".encode()


def _dek_context(scope: str) -> bytes:
    return f"helpline/dek/v1|{scope}".encode()


class FieldCipher:
    """Encrypts values of one scope (usually one case) with that scope's DEK."""

    def __init__(self, scope: str, key: bytes) -> None:
        self.scope = scope
        self._aead = AESGCM(key)
        self._key = key

    def encrypt(self, value: str | bytes, *, table: str, row_id: str, field: str) -> bytes:
        data = value.encode() if isinstance(value, str) else value
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, data, _field_context(table, row_id, field))
        return FORMAT_V1 + nonce + sealed

    def decrypt(self, blob: bytes, *, table: str, row_id: str, field: str) -> bytes:
        if blob[:1] != FORMAT_V1 or len(blob) < SEALED_MIN:
            raise DecryptionError("unknown ciphertext format")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], _field_context(table, row_id, field))
        except InvalidTag:
            raise DecryptionError(f"{table}.{field} of {row_id} does not decrypt") from None

    def decrypt_text(self, blob: bytes, *, table: str, row_id: str, field: str) -> str:
        return self.decrypt(blob, table=table, row_id=row_id, field=field).decode()

    def derive(self, purpose: str) -> bytes:
        """A sub-key of this scope's DEK for one purpose (e.g. the evidence vault's chunks)."""
        return hmac.new(
            self._key, b"helpline/derive/v1|" + purpose.encode(), hashlib.sha256
        ).digest()


class Keyring:
    """Data keys by scope, wrapped by the master keys."""

    def __init__(self, master: MasterKeys, clock: Clock | None = None) -> None:
        self.master = master
        self.clock = clock or SystemClock()

    async def cipher(
        self, session: AsyncSession, scope: str, *, create: bool = True
    ) -> FieldCipher:
        """The cipher of a scope; its DEK is created on first use unless `create` is False."""
        cache: dict[str, FieldCipher] = session.info.setdefault(SESSION_CACHE, {})
        if scope in cache:
            return cache[scope]
        row = await session.get(DataKey, scope)
        if row is None:
            if not create:
                raise KeyShredded(f"no data key for {scope}")
            key = os.urandom(KEY_BYTES)
            kek_id, wrapped = self.master.wrap(key, _dek_context(scope))
            try:
                async with session.begin_nested():
                    session.add(
                        DataKey(
                            scope=scope,
                            kek_id=kek_id,
                            wrapped_key=wrapped,
                            created_at=self.clock.now(),
                        )
                    )
            except IntegrityError:
                # Another transaction created this scope's key first (PostgreSQL): use theirs,
                # or the two would encrypt the scope's data under different keys.
                row = await session.get(DataKey, scope, populate_existing=True)
                if row is None:
                    raise
        if row is not None:
            key = self.master.unwrap(row.kek_id, row.wrapped_key, _dek_context(scope))
        cipher = cache[scope] = FieldCipher(scope, key)
        return cipher

    async def case_cipher(self, session: AsyncSession, case_id: str) -> FieldCipher:
        return await self.cipher(session, case_scope(case_id))

    async def shred(self, session: AsyncSession, scope: str) -> bool:
        """Destroy a scope's DEK: everything encrypted under it becomes unreadable."""
        session.info.get(SESSION_CACHE, {}).pop(scope, None)
        result = await session.execute(delete(DataKey).where(col(DataKey.scope) == scope))
        return bool(cast(CursorResult[Any], result).rowcount)


async def rotate_master_key(
    session_factory: Callable[[], AsyncSession],
    master: MasterKeys,
    *,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-wrap every data key and signing key not under the current KEK. Data is untouched.

    Works in batches, each its own transaction, so an interrupted run loses nothing and the
    next run continues where this one stopped. Returns the number of keys re-wrapped.
    """
    current = master.current_id
    async with session_factory() as session:
        total = (
            await session.execute(
                select(func.count()).select_from(DataKey).where(col(DataKey.kek_id) != current)
            )
        ).scalar_one()
    done = 0
    if progress:
        progress(done, total)
    while True:
        async with session_factory() as session:
            rows = (
                (
                    await session.execute(
                        select(DataKey)
                        .where(col(DataKey.kek_id) != current)
                        .order_by(col(DataKey.scope))
                        .limit(batch_size)
                    )
                )
                .scalars()
                .all()
            )
            if not rows:
                break
            for row in rows:
                context = _dek_context(row.scope)
                key = master.unwrap(row.kek_id, row.wrapped_key, context)
                row.kek_id, row.wrapped_key = master.wrap(key, context)
            await session.commit()
        done += len(rows)
        if progress:
            progress(done, max(total, done))
    async with session_factory() as session:
        signing = (
            (await session.execute(select(SigningKey).where(col(SigningKey.kek_id) != current)))
            .scalars()
            .all()
        )
        for key_row in signing:
            context = _signing_context(key_row.kid)
            private = master.unwrap(key_row.kek_id, key_row.wrapped_private_key, context)
            key_row.kek_id, key_row.wrapped_private_key = master.wrap(private, context)
        await session.commit()
    return done + len(signing)


async def kek_ids_in_use(session: AsyncSession) -> set[str]:
    data = (await session.execute(select(col(DataKey.kek_id)).distinct())).scalars().all()
    signing = (await session.execute(select(col(SigningKey.kek_id)).distinct())).scalars().all()
    return set(data) | set(signing)


# ---------------------------------------------------------------- signatures


def canonical_json(document: Any) -> bytes:
    """The bytes that are signed for a JSON document: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _signing_context(kid: str) -> bytes:
    return f"helpline/signing/v1|{kid}".encode()


class Signer:
    def __init__(self, kid: str, private_key: Ed25519PrivateKey) -> None:
        self.kid = kid
        self._private = private_key
        self.public_key = private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def sign_document(self, document: Any) -> dict[str, str]:
        """A detached signature over `canonical_json(document)`."""
        return {
            "alg": "Ed25519",
            "kid": self.kid,
            "signature": b64url(self.sign(canonical_json(document))),
        }


def public_jwk(kid: str, public_key: bytes, status: str) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": kid,
        "x": b64url(public_key),
        "status": status,
    }


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Whether `signature` is an Ed25519 signature of `data` by `public_key`; a malformed key
    or signature (untrusted input) is simply not valid."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


async def ensure_signing_key(session: AsyncSession, master: MasterKeys, clock: Clock) -> Signer:
    """The current signing key, created (once, even with racing instances) if there is none."""
    signer = await load_signer(session, master)
    if signer is not None:
        return signer
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = hashlib.sha256(public).hexdigest()[:16]
    kek_id, wrapped = master.wrap(private.private_bytes_raw(), _signing_context(kid))
    try:
        async with session.begin_nested():
            session.add(
                SigningKey(
                    kid=kid,
                    public_key=public,
                    wrapped_private_key=wrapped,
                    kek_id=kek_id,
                    slot="current",
                    created_at=clock.now(),
                )
            )
    except IntegrityError:  # another instance made one first
        signer = await load_signer(session, master)
        assert signer is not None
        return signer
    return Signer(kid, private)


async def load_signer(session: AsyncSession, master: MasterKeys) -> Signer | None:
    row = (
        await session.execute(select(SigningKey).where(col(SigningKey.slot) == "current"))
    ).scalar_one_or_none()
    if row is None:
        return None
    raw = master.unwrap(row.kek_id, row.wrapped_private_key, _signing_context(row.kid))
    return Signer(row.kid, Ed25519PrivateKey.from_private_bytes(raw))


async def published_keys(session: AsyncSession) -> list[dict[str, str]]:
    rows = (
        await session.execute(select(SigningKey).order_by(col(SigningKey.created_at)))
    ).scalars()
    return [
        public_jwk(row.kid, row.public_key, "current" if row.slot == "current" else "retired")
        for row in rows
    ]
