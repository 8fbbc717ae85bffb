"""Creating staff accounts and checking passwords (Argon2id)."""

from __future__ import annotations

import re
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpline.core.audit import record
from helpline.core.clock import Clock
from helpline.core.errors import Conflict, Invalid
from helpline.core.ids import new_id
from helpline.staff.models import Role, Staff

MIN_PASSWORD_LENGTH = 12
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")

password_hasher = PasswordHasher()  # argon2-cffi's defaults are Argon2id, RFC 9106 low-memory


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")


async def create_staff(
    session: AsyncSession,
    clock: Clock,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str | None = None,
    actor: str = "system",
) -> Staff:
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise Invalid("a user name is 2-64 characters: a-z, 0-9, dot, dash, underscore")
    check_new_password(password)
    existing = await session.execute(select(Staff).where(Staff.username == username))  # type: ignore[arg-type]
    if existing.scalar_one_or_none() is not None:
        raise Conflict(f"a staff account named {username!r} exists already")
    staff = Staff(
        id=new_id(),
        username=username,
        display_name=display_name or username,
        password_hash=password_hasher.hash(password),
        role=role.value,
        created_at=clock.now(),
    )
    session.add(staff)
    await session.flush()
    await record(
        session,
        clock,
        actor=actor,
        action="staff.create",
        target=f"staff:{staff.id}",
        details={"role": role.value},
    )
    return staff


async def find_staff(
    session: AsyncSession, username: str, *, for_update: bool = False
) -> Staff | None:
    """The account of a user name. `for_update` locks its row until the transaction ends
    (PostgreSQL; SQLite's write lock is already held), so that concurrent login attempts on one
    account are counted one after the other."""
    query = select(Staff).where(Staff.username == username.strip().lower())  # type: ignore[arg-type]
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    result = await session.execute(query)
    return result.scalar_one_or_none()


def verify_password(staff: Staff | None, password: str) -> bool:
    """Check a password. For an unknown account (`None`) a dummy hash is verified instead, so
    the answer takes as long whether or not the user name exists; it is always False."""
    try:
        matches = password_hasher.verify(staff.password_hash if staff else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matches and staff is not None


def rehash_if_needed(staff: Staff, password: str) -> None:
    """After a successful check: upgrade the stored hash if the hasher's parameters changed."""
    if password_hasher.check_needs_rehash(staff.password_hash):
        staff.password_hash = password_hasher.hash(password)


@cache
def _dummy_hash() -> str:
    return password_hasher.hash("no such staff member")
