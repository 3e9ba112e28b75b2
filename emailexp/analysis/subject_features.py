"""Features of an e-mail subject line, for the condition regression (English and Japanese).

All detection runs on the NFC-normalised subject, so a precomposed and a decomposed "é" or "が"
are the same character. Definitions:

- ``length``: characters, ``len()`` of the NFC string: a full-width character (漢字, かな, "？")
  counts as 1, an emoji with a variation selector counts as 2 code points (as stored).
- ``display_width``: columns as an inbox renders them: East Asian Wide/Fullwidth characters count
  2, combining marks and zero-width joiners/variation selectors 0, everything else 1. Inbox
  previews truncate by width, so the regression's ``length_band`` uses this, which puts Japanese
  and English subjects on one scale (20 kanji ~ 40 Latin letters).
- ``length_band``: ``short`` (width <= 30: fits a phone's preview line), ``medium`` (31..60:
  fits a desktop preview), ``long`` (> 60: truncated almost everywhere). See ``LENGTH_BANDS``.
- ``has_question``: "?" or full-width "？".
- ``has_number``: an ASCII digit 0-9, a full-width digit ０-９ or a circled number ①-⑳. Kanji
  numerals (一, 二, 十, 百 ...) are deliberately *not* counted: they occur in ordinary words
  (一緒, 一度, 十分) far more often than as quantities.
- ``has_brackets``: a matched pair (opening before closing) of 【】, [], ［］, 「」, 『』, 〔〕,
  (), （）, 〈〉, 《》 or <>. A lone bracket (e.g. the smiley ":)") does not count.
- ``has_personalization``: an unrendered merge tag or a placeholder name:
  ``{{ name }}`` (Jinja/Handlebars/Liquid), ``{first_name}`` (Python format), ``%NAME%`` /
  ``%%name%%``, ``*|FNAME|*`` (Mailchimp), ``[[name]]``, ``${name}``, ``<<name>>``, and the
  Japanese placeholder honorific: two or more of 〇○◯●×＊* followed by 様/さま/さん/殿/御中.
  Subjects are usually stored *before* merge, so the tag is what shows personalization.
- ``has_emoji``: any code point in the supplementary emoji blocks U+1F000-U+1FAFF (pictographs,
  emoticons, transport, flags, symbols & pictographs extended), or a BMP code point that Unicode
  lists as emoji (``_BMP_EMOJI``: ☀ ☎ ✅ ✉ ✔ ❤ ❗ ⭐ ⏰ ...), or any character followed by the emoji
  variation selector U+FE0F. Typographic symbols common in Japanese subjects (★ ☆ ♪ ◆ ■ ※) are
  not emoji.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from functools import lru_cache

#: ``(name, max_display_width)``; the last band is open-ended.
LENGTH_BANDS: tuple[tuple[str, int | None], ...] = (("short", 30), ("medium", 60), ("long", None))
LENGTH_BAND_NAMES: tuple[str, ...] = tuple(name for name, _ in LENGTH_BANDS)

#: Binary features used by the regression, in design-matrix order.
BINARY_FEATURES: tuple[str, ...] = (
    "has_question", "has_number", "has_brackets", "has_personalization", "has_emoji",
)

_QUESTION = re.compile(r"[?？]")
_NUMBER = re.compile(r"[0-9０-９\u2460-\u2473]")
_BRACKET_PAIRS = ("【】", "[]", "［］", "「」", "『』", "〔〕", "()", "（）", "〈〉", "《》", "<>")
_BRACKETS = re.compile(
    "|".join(f"{re.escape(o)}[^{re.escape(c)}]*{re.escape(c)}" for o, c in _BRACKET_PAIRS)
)
_PERSONALIZATION = re.compile(
    r"""
      \{\{\s*[^{}]+?\s*\}\}             # {{ name }}
    | \{\s*[A-Za-z_][\w.]*\s*\}         # {first_name}
    | %%?[A-Za-z_][\w.]*%%?             # %NAME%  %%name%%
    | \*\|[A-Za-z_][\w:]*\|\*           # *|FNAME|*
    | \[\[\s*[^\[\]]+?\s*\]\]           # [[name]]
    | \$\{\s*[A-Za-z_][\w.]*\s*\}       # ${name}
    | <<\s*[A-Za-z_][\w.]*\s*>>         # <<name>>
    | [〇○◯●×＊*]{2,}\s*(?:様|さま|さん|殿|御中)   # 〇〇様
    """,
    re.VERBOSE,
)
# BMP code points with the Unicode Emoji property that appear in mail subjects (emoji-data.txt).
_BMP_EMOJI = frozenset(
    "‼⁉™ℹ↔↕↖↗↘↙↩↪⌚⌛⌨⏏⏩⏪⏫⏬⏭⏮⏯⏰⏱⏲⏳⏸⏹⏺Ⓜ▪▫▶◀◻◼◽◾"
    "☀☁☂☃☄☎☑☔☕☘☝☠☢☣☦☪☮☯☸☹☺♀♂♈♉♊♋♌♍♎♏♐♑♒♓♟♠♣♥♦♨♻♾♿"
    "⚒⚓⚔⚕⚖⚗⚙⚛⚜⚠⚡⚧⚪⚫⚰⚱⚽⚾⛄⛅⛈⛎⛏⛑⛓⛔⛩⛪⛰⛱⛲⛳⛴⛵⛷⛸⛹⛺⛽"
    "✂✅✈✉✊✋✌✍✏✒✔✖✝✡✨✳✴❄❇❌❎❓❔❕❗❣❤➕➖➗➡➰➿⤴⤵⬅⬆⬇⬛⬜⭐⭕〰〽㊗㊙"
)


def _is_emoji_codepoint(ch: str) -> bool:
    return 0x1F000 <= ord(ch) <= 0x1FAFF or ch in _BMP_EMOJI


@dataclass(frozen=True)
class SubjectFeatures:
    """Features of one subject line; see the module docstring for the exact definitions."""

    subject: str
    length: int
    display_width: int
    length_band: str
    has_question: bool
    has_number: bool
    has_brackets: bool
    has_personalization: bool
    has_emoji: bool

    def to_dict(self) -> dict:
        return asdict(self)


def display_width(text: str) -> int:
    """Rendered width in columns: East Asian Wide/Fullwidth = 2, zero-width marks = 0, else 1."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or ch in "\u200d\ufe0e\ufe0f" or unicodedata.category(ch) == "Cf":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def length_band(width: int) -> str:
    """Length band for a display width (see ``LENGTH_BANDS``)."""
    for name, upper in LENGTH_BANDS:
        if upper is None or width <= upper:
            return name
    raise AssertionError("unreachable")  # pragma: no cover


def _has_emoji(text: str) -> bool:
    if "\ufe0f" in text:
        return True
    return any(_is_emoji_codepoint(ch) for ch in text)


@lru_cache(maxsize=65536)
def subject_features(subject: str) -> SubjectFeatures:
    """Compute :class:`SubjectFeatures` for a subject line (str; ``None`` is rejected)."""
    if not isinstance(subject, str):
        raise TypeError(f"subject must be a str, got {type(subject).__name__}")
    text = unicodedata.normalize("NFC", subject)
    width = display_width(text)
    return SubjectFeatures(
        subject=subject,
        length=len(text),
        display_width=width,
        length_band=length_band(width),
        has_question=bool(_QUESTION.search(text)),
        has_number=bool(_NUMBER.search(text)),
        has_brackets=bool(_BRACKETS.search(text)),
        has_personalization=bool(_PERSONALIZATION.search(text)),
        has_emoji=_has_emoji(text),
    )
