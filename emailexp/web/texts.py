"""Translated, locale-formatted text for the web pages: numbers, money, verdicts, reasons, service messages.

The analysis engine explains its decision with machine-readable codes (``Verdict.kind``,
``Verdict.reasons`` such as ``significant_better:B``, ``Verdict.details``); its English
``message`` is for the API. This module turns the codes into one sentence in the user's
language, so the Japanese page never shows an English sentence. Numbers go through Babel
(grouping and currency per locale: ``¥1,200,000`` / ``￥1,200,000``).
"""
from __future__ import annotations

import math
import re

from flask_babel import format_currency, format_decimal, get_locale
from flask_babel import gettext as _
from markupsafe import escape

CURRENCY = "JPY"


# --- numbers ------------------------------------------------------------------------------------

def num(value, digits: int = 0) -> str:
    """A count or amount with the locale's grouping ("12,345")."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    fmt = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(value, format=fmt)


def pct(value, digits: int = 1) -> str:
    """A proportion (0.275) as a percentage ("27.5%")."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    return format_decimal(float(value) * 100, format="#,##0." + "0" * digits) + "%" if digits else \
        format_decimal(float(value) * 100, format="#,##0") + "%"


def signed_pct(value, digits: int = 1) -> str:
    """A relative change (0.255) as "+25.5%"."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    text = pct(abs(float(value)), digits)
    return ("−" if value < 0 else "+") + text


def pp(value, digits: int = 1) -> str:
    """Percentage points from a proportion difference (0.0576 → "+5.8 pt")."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    v = float(value) * 100
    return ("−" if v < 0 else "+") + format_decimal(abs(v), format="#,##0." + "0" * digits) + " pt"


def pvalue(value) -> str:
    """A p-value: 3 decimals, or "< 0.001"."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    if value < 0.001:
        return "< 0.001"
    return f"{value:.3f}"


def money(value) -> str:
    """An amount in yen with the locale's currency format."""
    if value is None:
        return "—"
    return format_currency(float(value), CURRENCY)


def interval(low, high, fmt=pct) -> str:
    if low is None or high is None:
        return "—"
    return f"{fmt(low)} … {fmt(high)}"


# --- labels -------------------------------------------------------------------------------------

def metric_name(metric: str) -> str:
    return {"open_rate": _("open rate"), "meeting_rate": _("meeting rate"),
            "deal_rate": _("deal rate")}.get(metric, metric)


def machine_reason_label(reason: str) -> str:
    """What an open-classification reason means, for the data-quality banner."""
    return {
        "apple_mpp_prefetch": _("Apple Mail Privacy Protection prefetch"),
        "gmail_prefetch": _("Gmail image proxy prefetch"),
        "security_scanner_ua": _("Security scanner (link/image checker)"),
        "head_request": _("HEAD request (no one looked at the mail)"),
        "too_fast_after_send": _("Opened too fast after sending (automated)"),
        "unknown_agent": _("Unknown user agent"),
    }.get(reason, reason)


def hour_band_label(band: str) -> str:
    return {"night": _("Night (0–6)"), "early": _("Early (6–9)"), "morning": _("Morning (9–12)"),
            "midday": _("Midday (12–14)"), "afternoon": _("Afternoon (14–17)"),
            "evening": _("Evening (17–20)"), "late": _("Late (20–24)")}.get(band, band)


def feature_label(factor: str, level: str) -> str:
    """Subject-feature marginal effects, in a few words (they label a chart's rows)."""
    if factor == "length_band":
        return {"short": _("Short subject"), "medium": _("Medium subject"),
                "long": _("Long subject")}.get(level, level)
    return {
        "has_question": _("Question mark ？"),
        "has_number": _("Numbers"),
        "has_brackets": _("Brackets 【】「」"),
        "has_personalization": _("Personalization"),
        "has_emoji": _("Emoji"),
    }.get(factor, f"{factor} = {level}")


