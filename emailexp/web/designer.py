"""Experiment designer: create/edit an experiment and its variants, start/stop it, plan its size.

The form posts the same field names as the API body (`name`, `variants[1].send_time`, ...), so a
`ValidationError.field` from the experiment service points straight at the input to mark. Rates
are typed in percent in the form and sent to the service as proportions. Every button is a
plain submit button (add/remove variant, recalculate the plan, save): the page works without
JavaScript; `planner.js` only refreshes the plan while typing.
"""
from __future__ import annotations

import json
import math
import re

import sqlalchemy as sa
from flask import current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from emailexp.errors import EmailexpError, NotFoundError, StateError, ValidationError
from emailexp.extensions import db
from emailexp.ingestion import experiments as svc
from emailexp.models import Segment
from emailexp.web import bp
from emailexp.web.auth import editor_required, login_required
from emailexp.web.planner import plan_experiment
from emailexp.web.texts import service_message

VARIANT_FIELD_RE = re.compile(r"variants\[(\d{1,2})\]\.(key|subject|send_weekday|send_time|segment|weight)")
MAX_VARIANTS = 8
PERCENT_FIELDS = ("baseline_rate", "mde_relative", "alpha", "power")
TIMEZONES = ("Asia/Tokyo", "UTC", "Asia/Seoul", "Asia/Singapore", "Australia/Sydney", "Europe/London",
             "Europe/Berlin", "America/New_York", "America/Chicago", "America/Los_Angeles")


def _blank_variant(index: int, *, control: bool = False) -> dict:
    return {"key": chr(ord("A") + index) if index < 26 else f"V{index + 1}", "subject": "", "send_weekday": "",
            "send_time": "", "segment": "", "weight": "1", "is_control": control}


def _fmt_number(value) -> str:
    if value is None:
        return ""
    value = float(value)
    return f"{value:.6g}"


def _pct(value) -> str:
    return "" if value is None else _fmt_number(round(float(value) * 100, 6))


def form_from_experiment(exp: dict) -> dict:
    """The designer's form state (strings, percent) from `experiment_to_dict` output."""
    return {
        "name": exp.get("name") or "", "hypothesis": exp.get("hypothesis") or "",
        "timezone": exp.get("timezone") or current_app.config["TIMEZONE"],
        "primary_metric": exp.get("primary_metric") or "open_rate",
        "guardrails": list(exp.get("guardrails") or []),
        "attribution_window_days": str(exp.get("attribution_window_days") or 14),
        "baseline_rate": _pct(exp.get("baseline_rate")), "mde_relative": _pct(exp.get("mde_relative")),
        "alpha": _pct(exp.get("alpha") if exp.get("alpha") is not None else 0.05),
        "power": _pct(exp.get("power") if exp.get("power") is not None else 0.8),
        "variants": [{
            "key": v.get("key") or "", "subject": v.get("subject") or "",
            "send_weekday": "" if v.get("send_weekday") is None else str(v["send_weekday"]),
            "send_time": (v.get("send_time") or "")[:5], "segment": v.get("segment") or "",
            "weight": _fmt_number(v.get("weight") if v.get("weight") is not None else 1),
            "is_control": bool(v.get("is_control")),
        } for v in exp.get("variants") or []],
    }


def new_form() -> dict:
    return {"name": "", "hypothesis": "", "timezone": current_app.config["TIMEZONE"], "primary_metric": "open_rate",
            "guardrails": ["meeting_rate"], "attribution_window_days": "14", "baseline_rate": "",
            "mde_relative": "10", "alpha": "5", "power": "80",
            "variants": [_blank_variant(0, control=True), _blank_variant(1)]}


