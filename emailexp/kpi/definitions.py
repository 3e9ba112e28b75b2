"""KPI definitions as data: the built-ins (also seeded by migration 0002, kept equal by a test) and custom ones.

Counting rules say which date a number lands on:
- send-cohort KPIs (emails_sent, unique_human_open_rate, click_rate, meeting_rate) count in the period of
  the send's `sent_at` (local date in the workspace timezone): a late open or meeting changes the send's
  period, not the period it arrived in;
- event KPIs (meetings, deals, win_rate, deal_amount) count in the period of the conversion's
  `occurred_at`: 商談化件数 counts in the month the meeting happened.
Only conversions attributed to a send (explicitly or within the attribution window) are inside-sales
e-mail results; owner and team come from the attributed send's owner.
"""
from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.errors import ConflictError, NotFoundError, ValidationError
from emailexp.models.kpi import KpiDefinition, KpiFormula, KpiSource

_B = dict(is_builtin=True)

BUILTIN_KPIS: list[dict] = [
    dict(key="emails_sent", name_ja="アクション数（メール送信数）", name_en="E-mails sent",
         description_ja="送信したメールの件数。", description_en="Number of e-mails sent.",
         counting_rule_ja="送信記録1件（send_id ごと）を1件と数える。送信日時（sent_at、ワークスペースのタイムゾーン）の期間に計上。",
         counting_rule_en="One per recorded send (send_id), in the period of sent_at (workspace timezone).",
         formula="count", numerator_key=None, denominator_key=None, unit="件", higher_is_better=True,
         source="tracked", **_B),
    dict(key="unique_human_open_rate", name_ja="メール開封率", name_en="Unique human open rate",
         description_ja="人による開封があった送信の割合。", description_en="Share of sends opened by a human.",
         counting_rule_ja="分子: 人による初回開封（first_human_open_at）がある送信数。分母: 送信数。機械による開封（プリフェッチ等）は数えない。送信日の期間に計上（後から届いた開封も送信日の期間を更新）。",
         counting_rule_en="Sends with a first human open / sends; machine opens excluded; in the period of the send.",
         formula="ratio", numerator_key=None, denominator_key="emails_sent", unit="%", higher_is_better=True,
         source="tracked", **_B),
    dict(key="click_rate", name_ja="クリック率", name_en="Click rate",
         description_ja="人によるリンククリックがあった送信の割合。", description_en="Share of sends clicked by a human.",
         counting_rule_ja="分子: 人によるクリック（click_events の verdict=human）が1回以上ある送信数（送信ごとに1件）。分母: 送信数。セキュリティスキャナー等の機械によるクリック・判定不明のクリックは数えない。送信日の期間に計上（後から届いたクリックも送信日の期間を更新）。",
         counting_rule_en="Sends with >= 1 human click (click_events verdict 'human', one per send) / sends; "
                          "machine clicks (security scanners) and unknown clicks excluded; in the period of the send.",
         formula="ratio", numerator_key=None, denominator_key="emails_sent", unit="%", higher_is_better=True,
         source="tracked", **_B),
    dict(key="meetings", name_ja="商談化件数", name_en="Meetings",
         description_ja="メールに帰属した商談の件数。", description_en="Meetings attributed to an e-mail.",
         counting_rule_ja="送信に帰属した商談（kind=meeting、明示またはアトリビューション期間内）1件を1件と数える。商談の発生日時（occurred_at）の期間に計上。担当者は帰属先送信の担当者。",
         counting_rule_en="One per meeting attributed to a send, in the period of occurred_at; owner of the send.",
         formula="count", numerator_key=None, denominator_key=None, unit="件", higher_is_better=True,
         source="tracked", **_B),
    dict(key="meeting_rate", name_ja="商談化率", name_en="Meeting rate",
         description_ja="商談につながった送信の割合。", description_en="Share of sends that led to a meeting.",
         counting_rule_ja="分子: 帰属した商談が1件以上ある送信数。分母: 送信数。送信日の期間に計上（コホート）。直近の期間は商談の到着待ちで低く出る。",
         counting_rule_en="Sends with >= 1 attributed meeting / sends, in the period of the send (cohort); "
                          "recent periods are immature.",
         formula="ratio", numerator_key=None, denominator_key="emails_sent", unit="%", higher_is_better=True,
         source="tracked", **_B),
    dict(key="deals", name_ja="成約数", name_en="Deals",
         description_ja="メールに帰属した成約の件数。", description_en="Deals attributed to an e-mail.",
         counting_rule_ja="送信に帰属した成約（kind=deal）1件を1件と数える。成約日時（occurred_at）の期間に計上。",
         counting_rule_en="One per deal attributed to a send, in the period of occurred_at.",
         formula="count", numerator_key=None, denominator_key=None, unit="件", higher_is_better=True,
         source="tracked", **_B),
    dict(key="win_rate", name_ja="成約率", name_en="Win rate",
         description_ja="商談に対する成約の割合。", description_en="Deals per meeting.",
         counting_rule_ja="分子: 成約数。分母: 商談化件数。どちらも発生日時の期間に計上。",
         counting_rule_en="Deals / meetings, both in the period of occurred_at.",
         formula="ratio", numerator_key="deals", denominator_key="meetings", unit="%", higher_is_better=True,
         source="tracked", **_B),
    dict(key="deal_amount", name_ja="受注金額", name_en="Deal amount",
         description_ja="メールに帰属した成約の金額合計。", description_en="Total amount of attributed deals.",
         counting_rule_ja="送信に帰属した成約の金額（amount、未入力は0円）の合計。成約日時の期間に計上。",
         counting_rule_en="Sum of amounts of attributed deals (missing = 0), in the period of occurred_at.",
         formula="sum", numerator_key=None, denominator_key=None, unit="円", higher_is_better=True,
         source="tracked", **_B),
    dict(key="calls_made", name_ja="架電数", name_en="Calls made",
         description_ja="発信した電話の件数（CTI・電話システムから取り込み）。", description_en="Outbound calls dialled (from the phone system).",
         counting_rule_ja="発信1回を1件と数える（つながらなかった発信も含む）。",
         counting_rule_en="One per outbound dial, whether or not it connected.",
         formula="count", numerator_key=None, denominator_key=None, unit="件", higher_is_better=True,
         source="external", **_B),
    dict(key="connected_calls", name_ja="通話回数", name_en="Connected calls",
         description_ja="顧客と通話がつながった電話の件数。", description_en="Calls in which the customer was reached.",
         counting_rule_ja="顧客と通話がつながった場合に1件（発信しただけでは数えない。留守番電話・受付止まりは含まない）。",
         counting_rule_en="One when the customer was reached (not when dialled; voicemail and gatekeeper excluded).",
         formula="count", numerator_key=None, denominator_key=None, unit="件", higher_is_better=True,
         source="external", **_B),
    dict(key="inbound_calls", name_ja="受電数", name_en="Inbound calls",
         description_ja="顧客から受けた電話の件数。", description_en="Calls received from customers.",
         counting_rule_ja="顧客からの着信に応答した場合に1件。",
         counting_rule_en="One per answered inbound call from a customer.",
         formula="count", numerator_key=None, denominator_key=None, unit="件", higher_is_better=True,
         source="external", **_B),
    dict(key="org_meetings", name_ja="組織全体の商談数", name_en="Organisation meetings",
         description_ja="営業組織全体（フィールドセールス等を含む）で創出された商談の件数（SFAから取り込み）。",
         description_en="All meetings created by the sales organisation (from the SFA).",
         counting_rule_ja="SFA に登録された商談1件を1件と数える（作成経路を問わない）。商談日の期間に計上。",
         counting_rule_en="One per meeting registered in the SFA, whatever created it, in the period of the meeting.",
         formula="count", numerator_key=None, denominator_key=None, unit="件", higher_is_better=True,
         source="external", **_B),
    dict(key="meeting_contribution_share", name_ja="商談化への貢献率", name_en="Share of meetings from inside sales",
         description_ja="組織全体の商談のうち、インサイドセールス（メール）が創出した割合。",
         description_en="Inside-sales (e-mail) meetings as a share of all the organisation's meetings.",
         counting_rule_ja="分子: 商談化件数（meetings）。分母: 組織全体の商談数（org_meetings）。同じスコープ・期間の値で計算し、分母が取り込まれている期間のみ。",
         counting_rule_en="meetings / org_meetings at the same scope and period, where org_meetings was fed.",
         formula="ratio", numerator_key="meetings", denominator_key="org_meetings", unit="%", higher_is_better=True,
         source="derived", **_B),
]

