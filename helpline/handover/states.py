"""The vocabulary of a warm handover: partner kinds, the parts a packet may hold, how consent
was given, and the states of a handover with their allowed transitions.

Every transition is written to `handover_history` (append-only) by `helpline.handover.service`.
"""

from __future__ import annotations

from enum import StrEnum


class PartnerKind(StrEnum):
    sexual_violence_care = "sexual_violence_care"  # Centrum Seksueel Geweld, Fier
    victim_support = "victim_support"  # Slachtofferhulp Nederland
    police = "police"  # zedenpolitie: the intake conversation before an aangifte
    gp = "gp"  # huisarts
    other = "other"


class PartnerDelivery(StrEnum):
    # a one-time, expiring download link, announced by an e-mail without case data
    download_link = "download_link"


class Part(StrEnum):
    """What a packet may hold. The victim consents to exactly a set of these (plus, for
    `evidence`, exactly which items)."""

    summary = "summary"  # a summary written by staff for this partner
    categories = "categories"  # the case's category and risk flags
    timeline = "timeline"  # what happened on the case, when (no staff notes, no messages)
    contact = "contact"  # the victim's preferred way to be contacted (+ details they add)
    evidence = "evidence"  # the chosen evidence items, with hashes and custody excerpts


# the order parts are listed in (consent text, packet, API)
PART_ORDER: tuple[Part, ...] = (
    Part.summary,
    Part.categories,
    Part.timeline,
    Part.contact,
    Part.evidence,
)


class ContactMethod(StrEnum):
    phone = "phone"
    email = "email"
    chat = "chat"  # through the helpline's chat (the partner asks us)
    letter = "letter"
    none = "none"  # the victim will contact the partner themselves


class ConsentMethod(StrEnum):
    chat = "chat"  # the victim answered in the chat themselves
    verbal = "verbal"  # on the phone: an agent read the text out (needs a second staff member)
    written = "written"  # by e-mail/letter: the agent records it (needs a second staff member)


class ConsentDecision(StrEnum):
    accepted = "accepted"
    declined = "declined"


class HandoverStatus(StrEnum):
    proposed = "proposed"  # staff proposed it; waiting for the victim
    consented = "consented"  # valid consent (for verbal/written: confirmed by a second person)
    declined = "declined"  # the victim said no (final)
    approved = "approved"  # police: a supervisor approved it after consent
    sealed = "sealed"  # the packet is built and sealed to the partner's age recipient
    delivered = "delivered"  # the partner was sent the one-time link
    downloaded = "downloaded"  # the partner fetched the packet (final)
    expired = "expired"  # the link or the consent ran out before a download (final)
    withdrawn = "withdrawn"  # the victim withdrew consent, or staff cancelled (final)


H = HandoverStatus

# proposed -> consented is the victim's (or the confirmed recorded) consent; a police handover
# goes consented -> approved -> sealed, any other consented -> sealed. Withdrawal is possible
# until the packet is delivered (the victim withdraws consent; staff cancel).
TRANSITIONS: dict[HandoverStatus, frozenset[HandoverStatus]] = {
    H.proposed: frozenset({H.consented, H.declined, H.withdrawn, H.expired}),
    H.consented: frozenset({H.approved, H.sealed, H.withdrawn, H.expired}),
    H.approved: frozenset({H.sealed, H.withdrawn, H.expired}),
    H.sealed: frozenset({H.delivered, H.withdrawn, H.expired}),
    H.delivered: frozenset({H.downloaded, H.expired}),
    H.declined: frozenset(),
    H.downloaded: frozenset(),
    H.expired: frozenset(),
    H.withdrawn: frozenset(),
}

FINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)
# the victim (or staff) may still stop it: nothing has left the helpline yet
WITHDRAWABLE = frozenset({H.proposed, H.consented, H.approved, H.sealed})


def can_move(source: HandoverStatus, target: HandoverStatus) -> bool:
    return target in TRANSITIONS[source]