def form_from_request(form) -> dict:
    """The posted form as form state (strings), variant rows renumbered 0..n-1 in posted order."""
    rows: dict[int, dict] = {}
    for name, value in form.items(multi=False):
        match = VARIANT_FIELD_RE.fullmatch(name)
        if match:
            rows.setdefault(int(match.group(1)), {})[match.group(2)] = value.strip() if match.group(2) != "subject" \
                else value
    control = form.get("control", "")
    variants = []
    for old_index in sorted(rows)[:MAX_VARIANTS]:
        row = {key: rows[old_index].get(key, "") for key in
               ("key", "subject", "send_weekday", "send_time", "segment", "weight")}
        row["is_control"] = control == str(old_index)
        variants.append(row)
    if variants and not any(v["is_control"] for v in variants):
        variants[0]["is_control"] = True
    return {
        "name": form.get("name", "").strip(), "hypothesis": form.get("hypothesis", "").strip(),
        "timezone": form.get("timezone", "").strip(), "primary_metric": form.get("primary_metric", ""),
        "guardrails": [g for g in form.getlist("guardrails") if g],
        "attribution_window_days": form.get("attribution_window_days", "").strip(),
        **{key: form.get(key, "").strip() for key in PERCENT_FIELDS},
        "variants": variants,
    }