def factor_label(factor: str) -> str:
    return {"weekday": _("Weekday"), "hour_band": _("Time of day"), "segment": _("Segment"),
            "subject_features": _("Subject features"), "subject": _("Subject (beyond its features)"),
            "subject_line": _("Subject line (features and wording)"),
            "segment:hour_band": _("Segment × time of day"), "weekday:hour_band": _("Weekday × time of day"),
            "segment:weekday": _("Segment × weekday"),
            "length_band": _("Subject length")}.get(factor, factor)


# --- the verdict in one sentence ----------------------------------------------------------------

def _split(reason: str) -> tuple[str, str | None]:
    code, _sep, key = reason.partition(":")
    return code, key or None


def _keys(reasons, code: str) -> list[str]:
    return [k for c, k in map(_split, reasons) if c == code and k]


def _join(keys) -> str:
    return _(", ").join(keys)


def _comparison(analysis, key: str):
    if analysis is None:
        return None
    return next((c for c in analysis.comparisons if c.variant_key == key), None)


def verdict_headline(kind: str, winner_key: str | None, control_key: str | None = None) -> str:
    """A short label (badge) for the verdict kind."""
    if kind == "ship" and winner_key and winner_key == control_key:
        return _("Keep the control")
    return {"ship": _("Ship %(key)s", key=winner_key or "?"), "keep_testing": _("Keep testing"),
            "no_difference": _("No difference"), "invalid_srm": _("Invalid: sample ratio mismatch"),
            "insufficient_data": _("Not enough data")}.get(kind, kind)


