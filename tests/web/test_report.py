"""The experiment report page, its switches, banners, exports and escaping; the overview's lazy verdicts."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def make_experiment(app, *, name="Report test", variants=None, start=True, **extra) -> int:
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import create_experiment, start_experiment

    body = {"name": name, "variants": variants or [{"key": "A", "subject": "件名A"}, {"key": "B", "subject": "件名B"}]}
    body.update(extra)
    with app.app_context():
        exp = create_experiment(db.session, body)
        db.session.flush()
        if start:
            start_experiment(db.session, exp.id)
        db.session.commit()
        return exp.id


def add_sends(app, eid: int, key: str, n: int, *, human: int, machine_only: int = 0, segment: str | None = None,
              ua_family: str = "outlook", machine_ua: str = "apple_mail", meetings: int = 0, deals: int = 0,
              amount: float = 0.0, start: datetime | None = None) -> None:
    """`n` sends of variant `key`: the first `human` opened by a human, the next `machine_only` only by a machine."""
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import get_or_create_segment
    from emailexp.models import Conversion, OpenEvent, Recipient, Send, Variant

    with app.app_context():
        variant = db.session.scalar(sa.select(Variant).where(Variant.experiment_id == eid, Variant.key == key))
        seg_id = get_or_create_segment(db.session, segment).id if segment else None
        base = start or datetime.now(UTC) - timedelta(days=3)
        tag = f"{eid}-{key}-{segment}-{base.timestamp()}"
        for i in range(n):
            r = Recipient(external_id=f"r-{tag}-{i}")
            db.session.add(r)
            db.session.flush()
            sent = base + timedelta(minutes=7 * i)
            opened = sent + timedelta(hours=i % 5 + 1)
            s = Send(send_id=f"s-{tag}-{i}", recipient_id=r.id, experiment_id=eid, variant_id=variant.id,
                     segment_id=seg_id, subject=variant.subject or "x", sent_at=sent, local_weekday=sent.weekday(),
                     local_hour=sent.hour, payload_hash=hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(),
                     first_open_at=opened if i < human + machine_only else None,
                     first_human_open_at=opened if i < human else None)
            db.session.add(s)
            db.session.flush()
            if i < human:
                db.session.add(OpenEvent(send_id=s.id, opened_at=opened, verdict="human", reason="mail_client",
                                         ua_family=ua_family))
            elif i < human + machine_only:
                db.session.add(OpenEvent(send_id=s.id, opened_at=opened, verdict="machine",
                                         reason="apple_mpp_prefetch", ua_family=machine_ua))
            for kind, count in (("meeting", meetings), ("deal", deals)):
                if i < count:
                    db.session.add(Conversion(conversion_id=f"c-{kind}-{tag}-{i}", kind=kind, recipient_id=r.id,
                                              send_id=s.id, attribution="explicit", occurred_at=opened,
                                              amount=amount if kind == "deal" else None,
                                              payload_hash="0" * 64))
        db.session.commit()


def text_of(html: str) -> str:
    html = re.sub(r"<svg.*?</svg>", " ", html, flags=re.S)
    import html as _html

    return re.sub(r"\s+", " ", _html.unescape(re.sub(r"<[^>]+>", " ", html)))


def test_report_numbers_match_scipy_and_statsmodels(as_viewer, app):
    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint, proportions_ztest

    eid = make_experiment(app)
    add_sends(app, eid, "A", 400, human=80, machine_only=40, meetings=8, deals=2, amount=1_200_000)
    add_sends(app, eid, "B", 400, human=104, machine_only=30, meetings=12, deals=3, amount=500_000)
    resp = as_viewer.get(f"/experiments/{eid}?lang=en")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    row_a = re.search(r'<th scope="row">A .*?</tr>', html, re.S).group(0)
    row_b = re.search(r'<th scope="row">B</th>.*?</tr>', html, re.S).group(0)
    assert "400" in row_a and ">80<" in row_a and "20.0%" in row_a
    lo, hi = proportion_confint(104, 400, alpha=0.05, method="wilson")
    assert f"{lo * 100:.1f}% … {hi * 100:.1f}%" in row_b
    assert "26.0%" in row_b and "+30.0%" in row_b  # lift 0.26 / 0.20 - 1
    _z, p = proportions_ztest([104, 80], [400, 400])
    assert f"{p:.3f}" in row_b  # one comparison: Holm leaves p as it is
    assert "¥2,400,000" in row_a and "¥1,500,000" in row_b  # 2 deals x 1.2M, 3 deals x 0.5M
    # the data-quality banner: 70 of 254 opened sends had machine opens only
    text = text_of(html)
    assert f"{70 / 254 * 100:.1f}% of the opened sends (70 of 254)" in text
    assert "Apple Mail Privacy Protection prefetch: 70" in text
    # charts with text alternatives, the sequential status and the segment caveat
    assert html.count('<figure class="chart"') == 3 and "<title" in html and "<desc" in html
    assert "Always-valid p-value" in html and "mSPRT" in html
    assert "How to send it" in html  # running experiment: the sending help stays available (collapsed)
    # a ship verdict needs significance; p ~ 0.04 with a sequential test that has not crossed: keep testing
    sentence = re.search(r'<p class="verdict-sentence">(.*?)</p>', html, re.S).group(1)
    assert "keep testing" in sentence and "B" in sentence
    assert stats.norm.sf(abs(_z)) * 2 == pytest.approx(p)


def test_switches_for_all_opens_and_bh_and_bad_values(as_viewer, app):
    eid = make_experiment(app)
    add_sends(app, eid, "A", 100, human=20, machine_only=30)
    add_sends(app, eid, "B", 100, human=25, machine_only=10)
    human = as_viewer.get(f"/experiments/{eid}").get_data(as_text=True)
    everything = as_viewer.get(f"/experiments/{eid}?opens=all&correction=bh").get_data(as_text=True)
    assert "20.0%" in re.search(r'<th scope="row">A .*?</tr>', human, re.S).group(0)
    assert "50.0%" in re.search(r'<th scope="row">A .*?</tr>', everything, re.S).group(0)
    assert "Benjamini–Hochberg correction" in text_of(everything)
    assert 'opens=all' in everything and 'aria-current="true">All opens' in everything
    resp = as_viewer.get(f"/experiments/{eid}?opens=robots&correction=bonferroni")
    assert resp.status_code == 400
    text = text_of(resp.get_data(as_text=True))
    assert "“opens” must be “human” or “all”" in text and "“correction” must be “holm” or “bh”" in text
    assert "20.0%" in text  # still the report, with the defaults
    assert as_viewer.get(f"/experiments/{eid}/report.csv?opens=robots").status_code == 400
    body = as_viewer.get(f"/experiments/{eid}/report.json?correction=x")
    assert body.status_code == 400 and body.get_json()["field"] == "correction"


def test_empty_experiment_and_unknown_experiment(as_viewer, app):
    eid = make_experiment(app, start=False)
    html = as_viewer.get(f"/experiments/{eid}").get_data(as_text=True)
    assert "No sends recorded for this experiment yet." in html and "How to send it" in html
    assert as_viewer.get("/experiments/999999").status_code == 404
    assert as_viewer.get("/experiments/999999/report.csv").status_code == 404
    assert as_viewer.get("/experiments/999999/report.json").status_code == 404
    body = as_viewer.get(f"/experiments/{eid}/verdict.json").get_json()
    assert body["kind"] == "insufficient_data"


def test_sample_ratio_mismatch_blocks_the_verdict(as_viewer, app):
    eid = make_experiment(app)
    add_sends(app, eid, "A", 300, human=60)
    add_sends(app, eid, "B", 180, human=60)
    html = as_viewer.get(f"/experiments/{eid}?lang=en").get_data(as_text=True)
    assert 'id="srm-banner"' in html and "the verdict is blocked" in html
    assert "verdict-invalid_srm" in html
    html = as_viewer.get(f"/experiments/{eid}?lang=ja").get_data(as_text=True)
    assert "サンプル比率の不一致" in html and "判定を保留" in html


def test_csv_export_is_excel_friendly_and_safe_against_formula_injection(as_viewer, app):
    payloads = ['=HYPERLINK("http://evil.example","x")', "+SUM(1,2)", "-2+3", "@cmd", "\tTAB", "\rCR"]
    eid = make_experiment(app, name="=cmd|' /C calc'!A0", variants=[
        {"key": "A", "subject": payloads[0]}, {"key": "B", "subject": payloads[1]},
        {"key": "C", "subject": payloads[2]}, {"key": "D", "subject": payloads[3]},
        {"key": "E", "subject": payloads[4]}, {"key": "F", "subject": "件名, \"引用\"\n改行"}])
    add_sends(app, eid, "A", 20, human=5)
    add_sends(app, eid, "B", 20, human=8)
    resp = as_viewer.get(f"/experiments/{eid}/report.csv")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in resp.headers["Content-Disposition"]
    raw = resp.data
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads Japanese correctly
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    by_key = {r["variant"]: r for r in rows}
    assert list(by_key) == ["A", "B", "C", "D", "E", "F"]
    for key, payload in zip("ABCDE", payloads):
        assert by_key[key]["subject"] == "'" + payload, key
    assert by_key["F"]["subject"] == "件名, \"引用\"\n改行"  # quoted properly, not mangled
    assert all(r["experiment"] == "'=cmd|' /C calc'!A0" for r in rows)
    assert by_key["A"]["sends"] == "20" and by_key["A"]["opened_sends"] == "5"
    assert float(by_key["B"]["open_rate"]) == pytest.approx(0.4)
    assert by_key["A"]["is_control"] == "true" and by_key["B"]["is_control"] == "false"
    assert float(by_key["B"]["lift"]) == pytest.approx(0.4 / 0.25 - 1)
    from emailexp.analysis.verdict import VERDICT_KINDS

    assert rows[0]["verdict"] in VERDICT_KINDS and len({r["verdict"] for r in rows}) == 1
    # negative numbers are numbers, not text: only strings are prefixed
    from emailexp.web.report import safe_cell

    assert safe_cell(-0.25) == -0.25 and safe_cell("-0.25") == "'-0.25" and safe_cell("A") == "A"


def test_json_export_is_the_report(as_viewer, app):
    from emailexp.extensions import db
    from emailexp.reports.experiment_report import build_experiment_report

    eid = make_experiment(app)
    add_sends(app, eid, "A", 50, human=10, machine_only=5)
    add_sends(app, eid, "B", 50, human=15)
    resp = as_viewer.get(f"/experiments/{eid}/report.json?opens=all")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    with app.app_context():
        expected = json.loads(json.dumps(build_experiment_report(db.session, eid, opens="all").to_dict()))
    assert body == expected
    assert body["opens"] == "all" and [c["opens"] for c in body["counts"]] == [15, 15]


def test_stored_xss_in_subject_segment_and_user_agent_is_escaped(as_viewer, app):
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import get_or_create_segment

    eid = make_experiment(app, name=XSS, hypothesis=XSS, variants=[
        {"key": "A", "subject": XSS, "segment": "ent"}, {"key": "B", "subject": "b", "segment": "ent"}])
    with app.app_context():
        get_or_create_segment(db.session, "ent").name = XSS
        db.session.commit()
    add_sends(app, eid, "A", 30, human=10, machine_only=5, segment="ent", ua_family=XSS[:64], machine_ua=XSS[:60])
    add_sends(app, eid, "B", 30, human=12, segment="ent")
    for url in (f"/experiments/{eid}", f"/experiments/{eid}?lang=ja", f"/experiments/{eid}/user-agents", "/",
                "/insights", "/kpis"):
        html = as_viewer.get(url).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, url
    html = as_viewer.get(f"/experiments/{eid}").get_data(as_text=True)
    assert f'href="/experiments/{eid}/user-agents"' in html  # the data-quality banner links to the UA families
    html = as_viewer.get(f"/experiments/{eid}/user-agents").get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    # the user-agent families are listed with their classification, escaped
    ua_cells = re.findall(r'<td class="ua">(.*?)</td>', html)
    assert any("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in c for c in ua_cells), ua_cells
    assert html.count("&lt;script&gt;alert") >= 3  # experiment name and two user agents
    rows = list(csv.DictReader(io.StringIO(as_viewer.get(f"/experiments/{eid}/report.csv").data.decode("utf-8-sig"))))
    assert rows[0]["subject"] == XSS  # CSV is data, not HTML: kept as typed (no formula prefix needed for '<')


def test_verdict_sentences_are_translated_from_codes(app):
    from emailexp.analysis.verdict import Verdict
    from emailexp.web.texts import verdict_headline, verdict_sentence

    cases = [
        Verdict("ship", "B", ("significant_better:B", "sequential_boundary_crossed"), "Ship B ...", {}, None,
                {"metric": "open_rate", "winner_lift": 0.25, "winner_p_value_adjusted": 0.0004}),
        Verdict("ship", "A", ("guardrail_meetings_worse:B", "control_kept"), "Keep ...", {}, None,
                {"metric": "open_rate"}),
        Verdict("keep_testing", None, ("sequential_not_crossed:B",), "...", {"A": 1200, "B": 1500}, 4.2,
                {"metric": "open_rate"}),
        Verdict("no_difference", None, ("significant_worse:C", "equivalent_within_mde"), "...", {}, None,
                {"metric": "open_rate", "mde_absolute": 0.02}),
        Verdict("invalid_srm", None, ("srm_mismatch",), "...", {}, None,
                {"metric": "open_rate", "srm_p_value": 0.00001}),
        Verdict("insufficient_data", None, ("no_sends:B",), "...", {}, None, {"metric": "open_rate"}),
    ]
    expected_en = ["Ship B: its open rate is +25.0% higher", "Keep the control A: B wins on open rate",
                   "B looks better on open rate", "within ±2.0 pt", "sample ratio mismatch, p = < 0.001",
                   "No sends yet for B."]
    expected_ja = ["B を採用してください", "コントロール A を維持", "逐次検定はまだ境界を越えていません",
                   "±2.0 pt の範囲内", "サンプル比率の不一致", "B の送信はまだありません"]
    for lang, expected in (("en", expected_en), ("ja", expected_ja)):
        with app.test_request_context(f"/?lang={lang}"):
            for verdict, want in zip(cases, expected):
                text = verdict_sentence(verdict)
                assert want in text, (lang, text)
                if lang == "ja":
                    assert verdict.message not in text and "keep testing" not in text
    with app.test_request_context("/?lang=ja"):
        assert "約 1,500 件" in verdict_sentence(cases[2]) and "約 5 日" in verdict_sentence(cases[2])
        assert "ガードレール" in verdict_sentence(cases[1])
        assert verdict_headline("ship", "A", "A") == "コントロールを維持"


def test_overview_loads_verdicts_lazily(as_viewer, app):
    eid = make_experiment(app, name="Lazy")
    add_sends(app, eid, "A", 40, human=10)
    add_sends(app, eid, "B", 40, human=12)
    html = as_viewer.get("/").get_data(as_text=True)
    assert f'data-verdict-url="/experiments/{eid}/verdict.json"' in html
    assert "overview.js" in html and "Report pending" not in html
    body = as_viewer.get(f"/experiments/{eid}/verdict.json?lang=ja").get_json()
    assert body["kind"] in ("keep_testing", "insufficient_data", "no_difference", "ship")
    assert re.search(r"[\u3040-\u30ff]", body["text"])  # Japanese kana in the sentence


def test_report_pages_need_sign_in(client, app):
    eid = make_experiment(app)
    for url in (f"/experiments/{eid}", f"/experiments/{eid}/report.csv", f"/experiments/{eid}/report.json",
                f"/experiments/{eid}/verdict.json", "/insights", "/kpis"):
        resp = client.get(url)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], url


def test_designer_shows_service_messages_in_japanese(as_marketer):
    form = {"name": "x", "variants[0].key": "A", "variants[0].weight": "1", "variants[1].key": "A",
            "variants[1].weight": "1", "alpha": "5", "power": "80", "attribution_window_days": "14",
            "timezone": "Mars/Olympus", "primary_metric": "open_rate"}
    as_marketer.get("/experiments/new?lang=ja")
    html = as_marketer.post("/experiments/new", form).get_data(as_text=True)
    assert "タイムゾーン名ではありません" in html and "is not an IANA timezone" not in html
    form["timezone"] = "Asia/Tokyo"
    html = as_marketer.post("/experiments/new", form).get_data(as_text=True)
    assert "キー「A」はバリアント 1 ですでに使われています" in html
    as_marketer.get("/experiments/new?lang=en")
    html = as_marketer.post("/experiments/new", form).get_data(as_text=True)
    assert "key &#39;A&#39; is already used by variants[0]" in html


def test_chart_axes_cover_the_data():
    from emailexp.web.charts import _nice_ticks

    for lo, hi in ((0, 0.297), (0, 0.29), (-0.1, 0.35), (0, 1530), (0, 0.0331)):
        ticks = _nice_ticks(lo, hi)
        assert ticks[0] <= lo and ticks[-1] >= hi, (lo, hi, ticks)


def test_report_cache_reuses_and_invalidates(as_viewer, app, monkeypatch):
    import emailexp.web.report as web_report
    from emailexp.extensions import db
    from emailexp.models import OpenEvent, Send, Variant

    eid = make_experiment(app)
    add_sends(app, eid, "A", 50, human=10)
    add_sends(app, eid, "B", 50, human=10)
    calls = []
    real = web_report.build_experiment_report
    monkeypatch.setattr(web_report, "build_experiment_report", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    first = as_viewer.get(f"/experiments/{eid}").get_data(as_text=True)
    again = as_viewer.get(f"/experiments/{eid}").get_data(as_text=True)
    assert len(calls) == 1 and "20.0%" in re.search(r'<th scope="row">B</th>.*?</tr>', again, re.S).group(0)
    assert first.count("20.0%") == again.count("20.0%")
    # a new human open on a B send is a new open_events row: the next view recomputes
    with app.app_context():
        vb = db.session.scalar(sa.select(Variant.id).where(Variant.experiment_id == eid, Variant.key == "B"))
        send = db.session.scalars(sa.select(Send).where(Send.variant_id == vb, Send.first_human_open_at.is_(None))
                                  .order_by(Send.id)).first()
        now = datetime.now(UTC)
        send.first_open_at = send.first_human_open_at = now
        db.session.add(OpenEvent(send_id=send.id, opened_at=now, verdict="human", reason="mail_client",
                                 ua_family="outlook"))
        db.session.commit()
    html = as_viewer.get(f"/experiments/{eid}").get_data(as_text=True)
    assert len(calls) == 2 and "22.0%" in re.search(r'<th scope="row">B</th>.*?</tr>', html, re.S).group(0)
    # stopping the experiment changes the experiment's state: recomputed too
    with app.app_context():
        from emailexp.ingestion.experiments import stop_experiment

        stop_experiment(db.session, eid)
        db.session.commit()
    as_viewer.get(f"/experiments/{eid}")
    assert len(calls) == 3
    app.config["REPORT_CACHE"] = False
    as_viewer.get(f"/experiments/{eid}")
    as_viewer.get(f"/experiments/{eid}")
    assert len(calls) == 5


def test_machine_open_reasons_on_request_for_large_experiments(as_viewer, app, monkeypatch):
    import emailexp.reports.experiment_report as service

    eid = make_experiment(app)
    add_sends(app, eid, "A", 30, human=5, machine_only=10)
    add_sends(app, eid, "B", 30, human=5, machine_only=10)
    monkeypatch.setattr(service, "QUALITY_REASONS_MAX_SENDS", 50)  # 60 sends count as "large" here
    html = as_viewer.get(f"/experiments/{eid}?lang=en").get_data(as_text=True)
    assert "Apple Mail Privacy Protection prefetch" not in html
    assert f'href="/experiments/{eid}?reasons=1"' in html
    html = as_viewer.get(f"/experiments/{eid}?reasons=1").get_data(as_text=True)
    assert "Apple Mail Privacy Protection prefetch: 20" in text_of(html)


def test_stopped_inconclusive_experiment_is_not_told_to_keep_testing(app):
    from emailexp.web.texts import verdict_sentence

    verdict = {"kind": "keep_testing", "winner_key": None, "reasons": ["planned_sample_not_reached"],
               "details": {"metric": "open_rate"}, "additional_sends_needed": {"A": 1200, "B": 1500}}
    with app.test_request_context("/?lang=en"):
        running = verdict_sentence(verdict)
        stopped = verdict_sentence(verdict, stopped=True)
    assert "keep testing" in running
    assert "keep testing" not in stopped and stopped.startswith("Inconclusive")
    assert "1,500" in stopped
    with app.test_request_context("/?lang=ja"):
        assert verdict_sentence(verdict, stopped=True).startswith("結論なし")