class FormErrors(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors


def _parse_float(raw: str, field: str, errors: dict, *, percent: bool = False, required: bool = False):
    if raw == "":
        if required:
            errors[field] = _("Enter a number.")
        return None
    try:
        value = float(raw.replace(",", "").replace("%", ""))
    except ValueError:
        errors[field] = _("Enter a number.")
        return None
    if not math.isfinite(value):
        errors[field] = _("Enter a number.")
        return None
    return value / 100 if percent else value


def _parse_int(raw: str, field: str, errors: dict, *, required: bool = False):
    if raw == "":
        if required:
            errors[field] = _("Enter a whole number.")
        return None
    try:
        return int(raw)
    except ValueError:
        errors[field] = _("Enter a whole number.")
        return None


def payload_from_form(state: dict, *, include_variants: bool = True) -> dict:
    """The experiment service's dict (same shape as the API body). Raises FormErrors on unparsable input."""
    errors: dict[str, str] = {}
    data = {
        "name": state["name"], "hypothesis": state["hypothesis"],
        "timezone": state["timezone"] or current_app.config["TIMEZONE"],
        "primary_metric": state["primary_metric"], "guardrails": state["guardrails"],
        "attribution_window_days": _parse_int(state["attribution_window_days"], "attribution_window_days", errors,
                                              required=True),
        "baseline_rate": _parse_float(state["baseline_rate"], "baseline_rate", errors, percent=True),
        "mde_relative": _parse_float(state["mde_relative"], "mde_relative", errors, percent=True),
        "alpha": _parse_float(state["alpha"], "alpha", errors, percent=True, required=True),
        "power": _parse_float(state["power"], "power", errors, percent=True, required=True),
    }
    if include_variants:
        data["variants"] = []
        for i, row in enumerate(state["variants"]):
            prefix = f"variants[{i}]"
            weekday = _parse_int(row["send_weekday"], f"{prefix}.send_weekday", errors)
            data["variants"].append({
                "key": row["key"], "subject": row["subject"], "send_weekday": weekday,
                "send_time": row["send_time"] or None, "segment": row["segment"] or None,
                "weight": _parse_float(row["weight"], f"{prefix}.weight", errors, required=True),
                "is_control": row["is_control"],
            })
    if errors:
        raise FormErrors(errors)
    return data


def _segments() -> list[Segment]:
    return list(db.session.scalars(sa.select(Segment).order_by(Segment.key).limit(500)))


def _plan_for(state: dict):
    """The plan for the form's inputs, or (None, error message) when it cannot be computed."""
    segments = {v["segment"] for v in state["variants"] if v["segment"]}
    segment = segments.pop() if len(segments) == 1 else None
    try:
        baseline = float(state["baseline_rate"]) / 100 if state["baseline_rate"] else None
        mde = float(state["mde_relative"]) / 100 if state["mde_relative"] else None
        alpha = float(state["alpha"]) / 100 if state["alpha"] else None
        power = float(state["power"]) / 100 if state["power"] else None
    except ValueError:
        return None, _("Enter numbers to see the plan.")
    try:
        return plan_experiment(db.session, baseline=baseline, mde=mde, alpha=alpha, power=power,
                               variants=max(2, min(MAX_VARIANTS, len(state["variants"]))), segment=segment), None
    except (ValidationError, ValueError) as exc:
        return None, getattr(exc, "message", str(exc))


def _render(state: dict, experiment=None, *, errors=None, status=200, plan_error=None):
    plan, default_plan_error = _plan_for(state)
    return render_template(
        "experiments/form.html", form=state, experiment=experiment, errors=errors or {}, segments=_segments(),
        timezones=TIMEZONES, plan=plan, plan_error=plan_error or default_plan_error,
        variants_editable=experiment is None or experiment["status"] == "draft", max_variants=MAX_VARIANTS,
        snippets=send_snippets(experiment) if experiment else None), status


def _handle_post(experiment: dict | None):
    editable = experiment is None or experiment["status"] == "draft"
    state = form_from_request(request.form)
    if not editable:
        state["variants"] = form_from_experiment(experiment)["variants"]
    action = request.form.get("action", "save")
    remove = request.form.get("remove_variant")
    if editable and remove is not None:
        try:
            index = int(remove)
        except ValueError:
            index = -1
        if 0 <= index < len(state["variants"]) and len(state["variants"]) > 2:
            was_control = state["variants"].pop(index)["is_control"]
            if was_control:
                state["variants"][0]["is_control"] = True
        return _render(state, experiment)
    if editable and action == "add_variant":
        if len(state["variants"]) < MAX_VARIANTS:
            used = {v["key"] for v in state["variants"]}
            new = next(_blank_variant(i) for i in range(64) if _blank_variant(i)["key"] not in used)
            state["variants"].append(new)
        else:
            flash(_("An experiment has at most %(n)d variants.", n=MAX_VARIANTS), "error")
        return _render(state, experiment)
    if action == "plan":
        return _render(state, experiment)
    try:
        data = payload_from_form(state, include_variants=editable)
    except FormErrors as exc:
        flash(_("Please correct the marked fields."), "error")
        return _render(state, experiment, errors=exc.errors, status=422)
    try:
        if experiment is None:
            saved = svc.create_experiment(db.session, data)
        else:
            saved = svc.update_experiment(db.session, experiment["id"], data)
        db.session.commit()
    except ValidationError as exc:
        db.session.rollback()
        flash(_("Please correct the marked fields."), "error")
        return _render(state, experiment, errors={exc.field or "form": service_message(exc.message, exc.field)},
                       status=422)
    except EmailexpError as exc:
        db.session.rollback()
        flash(service_message(exc.message, exc.field), "error")
        return _render(state, experiment, status=exc.status)
    flash(_("The experiment was saved."), "success")
    return redirect(url_for("web.experiment_detail", experiment_id=saved.id))


def _experiment_or_404(experiment_id: int) -> dict:
    from flask import abort

    try:
        return svc.experiment_to_dict(svc.get_experiment(db.session, experiment_id))
    except NotFoundError:
        abort(404)


@bp.route("/experiments/new", methods=["GET", "POST"])
@editor_required
def experiment_new():
    if request.method == "POST":
        return _handle_post(None)
    return _render(new_form())


@bp.route("/experiments/<int:experiment_id>/edit", methods=["GET", "POST"])
@editor_required
def experiment_edit(experiment_id: int):
    experiment = _experiment_or_404(experiment_id)
    if request.method == "POST":
        return _handle_post(experiment)
    return _render(form_from_experiment(experiment), experiment)


def _transition(experiment_id: int, action) -> object:
    _experiment_or_404(experiment_id)
    try:
        action(db.session, experiment_id)
        db.session.commit()
        return None
    except StateError as exc:
        db.session.rollback()
        return exc
    except ValidationError as exc:
        db.session.rollback()
        return exc


@bp.route("/experiments/<int:experiment_id>/start", methods=["POST"])
@editor_required
def experiment_start(experiment_id: int):
    error = _transition(experiment_id, svc.start_experiment)
    if error is None:
        flash(_("The experiment is running. Assign recipients and send through the API."), "success")
    else:
        flash(_("The experiment could not be started: %(reason)s", reason=service_message(error.message)), "error")
    return redirect(url_for("web.experiment_detail", experiment_id=experiment_id))


@bp.route("/experiments/<int:experiment_id>/stop", methods=["POST"])
@editor_required
def experiment_stop(experiment_id: int):
    error = _transition(experiment_id, svc.stop_experiment)
    if error is None:
        flash(_("The experiment was stopped. New sends can no longer join it."), "success")
    else:
        flash(_("The experiment could not be stopped: %(reason)s", reason=service_message(error.message)), "error")
    return redirect(url_for("web.experiment_detail", experiment_id=experiment_id))


@bp.route("/experiments/plan")
@login_required
def experiment_plan():
    """JSON for planner.js. Query: baseline, mde, alpha, power (proportions), variants (count), segment."""
    args = request.args
    try:
        plan = plan_experiment(db.session, baseline=args.get("baseline"), mde=args.get("mde"),
                               alpha=args.get("alpha"), power=args.get("power"), variants=args.get("variants"),
                               segment=args.get("segment"))
    except ValidationError as exc:
        return jsonify({"error": exc.code, "message": exc.message, "field": exc.field}), 422
    except ValueError as exc:
        return jsonify({"error": "validation_error", "message": str(exc), "field": None}), 422
    body = plan.to_dict()
    body["text"] = {"sends_per_variant": _("%(n)s sends per variant", n=f"{plan.sends_per_variant:,}"),
                    "total": _("%(n)s sends in total", n=f"{plan.total_sends:,}"),
                    "duration": duration_text(plan)}
    return jsonify(body)


@bp.app_template_global()
def duration_text(plan) -> str:
    if plan.days is None:
        return _("No sends in the last 28 days, so the duration cannot be estimated.")
    days = max(1, math.ceil(plan.days))
    return _("About %(days)d days at the current volume of %(per_day)s sends per day.",
             days=days, per_day=f"{plan.sends_per_day:,.0f}")


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def send_snippets(experiment: dict) -> dict:
    """curl examples, an instrumented HTML example and the CSV header for this experiment."""
    base = request.url_root.rstrip("/")
    public = current_app.config["PUBLIC_URL"]
    variants = experiment["variants"] or [{"key": "A", "subject": "", "segment": None}]
    first = variants[0]
    segment = next((v["segment"] for v in variants if v.get("segment")), None) or "enterprise"
    assign_body = {"recipients": [{"id": "lead-42", "segment": segment}, {"id": "lead-43", "segment": segment}]}
    send_body = {"sends": [{
        "send_id": "s-0001", "recipient_id": "lead-42", "segment": segment, "experiment_id": experiment["id"],
        "variant": first["key"], "subject": first["subject"] or "…", "sent_at": "2026-12-08T09:30:00+09:00",
        "links": ["https://example.com/pricing"],
        "html": "<html><body><p>…</p><a href=\"https://example.com/pricing\">Pricing</a></body></html>",
    }]}
    auth = '-H "Authorization: Bearer $EMAILEXP_API_KEY" -H "Content-Type: application/json"'
    assign = (f"curl -X POST {base}/api/v1/experiments/{experiment['id']}/assignments \\\n  {auth} \\\n  -d "
              + _shell_quote(json.dumps(assign_body, ensure_ascii=False)))
    sends = (f"curl -X POST {base}/api/v1/sends \\\n  {auth} \\\n  -d "
             + _shell_quote(json.dumps(send_body, ensure_ascii=False, indent=2)))
    html_in = ('<html><body>\n  <p>…</p>\n  <a href="https://example.com/pricing">Pricing</a>\n</body></html>')
    html_out = (f'<html><body>\n  <p>…</p>\n  <a href="{public}/c/TOKEN">Pricing</a>\n'
                f'<img src="{public}/o/TOKEN.gif" width="1" height="1" alt="" style="display:none"></body></html>')
    csv_header = "send_id,recipient_id,segment,owner_id,experiment_id,variant,subject,campaign,sent_at,links"
    csv_row = ",".join(["s-0001", "lead-42", segment, "rep-7", str(experiment["id"]), first["key"],
                        '"' + (first["subject"] or "…").replace('"', '""') + '"', "newsletter-2026-12",
                        "2026-12-08T09:30:00+09:00", "https://example.com/pricing"])
    return {"assign": assign, "sends": sends, "html_in": html_in, "html_out": html_out,
            "csv": f"{csv_header}\n{csv_row}", "csv_command": "emailexp import sends sends.csv"}
