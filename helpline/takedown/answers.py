"""A platform's answer to a notice, per URL: the DSA art. 17 statement of reasons.

One shape for every way an answer arrives (the portal, the platform API, staff confirming an
e-mail reply): `AnswerSet`, a list of per-URL answers, each one of

- `removed`, `access_disabled` — the URL becomes `honoured`;
- `restricted` (age, visibility, interaction, label) — `partly_honoured`;
- `declined` — `declined`, with a reason code and an explanation;
- `more_information` — `more_info_requested`, with a question that goes to the case.

The fields follow the DSA Transparency Database (`decision_visibility`, `decision_ground`, the
legal or contractual ground with its explanation, `automated_decision`, `territorial_scope`,
`puid`). The JSON schema (`answer_schema()`) is generated from these models, published as
docs/schemas/notice-answer.schema.json and served at `/api/platform/schema/answer.json`; a
test keeps the file and the models the same, so what the schema says is what is enforced.

`apply_answers` writes an answer set in the caller's transaction, through
`state.record_answer` (each URL's statement of reasons and status, the notice's status from
its URLs', a history row per transition), plus the question of a `more_information` answer
as a `notice_replies` row and a `notice_question` entry on the case's timeline (if the case
still exists), and an audit line. Any answer confirms receipt.

How the columns of `notice_urls` hold an answer: `decision_visibility` one code
(`DECISION_VISIBILITY_*`); `decision_ground` `DECISION_GROUND_ILLEGAL_CONTENT` or
`DECISION_GROUND_INCOMPATIBLE_CONTENT` — or, for a declined URL, `DECLINED_<REASON>`
(`DECLINE_REASONS`, for the figures' "declined with reasons"); `legal_ground` the provision
or terms-of-service clause; `explanation` encrypted under the notice key; `territorial_scope`
comma-separated country codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.ext.asyncio import AsyncSession

from helpline.cases.models import Case
from helpline.core.audit import record
from helpline.core.errors import Conflict, Invalid
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.takedown import service, state
from helpline.takedown.models import Notice, NoticeReply, NoticeUrl, notice_scope
from helpline.takedown.states import DECIDED, OPEN, AnswerVia, NoticeStatus, can_move
from helpline.triage.events import add_event
from helpline.triage.service import CONSOLE_CHANNEL

SCHEMA_PATH = "/api/platform/schema/answer.json"
MAX_ANSWERS = 500
URLS_TABLE = "notice_urls"
REPLIES_TABLE = "notice_replies"
# what a confirmation of receipt moves (a notice the platform answered already keeps its
# status: receipt only gets its time)
RECEIPT_MOVES = frozenset({NoticeStatus.sent, NoticeStatus.no_response})
# statuses a notice takes answers in: delivered and undecided, or decided (a decision can be
# revised, e.g. after an internal complaint under DSA art. 20; the table says to what)
ANSWERABLE = OPEN | DECIDED

# ---------------------------------------------------------------- the vocabulary

REMOVED = "DECISION_VISIBILITY_CONTENT_REMOVED"
DISABLED = "DECISION_VISIBILITY_CONTENT_DISABLED"
RestrictionCode = Literal[
    "DECISION_VISIBILITY_CONTENT_DEMOTED",
    "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_LABELLED",
    "DECISION_VISIBILITY_OTHER",
]
GroundCode = Literal["DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"]
AutomatedCode = Literal[
    "AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_PARTIALLY", "AUTOMATED_DECISION_NOT_AUTOMATED"
]
# why a platform did not act: stored as `DECLINED_<CODE>` in `notice_urls.decision_ground`
DeclineReason = Literal[
    "not_illegal",  # the content is lawful in the platform's view
    "not_against_terms",  # and does not break its terms
    "content_not_found",  # the URL shows nothing (any more) / cannot be found
    "not_our_service",  # the content is not hosted by this provider
    "insufficient_information",  # the notice does not let them decide
    "other",
]
DECLINE_REASONS: tuple[str, ...] = DeclineReason.__args__  # type: ignore[attr-defined]
# the EEA, where a DSA restriction can apply (ISO 3166-1 alpha-2)
CountryCode = Literal[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
    "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
]  # fmt: skip

UrlId = Annotated[str, Field(min_length=1, max_length=32, description="`urls[].id` of the notice")]
Ground = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description="The legal ground (illegal content: the provision, e.g. `art. 139h Sr`) or "
        "the contractual ground (incompatible content: the terms-of-service clause).",
    ),
]
Explanation = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        description="Why the decision was taken: the facts and circumstances relied on.",
    ),
]
Puid = Annotated[
    str,
    Field(min_length=1, max_length=500, description="The platform's own unique id of the item."),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, str_max_length=10_000)


class _Restriction(_Strict):
    """What every restricting decision states (DSA art. 17(3))."""

    url_id: UrlId
    decision_ground: GroundCode
    ground: Ground
    explanation: Explanation
    automated_decision: AutomatedCode
    territorial_scope: list[CountryCode] = Field(
        min_length=1,
        max_length=30,
        description="Where the restriction applies: EEA country codes.",
    )
    puid: Puid

    @field_validator("territorial_scope")
    @classmethod
    def _unique_countries(cls, countries: list[str]) -> list[str]:
        if len(set(countries)) != len(countries):
            raise ValueError("names a country twice")
        return countries


class Removed(_Restriction):
    """The content was removed (`DECISION_VISIBILITY_CONTENT_REMOVED`)."""

    decision: Literal["removed"]


class AccessDisabled(_Restriction):
    """Access to the content was disabled (`DECISION_VISIBILITY_CONTENT_DISABLED`), e.g. in
    some countries only."""

    decision: Literal["access_disabled"]


class Restricted(_Restriction):
    """The content stays but is restricted: demoted, age-restricted, interaction restricted,
    labelled, or another restriction (`decision_visibility_other` says which)."""

    decision: Literal["restricted"]
    decision_visibility: RestrictionCode
    decision_visibility_other: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Required with DECISION_VISIBILITY_OTHER: what the restriction is.",
    )

    @model_validator(mode="after")
    def _other_is_described(self) -> Restricted:
        if self.decision_visibility == "DECISION_VISIBILITY_OTHER":
            if not self.decision_visibility_other:
                raise ValueError("decision_visibility_other is required with OTHER")
        elif self.decision_visibility_other is not None:
            raise ValueError("decision_visibility_other is only for DECISION_VISIBILITY_OTHER")
        return self


class Declined(_Strict):
    """The platform does not act on this URL."""

    url_id: UrlId
    decision: Literal["declined"]
    reason: DeclineReason
    explanation: Explanation
    automated_decision: AutomatedCode
    ground: Ground | None = None
    puid: Puid | None = None


class MoreInformation(_Strict):
    """The platform cannot decide yet and asks the helpline a question."""

    url_id: UrlId
    decision: Literal["more_information"]
    question: str = Field(min_length=1, max_length=4000)


AnyAnswer = Removed | AccessDisabled | Restricted | Declined | MoreInformation
Answer = Annotated[AnyAnswer, Field(discriminator="decision")]


class AnswerSet(_Strict):
    """Answers to one notice, one per URL (any subset of its URLs)."""

    answers: list[Answer] = Field(min_length=1, max_length=MAX_ANSWERS)

    @field_validator("answers")
    @classmethod
    def _one_answer_per_url(cls, answers: list[AnyAnswer]) -> list[AnyAnswer]:
        ids = [answer.url_id for answer in answers]
        if len(set(ids)) != len(ids):
            raise ValueError("a URL is answered twice")
        return answers


def answer_schema(base_url: str | None = None) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of an answer set; with `base_url`, its `$id` is where
    this instance serves it."""
    schema: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    if base_url:
        schema["$id"] = base_url + SCHEMA_PATH
    schema.update(AnswerSet.model_json_schema())
    schema["title"] = "Answer to a Helpline notice: a DSA art. 17 statement of reasons per URL"
    return schema


