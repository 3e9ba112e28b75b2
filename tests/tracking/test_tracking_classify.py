"""Open/click classification with real user agents, and IP hashing."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from emailexp.tracking.classify import (
    GMAIL_PREFETCH_SECONDS, REASONS, TOO_FAST_SECONDS, classify_click, classify_open, hash_ip,
)

UA = {
    "apple_mail_mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "apple_mail_ios": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "mpp": "Mozilla/5.0",
    "gmail": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "yahoo": "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "outlook_desktop": "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
    "outlook_win": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
    "outlook_ios": "Outlook-iOS/723.4027091.prod.iphone (4.2407.0)",
    "thunderbird": "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.9.0",
    "chrome": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "edge": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    "firefox": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "safari": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "mobile_safari": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "android_phone_cubot": "Mozilla/5.0 (Linux; Android 9; CUBOT X20 PRO) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "barracuda": "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
    "mimecast": "Mozilla/5.0 (compatible; Mimecast URL Protect)",
    "proofpoint": "Proofpoint URL Defense/1.0",
    "symantec": "Mozilla/5.0 (Windows NT 6.1; WOW64) Symantec Email Security.cloud",
    "trend": "Mozilla/5.0 (compatible; Trend Micro Email Security)",
    "bingpreview": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) BingPreview/1.0b",
    "defender": "Mozilla/5.0 (compatible; Microsoft Defender for Office 365 Safe Links)",
    "requests": "python-requests/2.31.0",
    "curl": "curl/8.5.0",
    "go": "Go-http-client/1.1",
    "headless": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "weird": "SomethingElse/1.0",
}

LATE = 3600.0  # an hour after the send

OPEN_CASES = [
    # (ua key, method, seconds since send, verdict, reason, family)
    ("apple_mail_mac", "GET", LATE, "human", "mail_client", "apple_mail"),
    ("apple_mail_ios", "GET", LATE, "human", "mail_client", "apple_mail"),
    ("mpp", "GET", LATE, "machine", "apple_mpp_prefetch", "apple_mail"),
    ("mpp", "GET", 2.0, "machine", "apple_mpp_prefetch", "apple_mail"),
    ("gmail", "GET", LATE, "human", "gmail_image_proxy", "gmail_proxy"),
    ("gmail", "GET", GMAIL_PREFETCH_SECONDS - 1, "machine", "gmail_prefetch", "gmail_proxy"),
    ("gmail", "GET", 1.0, "machine", "gmail_prefetch", "gmail_proxy"),
    ("gmail", "GET", None, "human", "gmail_image_proxy", "gmail_proxy"),
    ("yahoo", "GET", LATE, "human", "yahoo_proxy", "yahoo_proxy"),
    ("yahoo", "GET", 1.0, "machine", "too_fast_after_send", "yahoo_proxy"),
    ("outlook_desktop", "GET", LATE, "human", "mail_client", "outlook"),
    ("outlook_win", "GET", LATE, "human", "mail_client", "outlook"),
    ("outlook_ios", "GET", LATE, "human", "mail_client", "outlook"),
    ("thunderbird", "GET", LATE, "human", "mail_client", "thunderbird"),
    ("chrome", "GET", LATE, "human", "mail_client", "chrome"),
    ("edge", "GET", LATE, "human", "mail_client", "edge"),
    ("firefox", "GET", LATE, "human", "mail_client", "firefox"),
    ("safari", "GET", LATE, "human", "mail_client", "safari"),
    ("mobile_safari", "GET", LATE, "human", "mail_client", "safari"),
    ("android_phone_cubot", "GET", LATE, "human", "mail_client", "chrome"),
    ("chrome", "GET", TOO_FAST_SECONDS - 0.5, "machine", "too_fast_after_send", "chrome"),
    ("chrome", "GET", -30.0, "machine", "too_fast_after_send", "chrome"),
    ("chrome", "GET", TOO_FAST_SECONDS + 0.5, "human", "mail_client", "chrome"),
    ("chrome", "GET", None, "human", "mail_client", "chrome"),
    ("chrome", "HEAD", LATE, "machine", "head_request", "chrome"),
    ("barracuda", "GET", LATE, "machine", "security_scanner_ua", "scanner"),
    ("mimecast", "GET", LATE, "machine", "security_scanner_ua", "scanner"),
    ("proofpoint", "GET", LATE, "machine", "security_scanner_ua", "scanner"),
    ("symantec", "GET", LATE, "machine", "security_scanner_ua", "scanner"),
    ("trend", "GET", LATE, "machine", "security_scanner_ua", "scanner"),
    ("bingpreview", "GET", LATE, "machine", "security_scanner_ua", "scanner"),
    ("defender", "GET", LATE, "machine", "security_scanner_ua", "scanner"),
    ("requests", "GET", LATE, "machine", "security_scanner_ua", "bot"),
    ("curl", "GET", LATE, "machine", "security_scanner_ua", "bot"),
    ("go", "GET", LATE, "machine", "security_scanner_ua", "bot"),
    ("headless", "GET", LATE, "machine", "security_scanner_ua", "bot"),
    ("googlebot", "GET", LATE, "machine", "security_scanner_ua", "bot"),
    ("weird", "GET", LATE, "unknown", "unknown_agent", "unknown"),
    (None, "GET", LATE, "unknown", "unknown_agent", "unknown"),
    ("", "GET", LATE, "unknown", "unknown_agent", "unknown"),
    (None, "GET", 1.0, "machine", "too_fast_after_send", "unknown"),
]


@pytest.mark.parametrize("ua,method,seconds,verdict,reason,family", OPEN_CASES)
def test_classify_open(ua, method, seconds, verdict, reason, family):
    result = classify_open(UA.get(ua, ua), method, seconds)
    assert (result.verdict, result.reason, result.ua_family) == (verdict, reason, family)


CLICK_CASES = [
    ("chrome", "GET", LATE, "human", "mail_client", "chrome"),
    ("outlook_ios", "GET", LATE, "human", "mail_client", "outlook"),
    ("chrome", "GET", 3.0, "machine", "too_fast_after_send", "chrome"),
    ("chrome", "HEAD", LATE, "machine", "head_request", "chrome"),
    ("defender", "GET", LATE, "machine", "security_scanner_ua", "scanner"),
    ("curl", "GET", LATE, "machine", "security_scanner_ua", "bot"),
    ("mpp", "GET", LATE, "unknown", "unknown_agent", "apple_mail"),
    ("gmail", "GET", LATE, "unknown", "unknown_agent", "gmail_proxy"),
    (None, "GET", LATE, "unknown", "unknown_agent", "unknown"),
]


@pytest.mark.parametrize("ua,method,seconds,verdict,reason,family", CLICK_CASES)
def test_classify_click(ua, method, seconds, verdict, reason, family):
    result = classify_click(UA.get(ua, ua), method, seconds)
    assert (result.verdict, result.reason, result.ua_family) == (verdict, reason, family)


def test_every_reason_is_reachable_and_families_are_short():
    seen = {classify_open(UA.get(u, u), m, s).reason for u, m, s, *_ in OPEN_CASES}
    assert seen == set(REASONS)
    for ua in UA.values():
        assert len(classify_open(ua, "GET", LATE).ua_family) <= 64
    huge = "Mozilla/5.0 " + "x" * 100_000
    assert classify_open(huge, "GET", LATE).verdict == "unknown"


KEY = b"k" * 32


def expected_hash(network: bytes) -> str:
    return hmac.new(KEY, b"emailexp/ip/v1\x00" + network, hashlib.sha256).hexdigest()[:16]


def test_hash_ip_truncates_before_hashing():
    h = hash_ip(KEY, "203.0.113.77")
    assert h == expected_hash(b"4" + bytes([203, 0, 113])) and len(h) == 16
    assert hash_ip(KEY, "203.0.113.1") == h            # same /24
    assert hash_ip(KEY, "203.0.114.77") != h           # another /24
    assert hash_ip(KEY, "::ffff:203.0.113.9") == h     # IPv4-mapped IPv6
    assert hash_ip(b"x" * 32, "203.0.113.77") != h     # keyed
    v6 = hash_ip(KEY, "2001:db8:abcd:12::1")
    assert v6 == expected_hash(b"6" + bytes.fromhex("20010db8abcd"))
    assert hash_ip(KEY, "2001:db8:abcd:ffff::2") == v6  # same /48
    assert hash_ip(KEY, "2001:db8:abce::1") != v6
    assert hash_ip(KEY, "fe80::1%eth0") == hash_ip(KEY, "fe80::2")
    assert "203" not in h


@pytest.mark.parametrize("bad", [None, "", "not-an-ip", "300.1.1.1", "1.2.3", "1.2.3.4.5", "::g", 42, "1" * 200])
def test_hash_ip_invalid_is_none(bad):
    assert hash_ip(KEY, bad) is None
