"""Overview, list, experiment page, escaping, language switch, timezone, translations."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta


XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _create(app, **data):
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import create_experiment

    body = {"name": "E", "variants": [{"key": "A", "subject": "a"}, {"key": "B", "subject": "b"}]}
    body.update(data)
    with app.app_context():
        exp = create_experiment(db.session, body)
        db.session.commit()
        return exp.id


def test_overview_empty_state_tells_what_to_do(as_marketer):
    html = as_marketer.get("/").get_data(as_text=True)
    assert "Get started" in html and "emailexp demo" in html and "emailexp create-api-key" in html
    assert "/api/v1/sends" in html and "Design your first experiment" in html


def test_overview_lists_experiments_and_activity(as_marketer, app):
    eid = _create(app, name="Weekday test")
    from emailexp.extensions import db
    from emailexp.models import OpenEvent, Recipient, Send

    with app.app_context():
        r = Recipient(external_id="lead-1")
        db.session.add(r)
        db.session.flush()
        now = datetime.now(UTC)
        s = Send(send_id="s1", recipient_id=r.id, subject="x", sent_at=now, local_weekday=0, local_hour=9,
                 payload_hash="0" * 64)
        old = Send(send_id="s0", recipient_id=r.id, subject="x", sent_at=now - timedelta(days=3), local_weekday=0,
                   local_hour=9, payload_hash="0" * 64)
        db.session.add_all([s, old])
        db.session.flush()
        db.session.add_all([OpenEvent(send_id=s.id, opened_at=now, verdict="human", reason="mail_client",
                                      ua_family="outlook"),
                            OpenEvent(send_id=s.id, opened_at=now, verdict="machine", reason="apple_mpp_prefetch",
                                      ua_family="apple_mail")])
        db.session.commit()
    html = as_marketer.get("/").get_data(as_text=True)
    assert "Get started" not in html
    assert f'/experiments/{eid}">Weekday test</a>' in html
    import re

    stats = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", html))
    assert stats["Sends today"] == "1" and stats["Opens today"] == "2" and stats["Human opens today"] == "1"


def test_list_filters_by_status(as_marketer, app):
    _create(app, name="Draft one")
    running = _create(app, name="Running one")
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import start_experiment

    with app.app_context():
        start_experiment(db.session, running)
        db.session.commit()
    html = as_marketer.get("/experiments?status=running").get_data(as_text=True)
    assert "Running one" in html and "Draft one" not in html
    html = as_marketer.get("/experiments").get_data(as_text=True)
    assert "Running one" in html and "Draft one" in html


def test_experiment_page_shows_per_variant_counts(as_viewer, app):
    eid = _create(app)
    from emailexp.extensions import db
    from emailexp.models import Recipient, Send, Variant
    import sqlalchemy as sa

    with app.app_context():
        va = db.session.scalar(sa.select(Variant).where(Variant.experiment_id == eid, Variant.key == "A"))
        now = datetime.now(UTC)
        for i in range(4):
            r = Recipient(external_id=f"lead-{i}")
            db.session.add(r)
            db.session.flush()
            db.session.add(Send(send_id=f"s{i}", recipient_id=r.id, experiment_id=eid, variant_id=va.id, subject="a",
                                sent_at=now, local_weekday=0, local_hour=9, payload_hash="0" * 64,
                                first_open_at=now if i < 2 else None, first_human_open_at=now if i < 1 else None))
        db.session.commit()
    html = as_viewer.get(f"/experiments/{eid}").get_data(as_text=True)
    import re

    row = re.search(r'<th scope="row">A .*?</tr>', html, re.S).group(0)
    cells = re.findall(r'<td class="num">(.*?)</td>', row, re.S)
    assert cells[:2] == ["4", "1"] and "25.0%" in cells[2]
    html = as_viewer.get(f"/experiments/{eid}?opens=all").get_data(as_text=True)
    row = re.search(r'<th scope="row">A .*?</tr>', html, re.S).group(0)
    assert re.findall(r'<td class="num">(.*?)</td>', row, re.S)[1] == "2"


def test_user_and_mail_data_is_escaped(as_marketer, app):
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import get_or_create_segment

    eid = _create(app, name=XSS, hypothesis=XSS,
                  variants=[{"key": "A", "subject": XSS, "segment": "ent"}, {"key": "B", "subject": "b"}])
    with app.app_context():
        get_or_create_segment(db.session, "ent").name = XSS
        db.session.commit()
    for url in ("/", "/experiments", f"/experiments/{eid}", f"/experiments/{eid}/edit", "/experiments/new"):
        html = as_marketer.get(url).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, url
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html, url
    # and a subject typed into the form that fails validation is re-shown escaped
    html = as_marketer.post("/experiments/new", {"name": "", "variants[0].key": "A", "variants[0].subject": XSS,
                                                 "variants[0].weight": "1", "variants[1].key": "B",
                                                 "variants[1].weight": "1", "alpha": "5", "power": "80",
                                                 "attribution_window_days": "14"}).get_data(as_text=True)
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_language_switch_and_accept_language(client, users, web):
    assert 'lang="ja"' in client.get("/login", headers={"Accept-Language": "ja,en;q=0.5"}).get_data(as_text=True)
    html = client.get("/login", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert 'lang="en"' in html and "Sign in" in html
    web.login("mika")
    html = web.get("/?lang=ja").get_data(as_text=True)
    assert "概要" in html and "実験" in html and "ログアウト" in html
    html = web.get("/experiments", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "実験" in html and "lang=\"ja\"" in html  # the choice is kept in the session
    html = web.get("/experiments?lang=en").get_data(as_text=True)
    assert "Experiments" in html and 'lang="en"' in html
    html = web.get("/experiments/new?lang=ja").get_data(as_text=True)
    assert "バリアントを追加" in html and "サンプルサイズ" in html


def test_dates_in_workspace_timezone(as_marketer, app):
    from emailexp.extensions import db
    from emailexp.models import Experiment

    eid = _create(app, name="Clock")
    with app.app_context():
        db.session.get(Experiment, eid).created_at = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)
        db.session.commit()
    html = as_marketer.get(f"/experiments/{eid}?lang=en").get_data(as_text=True)
    assert "Jan 6, 2026, 8:30:00" in html  # 23:30 UTC is 08:30 the next day in Tokyo
    html = as_marketer.get(f"/experiments/{eid}?lang=ja").get_data(as_text=True)
    assert "2026/01/06 8:30:00" in html


def test_every_message_has_a_japanese_translation():
    from pathlib import Path

    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parents[2]
    with open(root / "emailexp/translations/ja/LC_MESSAGES/messages.po", "rb") as fh:
        catalog = read_po(fh)
    method_map = [("emailexp/web/**.py", "python"), ("templates/**.html", "jinja2")]
    found = {msg[2] for msg in extract_from_dir(str(root), method_map=method_map)}
    found = {m if isinstance(m, str) else m[0] for m in found}
    missing = sorted(m for m in found if not (catalog.get(m) and catalog.get(m).string))
    assert not missing, f"untranslated: {missing}"


def test_translations_compile_into_the_instance_folder(tmp_path):
    from emailexp.i18n import SOURCE_DIR, compile_catalogues

    written = compile_catalogues(SOURCE_DIR, tmp_path)
    assert (tmp_path / "ja/LC_MESSAGES/messages.mo") in written
    assert compile_catalogues(SOURCE_DIR, tmp_path) == []  # up to date: nothing rewritten
