"""Mail text as staff read it: HTML reduced to plain text, control characters removed, long
texts cut into message-sized pieces, a guess at the language.

The HTML is never rendered and nothing in it is fetched: images become `[image: alt]`, links
become their text followed by the address in angle brackets, so staff see where a link
points without anything being followed.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

# their content is not text a person wrote for the reader
_SKIPPED = frozenset({"script", "style", "head", "title", "template", "noscript", "object"})
_SKIPPED |= {"iframe", "svg", "math", "select", "button", "textarea"}
_BLOCKS = frozenset(
    {"p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "form"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "tr", "ul", "ol"}
    | {"dl", "dt", "dd", "address", "figure", "figcaption", "center", "fieldset", "details"}
)
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "wbr", "col", "base"})
# bidirectional overrides and isolates can make a text read other than it is
_BIDI = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_MAX_OPEN_LINKS = 32  # nested deeper than this (only crafted HTML does) they are ignored


class _Reducer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.links: list[tuple[str | None, int]] = []  # open links: href, where text starts
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
            return
        if self.skipping:
            return
        values = {name: value or "" for name, value in attrs}
        if tag == "br":
            self.out.append("\n")
        elif tag == "hr":
            self.out.append("\n----\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "img":
            alt = " ".join(values.get("alt", "").split())
            self.out.append(f"[image: {alt}]" if alt else "[image]")
        elif tag == "a":
            href = values.get("href", "").strip()
            safe = href if href.lower().startswith(_SAFE_SCHEMES) else None
            if len(self.links) < _MAX_OPEN_LINKS:
                self.links.append((safe, len(self.out)))
        elif tag in _BLOCKS:
            self.out.append("\n\n" if tag != "tr" else "\n")
        if tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
            return
        if self.skipping:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            pieces = self.out[start:] if len(self.out) - start <= 64 else []
            shown = " ".join("".join(pieces).split())
            if href and href.removeprefix("mailto:") != shown:
                self.out.append(f" <{href}>")
        elif tag in _BLOCKS:
            self.out.append("\n\n" if tag != "tr" else "\n")
        if tag == "pre":
            self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML mail part; nothing is loaded or followed."""
    reducer = _Reducer()
    try:
        reducer.feed(html)
        reducer.close()
    except Exception:  # HTMLParser is lenient; if it gives up, keep what it had
        pass
    text = "".join(reducer.out)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def clean(text: str) -> str:
    """Text without control characters (line breaks and tabs stay) or bidi overrides, with
    Unix line breaks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_BIDI)
    return "".join(
        c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs", "Co")
    )


def trim_quoted_reply(text: str) -> str:
    """Drop the quoted earlier mail at the end of a reply (`> ` lines and the 'On … wrote:'
    line before them): it is already in the case, and repeated at every turn otherwise."""
    lines = text.rstrip().split("\n")
    end = len(lines)
    while end and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if end == len(lines):
        return text
    if end and re.search(r"\b(wrote|schreef)\b.*:\s*$", lines[end - 1], re.IGNORECASE):
        end -= 1
    kept = "\n".join(lines[:end]).rstrip()
    return kept or text  # a mail that is only a quote stays as it is


def split_text(text: str, size: int) -> list[str]:
    """`text` in pieces of at most `size` characters, cut at paragraph or line breaks, else
    at spaces, where it can."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > size:
        window = rest[:size]
        cut = max(window.rfind("\n\n"), 0)
        if cut < size // 2:
            cut = window.rfind("\n")
        if cut < size // 2:
            cut = window.rfind(" ")
        if cut < size // 2:
            cut = size
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


_WORDS = {
    "nl": frozenset(
        "de het een ik je jij niet van dat mijn zijn wat met voor hij ze heb hoe kan maar ook "
        "er op wil naar hebben heeft foto's mij wordt zijn geen alsjeblieft hallo hoi bedankt "
        "weet iemand gedeeld".split()
    ),
    "en": frozenset(
        "the and i you my it to of not that have what with for he she can but me was this "
        "are be do someone please hello hi thanks know shared photos they has been".split()
    ),
}


def guess_language(text: str, default: str) -> str:
    """`nl` or `en` by counting common words; `default` when it is not clear."""
    words = re.findall(r"[a-z']+", text[:4000].lower())
    scores = {language: sum(w in common for w in words) for language, common in _WORDS.items()}
    best = max(scores, key=lambda language: scores[language])
    others = [score for language, score in scores.items() if language != best]
    if scores[best] >= 3 and scores[best] > 1.5 * max(others):
        return best
    return default