def verdict_sentence(verdict, analysis=None, *, stopped: bool = False) -> str:
    """One translated sentence from ``verdict.kind``, ``verdict.reasons`` and ``verdict.details``.

    ``verdict`` is an ``emailexp.analysis.verdict.Verdict`` (or its dict); ``analysis`` (the
    ``ExperimentAnalysis``) adds the rates of the winner and the control when given.
    """
    if isinstance(verdict, dict):
        kind, winner, reasons, details = (verdict.get("kind"), verdict.get("winner_key"),
                                          tuple(verdict.get("reasons") or ()), verdict.get("details") or {})
        extra, days = verdict.get("additional_sends_needed") or {}, verdict.get("days_remaining")
    else:
        kind, winner, reasons, details = verdict.kind, verdict.winner_key, verdict.reasons, verdict.details
        extra, days = verdict.additional_sends_needed, verdict.days_remaining
    metric = metric_name(details.get("metric", "open_rate"))
    control = analysis.control_key if analysis is not None else None
    codes = [_split(r)[0] for r in reasons]
    guard_meet = _keys(reasons, "guardrail_meetings_worse")
    guard_deal = _keys(reasons, "guardrail_deals_worse")
    guard_note = ""
    if guard_meet or guard_deal:
        parts = []
        if guard_meet:
            parts.append(_("%(keys)s gets significantly fewer meetings per send than the control",
                           keys=_join(guard_meet)))
        if guard_deal:
            parts.append(_("%(keys)s gets significantly fewer deals per send than the control",
                           keys=_join(guard_deal)))
        guard_note = " " + _("Guardrail: %(parts)s, so it is not recommended.", parts=_("; ").join(parts))

    if kind == "invalid_srm":
        return _("The sends per variant do not match the planned split (sample ratio mismatch, p = %(p)s): "
                 "fix the assignment or the sending before trusting any result.",
                 p=pvalue(details.get("srm_p_value")))
    if kind == "insufficient_data":
        empty = _keys(reasons, "no_sends")
        if "no_sends" in codes and not empty:
            return _("No sends recorded for this experiment yet.")
        if empty:
            return _("No sends yet for %(keys)s.", keys=_join(empty))
        if "no_events" in codes:
            return _("No variant has a %(metric)s event yet; collect more data.", metric=metric)
        return _("The control's %(metric)s is too close to 0 or 100%% to plan a sample size; "
                 "collect more data.", metric=metric) + guard_note
    if kind == "ship":
        if "control_kept" in codes:
            return _("Keep the control %(control)s: %(keys)s wins on %(metric)s but loses on a downstream "
                     "outcome.", control=winner, keys=_join(guard_meet + guard_deal) or "?", metric=metric) \
                + guard_note
        if "control_best" in codes:
            return _("Keep the control %(control)s: every variant is significantly worse on %(metric)s.",
                     control=winner, metric=metric)
        comp = _comparison(analysis, winner)
        how = (_("the always-valid sequential test has crossed its boundary") if "sequential_boundary_crossed" in codes
               else _("the planned sample size is reached"))
        if comp is not None and comp.variant_rate is not None:
            return _("Ship %(key)s: its %(metric)s is %(rate)s against %(control_rate)s for the control "
                     "(%(lift)s relative, adjusted p %(p)s), and %(how)s.",
                     key=winner, metric=metric, rate=pct(comp.variant_rate), control_rate=pct(comp.control_rate),
                     lift=signed_pct(details.get("winner_lift")), p=pvalue(details.get("winner_p_value_adjusted")),
                     how=how)
        return _("Ship %(key)s: its %(metric)s is %(lift)s higher than the control's (adjusted p %(p)s), and %(how)s.",
                 key=winner, metric=metric, lift=signed_pct(details.get("winner_lift")),
                 p=pvalue(details.get("winner_p_value_adjusted")), how=how)
    more = ""
    if extra and any(v > 0 for v in extra.values()):
        more = " " + _("About %(n)s more sends per variant are needed", n=num(max(extra.values())))
        if days is not None:
            more += _(" (about %(days)s days at the current volume).", days=num(max(1, math.ceil(days))))
        else:
            more += _(".")
    if kind == "keep_testing" and stopped:
        # "keep testing" is advice for a running experiment; a stopped one simply ended inconclusive.
        needed = ""
        if extra and any(v > 0 for v in extra.values()):
            needed = " " + _("About %(n)s more sends per variant would have been needed.",
                             n=num(max(extra.values())))
        return _("Inconclusive: the experiment was stopped before a reliable difference in %(metric)s showed.",
                 metric=metric) + guard_note + needed
    if kind == "keep_testing":
        seq = _keys(reasons, "sequential_not_crossed")
        if seq:
            return _("%(keys)s looks better on %(metric)s, but the always-valid sequential test has not crossed its "
                     "boundary yet: keep testing.", keys=_join(seq), metric=metric) + guard_note + more
        looks_better = [c.variant_key for c in (analysis.comparisons if analysis else ())
                        if c.significant and c.diff is not None and c.diff > 0
                        and c.variant_key not in guard_meet + guard_deal]
        if looks_better:
            return _("%(keys)s looks better on %(metric)s, but the planned sample size is not reached yet: "
                     "keep testing.", keys=_join(looks_better), metric=metric) + guard_note + more
        return _("No variant is significantly better on %(metric)s yet and the planned sample size is not "
                 "reached: keep testing.", metric=metric) + guard_note + more
    if kind == "no_difference":
        worse = _keys(reasons, "significant_worse")
        worse_note = (" " + _("%(keys)s is significantly worse than the control.", keys=_join(worse))) if worse else ""
        if "equivalent_within_mde" in codes:
            return _("No variant beats the control %(control)s on %(metric)s at the planned sample size; the "
                     "remaining differences are within ±%(mde)s.", control=control or "",
                     metric=metric, mde=pp(details.get("mde_absolute")).lstrip("+")) + worse_note + guard_note
        return _("No variant beats the control %(control)s on %(metric)s at the planned sample size.",
                 control=control or "", metric=metric) + worse_note + guard_note
    return str(escape(kind))


# --- the experiment service's validation messages, in Japanese -----------------------------------