def schema_text() -> str:
    """The schema as published in docs/schemas/ (a test keeps the file the same)."""
    return json.dumps(answer_schema(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- reading one, with clear errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an answer: where (`answers[0].puid`) and what."""

    at: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"at": self.at, "message": self.message}


_TAGS = {"removed", "access_disabled", "restricted", "declined", "more_information"}


def _where(loc: tuple[int | str, ...]) -> str:
    """`('answers', 0, 'restricted', 'puid')` → `answers[0].puid` (the union's tag is noise)."""
    text = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        elif index == 2 and loc[0] == "answers" and part in _TAGS:
            continue
        elif part.startswith("function-"):
            continue
        else:
            text += f".{part}" if text else part
    return text or "body"


def _message(error: Any) -> str:
    message = str(error["msg"])
    kind = error["type"]
    if kind == "union_tag_invalid":
        return f"decision must be one of {', '.join(sorted(_TAGS))}"
    if kind == "union_tag_not_found":
        return "decision is required"
    if kind == "extra_forbidden":
        return "is not a field of this answer"
    if kind == "literal_error" and "territorial_scope" in error["loc"]:
        return f"{error['input']!r} is not an EEA country code"
    return message.removeprefix("Value error, ")


class AnswerProblems(Invalid):
    """An answer set that does not match the schema: every problem in `details.problems`."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"{first.at}: {first.message}{more}",
            problems=[p.as_json() for p in problems[:50]],
            schema=SCHEMA_PATH,
        )
        self.problems = problems


def read_answers(raw: bytes) -> AnswerSet:
    """An answer set from a request body, or `AnswerProblems` (422) listing every problem by
    place, the first one in the message."""
    try:
        return AnswerSet.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = [
            Problem(_where(tuple(error["loc"])), _message(error))
            for error in exc.errors(include_url=False)
        ]
        raise AnswerProblems(problems) from None


# ---------------------------------------------------------------- applying an answer set


def status_for(answer: AnyAnswer) -> NoticeStatus:
    """The URL status an answer leads to."""
    if isinstance(answer, Removed | AccessDisabled):
        return NoticeStatus.honoured
    if isinstance(answer, Restricted):
        return NoticeStatus.partly_honoured
    if isinstance(answer, Declined):
        return NoticeStatus.declined
    return NoticeStatus.more_info_requested


def decline_code(reason: str) -> str:
    return f"DECLINED_{reason.upper()}"


def statement_of(answer: AnyAnswer) -> state.Answer:
    """An answer in the columns of `notice_urls` (see the module docstring)."""
    status = status_for(answer)
    if isinstance(answer, MoreInformation):
        return state.Answer(status)
    if isinstance(answer, Declined):
        return state.Answer(
            status,
            decision_ground=decline_code(answer.reason),
            legal_ground=answer.ground,
            explanation=answer.explanation,
            automated_decision=answer.automated_decision,
            puid=answer.puid,
        )
    if isinstance(answer, Removed):
        visibility = REMOVED
    elif isinstance(answer, AccessDisabled):
        visibility = DISABLED
    else:
        visibility = answer.decision_visibility
    return state.Answer(
        status,
        decision_visibility=visibility,
        decision_ground=answer.decision_ground,
        legal_ground=answer.ground,
        explanation=answer.explanation,
        automated_decision=answer.automated_decision,
        territorial_scope=list(answer.territorial_scope),
        puid=answer.puid,
    )


@dataclass
class Applied:
    """What an answer set changed; `notifications` are bus messages to publish after commit."""

    notice_status: str
    changed: list[str] = field(default_factory=list)  # url ids whose status moved
    unchanged: list[str] = field(default_factory=list)  # already in the answered status
    questions: list[str] = field(default_factory=list)  # notice_replies ids
    notifications: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.notice_status,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "questions": len(self.questions),
        }


async def add_reply(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    *,
    via: AnswerVia,
    kind: str,
    text: str,
    url_id: str | None = None,
    reply_id: str | None = None,
) -> NoticeReply:
    """Text from the platform about a notice, encrypted under the notice key, for staff."""
    cipher = await found.keyring.cipher(session, notice_scope(notice.id))
    reply = NoticeReply(
        id=reply_id or new_id(),
        notice_id=notice.id,
        url_id=url_id,
        via=via.value,
        kind=kind,
        body=b"",
        received_at=found.clock.now(),
    )
    reply.body = cipher.encrypt(text, table=REPLIES_TABLE, row_id=reply.id, field="body")
    session.add(reply)
    await session.flush()
    return reply


async def tell_the_case(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    *,
    actor: str,
    kind: str,
    details: dict[str, Any],
    text: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """A timeline entry in the notice's case (if the case still exists), and the bus message
    that tells the consoles."""
    if notice.case_id is None:
        return []
    case = await session.get(Case, notice.case_id)
    if case is None:
        return []
    await add_event(
        session,
        found.clock,
        case,
        actor=actor,
        kind=kind,
        action=f"notice.{kind.removeprefix('notice_')}",
        details={"notice_id": notice.id, "notice": notice.reference, **details},
        text=text,
        keyring=found.keyring,
    )
    return [(CONSOLE_CHANNEL, {"type": "case_changed", "case_id": case.id})]


def changed(notice: Notice) -> list[tuple[str, dict[str, Any]]]:
    """What tells the consoles a notice changed (as `delivery.announce` does): the notices
    view hears `notice_changed`, the case `case_changed`."""
    messages: list[tuple[str, dict[str, Any]]] = [
        (
            CONSOLE_CHANNEL,
            {"type": "notice_changed", "notice_id": notice.id, "case_id": notice.case_id},
        )
    ]
    if notice.case_id is not None:
        messages.append((CONSOLE_CHANNEL, {"type": "case_changed", "case_id": notice.case_id}))
    return messages


def unique(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    for message in messages:
        if message not in seen:
            seen.append(message)
    return seen


async def confirm_receipt(
    session: AsyncSession, found: Services, notice: Notice, *, via: AnswerVia, actor: str
) -> bool:
    """The platform confirms it received the notice (DSA art. 16(4)); True the first time.
    A notice still waiting (`sent`, `no_response`) moves to `receipt_confirmed`; one the
    platform already answered keeps its status and only gets the time."""
    if notice.receipt_confirmed_at is not None:
        return False
    if notice.status in RECEIPT_MOVES:  # the notice and its waiting URLs
        await service.confirm_receipt(
            session, found, notice, actor=actor, details={"via": via.value}
        )
    notice.receipt_confirmed_at = notice.receipt_confirmed_at or found.clock.now()
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.receipt",
        target=f"notice:{notice.id}",
        details={"via": via.value, "status": notice.status},
    )
    return True


def _check(notice: Notice, urls: dict[str, NoticeUrl], answer_set: AnswerSet) -> None:
    """Refuse the whole set before anything changes (all or nothing)."""
    if NoticeStatus(notice.status) not in ANSWERABLE:
        raise NotAnswerable(f"this notice is {notice.status}: it takes no answers")
    unknown = [
        Problem(f"answers[{index}].url_id", "is not a URL of this notice")
        for index, answer in enumerate(answer_set.answers)
        if answer.url_id not in urls
    ]
    if unknown:
        raise AnswerProblems(unknown)
    refused: list[Problem] = []
    for index, answer in enumerate(answer_set.answers):
        row, target = urls[answer.url_id], status_for(answer)
        if row.status == NoticeStatus.withdrawn:
            refused.append(Problem(f"answers[{index}]", "this URL was withdrawn"))
        elif row.status != target and not can_move(row.status, target):
            refused.append(
                Problem(f"answers[{index}]", f"this URL is {row.status}: it cannot become {target}")
            )
    if refused:
        raise AnswerRefused(refused)


async def apply_answers(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    answer_set: AnswerSet,
    *,
    via: AnswerVia,
    actor: str,
) -> Applied:
    """Apply a platform's answers to a notice (the caller holds the notice row, locked),
    through `state.record_answer` (statement of reasons, URL status, history, the notice's
    status from its URLs').

    All or nothing: an answer for a URL that is not the notice's (422), or a transition the
    table does not allow, such as a URL already honoured (409), refuses the whole set. A URL
    already in the answered status is left as it is (a client repeating its request changes
    nothing); a question is recorded every time it is asked. Any answer confirms receipt."""
    urls = {row.id: row for row in await state.urls_of(session, notice.id)}
    _check(notice, urls, answer_set)
    applied = Applied(notice_status=notice.status)
    for answer in answer_set.answers:
        row = urls[answer.url_id]
        if isinstance(answer, MoreInformation):
            reply = await add_reply(
                session,
                found,
                notice,
                via=via,
                kind="question",
                text=answer.question,
                url_id=row.id,
            )
            applied.questions.append(reply.id)
            applied.notifications += await tell_the_case(
                session,
                found,
                notice,
                actor=actor,
                kind="notice_question",
                details={"url_id": row.id, "reply_id": reply.id, "via": via.value},
                text=answer.question,
            )
        if row.status == status_for(answer):
            applied.unchanged.append(row.id)
            continue
        await state.record_answer(
            session,
            found.clock,
            found.keyring,
            notice,
            row,
            statement_of(answer),
            via=via,
            actor=actor,
        )
        applied.changed.append(row.id)
    if notice.receipt_confirmed_at is None:  # an answer confirms receipt
        await confirm_receipt(session, found, notice, via=via, actor=actor)
    applied.notice_status = notice.status
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.answer",
        target=f"notice:{notice.id}",
        details={
            "via": via.value,
            "changed": len(applied.changed),
            "unchanged": len(applied.unchanged),
            "questions": len(applied.questions),
            "status": notice.status,
        },
    )
    applied.notifications = unique(applied.notifications + changed(notice))
    await session.flush()
    return applied


class NotAnswerable(Conflict):
    code = "not_answerable"


class AnswerRefused(Conflict):
    """Answers that are well-formed but do not fit the notice (409), every problem listed."""

    code = "answer_refused"

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"{first.at}: {first.message}{more}", problems=[p.as_json() for p in problems[:50]]
        )