TRACKED_KEYS = tuple(d["key"] for d in BUILTIN_KPIS if d["source"] == "tracked")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_UNITS = ("件", "%", "円", "分", "時間", "人", "社")


def ensure_builtin_kpis(session: Session) -> int:
    """Insert the built-in definitions that are missing (by key); returns how many were added."""
    existing = set(session.scalars(sa.select(KpiDefinition.key)))
    added = 0
    for spec in BUILTIN_KPIS:
        if spec["key"] not in existing:
            session.add(KpiDefinition(**spec))
            added += 1
    session.flush()
    return added


def list_definitions(session: Session) -> list[KpiDefinition]:
    return list(session.scalars(sa.select(KpiDefinition).order_by(KpiDefinition.id)))


def definitions_by_key(session: Session) -> dict[str, KpiDefinition]:
    return {d.key: d for d in list_definitions(session)}


def get_definition(session: Session, key: str, *, field: str = "kpi", index: int | None = None) -> KpiDefinition:
    kpi = session.scalar(sa.select(KpiDefinition).where(KpiDefinition.key == key))
    if kpi is None:
        raise NotFoundError(f"no KPI with key {key!r}; list them with GET /api/v1/kpis/definitions",
                            field=field, index=index)
    return kpi


def definition_to_dict(d: KpiDefinition) -> dict:
    return {"key": d.key, "name_ja": d.name_ja, "name_en": d.name_en, "description_ja": d.description_ja,
            "description_en": d.description_en, "counting_rule_ja": d.counting_rule_ja,
            "counting_rule_en": d.counting_rule_en, "formula": d.formula, "numerator_key": d.numerator_key,
            "denominator_key": d.denominator_key, "unit": d.unit, "higher_is_better": d.higher_is_better,
            "source": d.source, "is_builtin": d.is_builtin}