# (regex over the English message, Japanese template using the regex's named groups)
_SERVICE_MESSAGES_JA: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), t) for p, t in (
    (r"^must be a string, not (?P<t>\w+)$", "文字列で入力してください。"),
    (r"^must not contain the NUL character", "NUL 文字は使えません。"),
    (r"^contains an unpaired surrogate", "不正な文字が含まれています。正しい Unicode テキストを入力してください。"),
    (r"^must not be empty or blank$", "空欄にはできません。"),
    (r"^is (?P<n>\d+) characters long; give (?P<lo>\d+) to (?P<hi>\d+)$",
     "{n} 文字です。{lo}〜{hi} 文字で入力してください。"),
    (r"^must be an integer from (?P<lo>-?\d+) to (?P<hi>-?\d+)", "{lo}〜{hi} の整数で入力してください。"),
    (r"^is (?P<v>-?\d+); give an integer from (?P<lo>-?\d+) to (?P<hi>-?\d+)$",
     "{v} は範囲外です。{lo}〜{hi} の整数で入力してください。"),
    (r"^must be a number", "数値で入力してください。"),
    (r"^is too large", "大きすぎます。許容範囲の数値を入力してください。"),
    (r"^is (?P<v>\S+); give a number in (?P<iv>\S+ \S+)$", "{v} は範囲外です。{iv} の範囲で入力してください。"),
    (r"^must be true or false", "はい／いいえで指定してください。"),
    (r"^'(?P<tz>.*)' is not an IANA timezone", "「{tz}」はタイムゾーン名ではありません。Asia/Tokyo のように入力してください。"),
    (r"is not an IANA timezone", "タイムゾーン名ではありません。Asia/Tokyo のように入力してください。"),
    (r"^unknown field", "不明な項目です。"),
    (r"^must be one of (?P<v>.+)$", "次のいずれかを選んでください: {v}"),
    (r"^'(?P<m>[^']*)' is listed twice$", "「{m}」が重複しています。"),
    (r"^has (?P<n>\d+) variants; give (?P<lo>\d+) to (?P<hi>\d+)$",
     "バリアントが {n} 個です。{lo}〜{hi} 個にしてください。"),
    (r"^must be a list of", "リストで指定してください。"),
    (r"^must be an object", "オブジェクトで指定してください。"),
    (r"^a variant key is 1 to 64 characters", "キーは英数字・「_」・「-」で 1〜64 文字にしてください（例: A）。"),
    (r"^key '(?P<k>[^']*)' is already used by variants\[(?P<i>\d+)\]",
     "キー「{k}」はバリアント {n} ですでに使われています。キーは重複できません。"),
    (r"^must be a local time", "00:00〜23:59 の時刻（HH:MM）で入力するか、空欄にしてください。"),
    (r"^variants\[(?P<i>\d+)\] is already the control", "コントロールはすでにバリアント {n} です。1 つだけ選んでください。"),
    (r"^a segment key is 1 to 120 characters",
     "セグメントキーは英数字・「_」・「.」・「-」で 1〜120 文字にしてください。"),
    (r"^is required: give the experiment a name", "必須です。実験名を 1〜200 文字で入力してください。"),
    (r"^is required: give (?P<lo>\d+) to (?P<hi>\d+) variants", "必須です。バリアントを {lo}〜{hi} 個指定してください。"),
    (r"^send a JSON object", "入力内容を送信してください。"),
))


def service_message(message: str, field: str | None = None) -> str:
    """The experiment service's English validation message, in the user's language.

    The service stays English (it also answers the API); the designer shows Japanese users the
    Japanese text for the messages it knows and the original for any it does not.
    """
    locale = get_locale()
    if locale is None or locale.language != "ja" or not message:
        return message
    for pattern, template in _SERVICE_MESSAGES_JA:
        match = pattern.search(message)
        if match:
            values = match.groupdict()
            if "i" in values:
                values["n"] = str(int(values["i"]) + 1)
            return template.format(**values)
    return message
