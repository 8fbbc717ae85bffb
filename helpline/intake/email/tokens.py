"""Reply tokens: how a victim's answer finds its case again.

Every mail we send carries a fresh random token twice: in the Reply-To address
(`help+<token>@domain`) and in its Message-ID (`<hl-<token>@domain>`), which the victim's
mail program puts in In-Reply-To and References. Tokens are 128-bit, lower-case hex (some
mail servers change the case of an address), and only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from helpline.core.config import Settings

_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_IN_MESSAGE_ID = re.compile(r"<hl-([0-9a-fA-F]{32})@([^<>\s]+)>")


def new_token() -> str:
    return secrets.token_hex(16)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.lower().encode()).hexdigest()


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower() or "localhost"


def message_id_for(settings: Settings, token: str) -> str:
    return f"<hl-{token}@{domain_of(settings.mail_from)}>"


def reply_address(settings: Settings, token: str) -> str:
    """`local+token@domain` of the helpline's (first) inbound address."""
    base = (settings.inbound_address_list or [settings.mail_from.lower()])[0]
    local, _, domain = base.rpartition("@")
    return f"{local}+{token}@{domain}"


def base_address(address: str) -> str:
    """An address without its `+tag`, lower case: what the helpline's addresses are."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}".lower()


def own_addresses(settings: Settings) -> set[str]:
    return {base_address(settings.mail_from), *settings.inbound_address_list}


def is_our_message_id(settings: Settings, message_id: str) -> bool:
    match = _IN_MESSAGE_ID.fullmatch(message_id.strip())
    return match is not None and match.group(2).lower() == domain_of(settings.mail_from)


def candidate_tokens(
    recipients: list[str], in_reply_to: list[str], references: list[str]
) -> list[str]:
    """Tokens a mail names, the most telling first: the plus-address it was sent to, then the
    message it answers, then the rest of its thread (newest first)."""
    found: list[str] = []
    for recipient in recipients:
        local = recipient.strip().strip("<>").rpartition("@")[0]
        tag = local.partition("+")[2].lower()
        if _TOKEN.match(tag):
            found.append(tag)
    for message_id in [*in_reply_to, *reversed(references)]:
        match = _IN_MESSAGE_ID.search(message_id)
        if match:
            found.append(match.group(1).lower())
    return list(dict.fromkeys(found))


def tokens_quoted_in(raw: bytes) -> list[str]:
    """Tokens of our Message-IDs anywhere in a raw mail (a bounce quotes the mail it returns)."""
    text = raw.decode("latin-1")
    return list(dict.fromkeys(m.group(1).lower() for m in _IN_MESSAGE_ID.finditer(text)))[:20]
