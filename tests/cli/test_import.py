"""`emailexp import sends|conversions FILE`: happy path, BOM, Japanese, bad lines, re-runs."""
from __future__ import annotations

import sqlalchemy as sa

from emailexp.models import Conversion, Recipient, Segment, Send, SendLink

SENDS_HEADER = "send_id,recipient_id,segment,owner_id,experiment_id,variant,subject,campaign,sent_at,links\n"


def sends_csv(n: int, *, bad_line: int | None = None, bad_value: str = "2026-12-01 09:30") -> str:
    lines = [SENDS_HEADER]
    for i in range(n):
        line_no = i + 2
        sent_at = bad_value if line_no == bad_line else "2026-12-01T09:30:00+09:00"
        lines.append(f's-{i},lead-{i % 4},smb,rep-1,,,"年末のご挨拶, {i}",nl,{sent_at},'
                     f"https://example.com/a https://example.com/b?i={i}\n")
    return "".join(lines)


def write(tmp_path, name, text, *, bom=False):
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def count(app, model):
    from emailexp.extensions import db

    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_imports_a_bom_file_with_japanese_subjects_in_batches(runner, app, tmp_path):
    from emailexp.extensions import db

    path = write(tmp_path, "sends.csv", sends_csv(7), bom=True)
    result = runner.invoke(args=["import", "sends", str(path), "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert f"{path}: 7 sends rows, 7 created, 0 already imported" in result.stdout
    assert result.stderr == ""
    with app.app_context():
        subjects = db.session.scalars(sa.select(Send.subject).order_by(Send.id)).all()
        assert subjects == [f"年末のご挨拶, {i}" for i in range(7)]
        assert db.session.scalars(sa.select(SendLink.url).where(SendLink.position == 1).order_by(SendLink.id)).all() \
            == [f"https://example.com/b?i={i}" for i in range(7)]
        assert db.session.scalar(sa.select(Segment.key)) == "smb"
    assert count(app, Recipient) == 4
    again = runner.invoke(args=["import", "sends", str(path)])
    assert again.exit_code == 0 and "7 sends rows, 0 created, 7 already imported" in again.stdout
    assert count(app, Send) == 7


def test_bad_line_names_file_line_and_field_and_writes_nothing(runner, app, tmp_path):
    path = write(tmp_path, "sends.csv", sends_csv(9, bad_line=8))
    # Batches of 2: lines 2-7 are in earlier batches, yet nothing of the file is imported.
    result = runner.invoke(args=["import", "sends", str(path), "--batch-size", "2"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}:8: sent_at: ")
    assert "UTC offset" in lines[0] or "ISO 8601" in lines[0]
    assert count(app, Send) == 0 and count(app, Recipient) == 0


def test_e_mail_address_bad_url_and_header_errors(runner, app, tmp_path):
    text = SENDS_HEADER + "s-1,lead-1,,,,,Hi,,2026-12-01T09:30:00+09:00,\n" \
                          "s-2,taro@example.com,,,,,Hi,,2026-12-01T09:30:00+09:00,\n"
    result = runner.invoke(args=["import", "sends", str(write(tmp_path, "a.csv", text))])
    assert result.exit_code == 1 and result.stderr.startswith(f"{tmp_path / 'a.csv'}:3: recipient_id: ")
    text = SENDS_HEADER + "s-1,lead-1,,,,,Hi,,2026-12-01T09:30:00+09:00,javascript:alert(1)\n"
    result = runner.invoke(args=["import", "sends", str(write(tmp_path, "b.csv", text))])
    assert result.exit_code == 1 and "b.csv:2: links[0]: " in result.stderr
    result = runner.invoke(args=["import", "sends", str(write(tmp_path, "c.csv", "send_id,recipient,sent_at\n"))])
    assert result.exit_code == 1 and result.stderr.strip() == (
        f"{tmp_path / 'c.csv'}:1: recipient: unknown column; the columns are " + SENDS_HEADER.strip())
    result = runner.invoke(args=["import", "sends", str(write(tmp_path, "d.csv", "send_id,subject\n"))])
    assert result.exit_code == 1 and ":1: recipient_id: required column missing" in result.stderr
    path = tmp_path / "e.csv"
    path.write_bytes(SENDS_HEADER.encode() + "s-1,lead-1,,,,,件名,,2026-12-01T09:30:00+09:00,\n".encode("shift_jis"))
    result = runner.invoke(args=["import", "sends", str(path)])
    assert result.exit_code == 1 and "not UTF-8" in result.stderr
    assert count(app, Send) == 0


def test_duplicate_id_with_other_content_across_batches_is_caught_before_writing(runner, app, tmp_path):
    text = sends_csv(4) + "s-1,lead-1,smb,rep-1,,,Other subject,nl,2026-12-01T09:30:00+09:00,\n"
    result = runner.invoke(args=["import", "sends", str(write(tmp_path, "s.csv", text)), "--batch-size", "2"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"{tmp_path / 's.csv'}:6: send_id: 's-1' appears again")
    assert count(app, Send) == 0


def test_quoted_multiline_cells_keep_line_numbers_right(runner, app, tmp_path):
    text = (SENDS_HEADER + 's-1,lead-1,,,,,"two\nlines",,2026-12-01T09:30:00+09:00,\n'
            "s-2,lead-1,,,,,Hi,,not-a-date,\n")
    result = runner.invoke(args=["import", "sends", str(write(tmp_path, "m.csv", text))])
    assert result.exit_code == 1 and result.stderr.startswith(f"{tmp_path / 'm.csv'}:4: sent_at: ")


def test_import_conversions(runner, app, tmp_path):
    runner.invoke(args=["import", "sends", str(write(tmp_path, "s.csv", sends_csv(2)))])
    text = ("\ufeffconversion_id,kind,recipient_id,send_id,occurred_at,amount,owner_id\n"
            "c-1,meeting,lead-0,s-0,2026-12-02T10:00:00+09:00,,rep-1\n"
            "c-2,deal,lead-1,,2026-12-03T10:00:00+09:00,1200000,\n")
    path = write(tmp_path, "c.csv", text)
    result = runner.invoke(args=["import", "conversions", str(path)])
    assert result.exit_code == 0, result.output
    from emailexp.extensions import db

    with app.app_context():
        rows = db.session.execute(sa.select(Conversion.conversion_id, Conversion.attribution, Send.send_id)
                                  .outerjoin(Send, Send.id == Conversion.send_id)
                                  .order_by(Conversion.conversion_id)).all()
    assert [tuple(r) for r in rows] == [("c-1", "explicit", "s-0"), ("c-2", "window", "s-1")]
    bad = write(tmp_path, "bad.csv", text.replace("c-2,deal", "c-3,meeting").replace("1200000", "5"))
    result = runner.invoke(args=["import", "conversions", str(bad)])
    assert result.exit_code == 1 and result.stderr.startswith(f"{bad}:3: amount: only deals have an amount")
    assert count(app, Conversion) == 2
