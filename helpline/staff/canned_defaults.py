"""The canned responses a new helpline starts with, in Dutch and English.

Supervisors edit them in the console afterwards; `seed_canned_responses` only fills an empty
table, so their edits and deletions survive every later `helpline migrate` or `helpline demo`.
Placeholders are those of `helpline.staff.casework.PLACEHOLDERS`; phone numbers are the ones in
the domain notes (CSG, police). Organisations without a number there are named without one
rather than with a number nobody checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpline.core.audit import record
from helpline.core.clock import Clock
from helpline.core.ids import new_id
from helpline.triage.models import CannedResponse


@dataclass(frozen=True)
class DefaultResponse:
    language: str
    title: str
    body: str


DEFAULTS: tuple[DefaultResponse, ...] = (
    # ---------------------------------------------------------------- Dutch
    DefaultResponse(
        "nl",
        "Begroeting",
        "Hoi, je spreekt met {agent_name} van {helpline_name}. Fijn dat je ons een bericht "
        "stuurt. Je hoeft je naam niet te noemen. Vertel in je eigen woorden wat er is gebeurd, "
        "dan kijken we samen wat je kunt doen.",
    ),
    DefaultResponse(
        "nl",
        "Neem je tijd",
        "We zijn er voor je. Neem gerust de tijd: je hoeft niet alles in één keer te vertellen, "
        "en je mag dingen overslaan. Moet je even weg? Met je gesprekscode {reference} en je "
        "wachtwoord kun je later verder waar je was.",
    ),
    DefaultResponse(
        "nl",
        "Bewijs veilig bewaren",
        "Het is verstandig om bewijs te bewaren, ook als je wilt dat het snel offline gaat:\n"
        "- Maak screenshots van de berichten en van het profiel van de afzender. Zorg dat de "
        "datum, de tijd en de gebruikersnaam te zien zijn.\n"
        "- Noteer de link (URL) van elke pagina of elk bericht, met de datum waarop je het zag.\n"
        "- Verwijder de chat en het account niet. Blokkeer pas als je alles hebt vastgelegd.\n"
        "- Bewaar je screenshots op een plek waar alleen jij bij kunt. Je kunt ze hier in de "
        "chat ook naar ons sturen; wij bewaren ze versleuteld.\n"
        "Is iemand op de beelden jonger dan 18? Stuur die beelden dan niet, ook niet als jij "
        "het zelf bent: geef ons alleen de link.",
    ),
    DefaultResponse(
        "nl",
        "Sextortion: chantage met beelden",
        "Wat je overkomt heet sextortion: chantage met beelden. Dat is strafbaar, en jij hebt "
        "niets fout gedaan. Dit helpt:\n"
        "- Betaal niet. Betalen houdt de chanteur bijna nooit tegen; vaak vraagt hij daarna "
        "om meer.\n"
        "- Stop het contact: reageer niet meer en blokkeer de chanteur, nadat je bewijs hebt "
        "bewaard.\n"
        "- Verwijder niets. Bewaar de chat, de gebruikersnaam, links en betaalgegevens (zoals "
        "een rekeningnummer of wallet-adres).\n"
        "- Meld het account bij het platform en doe aangifte bij de politie (0900-8844). We "
        "helpen je daarbij, en we kunnen het platform vragen de beelden te verwijderen.",
    ),
    DefaultResponse(
        "nl",
        "Verwijderverzoek uitgelegd",
        "We kunnen het platform vragen de beelden of berichten te verwijderen. {helpline_name} "
        "is een erkende melder (trusted flagger): platforms behandelen onze verzoeken met "
        "voorrang. Daarvoor hebben we de precieze link (URL) nodig van elke plek waar het "
        "staat. De meeste verzoeken worden gehonoreerd, meestal binnen 24 uur. We laten je "
        "weten wat het platform besluit; met je gesprekscode {reference} lees je dat hier "
        "terug.",
    ),
    DefaultResponse(
        "nl",
        "Doorverwijzen",
        "Je hoeft dit niet alleen te doen. Deze organisaties kunnen je verder helpen:\n"
        "- Centrum Seksueel Geweld (CSG): 0800-0188, gratis, dag en nacht. Na seksueel geweld "
        "het liefst binnen 7 dagen, voor medische, forensische en psychische hulp.\n"
        "- Politie (zedenpolitie): 0900-8844, voor een informatief gesprek voordat je aangifte "
        "doet. Neem je screenshots en links mee.\n"
        "- Slachtofferhulp Nederland: praktische, juridische en emotionele steun.\n"
        "- Fier: hulp bij geweld in afhankelijkheidsrelaties.\n"
        "- Je huisarts, voor medische en psychische hulp.\n"
        "Als je wilt, dragen wij je over, zodat je je verhaal niet opnieuw hoeft te vertellen. "
        "Ben je in direct gevaar? Bel 112.",
    ),
    DefaultResponse(
        "nl",
        "Afsluiting",
        "Dank je wel voor je vertrouwen. Verandert er iets, of heb je nog vragen? Kom dan "
        "gerust terug met je gesprekscode {reference} en je wachtwoord. We zijn er op: "
        "{opening_hours}. Pas goed op jezelf.",
    ),
    # ---------------------------------------------------------------- English
    DefaultResponse(
        "en",
        "Greeting",
        "Hi, this is {agent_name} from {helpline_name}. Thank you for getting in touch. You "
        "don't need to tell us your name. Tell me in your own words what happened, and we'll "
        "look together at what you can do.",
    ),
    DefaultResponse(
        "en",
        "Take your time",
        "We're here for you. Take all the time you need: you don't have to tell everything at "
        "once, and you can skip things. Do you need to go? With your conversation code "
        "{reference} and your passphrase you can continue later where you left off.",
    ),
    DefaultResponse(
        "en",
        "Saving evidence safely",
        "It's wise to keep evidence, even if you want it taken offline quickly:\n"
        "- Take screenshots of the messages and of the sender's profile. Make sure the date, "
        "the time and the user name can be seen.\n"
        "- Write down the link (URL) of every page or message, with the date you saw it.\n"
        "- Don't delete the chat or the account. Only block once you have recorded everything.\n"
        "- Keep your screenshots where only you can get at them. You can also send them to us "
        "here in the chat; we store them encrypted.\n"
        "Is anyone in the images under 18? Then don't send those images, even if it is you: "
        "just give us the link.",
    ),
    DefaultResponse(
        "en",
        "Sextortion: blackmail with images",
        "What is happening to you is called sextortion: blackmail with images. It is a crime, "
        "and you have done nothing wrong. What helps:\n"
        "- Don't pay. Paying almost never stops the blackmailer; often they ask for more.\n"
        "- Stop the contact: don't reply any more, and block the blackmailer once you have "
        "saved the evidence.\n"
        "- Don't delete anything. Keep the chat, the user name, links and payment details "
        "(such as an account number or wallet address).\n"
        "- Report the account to the platform, and report it to the police (0900-8844). We'll "
        "help you with that, and we can ask the platform to remove the images.",
    ),
    DefaultResponse(
        "en",
        "Removal request explained",
        "We can ask the platform to remove the images or messages. {helpline_name} is a "
        "trusted flagger: platforms handle our requests with priority. For that we need the "
        "exact link (URL) of every place where it appears. Most requests are honoured, usually "
        "within 24 hours. We'll let you know what the platform decides; with your conversation "
        "code {reference} you can read it back here.",
    ),
    DefaultResponse(
        "en",
        "Referral",
        "You don't have to do this alone. These organisations can help you further:\n"
        "- Centrum Seksueel Geweld (sexual violence centre, CSG): 0800-0188, free, day and "
        "night. After sexual violence, preferably within 7 days, for medical, forensic and "
        "psychological care.\n"
        "- Police (vice squad): 0900-8844, for an information talk before you file a report. "
        "Bring your screenshots and links.\n"
        "- Slachtofferhulp Nederland (Victim Support): practical, legal and emotional support.\n"
        "- Fier: help with violence in relationships of dependency.\n"
        "- Your GP, for medical and psychological help.\n"
        "If you like, we hand you over, so you don't have to tell your story again. Are you in "
        "immediate danger? Call 112.",
    ),
    DefaultResponse(
        "en",
        "Closing",
        "Thank you for trusting us. If anything changes or you have more questions, come back "
        "any time with your conversation code {reference} and your passphrase. We're here: "
        "{opening_hours}. Take good care of yourself.",
    ),
)


async def seed_canned_responses(session: AsyncSession, clock: Clock) -> int:
    """Insert the default canned responses if the table is empty; returns how many were
    inserted (0 when there are responses already: those are the supervisors' to keep)."""
    existing = (
        await session.execute(select(func.count()).select_from(CannedResponse))
    ).scalar_one()
    if existing:
        return 0
    now = clock.now()
    for default in DEFAULTS:
        session.add(
            CannedResponse(
                id=new_id(),
                language=default.language,
                title=default.title,
                body=default.body,
                updated_by="system",
                created_at=now,
                updated_at=now,
            )
        )
    await session.flush()
    await record(
        session, clock, actor="system", action="canned.seed", details={"count": len(DEFAULTS)}
    )
    return len(DEFAULTS)