def _text(body: dict, name: str, *, required: bool, max_len: int, default: str = "") -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{name} is required", field=name)
        return default
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string", field=name)
    if len(value) > max_len:
        raise ValidationError(f"{name} must be at most {max_len} characters", field=name)
    return value.strip()


def create_definition(session: Session, body: dict) -> KpiDefinition:
    """A custom KPI. `source` is `external` (values fed through import; count, sum or ratio) or
    `derived` (formula ratio of two existing count/sum KPIs, computed on refresh)."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", field="body")
    key = body.get("key")
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValidationError("key must be 1-64 characters of a-z, 0-9 and _, starting with a letter", field="key")
    if session.scalar(sa.select(KpiDefinition.id).where(KpiDefinition.key == key)) is not None:
        raise ConflictError(f"a KPI with key {key!r} already exists", field="key")
    formula = body.get("formula")
    if formula not in {f.value for f in KpiFormula}:
        raise ValidationError("formula must be one of count, sum, ratio", field="formula")
    source = body.get("source", KpiSource.external.value)
    if source not in (KpiSource.external.value, KpiSource.derived.value):
        raise ValidationError("source must be 'external' (values imported) or 'derived' (ratio of two KPIs); "
                              "tracked KPIs are built in", field="source")
    unit = body.get("unit", "%" if formula == "ratio" else "件")
    if unit not in _UNITS:
        raise ValidationError(f"unit must be one of {', '.join(_UNITS)}", field="unit")
    higher = body.get("higher_is_better", True)
    if not isinstance(higher, bool):
        raise ValidationError("higher_is_better must be true or false", field="higher_is_better")
    num_key = den_key = None
    if source == KpiSource.derived.value:
        if formula != "ratio":
            raise ValidationError("a derived KPI must have formula 'ratio'", field="formula")
        by_key = definitions_by_key(session)
        for name in ("numerator_key", "denominator_key"):
            ref = body.get(name)
            if not isinstance(ref, str) or ref not in by_key:
                raise ValidationError(f"{name} must be the key of an existing KPI", field=name)
            if by_key[ref].formula == "ratio":
                raise ValidationError(f"{name} must name a count or sum KPI, not the ratio {ref!r}", field=name)
        num_key, den_key = body["numerator_key"], body["denominator_key"]
    kpi = KpiDefinition(
        key=key,
        name_ja=_text(body, "name_ja", required=True, max_len=200),
        name_en=_text(body, "name_en", required=False, max_len=200, default=key),
        description_ja=_text(body, "description_ja", required=False, max_len=4000),
        description_en=_text(body, "description_en", required=False, max_len=4000),
        counting_rule_ja=_text(body, "counting_rule_ja", required=True, max_len=4000),
        counting_rule_en=_text(body, "counting_rule_en", required=False, max_len=4000),
        formula=formula, numerator_key=num_key, denominator_key=den_key, unit=unit,
        higher_is_better=higher, source=source, is_builtin=False,
    )
    session.add(kpi)
    session.flush()
    return kpi
