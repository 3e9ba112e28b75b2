"""HTML instrumentation: the pixel, tracked links, escaping, and what must stay untouched."""
from __future__ import annotations

from html.parser import HTMLParser

from emailexp.ingestion.html import extract_links, instrument_html

PIXEL = "http://t.test/o/abc.gif"


class Collector(HTMLParser):
    """Parse the output independently: (tag, attrs) of every <a> and <img>, in order."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        if tag in ("a", "img"):
            self.tags.append((tag, dict(attrs)))


def parsed(html):
    collector = Collector()
    collector.feed(html)
    return collector.tags


def test_pixel_goes_before_the_last_body_end_tag():
    out = instrument_html("<html><BODY><p>Hi</p></BODY></html>", PIXEL, {})
    assert out == ('<html><BODY><p>Hi</p><img src="http://t.test/o/abc.gif" width="1" height="1" alt="" '
                   'style="display:none"></BODY></html>')


def test_pixel_is_appended_without_body():
    out = instrument_html("<p>Hi</p>", PIXEL, {})
    assert out.startswith("<p>Hi</p><img ") and parsed(out) == [
        ("img", {"src": PIXEL, "width": "1", "height": "1", "alt": "", "style": "display:none"})]


def test_tracked_links_are_rewritten_and_others_untouched():
    html = ('<body><a class="btn" href="https://e.com/pricing">Pricing</a>\n'
            "<A HREF='https://e.com/docs' target=_blank>Docs</A>"
            '<a href="https://e.com/other">Other</a><a href="mailto:x@example.com">Mail</a>'
            '<a name="top">top</a></body>')
    tracked = {"https://e.com/pricing": "http://t.test/c/P1", "https://e.com/docs": "http://t.test/c/D2"}
    out = instrument_html(html, PIXEL, tracked)
    assert [attrs.get("href") for tag, attrs in parsed(out) if tag == "a"] == [
        "http://t.test/c/P1", "http://t.test/c/D2", "https://e.com/other", "mailto:x@example.com", None]
    assert 'class="btn"' in out and "target=_blank>Docs</A>" in out
    assert '<a href="https://e.com/other">Other</a>' in out


def test_attribute_values_are_escaped_and_entities_in_hrefs_understood():
    html = '<a href="https://e.com/?a=1&amp;b=2">x</a>'
    tracked = {"https://e.com/?a=1&b=2": 'http://t.test/c/"quoted"&<x>'}
    pixel = 'http://t.test/o/a"b&c.gif'
    out = instrument_html(html, pixel, tracked)
    assert 'href="http://t.test/c/&quot;quoted&quot;&amp;&lt;x&gt;"' in out
    assert 'src="http://t.test/o/a&quot;b&amp;c.gif"' in out
    tags = parsed(out)
    assert tags[0] == ("a", {"href": 'http://t.test/c/"quoted"&<x>'})
    assert tags[1][1]["src"] == pixel


def test_comments_scripts_and_quoted_gt_are_handled():
    html = ('<!-- <a href="https://e.com/a">old</a> --><script>var s = \'<a href="https://e.com/a">\';</script>'
            '<a title="a > b" href="https://e.com/a">new</a>')
    out = instrument_html(html, PIXEL, {"https://e.com/a": "http://t.test/c/T"})
    assert out.startswith('<!-- <a href="https://e.com/a">old</a> --><script>var s = \'<a href="https://e.com/a">\';')
    assert '<a title="a > b" href="http://t.test/c/T">new</a>' in out


def test_extract_links_in_order_distinct_http_only():
    html = ('<a href="https://e.com/b">1</a><a href=\'http://e.com/a\'>2</a><a href="https://e.com/b">3</a>'
            '<a href="mailto:x@y.z">4</a><a href="javascript:alert(1)">5</a><a href="#top">6</a>'
            '<!-- <a href="https://e.com/hidden"> -->')
    assert extract_links(html) == ["https://e.com/b", "http://e.com/a"]
