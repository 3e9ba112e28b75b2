"""Is this pixel hit or click a person, a machine, or can we not tell? Pure functions.

Verdicts: "human", "machine", "unknown". The open rate counts a send as opened when it has a human
open, so the rules below lean towards "machine" only on positive evidence.

Open rules, first match wins:
 1. HEAD request                                  -> machine  head_request
 2. a known scanner or bot user agent             -> machine  security_scanner_ua
 3. Google's image proxy ("GoogleImageProxy"), less than GMAIL_PREFETCH_SECONDS after the send
                                                  -> machine  gmail_prefetch
    later                                         -> human    gmail_image_proxy
 4. the bare UA "Mozilla/5.0"                     -> machine  apple_mpp_prefetch
 5. less than TOO_FAST_SECONDS after the send     -> machine  too_fast_after_send
 6. Yahoo's image proxy                           -> human    yahoo_proxy
 7. a recognised mail client or browser           -> human    mail_client
 8. no or an unrecognised UA                      -> unknown  unknown_agent

Click rules: 1, 2, 5, then 7 and 8; proxies do not click, so a proxy or bare "Mozilla/5.0" UA on
a click reads as unknown_agent.

Heuristics and their limits:
 - Apple Mail Privacy Protection (MPP) fetches every image of every message through Apple's proxy
   soon after delivery, whether or not the user ever opens it, with the bare UA "Mozilla/5.0".
   When an MPP user really opens the message, the image comes from the proxy's cache: there is no
   second hit. So MPP opens are all "machine": MPP users are counted as not opened (a known,
   documented under-count that is the same for every variant of an experiment). Other software
   that sends the bare UA is counted as MPP too. Apple Mail without MPP sends a full WebKit UA
   without "Safari/" and is a human mail_client.
 - Gmail fetches images through GoogleImageProxy when the message is displayed, so a proxy hit
   is normally a human open. Hits within GMAIL_PREFETCH_SECONDS (120 s) of the send are treated
   as delivery-time pre-fetching (Gmail and forwarding set-ups sometimes fetch on arrival), as a
   human opening a message within two minutes of it being sent is rare; a quick reader is
   under-counted.
 - TOO_FAST_SECONDS (10 s): security gateways (link and image scanners) act within seconds of
   delivery, often with an ordinary browser UA. A person who opens or clicks within 10 s of the
   send is counted as a machine. A negative delay (the sender's clock ahead of ours) counts as
   too fast. When the delay is unknown (None) this rule is skipped.
 - The scanner list matches substrings of known products and HTTP libraries; a scanner that
   imitates a browser UA and waits longer than 10 s is counted as human. There is no way to tell
   it from the UA alone.

`ua_family` is a short name ("apple_mail", "gmail_proxy", "outlook", ...); the raw UA is never
returned and must never be stored.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

HUMAN, MACHINE, UNKNOWN = "human", "machine", "unknown"

MAIL_CLIENT = "mail_client"
GMAIL_IMAGE_PROXY = "gmail_image_proxy"
YAHOO_PROXY = "yahoo_proxy"
APPLE_MPP_PREFETCH = "apple_mpp_prefetch"
GMAIL_PREFETCH = "gmail_prefetch"
SECURITY_SCANNER_UA = "security_scanner_ua"
HEAD_REQUEST = "head_request"
TOO_FAST_AFTER_SEND = "too_fast_after_send"
UNKNOWN_AGENT = "unknown_agent"
REASONS = (MAIL_CLIENT, GMAIL_IMAGE_PROXY, YAHOO_PROXY, APPLE_MPP_PREFETCH, GMAIL_PREFETCH,
           SECURITY_SCANNER_UA, HEAD_REQUEST, TOO_FAST_AFTER_SEND, UNKNOWN_AGENT)

TOO_FAST_SECONDS = 10.0
GMAIL_PREFETCH_SECONDS = 120.0
MAX_UA_CHARS = 512  # longer UAs are cut before matching (bounded work per request)


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: str     # "human" | "machine" | "unknown"
    reason: str      # one of REASONS
    ua_family: str   # short family name, at most 64 characters


# Email security gateways and link/image scanners (vendor names as they appear in their UAs).
_SCANNERS = re.compile(
    r"barracuda|mimecast|proofpoint|symantec|messagelabs|trend ?micro|trendmicro|forcepoint|"
    r"fortiguard|fortimail|sophos|ironport|cisco ?secure|zscaler|paloalto|cloudmark|"
    r"safelinks|safe ?links|microsoft defender|defender ?for ?office|bingpreview|appriver|"
    r"mailguard|spamtitan|hornetsecurity|vadesecure|libraesva|cyren|checkpoint|avanan|"
    r"abnormal ?security|ms ?search|urlscan", re.IGNORECASE)
# HTTP libraries, headless browsers, crawlers and link-preview bots.
_BOTS = re.compile(
    r"python-requests|python-urllib|python/|aiohttp|httpx|\bcurl/|\bwget/|go-http-client|"
    r"\bjava/|okhttp|apache-httpclient|libwww-perl|\bruby\b|node-fetch|axios/|"
    r"headlesschrome|phantomjs|puppeteer|playwright|selenium|electron/|"
    r"facebookexternalhit|slackbot|twitterbot|linkedinbot|whatsapp|telegrambot|discordbot|"
    r"skypeuripreview|crawler|spider|scanner|preview", re.IGNORECASE)
# "bot" as a word ending ("Googlebot/2.1", "AdsBot-Google", "bot;"); case-sensitive so that
# phone models such as "CUBOT X20" are not taken for bots.
_BOT_WORD = re.compile(r"(?:bot|Bot)(?:[/;\-\s)+]|$)")


@lru_cache(maxsize=4096)
def _family(ua: str) -> tuple[str, str]:
    """(kind, ua_family); kind is "scanner", "bot", "gmail", "yahoo", "mpp", "client" or ""."""
    if _SCANNERS.search(ua):
        return "scanner", "scanner"
    if "GoogleImageProxy" in ua or "ggpht.com" in ua:
        return "gmail", "gmail_proxy"
    if "YahooMailProxy" in ua:
        return "yahoo", "yahoo_proxy"
    if _BOTS.search(ua) or _BOT_WORD.search(ua):
        return "bot", "bot"
    if ua == "Mozilla/5.0":
        return "mpp", "apple_mail"
    if "Outlook" in ua or "MSOffice" in ua or "Microsoft Office" in ua or "ms-office" in ua:
        return "client", "outlook"
    if "Thunderbird/" in ua:
        return "client", "thunderbird"
    if "Edg/" in ua or "Edge/" in ua:
        return "client", "edge"
    if "Firefox/" in ua or "FxiOS/" in ua:
        return "client", "firefox"
    if "Chrome/" in ua or "CriOS/" in ua or "Chromium/" in ua:
        return "client", "chrome"
    if "AppleWebKit/" in ua and ("Macintosh" in ua or "iPhone" in ua or "iPad" in ua):
        # Apple Mail is WebKit without a Safari token; Safari says "Version/... Safari/...".
        if "Safari/" in ua and "Version/" in ua:
            return "client", "safari"
        return "client", "apple_mail"
    if "Safari/" in ua:
        return "client", "safari"
    return "", "unknown"


def _ua(user_agent: str | None) -> str:
    return (user_agent or "").strip()[:MAX_UA_CHARS]


def classify_open(user_agent: str | None, method: str, seconds_since_send: float | None) -> Classification:
    """Classify one pixel hit. `seconds_since_send`: the open time minus the send time, in
    seconds (None if unknown)."""
    ua = _ua(user_agent)
    kind, family = _family(ua) if ua else ("", "unknown")
    too_fast = seconds_since_send is not None and seconds_since_send < TOO_FAST_SECONDS
    if method.upper() == "HEAD":
        return Classification(MACHINE, HEAD_REQUEST, family)
    if kind in ("scanner", "bot"):
        return Classification(MACHINE, SECURITY_SCANNER_UA, family)
    if kind == "gmail":
        if seconds_since_send is not None and seconds_since_send < GMAIL_PREFETCH_SECONDS:
            return Classification(MACHINE, GMAIL_PREFETCH, family)
        return Classification(HUMAN, GMAIL_IMAGE_PROXY, family)
    if kind == "mpp":
        return Classification(MACHINE, APPLE_MPP_PREFETCH, family)
    if too_fast:
        return Classification(MACHINE, TOO_FAST_AFTER_SEND, family)
    if kind == "yahoo":
        return Classification(HUMAN, YAHOO_PROXY, family)
    if kind == "client":
        return Classification(HUMAN, MAIL_CLIENT, family)
    return Classification(UNKNOWN, UNKNOWN_AGENT, family)


def classify_click(user_agent: str | None, method: str, seconds_since_send: float | None) -> Classification:
    """Classify one click on a tracked link (same arguments as classify_open)."""
    ua = _ua(user_agent)
    kind, family = _family(ua) if ua else ("", "unknown")
    if method.upper() == "HEAD":
        return Classification(MACHINE, HEAD_REQUEST, family)
    if kind in ("scanner", "bot"):
        return Classification(MACHINE, SECURITY_SCANNER_UA, family)
    if seconds_since_send is not None and seconds_since_send < TOO_FAST_SECONDS:
        return Classification(MACHINE, TOO_FAST_AFTER_SEND, family)
    if kind == "client":
        return Classification(HUMAN, MAIL_CLIENT, family)
    return Classification(UNKNOWN, UNKNOWN_AGENT, family)


_IP_INFO = b"emailexp/ip/v1\x00"


def hash_ip(key: bytes, ip: str | None) -> str | None:
    """A keyed hash (HMAC-SHA256, 16 hex characters) of the address's network: /24 for IPv4,
    /48 for IPv6 (IPv4-mapped IPv6 counts as IPv4). Invalid or missing input gives None.
    Without the key the hash cannot be reversed by trying every network."""
    if not isinstance(ip, str) or not ip or len(ip) > 64:
        return None
    try:
        addr = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        network = b"4" + addr.packed[:3]
    else:
        network = b"6" + addr.packed[:6]
    return hmac.new(key, _IP_INFO + network, hashlib.sha256).hexdigest()[:16]
