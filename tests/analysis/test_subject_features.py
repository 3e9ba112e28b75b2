import unicodedata

import pytest

from emailexp.analysis.hour_bands import HOUR_BAND_NAMES, HOUR_BANDS, hour_band, hour_bands
from emailexp.analysis.subject_features import SubjectFeatures, display_width, subject_features


def test_hour_bands_cover_the_day_in_order():
    hours = [h for _, lo, hi in HOUR_BANDS for h in range(lo, hi)]
    assert hours == list(range(24))
    assert [hour_band(h) for h in (0, 5, 6, 8, 9, 11, 12, 13, 14, 16, 17, 19, 20, 23)] == [
        "night", "night", "early", "early", "morning", "morning", "midday", "midday",
        "afternoon", "afternoon", "evening", "evening", "late", "late"]
    assert list(hour_bands([9, 23, 0])) == ["morning", "late", "night"]
    assert HOUR_BAND_NAMES[0] == "night" and HOUR_BAND_NAMES[-1] == "late"


@pytest.mark.parametrize("bad", [-1, 24, 9.5, True])
def test_hour_band_rejects_bad_hours(bad):
    with pytest.raises(ValueError):
        hour_band(bad)
    if not isinstance(bad, bool):
        with pytest.raises(ValueError):
            hour_bands([bad])


def test_japanese_length_counts_full_width_characters_once():
    f = subject_features("【ご案内】新機能のお知らせ")
    assert f.length == 13
    assert f.display_width == 26  # every character is full width
    assert f.has_brackets and not f.has_question and not f.has_number
    assert f.length_band == "short"


def test_length_uses_nfc():
    decomposed = unicodedata.normalize("NFD", "がんばろう café")
    assert len(decomposed) > 10
    assert subject_features(decomposed).length == 10


def test_english_subject_features():
    f = subject_features("Quick question about your Q3 pipeline?")
    assert isinstance(f, SubjectFeatures)
    assert f.length == 38 and f.display_width == 38 and f.length_band == "medium"
    assert f.has_question and f.has_number
    assert not (f.has_brackets or f.has_personalization or f.has_emoji)


def test_full_width_question_mark_and_digits():
    f = subject_features("３分で読めるレポート、ご覧になりましたか？")
    assert f.has_question and f.has_number


def test_kanji_numerals_are_not_numbers():
    assert not subject_features("一緒に十分な準備を").has_number
    assert subject_features("①今週のお知らせ").has_number


@pytest.mark.parametrize("subject", [
    "[Webinar] Scaling outbound", "「営業DX」セミナーのご案内", "『特別号』", "〔重要〕お知らせ",
    "［再送］資料送付", "Pricing (updated)", "新プラン（法人向け）"])
def test_brackets(subject):
    assert subject_features(subject).has_brackets


def test_lone_bracket_is_not_brackets():
    assert not subject_features("Thanks :)").has_brackets


@pytest.mark.parametrize("subject", [
    "{{name}}様、ご提案です", "Hi {first_name}, quick idea", "%NAME%, your invite", "Hi *|FNAME|*",
    "〇〇様へのご案内", "○○さん、新機能です", "{{ contact.company }} x Acme", "Hello ${firstName}"])
def test_personalization_tokens(subject):
    assert subject_features(subject).has_personalization


@pytest.mark.parametrize("subject", ["Save 20% today", "100% of teams", "Hello {}", "株式会社ABC様"])
def test_not_personalization(subject):
    assert not subject_features(subject).has_personalization


@pytest.mark.parametrize("subject", ["Your report is ready 📈", "🎉新年のご挨拶", "Deal ✅", "⭐特典",
                                     "Call me ☎️", "1️⃣ step"])
def test_emoji(subject):
    assert subject_features(subject).has_emoji


@pytest.mark.parametrize("subject", ["★限定セミナー★", "♪春のキャンペーン", "※重要 ◆ご案内■", "Plain text"])
def test_typographic_symbols_are_not_emoji(subject):
    assert not subject_features(subject).has_emoji


def test_length_bands_put_japanese_and_english_on_one_scale():
    jp = "来週の打ち合わせ日程についてのご相談とご確認のお願い"  # 26 characters, 52 columns
    assert subject_features(jp).length == 26
    assert subject_features(jp).length_band == "medium"
    assert subject_features("A" * 61).length_band == "long"
    assert display_width("ｱｲｳ") == 3  # half-width katakana are narrow


def test_to_dict_and_type_check():
    d = subject_features("Hi?").to_dict()
    assert d["has_question"] is True and d["length"] == 3
    with pytest.raises(TypeError):
        subject_features(None)
