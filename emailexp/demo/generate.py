"""Generate the demo history: a Japanese B2B inside-sales team, 13 weeks of e-mail, planted effects.

Pure: numpy with a fixed seed in, column arrays out; no database, no Flask. ``load.py`` writes the
arrays. Every planted effect is a named constant below and is documented in ``docs/demo-data.md``;
change one here and change the document with it.

Times are int64 epoch seconds (UTC) while generating; ``NO_TIME`` (-1) marks "no value". The
workspace and experiment timezone is Asia/Tokyo, a fixed UTC+9 (no daylight saving since 1951),
so local weekday/hour are computed with a fixed offset.

The human-open model (per send, before detection)::

    logit p = BASE_LOGIT + SEGMENT_LOGIT[segment] + WEEKDAY_LOGIT[local weekday]
              + HOUR_BAND_LOGIT[band] + SEGMENT_HOUR_LOGIT[segment, band]
              + campaign effect + subject-feature effects          (campaign sends only)
              + owner trend                        (every send of the drifting owner)
    p_human = min(0.95, sigmoid(logit) * variant open multiplier)  (experiment sends)

A human open is *observed* (an open event with verdict human) with probability 1, except for
Apple Mail Privacy Protection users, whose real opens are partly served from Apple's prefetch
cache and never reach the pixel (``MPP_HUMAN_DETECTION``). Meetings depend on the *true* open.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, time

import numpy as np

from emailexp.analysis.hour_bands import HOUR_BAND_NAMES, hour_bands
from emailexp.analysis.subject_features import subject_features

TIMEZONE = "Asia/Tokyo"
UTC_OFFSET_S = 9 * 3600
DAY_S = 86_400
HOUR_S = 3_600
NO_TIME = -1
HISTORY_WEEKS = 13
#: 13 weeks, so that the KPI review's 8 weeks whose meetings have had the attribution window to arrive
#: (ending 15-21 days before `now`) lie inside the history for every `now`.
HISTORY_DAYS = 7 * HISTORY_WEEKS
ATTRIBUTION_WINDOW_DAYS = 14

# --------------------------------------------------------------------------- directory
SEGMENTS = (  # key, name, share of recipients
    ("enterprise", "大企業", 0.25),
    ("mid_market", "中堅企業", 0.30),
    ("smb", "中小企業", 0.35),
    ("public_sector", "官公庁・自治体", 0.10),
)
SEGMENT_KEYS = tuple(s[0] for s in SEGMENTS)
TEAMS = ("東京インサイドセールス", "大阪インサイドセールス", "パートナー営業")
OWNERS = (  # external id, name, team index
    ("owner-01", "佐藤 健太", 0),
    ("owner-02", "鈴木 美咲", 0),
    ("owner-03", "高橋 大輔", 0),
    ("owner-04", "田中 彩", 0),
    ("owner-05", "山本 翔太", 0),
    ("owner-06", "中村 由美", 1),
    ("owner-07", "小林 拓也", 1),
    ("owner-08", "加藤 優子", 1),
    ("owner-09", "吉田 誠", 1),
    ("owner-10", "山田 奈々", 2),
    ("owner-11", "松本 亮", 2),
    ("owner-12", "井上 麻衣", 2),
)
#: The owner whose open rate rises week over week while the meeting rate falls.
DRIFTING_OWNER = "owner-05"
N_RECIPIENTS = 30_000

# Mail environment per segment: shares of apple_mpp, gmail, outlook, yahoo, other clients.
CLIENTS = ("apple_mpp", "gmail", "outlook", "yahoo", "other")
CLIENT_MIX = {
    "enterprise": (0.35, 0.10, 0.50, 0.00, 0.05),
    "mid_market": (0.40, 0.22, 0.30, 0.03, 0.05),
    "smb": (0.45, 0.32, 0.13, 0.05, 0.05),
    "public_sector": (0.30, 0.10, 0.55, 0.00, 0.05),
}
#: Share of recipients behind a security gateway that fetches pixels and follows links on delivery.
SCANNER_SHARE = {"enterprise": 0.20, "mid_market": 0.05, "smb": 0.02, "public_sector": 0.15}

# --------------------------------------------------------------------------- open model
BASE_LOGIT = -1.10
SEGMENT_LOGIT = {"enterprise": -0.20, "mid_market": 0.0, "smb": 0.10, "public_sector": -0.30}
WEEKDAY_LOGIT = (-0.10, 0.0, 0.05, 0.0, 0.0, -0.50, -0.60)  # Mon..Sun; Tuesday == Friday on purpose
HOUR_BAND_LOGIT = {"night": -0.60, "early": 0.15, "morning": 0.10, "midday": 0.0,
                   "afternoon": -0.05, "evening": -0.20, "late": -0.35}
SEGMENT_HOUR_LOGIT = {  # interaction: enterprise reads mail first thing, smb at lunch
    ("enterprise", "early"): 0.35, ("enterprise", "morning"): 0.15, ("enterprise", "midday"): -0.10,
    ("smb", "early"): -0.10, ("smb", "midday"): 0.30,
}
SUBJECT_FEATURE_LOGIT = {"has_question": 0.20, "has_number": 0.10, "has_brackets": -0.05,
                         "long": -0.20}
#: The drifting owner's open logit rises by this much per week of the history (all his sends).
DRIFT_OPEN_LOGIT_PER_WEEK = 0.07
MPP_HUMAN_DETECTION = 0.75
#: P(a true human open is followed by another human open), repeated geometrically.
REPEAT_OPEN_P = 0.4

# --------------------------------------------------------------------------- outcomes
CLICK_GIVEN_HUMAN_OPEN = 0.15
MEETING_GIVEN_OPEN = 0.10
MEETING_GIVEN_NO_OPEN = 0.002
SEGMENT_MEETING_MULT = {"enterprise": 1.3, "mid_market": 1.0, "smb": 0.8, "public_sector": 0.7}
TEAM_MEETING_MULT = (1.0, 1.7, 0.9)     # 大阪: many meetings ...
TEAM_DEAL_RATE = (0.30, 0.08, 0.35)     # ... that rarely close
#: The drifting owner's P(meeting | open) multiplier, linear from the start of the history to `now`.
DRIFT_MEETING_MULT = (1.6, 0.1)
DEAL_AMOUNT_MEDIAN_YEN = 1_500_000
DEAL_AMOUNT_SIGMA = 0.5
UNATTRIBUTED_MEETINGS = 150
UNATTRIBUTED_DEALS = 30
EXPLICIT_SHARE = 0.05  # meetings the CRM links to the e-mail although the window would find it too

BUSINESS_HOURS = np.arange(9, 18)
BUSINESS_HOUR_WEIGHTS = np.array([0.12, 0.14, 0.10, 0.10, 0.12, 0.12, 0.12, 0.10, 0.08])


@dataclass(frozen=True)
class VariantSpec:
    key: str
    subject: str
    weekday: int | None = None
    send_time: time | None = None
    segment: str | None = None
    weight: float = 1.0
    is_control: bool = False
    open_mult: float = 1.0       # planted multiplier of the human open probability
    meeting_mult: float = 1.0    # planted multiplier of P(meeting | open)
    delivered_weight: float | None = None  # what the (buggy) sender really delivered


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    hypothesis: str
    status: str
    first_day: int               # days before now (local days), inclusive
    last_day: int                # days before now, inclusive; 0 = today
    n_sends: int
    variants: tuple[VariantSpec, ...]
    truth: str                   # the planted truth the analysis must find
    expected_verdict: str
    primary_metric: str = "open_rate"
    guardrails: tuple[str, ...] = ("meeting_rate",)
    baseline_rate: float = 0.22
    mde_relative: float = 0.15


SUBJECT_CONTROL = "【ご案内】新機能のお知らせ"
SUBJECT_QUESTION = "営業効率を30%上げる方法をご存じですか？"
SUBJECT_CLICKBAIT = "【緊急】至急ご確認ください"

EXPERIMENTS: tuple[ExperimentSpec, ...] = (
    ExperimentSpec(
        name="件名テスト: お知らせ vs 質問形式",
        hypothesis="質問形式の件名は開封率を上げ、商談化率も下げない。",
        status="stopped", first_day=63, last_day=43, n_sends=20_000,
        variants=(VariantSpec("A", SUBJECT_CONTROL, is_control=True),
                  VariantSpec("B", SUBJECT_QUESTION, open_mult=1.25)),
        truth="B: human open rate +25% relative; meeting rate +25% too (same P(meeting | open))",
        expected_verdict="ship B",
    ),
    ExperimentSpec(
        name="送信時刻テスト: 火曜 8時 / 12時 / 17時",
        hypothesis="始業前の8時に届くメールが最もよく読まれる。",
        status="stopped", first_day=56, last_day=22, n_sends=24_000,
        variants=(VariantSpec("A", "営業DXの最新事例をお届けします", 1, time(8, 0), is_control=True),
                  VariantSpec("B", "営業DXの最新事例をお届けします", 1, time(12, 0)),
                  VariantSpec("C", "営業DXの最新事例をお届けします", 1, time(17, 0))),
        truth="08:00 best overall and strongly for enterprise (hour-band model); 12:00 best for smb; "
              "17:00 worst; meetings follow opens, so 12:00/17:00 are no better on meetings",
        expected_verdict="08:00 (control) best: keep 08:00",
    ),
    ExperimentSpec(
        name="曜日テスト: 火曜 vs 金曜",
        hypothesis="火曜に送ると金曜より開封される。",
        status="stopped", first_day=49, last_day=15, n_sends=18_000, mde_relative=0.10,
        variants=(VariantSpec("A", "業務効率化セミナーのご案内", 1, time(10, 0), is_control=True),
                  VariantSpec("B", "業務効率化セミナーのご案内", 4, time(10, 0))),
        truth="no difference: the weekday model has Tuesday == Friday; the sample exceeds the plan",
        expected_verdict="no meaningful difference",
    ),
    ExperimentSpec(
        name="件名テスト: 緊急表現（ガードレール）",
        hypothesis="緊急性を訴える件名は開封率を上げる。",
        status="stopped", first_day=35, last_day=12, n_sends=16_000,
        variants=(VariantSpec("A", SUBJECT_CONTROL, is_control=True),
                  VariantSpec("B", SUBJECT_CLICKBAIT, open_mult=1.20, meeting_mult=0.50)),
        truth="B: opens +20% relative but meeting rate -40% relative (1.2 x 0.5 = 0.6): the guardrail "
              "fails, B must never be recommended",
        expected_verdict="do not ship B (guardrail: meeting rate)",
    ),
    ExperimentSpec(
        name="件名テスト: 大企業向け 社名差し込み（実施中）",
        hypothesis="件名に社名を入れると大企業の開封率が上がる。",
        status="running", first_day=10, last_day=0, n_sends=3_000, mde_relative=0.10,
        variants=(VariantSpec("A", "【ご提案】営業プロセス改善のご提案", segment="enterprise", is_control=True),
                  VariantSpec("B", "{{company}}様向け 営業プロセス改善のご提案", segment="enterprise",
                              open_mult=1.05)),
        truth="B: +5% relative, far from enough sends for the planned MDE of 10%",
        expected_verdict="keep testing",
    ),
    ExperimentSpec(
        name="【無効】件名テスト: 送信不具合でサンプル比率不一致",
        hypothesis="件名に数字を入れると開封率が上がる。（配信ツールの不具合でB群の一部が未送信）",
        status="stopped", first_day=70, last_day=57, n_sends=6_000,
        variants=(VariantSpec("A", "営業支援ツールのご紹介", is_control=True, delivered_weight=0.53),
                  VariantSpec("B", "3分でわかる営業支援ツール", delivered_weight=0.47)),
        truth="planned 50/50, delivered 53/47 (a buggy sender dropped part of B): sample ratio mismatch",
        expected_verdict="invalid (sample ratio mismatch)",
    ),
)


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    subjects: tuple[str, ...]
    n_sends: int
    logit: float                 # campaign effect
    weekday: int | None = None   # fixed weekday (confounds weekday with campaign) or business days
    hour: int | None = None      # fixed hour (sends spread over 40 minutes) or business hours
    by_owner: bool = False       # owner-written follow-ups


CAMPAIGNS: tuple[CampaignSpec, ...] = (
    CampaignSpec("導入事例ニュースレター", ("【導入事例】製造業A社が商談数を2倍にした方法",), 10_000, 0.35, 1, 8),
    CampaignSpec("ウェビナー案内", ("オンラインセミナーのご案内（参加無料）",), 8_000, -0.05, 3, 15),
    CampaignSpec("月末キャンペーン", ("【期間限定】今月末までの特別プランのご案内",), 8_000, -0.30, 4, 17),
    CampaignSpec("フォローアップ", (
        "先日のお打ち合わせのお礼",
        "ご検討状況はいかがでしょうか？",
        "資料送付のご連絡（営業支援ツール）",
        "導入企業の平均で商談数が1.8倍になりました",
        "お忙しいところ恐縮ですが、来週15分ほどオンラインでお時間を頂戴できないでしょうか",
    ), 16_000, 0.10, by_owner=True),
    CampaignSpec("フォローアップ（山本）", (
        "ご検討状況はいかがでしょうか？",
        "【重要】ご確認をお願いいたします",
    ), 8_000, 0.10, by_owner=True),
)


@dataclass
class DemoData:
    """Column arrays per table, ready to insert. Datetime columns hold epoch seconds (NO_TIME = null)."""

    now_s: int
    tables: dict[str, dict[str, object]] = field(default_factory=dict)
    datetime_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def n_rows(self, table: str) -> int:
        cols = self.tables[table]
        return len(next(iter(cols.values()))) if cols else 0


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hex_pool(key: bytes, kind: str, n: int) -> np.ndarray:
    """16-hex keyed hashes standing for truncated IP networks (no address is ever made up)."""
    return np.array([hmac.new(key, f"demo/{kind}/{i}".encode(), hashlib.sha256).hexdigest()[:16]
                     for i in range(n)], dtype=object)


def _scaled(n: int, scale: float, minimum: int = 2) -> int:
    return max(minimum, int(round(n * scale)))


def generate(now: datetime, *, seed: int = 7, scale: float = 1.0, hash_key: bytes = b"demo") -> DemoData:
    """Build every demo row for a history of ``HISTORY_DAYS`` ending at ``now`` (aware datetime).

    ``scale`` multiplies the number of recipients, sends and unattributed conversions (1.0 gives
    about 137,000 sends); ``hash_key`` keys the ip_hash values. Same inputs, same rows.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not 0 < scale <= 10:
        raise ValueError("scale must be in (0, 10]")
    rng = np.random.default_rng(seed)
    now_s = int(now.timestamp())
    today = (now_s + UTC_OFFSET_S) // DAY_S  # local day number of now
    data = DemoData(now_s=now_s)
    created_s = now_s - (HISTORY_DAYS + 30) * DAY_S

    # ---------------------------------------------------------------- directory
    n_seg = len(SEGMENTS)
    data.tables["segments"] = {"id": np.arange(1, n_seg + 1), "key": list(SEGMENT_KEYS),
                               "name": [s[1] for s in SEGMENTS], "created_at": np.full(n_seg, created_s)}
    data.tables["teams"] = {"id": np.arange(1, len(TEAMS) + 1), "name": list(TEAMS),
                            "created_at": np.full(len(TEAMS), created_s)}
    owner_team = np.array([o[2] for o in OWNERS])
    data.tables["owners"] = {"id": np.arange(1, len(OWNERS) + 1), "external_id": [o[0] for o in OWNERS],
                             "name": [o[1] for o in OWNERS], "team_id": owner_team + 1,
                             "created_at": np.full(len(OWNERS), created_s)}
    drift_owner = next(i for i, o in enumerate(OWNERS) if o[0] == DRIFTING_OWNER)

    n_rec = _scaled(N_RECIPIENTS, scale, 200)
    rec_seg = rng.choice(n_seg, n_rec, p=[s[2] for s in SEGMENTS])
    rec_owner = rng.integers(0, len(OWNERS), n_rec)
    rec_client = np.empty(n_rec, dtype=np.int64)
    rec_scanner = np.zeros(n_rec, dtype=bool)
    for s, key in enumerate(SEGMENT_KEYS):
        m = rec_seg == s
        rec_client[m] = rng.choice(len(CLIENTS), m.sum(), p=CLIENT_MIX[key])
        rec_scanner[m] = rng.random(m.sum()) < SCANNER_SHARE[key]
    rec_net = rng.integers(0, max(1, n_rec // 3), n_rec)  # office network (several leads per company)
    data.tables["recipients"] = {
        "id": np.arange(1, n_rec + 1), "external_id": [f"lead-{i:06d}" for i in range(1, n_rec + 1)],
        "segment_id": rec_seg + 1,
        "created_at": created_s + rng.integers(0, 30 * DAY_S, n_rec),
    }

    # ---------------------------------------------------------------- schedules
    days = np.arange(today - HISTORY_DAYS, today + 1)

    def pick_days(first_ago: int, last_ago: int, n: int, weekday: int | None) -> np.ndarray:
        pool = days[(days >= today - first_ago) & (days <= today - last_ago)]
        wd = (pool + 3) % 7
        pool = pool[wd == weekday] if weekday is not None else pool[wd < 5]
        return rng.choice(pool, n)

    def local_times(day: np.ndarray, hour: np.ndarray, spread_s: int) -> np.ndarray:
        return day * DAY_S + hour * HOUR_S + rng.integers(0, spread_s, len(day)) - UTC_OFFSET_S

    def business_hours(n: int) -> np.ndarray:
        return rng.choice(BUSINESS_HOURS, n, p=BUSINESS_HOUR_WEIGHTS / BUSINESS_HOUR_WEIGHTS.sum())

    parts: list[dict] = []
    exp_rows, var_rows = [], []
    var_id = 0
    for e_idx, spec in enumerate(EXPERIMENTS, start=1):
        n = _scaled(spec.n_sends, scale, 20)
        seg_target = {v.segment for v in spec.variants}
        pool = np.arange(n_rec)
        if seg_target != {None}:
            (target,) = seg_target
            pool = pool[rec_seg == SEGMENT_KEYS.index(target)]
        recips = rng.choice(pool, n, replace=n > len(pool))
        weights = np.array([v.delivered_weight or v.weight for v in spec.variants], dtype=float)
        # Exact allocation in random order (what a balanced assigner delivers), so a planted
        # sample-ratio mismatch is exactly the delivered weights, not weights plus noise.
        counts = np.floor(n * weights / weights.sum()).astype(np.int64)
        counts[0] += n - counts.sum()
        arm = rng.permutation(np.repeat(np.arange(len(spec.variants)), counts))
        sent = np.empty(n, dtype=np.int64)
        first_id = var_id + 1
        for a, v in enumerate(spec.variants):
            var_id += 1
            m = arm == a
            k = int(m.sum())
            if v.send_time is not None:
                d = pick_days(spec.first_day, spec.last_day, k, v.weekday)
                sent[m] = local_times(d, np.full(k, v.send_time.hour), 40 * 60) + v.send_time.minute * 60
            else:
                sent[m] = local_times(pick_days(spec.first_day, spec.last_day, k, v.weekday),
                                      business_hours(k), HOUR_S)
            var_rows.append({"id": var_id, "experiment_id": e_idx, "key": v.key, "subject": v.subject,
                             "send_weekday": v.weekday, "send_time": v.send_time,
                             "segment_id": SEGMENT_KEYS.index(v.segment) + 1 if v.segment else None,
                             "weight": v.weight, "is_control": v.is_control})
        started = now_s - spec.first_day * DAY_S - DAY_S
        started = (started + UTC_OFFSET_S) // DAY_S * DAY_S - UTC_OFFSET_S + 8 * HOUR_S  # 08:00 local
        exp_rows.append({"id": e_idx, "name": spec.name, "hypothesis": spec.hypothesis, "status": spec.status,
                         "timezone": TIMEZONE, "primary_metric": spec.primary_metric,
                         "guardrails": list(spec.guardrails), "attribution_window_days": ATTRIBUTION_WINDOW_DAYS,
                         "baseline_rate": spec.baseline_rate, "mde_relative": spec.mde_relative,
                         "alpha": 0.05, "power": 0.8, "created_at": started - 2 * DAY_S, "started_at": started,
                         "stopped_at": (now_s - spec.last_day * DAY_S + DAY_S) if spec.status == "stopped"
                         else NO_TIME})
        parts.append({
            "recipient": recips, "sent": sent, "experiment_id": np.full(n, e_idx),
            "variant_id": first_id + arm,
            "subject": np.array([v.subject for v in spec.variants], dtype=object)[arm],
            "campaign": np.full(n, None, dtype=object), "campaign_logit": np.zeros(n),
            "feature_logit": np.zeros(n),
            "open_mult": np.array([v.open_mult for v in spec.variants])[arm],
            "meeting_mult": np.array([v.meeting_mult for v in spec.variants])[arm],
        })

    for c in CAMPAIGNS:
        n = _scaled(c.n_sends, scale, 20)
        if c.name.endswith("（山本）"):
            recips = rng.choice(np.flatnonzero(rec_owner == drift_owner), n)
        else:
            recips = rng.integers(0, n_rec, n)
        if c.weekday is not None:
            sent = local_times(pick_days(HISTORY_DAYS, 1, n, c.weekday), np.full(n, c.hour), 40 * 60)
        else:
            sent = local_times(pick_days(HISTORY_DAYS, 0, n, None), business_hours(n), HOUR_S)
        subjects = np.array(c.subjects, dtype=object)
        if c.name.endswith("（山本）"):
            # the drifting owner moves to 【重要】 subjects week by week
            week = np.clip((sent - (now_s - HISTORY_DAYS * DAY_S)) / (7 * DAY_S), 0, HISTORY_WEEKS)
            subj_idx = (rng.random(n) < week / HISTORY_WEEKS).astype(int)
        else:
            subj_idx = rng.integers(0, len(subjects), n)
        feature = np.array([_feature_logit(s) for s in subjects])
        parts.append({
            "recipient": recips, "sent": sent, "experiment_id": np.full(n, None, dtype=object),
            "variant_id": np.full(n, None, dtype=object), "subject": subjects[subj_idx],
            "campaign": np.full(n, c.name.split("（")[0] if c.by_owner else c.name, dtype=object),
            "campaign_logit": np.full(n, c.logit), "feature_logit": feature[subj_idx],
            "open_mult": np.ones(n), "meeting_mult": np.ones(n),
        })

    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = cols["sent"] < now_s - 10 * 60  # nothing scheduled in the future
    cols = {k: v[keep] for k, v in cols.items()}
    order = np.argsort(cols["sent"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    n_sends = len(cols["sent"])
    sent = cols["sent"]
    rec = cols["recipient"]
    seg = rec_seg[rec]
    owner = rec_owner[rec]
    team = owner_team[owner]
    client = rec_client[rec]
    scanner = rec_scanner[rec]
    local = sent + UTC_OFFSET_S
    weekday = ((local // DAY_S) + 3) % 7
    hour = (local % DAY_S) // HOUR_S
    band = hour_bands(hour)
    week_no = np.clip((sent - (now_s - HISTORY_DAYS * DAY_S)) / (7 * DAY_S), 0, HISTORY_WEEKS)
    # all of the drifting owner's sends, experiment arms included (equally in every arm): the KPI store
    # counts every send of an owner, so a drift on part of them would be diluted by the rest
    drifting = owner == drift_owner

    # ---------------------------------------------------------------- human opens (truth)
    seg_keys = np.array(SEGMENT_KEYS, dtype=object)[seg]
    logit = (BASE_LOGIT + np.array([SEGMENT_LOGIT[k] for k in SEGMENT_KEYS])[seg]
             + np.array(WEEKDAY_LOGIT)[weekday]
             + np.array([HOUR_BAND_LOGIT[b] for b in HOUR_BAND_NAMES])[_band_index(band)]
             + np.array([SEGMENT_HOUR_LOGIT.get((s, b), 0.0) for s, b in zip(seg_keys, band)])
             + cols["campaign_logit"] + cols["feature_logit"]
             + np.where(drifting, DRIFT_OPEN_LOGIT_PER_WEEK * week_no, 0.0))
    p_open = np.minimum(0.95, _sigmoid(logit) * cols["open_mult"])
    true_open = rng.random(n_sends) < p_open
    detected = true_open & ((client != 0) | (rng.random(n_sends) < MPP_HUMAN_DETECTION))

    # ---------------------------------------------------------------- open events
    apple_net, google_net, scanner_net, misc_net = (_hex_pool(hash_key, k, n) for k, n in
                                                    (("apple", 40), ("google", 20), ("scanner", 15), ("misc", 50)))
    office_net = _hex_pool(hash_key, "office", max(1, n_rec // 3))
    ev: list[tuple] = []  # (send_idx, t, verdict, reason, ua, ip_hash)

    def add(idx, t, verdict, reason, ua, ip):
        ev.append((idx, t, np.full(len(idx), verdict, dtype=object), np.full(len(idx), reason, dtype=object)
                   if isinstance(reason, str) else reason,
                   np.full(len(idx), ua, dtype=object) if isinstance(ua, str) else ua, ip))

    idx = np.flatnonzero(client == 0)  # Apple MPP: every delivered e-mail is prefetched
    add(idx, sent[idx] + np.maximum(60, rng.lognormal(np.log(15 * 60), 1.0, len(idx))).astype(np.int64),
        "machine", "apple_mpp_prefetch", "apple_mail", apple_net[rng.integers(0, len(apple_net), len(idx))])
    idx = np.flatnonzero(scanner)  # security gateways fetch on delivery
    kind = rng.choice(3, len(idx), p=[0.5, 0.4, 0.1])
    add(idx, sent[idx] + rng.integers(1, 20, len(idx)), "machine",
        np.array(["security_scanner_ua", "too_fast_after_send", "head_request"], dtype=object)[kind],
        np.array(["scanner", "chrome", "scanner"], dtype=object)[kind],
        scanner_net[rng.integers(0, len(scanner_net), len(idx))])
    idx = np.flatnonzero((client == 1) & (rng.random(n_sends) < 0.15))  # Gmail fetching early
    add(idx, sent[idx] + rng.integers(5, 60, len(idx)), "machine", "gmail_prefetch", "gmail_proxy",
        google_net[rng.integers(0, len(google_net), len(idx))])
    idx = np.flatnonzero(rng.random(n_sends) < 0.03)
    add(idx, sent[idx] + rng.integers(60, 72 * HOUR_S, len(idx)), "unknown", "unknown_agent", "unknown",
        np.where(rng.random(len(idx)) < 0.5, None, misc_net[rng.integers(0, len(misc_net), len(idx))]))

    human_idx = np.flatnonzero(detected)
    mix = rng.random(len(human_idx))
    delay = np.where(mix < 0.55, rng.exponential(1.5 * HOUR_S, len(human_idx)),
                     np.where(mix < 0.90, rng.exponential(10 * HOUR_S, len(human_idx)),
                              rng.uniform(24 * HOUR_S, 96 * HOUR_S, len(human_idx))))
    first_human = sent[human_idx] + 60 + delay.astype(np.int64)
    reason_by_client = np.array(["mail_client", "gmail_image_proxy", "mail_client", "yahoo_proxy",
                                 "mail_client"], dtype=object)
    other_ua = np.array(["thunderbird", "chrome", "safari", "firefox"], dtype=object)
    ua_by_client = np.array(["apple_mail", "gmail_proxy", "outlook", "yahoo_proxy", "?"], dtype=object)

    def human_ua(i):
        ua = ua_by_client[client[i]]
        other = client[i] == 4
        ua[other] = other_ua[rng.integers(0, len(other_ua), other.sum())]
        return ua

    def human_ip(i):
        c = client[i]
        ip = office_net[rec_net[rec[i]]].copy()
        ip[c == 1] = google_net[rng.integers(0, len(google_net), (c == 1).sum())]
        return np.where(rng.random(len(i)) < 0.05, None, ip)

    add(human_idx, first_human, "human", reason_by_client[client[human_idx]], human_ua(human_idx),
        human_ip(human_idx))
    rep_idx, rep_t = human_idx, first_human
    while len(rep_idx):
        more = rng.random(len(rep_idx)) < REPEAT_OPEN_P
        rep_idx = rep_idx[more]
        rep_t = rep_t[more] + 120 + rng.exponential(8 * HOUR_S, more.sum()).astype(np.int64)
        add(rep_idx, rep_t, "human", reason_by_client[client[rep_idx]], human_ua(rep_idx), human_ip(rep_idx))

    o_send = np.concatenate([e[0] for e in ev])
    o_t = np.concatenate([e[1] for e in ev]).astype(np.int64)
    o_cols = [np.concatenate([e[k] for e in ev]) for k in (2, 3, 4, 5)]
    seen = o_t <= now_s  # the future has not happened yet
    order = np.lexsort((o_send[seen], o_t[seen]))
    o_send, o_t = o_send[seen][order], o_t[seen][order]
    o_verdict, o_reason, o_ua, o_ip = (c[seen][order] for c in o_cols)

    big = np.iinfo(np.int64).max
    first_open = np.full(n_sends, big)
    np.minimum.at(first_open, o_send, o_t)
    first_human_open = np.full(n_sends, big)
    hm = o_verdict == "human"
    np.minimum.at(first_human_open, o_send[hm], o_t[hm])

    # ---------------------------------------------------------------- links and clicks
    n_links = np.where(rng.random(n_sends) < 0.6, 1, 2)
    link_offset = np.concatenate([[0], np.cumsum(n_links)[:-1]])  # 0-based id of each send's first link
    l_send = np.repeat(np.arange(n_sends), n_links)
    l_pos = np.arange(len(l_send)) - link_offset[l_send]
    slug = np.array(["lp/sales-dx", "case-studies", "webinar/2024", "pricing", "contact"], dtype=object)
    c_by_send = np.array([_campaign_slug(c, e) for c, e in zip(cols["campaign"], cols["experiment_id"])],
                         dtype=object)
    l_url = np.array([f"https://example.co.jp/{slug[(p + len(c)) % len(slug)]}?utm_source=email&utm_campaign={c}"
                      for p, c in zip(l_pos, c_by_send[l_send])], dtype=object)

    cl: list[tuple] = []
    h = human_idx[first_human <= now_s]
    h = h[rng.random(len(h)) < CLICK_GIVEN_HUMAN_OPEN]
    pos = (rng.random(len(h)) * n_links[h]).astype(np.int64)
    cl.append((h, first_human_open[h] + 10 + rng.exponential(180, len(h)).astype(np.int64), pos,
               np.full(len(h), "human", dtype=object), np.full(len(h), "mail_client", dtype=object),
               np.array(["chrome", "safari", "outlook", "firefox"], dtype=object)[rng.integers(0, 4, len(h))],
               office_net[rec_net[rec[h]]]))
    s_idx = np.repeat(np.flatnonzero(scanner), n_links[scanner])
    s_pos = np.arange(len(s_idx)) - np.repeat(np.cumsum(n_links[scanner]) - n_links[scanner], n_links[scanner])
    kind = rng.random(len(s_idx)) < 0.6
    cl.append((s_idx, sent[s_idx] + rng.integers(2, 30, len(s_idx)), s_pos,
               np.full(len(s_idx), "machine", dtype=object),
               np.where(kind, "security_scanner_ua", "too_fast_after_send").astype(object),
               np.where(kind, "scanner", "chrome").astype(object),
               scanner_net[rng.integers(0, len(scanner_net), len(s_idx))]))
    c_send = np.concatenate([c[0] for c in cl])
    c_t = np.concatenate([c[1] for c in cl]).astype(np.int64)
    c_pos = np.concatenate([c[2] for c in cl])
    c_rest = [np.concatenate([c[k] for c in cl]) for k in (3, 4, 5, 6)]
    seen = c_t <= now_s
    order = np.lexsort((c_send[seen], c_t[seen]))
    c_send, c_t, c_pos = c_send[seen][order], c_t[seen][order], c_pos[seen][order]
    c_verdict, c_reason, c_ua, c_ip = (c[seen][order] for c in c_rest)
    first_click = np.full(n_sends, big)
    np.minimum.at(first_click, c_send, c_t)

    # ---------------------------------------------------------------- meetings and deals
    drift_meet = np.interp(week_no, [0, HISTORY_WEEKS], DRIFT_MEETING_MULT)
    p_meet = np.where(true_open, MEETING_GIVEN_OPEN, MEETING_GIVEN_NO_OPEN)
    p_meet = p_meet * np.array([SEGMENT_MEETING_MULT[k] for k in SEGMENT_KEYS])[seg] \
        * np.array(TEAM_MEETING_MULT)[team] * cols["meeting_mult"] * np.where(drifting, drift_meet, 1.0)
    m_idx = np.flatnonzero(rng.random(n_sends) < p_meet)
    m_t = sent[m_idx] + np.minimum(13 * DAY_S, rng.lognormal(np.log(4 * DAY_S), 0.6, len(m_idx))).astype(np.int64)
    m_ok = m_t <= now_s
    m_idx, m_t = m_idx[m_ok], m_t[m_ok]
    # Window attribution picks the recipient's latest send before the meeting; where a later
    # e-mail to the same lead came in between, the CRM names the e-mail (explicit).
    by_rec = np.lexsort((sent, rec))
    next_sent = np.full(n_sends, big)
    same = rec[by_rec][1:] == rec[by_rec][:-1]
    next_sent[by_rec[:-1][same]] = sent[by_rec][1:][same]
    window_ok = (m_t < next_sent[m_idx]) & (m_t - sent[m_idx] <= ATTRIBUTION_WINDOW_DAYS * DAY_S)
    m_attr = np.where(window_ok & (rng.random(len(m_idx)) >= EXPLICIT_SHARE), "window", "explicit").astype(object)

    d_mask = rng.random(len(m_idx)) < np.array(TEAM_DEAL_RATE)[team[m_idx]]
    d_idx = m_idx[d_mask]
    d_t = m_t[d_mask] + rng.integers(14 * DAY_S, 45 * DAY_S, len(d_idx))
    d_ok = d_t <= now_s
    d_idx, d_t = d_idx[d_ok], d_t[d_ok]
    d_amount = np.round(rng.lognormal(np.log(DEAL_AMOUNT_MEDIAN_YEN), DEAL_AMOUNT_SIGMA, len(d_idx)), -3)

    n_um, n_ud = _scaled(UNATTRIBUTED_MEETINGS, scale, 1), _scaled(UNATTRIBUTED_DEALS, scale, 1)
    um_rec = rng.integers(0, n_rec, n_um)
    ud_rec = rng.integers(0, n_rec, n_ud)
    ud_amount = np.round(rng.lognormal(np.log(DEAL_AMOUNT_MEDIAN_YEN), DEAL_AMOUNT_SIGMA, n_ud), -3)
    span = HISTORY_DAYS * DAY_S
    conv_kind = np.concatenate([np.full(len(m_idx) + n_um, "meeting", dtype=object),
                                np.full(len(d_idx) + n_ud, "deal", dtype=object)])
    conv_send = np.concatenate([m_idx, np.full(n_um, -1), d_idx, np.full(n_ud, -1)])
    conv_rec = np.concatenate([rec[m_idx], um_rec, rec[d_idx], ud_rec])
    conv_attr = np.concatenate([m_attr, np.full(n_um, "unattributed", dtype=object),
                                np.full(len(d_idx), "explicit", dtype=object),
                                np.full(n_ud, "unattributed", dtype=object)])
    conv_t = np.concatenate([m_t, now_s - rng.integers(0, span, n_um), d_t, now_s - rng.integers(0, span, n_ud)])
    conv_amount = np.concatenate([np.full(len(m_idx) + n_um, np.nan), d_amount, ud_amount])
    order = np.lexsort((conv_kind != "meeting", conv_t))
    conv_kind, conv_send, conv_rec, conv_attr, conv_t, conv_amount = (
        a[order] for a in (conv_kind, conv_send, conv_rec, conv_attr, conv_t, conv_amount))
    n_conv = len(conv_kind)
    conv_ids = [f"demo-{'m' if k == 'meeting' else 'd'}-{i:07d}" for i, k in enumerate(conv_kind, start=1)]

    # ---------------------------------------------------------------- tables
    send_ids = [f"demo-s-{i:07d}" for i in range(1, n_sends + 1)]
    data.tables["experiments"] = {k: [r[k] for r in exp_rows] for k in exp_rows[0]}
    data.tables["variants"] = {k: [r[k] for r in var_rows] for k in var_rows[0]}
    data.tables["sends"] = {
        "id": np.arange(1, n_sends + 1), "send_id": send_ids, "recipient_id": rec + 1,
        "experiment_id": cols["experiment_id"], "variant_id": cols["variant_id"], "subject": cols["subject"],
        "segment_id": seg + 1, "owner_id": owner + 1, "campaign": cols["campaign"], "sent_at": sent,
        "sent_hour": sent // 3600, "local_weekday": weekday, "local_hour": hour,
        "first_open_at": np.where(first_open == big, NO_TIME, first_open),
        "first_human_open_at": np.where(first_human_open == big, NO_TIME, first_human_open),
        "first_click_at": np.where(first_click == big, NO_TIME, first_click),
        "payload_hash": [hashlib.sha256(s.encode()).hexdigest() for s in send_ids],
        "created_at": sent - 5 * 60,
    }
    data.tables["send_links"] = {"id": np.arange(1, len(l_send) + 1), "send_id": l_send + 1,
                                 "position": l_pos, "url": l_url}
    data.tables["open_events"] = {"id": np.arange(1, len(o_send) + 1), "send_id": o_send + 1, "opened_at": o_t,
                                  "verdict": o_verdict, "reason": o_reason, "ua_family": o_ua, "ip_hash": o_ip}
    data.tables["click_events"] = {"id": np.arange(1, len(c_send) + 1), "send_id": c_send + 1,
                                   "link_id": link_offset[c_send] + c_pos + 1, "clicked_at": c_t,
                                   "verdict": c_verdict, "reason": c_reason, "ua_family": c_ua, "ip_hash": c_ip}
    data.tables["conversions"] = {
        "id": np.arange(1, n_conv + 1), "conversion_id": conv_ids, "kind": conv_kind,
        "recipient_id": conv_rec + 1, "send_id": np.where(conv_send >= 0, conv_send + 1, -1),
        "attribution": conv_attr, "owner_id": np.where(conv_send >= 0, owner[np.maximum(conv_send, 0)],
                                                       rec_owner[conv_rec]) + 1,
        "amount": conv_amount, "occurred_at": conv_t,
        "payload_hash": [hashlib.sha256(c.encode()).hexdigest() for c in conv_ids],
        "created_at": conv_t + HOUR_S,
    }
    data.datetime_columns = {
        "segments": ("created_at",), "teams": ("created_at",), "owners": ("created_at",),
        "recipients": ("created_at",), "experiments": ("created_at", "started_at", "stopped_at"),
        "sends": ("sent_at", "first_open_at", "first_human_open_at", "first_click_at", "created_at"),
        "open_events": ("opened_at",), "click_events": ("clicked_at",),
        "conversions": ("occurred_at", "created_at"),
    }
    return data


def _band_index(band: np.ndarray) -> np.ndarray:
    lookup = {b: i for i, b in enumerate(HOUR_BAND_NAMES)}
    return np.array([lookup[b] for b in band])


def _feature_logit(subject: str) -> float:
    f = subject_features(subject)
    return (SUBJECT_FEATURE_LOGIT["has_question"] * f.has_question
            + SUBJECT_FEATURE_LOGIT["has_number"] * f.has_number
            + SUBJECT_FEATURE_LOGIT["has_brackets"] * f.has_brackets
            + SUBJECT_FEATURE_LOGIT["long"] * (f.length_band == "long"))


def _campaign_slug(campaign, experiment_id) -> str:
    if experiment_id is not None:
        return f"exp-{experiment_id}"
    return {"導入事例ニュースレター": "case-newsletter", "ウェビナー案内": "webinar",
            "月末キャンペーン": "month-end", "フォローアップ": "follow-up"}.get(campaign, "other")
