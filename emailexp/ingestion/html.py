"""Instrument an e-mail's HTML: add the open pixel and point tracked links at their click URLs.

The markup is rewritten in place with a tokenizing regex instead of being re-serialised by a
parser, so everything we do not touch (conditional comments for Outlook, odd whitespace, entity
spelling) reaches the mail client byte for byte. Comments, <script> and <style> blocks are skipped.
"""
from __future__ import annotations

import re
from html import escape, unescape

# One alternation scanned left to right: things to skip, then <a ...> start tags. Attribute values
# in quotes may contain ">" so the tag pattern consumes quoted strings as units.
_TOKENS = re.compile(
    r"""(?P<skip><!--.*?-->|<script\b.*?</script\s*>|<style\b.*?</style\s*>)"""
    r"""|(?P<a><a\b(?:[^>"']|"[^"]*"|'[^']*')*>)""",
    re.IGNORECASE | re.DOTALL,
)
_HREF = re.compile(r"""(?P<lead>\shref\s*=\s*)(?P<value>"[^"]*"|'[^']*'|[^\s"'=<>`]+)""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _href_of(tag: str) -> tuple[re.Match | None, str | None]:
    match = _HREF.search(tag)
    if match is None:
        return None, None
    value = match.group("value")
    if value[:1] in "\"'":
        value = value[1:-1]
    return match, unescape(value).strip()


def _is_http(url: str) -> bool:
    lower = url.lower()
    return lower.startswith("http://") or lower.startswith("https://")


def extract_links(html: str) -> list[str]:
    """Every distinct http(s) href of an <a> tag, in order of first appearance."""
    links: dict[str, None] = {}
    for token in _TOKENS.finditer(html):
        if token.group("a"):
            _, url = _href_of(token.group("a"))
            if url and _is_http(url):
                links.setdefault(url, None)
    return list(links)


def pixel_tag(pixel_url: str) -> str:
    return f'<img src="{escape(pixel_url, quote=True)}" width="1" height="1" alt="" style="display:none">'


def instrument_html(html: str, pixel_url: str, tracked: dict[str, str]) -> str:
    """Return `html` with the pixel before the last </body> (appended if there is none) and every
    <a href> whose URL is a key of `tracked` pointed at its tracked URL. Values are HTML-escaped."""
    def rewrite(token: re.Match) -> str:
        tag = token.group("a")
        if not tag:
            return token.group(0)
        href, url = _href_of(tag)
        if href is None or url not in tracked:
            return tag
        new_value = '"' + escape(tracked[url], quote=True) + '"'
        return tag[:href.start("value")] + new_value + tag[href.end("value"):]

    out = _TOKENS.sub(rewrite, html)
    pixel = pixel_tag(pixel_url)
    ends = list(_BODY_END.finditer(out))
    if ends:
        at = ends[-1].start()
        return out[:at] + pixel + out[at:]
    return out + pixel
