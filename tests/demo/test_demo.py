"""The demo loader: consistent rows, realistic machine-open shares, --reset semantics, planted effects.

Every check reads the database through SQL aggregates; the planted effects are tested with
statsmodels/scipy on those aggregates, at full scale, in the slow test at the end.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize, proportions_ztest

from emailexp.demo.generate import DRIFTING_OWNER, EXPERIMENTS, HISTORY_WEEKS, generate
from emailexp.demo.load import DATA_MODELS, database_has_data, delete_demo_data, load_demo
from emailexp.errors import StateError
from emailexp.models import (
    ApiKey, ClickEvent, Conversion, Experiment, OpenEvent, Owner, Recipient, Segment, Send, SendLink, Team, Variant,
)

NOW = datetime(2025, 3, 14, 3, 0, tzinfo=UTC)  # Friday 12:00 in Tokyo
SMALL = 0.05


def count(session, model, *where) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def table_counts(session) -> dict[str, int]:
    return {m.__tablename__: count(session, m) for m in DATA_MODELS}


# ------------------------------------------------------------------ pure generator

def test_generate_is_deterministic_and_refuses_naive_now():
    a, b, c = generate(NOW, seed=3, scale=0.02), generate(NOW, seed=3, scale=0.02), generate(NOW, seed=4, scale=0.02)
    assert np.array_equal(a.tables["sends"]["sent_at"], b.tables["sends"]["sent_at"])
    assert np.array_equal(a.tables["open_events"]["opened_at"], b.tables["open_events"]["opened_at"])
    assert not np.array_equal(a.tables["sends"]["recipient_id"][:50], c.tables["sends"]["recipient_id"][:50])
    with pytest.raises(ValueError, match="timezone-aware"):
        generate(NOW.replace(tzinfo=None))


def test_generate_full_scale_sizes():
    data = generate(NOW)
    sends = data.tables["sends"]
    assert data.n_rows("sends") >= 100_000
    assert data.n_rows("recipients") >= 30_000
    span = (sends["sent_at"].max() - sends["sent_at"].min()) / 86_400
    assert span >= (HISTORY_WEEKS - 1) * 7
    assert sends["sent_at"].max() <= NOW.timestamp()
    assert len(np.unique(sends["segment_id"])) == 4
    assert data.n_rows("teams") == 3 and data.n_rows("owners") >= 9


# ------------------------------------------------------------------ loaded rows

@pytest.fixture
def loaded(session):
    summary = load_demo(session, now=NOW, scale=SMALL, tracking_secret="test-secret")
    session.commit()
    return summary


def test_counts_match_summary_and_sequences_advance(session, loaded):
    assert table_counts(session) == loaded.counts
    assert loaded.counts["sends"] > 5_000
    assert count(session, Segment) == 4 and count(session, Team) == 3
    assert count(session, Experiment, Experiment.status == "running") == 1
    assert count(session, Experiment, Experiment.status == "stopped") == len(EXPERIMENTS) - 1
    # ids were assigned by the loader; the next app insert must not collide (PostgreSQL: setval)
    team = Team(name="新規チーム")
    session.add(team)
    session.flush()
    assert team.id == 4
    link = session.execute(sa.insert(SendLink).values(send_id=1, position=99, url="https://example.co.jp/x")
                           .returning(SendLink.id)).scalar_one()
    assert link == loaded.counts["send_links"] + 1
    session.rollback()


def _first_time_mismatches(session, column, event_time, event_model, *where) -> int:
    agg = (sa.select(event_model.send_id.label("send_id"), sa.func.min(event_time).label("first"))
           .where(*where).group_by(event_model.send_id).subquery())
    return session.scalar(
        sa.select(sa.func.count()).select_from(Send).outerjoin(agg, agg.c.send_id == Send.id).where(sa.or_(
            sa.and_(agg.c.first.is_(None), column.is_not(None)),
            sa.and_(agg.c.first.is_not(None), column.is_(None)),
            agg.c.first != column,
        )))


def test_cached_first_times_equal_the_events(session, loaded):
    assert count(session, Send, Send.first_human_open_at.is_not(None)) > 0
    assert _first_time_mismatches(session, Send.first_human_open_at, OpenEvent.opened_at, OpenEvent,
                                  OpenEvent.verdict == "human") == 0
    assert _first_time_mismatches(session, Send.first_open_at, OpenEvent.opened_at, OpenEvent) == 0
    assert _first_time_mismatches(session, Send.first_click_at, ClickEvent.clicked_at, ClickEvent) == 0
    # no event before its send, none after `now`
    assert count(session, OpenEvent, OpenEvent.opened_at > NOW) == 0
    early = sa.select(sa.func.count()).select_from(OpenEvent).join(Send, Send.id == OpenEvent.send_id) \
        .where(OpenEvent.opened_at < Send.sent_at)
    assert session.scalar(early) == 0
    # a click's link belongs to the clicked send
    wrong = sa.select(sa.func.count()).select_from(ClickEvent).join(SendLink, SendLink.id == ClickEvent.link_id) \
        .where(SendLink.send_id != ClickEvent.send_id)
    assert session.scalar(wrong) == 0


def test_machine_opens_are_a_realistic_share(session, loaded):
    rows = dict(session.execute(sa.select(OpenEvent.verdict, sa.func.count()).group_by(OpenEvent.verdict)).all())
    total = sum(rows.values())
    assert set(rows) == {"human", "machine", "unknown"}
    assert 0.40 <= rows["machine"] / total <= 0.70
    assert 0.01 <= rows["unknown"] / total <= 0.06
    n_sends = count(session, Send)
    mpp = session.scalar(sa.select(sa.func.count(sa.distinct(OpenEvent.send_id)))
                         .where(OpenEvent.reason == "apple_mpp_prefetch"))
    assert 0.33 <= mpp / n_sends <= 0.47
    reasons = set(session.scalars(sa.select(OpenEvent.reason).distinct()))
    assert reasons == {"mail_client", "gmail_image_proxy", "yahoo_proxy", "apple_mpp_prefetch", "gmail_prefetch",
                       "security_scanner_ua", "head_request", "too_fast_after_send", "unknown_agent"}
    # machine-only opens inflate the naive open rate well above the human one
    any_open = count(session, Send, Send.first_open_at.is_not(None))
    human = count(session, Send, Send.first_human_open_at.is_not(None))
    assert any_open > 2 * human


def test_privacy_and_local_time(session, loaded):
    assert count(session, Recipient, Recipient.external_id.contains("@")) == 0
    assert count(session, Recipient, ~Recipient.external_id.like("lead-%")) == 0
    for model in (OpenEvent, ClickEvent):
        hashes = session.scalars(sa.select(model.ip_hash).where(model.ip_hash.is_not(None)).distinct().limit(500))
        assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes)
    tokyo = ZoneInfo("Asia/Tokyo")
    sample = session.execute(sa.select(Send.sent_at, Send.local_weekday, Send.local_hour)
                             .order_by(Send.id).limit(300)).all()
    for sent_at, weekday, hour in sample:
        local = sent_at.astimezone(tokyo)
        assert (local.weekday(), local.hour) == (weekday, hour)


def test_conversions_follow_the_attribution_rules(session, loaded):
    kinds = dict(session.execute(sa.select(Conversion.attribution, sa.func.count())
                                 .group_by(Conversion.attribution)).all())
    assert kinds["window"] > kinds["explicit"] > 0 and kinds["unattributed"] > 0
    assert count(session, Conversion, (Conversion.attribution == "unattributed") != Conversion.send_id.is_(None)) == 0
    assert count(session, Conversion, Conversion.kind == "deal", Conversion.amount.is_(None)) == 0
    assert count(session, Conversion, Conversion.kind == "meeting", Conversion.amount.is_not(None)) == 0
    # "window": the recipient's latest send at or before the meeting, within the 14-day window
    later = sa.alias(Send.__table__)
    bad = (sa.select(sa.func.count()).select_from(Conversion).join(Send, Send.id == Conversion.send_id)
           .where(Conversion.attribution == "window", sa.or_(
               Conversion.occurred_at < Send.sent_at,
               sa.exists().where(later.c.recipient_id == Conversion.recipient_id, later.c.sent_at > Send.sent_at,
                                 later.c.sent_at <= Conversion.occurred_at))))
    assert session.scalar(bad) == 0
    assert count(session, Conversion, Conversion.send_id.is_not(None),
                 Conversion.recipient_id != sa.select(Send.recipient_id).where(Send.id == Conversion.send_id)
                 .scalar_subquery()) == 0


def test_load_refuses_a_non_empty_database_and_delete_empties_it(session, loaded):
    with pytest.raises(StateError):
        load_demo(session, now=NOW, scale=SMALL, tracking_secret="test-secret")
    session.rollback()
    deleted = delete_demo_data(session)
    session.commit()
    assert deleted["sends"] == loaded.counts["sends"]
    assert not database_has_data(session)


# ------------------------------------------------------------------ CLI

def test_cli_demo_refuses_non_empty_and_reset_replaces(app, runner):
    from emailexp.extensions import db
    from emailexp.ingestion.apikeys import create_api_key

    args = ["demo", "--scale", "0.02", "--now", "2025-03-14T12:00:00+09:00"]
    first = runner.invoke(args=args)
    assert first.exit_code == 0, first.output
    assert "pixel URL: http://t.example.test/o/" in first.output
    assert "click URL (link 0): http://t.example.test/c/" in first.output
    assert "emailexp create-api-key" in first.output
    with app.app_context():
        before = table_counts(db.session)
        create_api_key(db.session, "keep-me")
        db.session.commit()

    refused = runner.invoke(args=args)
    assert refused.exit_code == 1
    assert "--reset" in refused.output
    with app.app_context():
        assert table_counts(db.session) == before

    again = runner.invoke(args=[*args, "--reset"])
    assert again.exit_code == 0, again.output
    assert "Deleted" in again.output
    with app.app_context():
        assert table_counts(db.session) == before  # same seed and end time: the same history
        assert count(db.session, ApiKey) == 1      # API keys and users survive a reset

    other = runner.invoke(args=[*args, "--reset", "--seed", "8"])
    assert other.exit_code == 0, other.output
    with app.app_context():
        after = table_counts(db.session)
        assert after["recipients"] == before["recipients"]  # sizes are fixed by the design ...
        assert after["open_events"] != before["open_events"]  # ... outcomes are random


def test_cli_demo_rejects_bad_options(runner):
    naive = runner.invoke(args=["demo", "--now", "2025-03-14T12:00:00"])
    assert naive.exit_code == 2 and "offset" in naive.output
    assert runner.invoke(args=["demo", "--scale", "0"]).exit_code == 2


# ------------------------------------------------------------------ planted effects (full scale)

def _arms(session, name: str, *where):
    """Per variant key: (sends, sends with a human open, sends with an attributed meeting) — SQL GROUP BY."""
    meetings = (sa.select(Conversion.send_id).where(Conversion.kind == "meeting", Conversion.send_id.is_not(None))
                .distinct().subquery())
    rows = session.execute(
        sa.select(Variant.key, sa.func.count(Send.id), sa.func.count(Send.first_human_open_at),
                  sa.func.count(meetings.c.send_id))
        .join(Variant, Variant.id == Send.variant_id).join(Experiment, Experiment.id == Send.experiment_id)
        .outerjoin(meetings, meetings.c.send_id == Send.id)
        .where(Experiment.name == name, *where).group_by(Variant.key).order_by(Variant.key)).all()
    return {key: (n, opens, meets) for key, n, opens, meets in rows}


def _z(a, b, col, alternative="two-sided"):
    """statsmodels two-proportion z-test of arm a vs arm b on column col (1 = opens, 2 = meetings)."""
    return proportions_ztest([a[col], b[col]], [a[0], b[0]], alternative=alternative)[1]


def _rate(arm, col):
    return arm[col] / arm[0]


@pytest.mark.slow
def test_planted_effects_show_in_sql_aggregates(session):
    import statsmodels.api as sm

    load_demo(session, now=NOW, tracking_secret="test-secret")
    session.commit()
    subject, send_time, weekday, clickbait, running, srm = (e.name for e in EXPERIMENTS)

    # 1. question subject: +25% relative human opens and more meetings
    arms = _arms(session, subject)
    a, b = arms["A"], arms["B"]
    assert 1.15 <= _rate(b, 1) / _rate(a, 1) <= 1.35 and _z(b, a, 1) < 1e-6
    assert _rate(b, 2) > _rate(a, 2) and _z(b, a, 2, "larger") < 0.05

    # 2. 08:00 best overall and strongly for enterprise; smb prefers lunch
    arms = _arms(session, send_time)
    assert _rate(arms["A"], 1) > _rate(arms["B"], 1) > _rate(arms["C"], 1)
    assert _z(arms["A"], arms["B"], 1) < 0.01
    assert _z(arms["A"], arms["C"], 2, "smaller") > 0.5 and _z(arms["A"], arms["B"], 2, "smaller") > 0.5
    seg = {key: session.scalar(sa.select(Segment.id).where(Segment.key == key)) for key in ("enterprise", "smb")}
    ent = _arms(session, send_time, Send.segment_id == seg["enterprise"])
    assert _rate(ent["A"], 1) / _rate(ent["B"], 1) > 1.3 and _z(ent["A"], ent["B"], 1) < 1e-4
    smb = _arms(session, send_time, Send.segment_id == seg["smb"])
    assert _rate(smb["B"], 1) > _rate(smb["A"], 1)

    # 3. Tuesday vs Friday: no difference, with more sends than the plan needs
    arms = _arms(session, weekday)
    assert _z(arms["A"], arms["B"], 1) > 0.2
    assert abs(_rate(arms["B"], 1) / _rate(arms["A"], 1) - 1) < 0.05
    base = _rate(arms["A"], 1)
    needed = NormalIndPower().solve_power(proportion_effectsize(base * 1.10, base), alpha=0.05, power=0.8)
    assert min(arms["A"][0], arms["B"][0]) > needed

    # 4. clickbait: more opens, significantly fewer meetings
    arms = _arms(session, clickbait)
    a, b = arms["A"], arms["B"]
    assert 1.10 <= _rate(b, 1) / _rate(a, 1) <= 1.30 and _z(b, a, 1) < 1e-4
    assert _rate(b, 2) / _rate(a, 2) < 0.75 and _z(b, a, 2, "smaller") < 0.001

    # 5. running: not significant and far below the sample the 10% MDE needs
    arms = _arms(session, running)
    assert _z(arms["A"], arms["B"], 1) > 0.05
    base = _rate(arms["A"], 1)
    needed = NormalIndPower().solve_power(proportion_effectsize(base * 1.10, base), alpha=0.05, power=0.8)
    assert max(arms["A"][0], arms["B"][0]) < needed / 2

    # 6. sample ratio mismatch against the planned 50/50
    arms = _arms(session, srm)
    n = np.array([arms["A"][0], arms["B"][0]])
    assert stats.chisquare(n).pvalue < 0.001 and 0.52 <= n[0] / n.sum() <= 0.54

    # campaigns confound weekday: naive Tuesday >> Friday, gone with campaign fixed effects
    grouped = session.execute(
        sa.select(Send.campaign, Send.local_weekday, Send.segment_id, sa.func.count(),
                  sa.func.count(Send.first_human_open_at))
        .where(Send.experiment_id.is_(None))
        .group_by(Send.campaign, Send.local_weekday, Send.segment_id)).all()
    sums = {wd: np.sum([[r[3], r[4]] for r in grouped if r[1] == wd], axis=0) for wd in (1, 4)}
    assert sums[1][1] / sums[1][0] > 1.3 * sums[4][1] / sums[4][0]
    assert proportions_ztest([sums[1][1], sums[4][1]], [sums[1][0], sums[4][0]])[1] < 1e-10
    campaigns = sorted({r[0] for r in grouped})
    weekdays = sorted({r[1] for r in grouped} - {1})  # Tuesday is the reference
    segments = sorted({r[2] for r in grouped})
    x = np.array([[1.0] + [float(r[1] == wd) for wd in weekdays] + [float(r[0] == c) for c in campaigns[1:]]
                  + [float(r[2] == sg) for sg in segments[1:]] for r in grouped])
    y = np.array([[r[4], r[3] - r[4]] for r in grouped], dtype=float)
    fit = sm.GLM(y, x, family=sm.families.Binomial()).fit()
    friday = 1 + weekdays.index(4)
    assert fit.pvalues[friday] > 0.05 and abs(fit.params[friday]) < 0.1

    # 大阪: the most meetings of the three teams, the lowest deals per meeting
    team_rows = session.execute(
        sa.select(Team.name, Conversion.kind, sa.func.count())
        .join(Owner, Owner.team_id == Team.id).join(Conversion, Conversion.owner_id == Owner.id)
        .group_by(Team.name, Conversion.kind)).all()
    per_team = {}
    for team, kind, n_conv in team_rows:
        per_team.setdefault(team, {})[kind] = n_conv
    osaka = per_team.pop("大阪インサイドセールス")
    assert all(osaka["meeting"] > t["meeting"] for t in per_team.values())
    osaka_rate = osaka["deal"] / osaka["meeting"]
    assert all(osaka_rate < 0.5 * t["deal"] / t["meeting"] for t in per_team.values())

    # the drifting owner: weekly open rate up, meeting rate down over all his sends (binomial GLM on
    # weekly counts; the last two weeks' meetings are still arriving)
    owner_id = session.scalar(sa.select(Owner.id).where(Owner.external_id == DRIFTING_OWNER))
    start = NOW - timedelta(days=7 * HISTORY_WEEKS)
    mature = HISTORY_WEEKS - 2
    week = sa.case(*[(Send.sent_at < start + timedelta(days=7 * (w + 1)), w) for w in range(mature)],
                   else_=mature)
    meetings = (sa.select(Conversion.send_id).where(Conversion.kind == "meeting", Conversion.send_id.is_not(None))
                .distinct().subquery())
    weekly = session.execute(
        sa.select(week, sa.func.count(), sa.func.count(Send.first_human_open_at), sa.func.count(meetings.c.send_id))
        .outerjoin(meetings, meetings.c.send_id == Send.id)
        .where(Send.owner_id == owner_id, week < mature)
        .group_by(week).order_by(week)).all()
    assert len(weekly) == mature
    xw = sm.add_constant(np.array([r[0] for r in weekly], dtype=float))
    n_w = np.array([r[1] for r in weekly], dtype=float)
    for col, sign in ((2, 1), (3, -1)):
        k = np.array([r[col] for r in weekly], dtype=float)
        trend = sm.GLM(np.column_stack([k, n_w - k]), xw, family=sm.families.Binomial()).fit()
        assert np.sign(trend.params[1]) == sign and trend.pvalues[1] < 0.01
