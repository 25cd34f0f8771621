"""Urgency: multilingual rules that match word forms, the door's urgency when higher, config."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.inbound import Inbound
from normalizer.pipeline import Normalizer, NormalizerSettings
from normalizer.urgency_rules import UrgencyRules, fold
from tests.conftest import registry_of


def classify(text: str, door: str | None = None, **urgency: object) -> tuple[str, str, str | None]:
    settings = NormalizerSettings.from_config({"urgency": urgency} if urgency else {})
    inbound = Inbound(channel="test", message_id="m1", text=text, urgency=door, received_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    complaint = Normalizer(settings).normalize(inbound)
    return complaint.urgency, complaint.meta["urgency_rule"], complaint.meta.get("urgency_match")


@pytest.mark.parametrize("text", [
    "Пахнет газом на лестнице",
    "Сильный запах газа в квартире",
    "В подъезде газом воняет",
    "Czuć gaz w piwnicy",
    "Czuję gaz przy kuchence",
    "czuc gaz na klatce",  # typed without Polish letters
    "Pachnie gazem na klatce schodowej",
    "There is a smell of gas outside",
    "I can smell gas in the flat",
    "Пахне газом у під'їзді",
    "Es riecht nach Gas im Treppenhaus",
])
def test_smell_of_gas_in_any_word_form_is_immediate(text: str) -> None:
    level, rule, match = classify(text)
    assert (level, rule) == ("immediate", "gas_smell")
    assert match and ("газ" in match or "gas" in match or "gaz" in match)


@pytest.mark.parametrize(("text", "rule"), [
    ("Из розетки летят искры", "electrical_danger"),
    ("Gniazdko iskrzy", "electrical_danger"),
    ("Bare wires hanging in the hallway", "electrical_danger"),
    ("Kopnęło mnie przy lodówce", "electrical_danger"),
    ("Porazilo mnie", "electrical_danger"),
    ("Lodówka kopie prądem", "electrical_danger"),
    ("Нет отопления, на улице минус 25", "no_heating_vulnerable_or_frost"),
    ("Brak ogrzewania, w domu niemowlę", "no_heating_vulnerable_or_frost"),
    ("No heating. My 85-year-old father lives alone.", "no_heating_vulnerable_or_frost"),
    ("Дома кислородный концентратор. Света нет с утра!", "medical_equipment_without_power"),
    ("Respirator taty nie działa, bo nie ma prądu", "medical_equipment_without_power"),
    ("The CO alarm keeps going off", "carbon_monoxide"),
])
def test_other_dangers_are_immediate(text: str, rule: str) -> None:
    assert classify(text)[:2] == ("immediate", rule)


@pytest.mark.parametrize("text", [
    "Газета не пришла третий день",
    "Счёт за газ слишком большой",
    "Искренне прошу пересчитать плату",
    "My gas bill is too high",
    "Rachunek za gaz jest za wysoki",
    "Gazeta nie dotarła",
    "Газ оплачен вовремя. Пахнет сыростью в подвале.",  # gas and smell in different sentences
    "Запах газа устранили, спасибо, но верните деньги за вызов",
    "The gas smell has been fixed, thanks",
    "Przesyłam kopie faktur.",  # copies of bills, not a shock
    "Przesyłam kopie faktur, proszę o korektę.",
    "Porażenie mózgowe syna, proszę o ulgę",
])
def test_hard_negatives_stay_normal(text: str) -> None:
    assert classify(text)[0] == "normal"


@pytest.mark.parametrize("text", ["Нет интернета с утра", "Brak prądu od rana", "No internet since yesterday",
                                  "Нет отопления в квартире", "Kein Internet seit gestern"])
def test_total_loss_of_service_is_high(text: str) -> None:
    assert classify(text)[:2] == ("high", "total_loss_of_service")


def test_nothing_fired_is_recorded_as_default() -> None:
    assert classify("Прошу сменить тариф") == ("normal", "default", None)


def test_the_doors_urgency_wins_only_when_higher() -> None:
    assert classify("Прошу сменить тариф", door="immediate")[:2] == ("immediate", "door")
    assert classify("Нет интернета", door="immediate")[:2] == ("immediate", "door")
    assert classify("Пахнет газом", door="high")[:2] == ("immediate", "gas_smell")
    assert classify("Прошу сменить тариф", door="normal")[:2] == ("normal", "door")


def test_inline_rules_add_replace_and_switch_off() -> None:
    added = {"rules": [{"name": "meter_flooded", "level": "immediate", "patterns": {"ru": [r"вод\w* + счетчик\w*"]}}]}
    assert classify("Вода заливает счётчик в подвале", **added)[:2] == ("immediate", "meter_flooded")
    off = {"rules": [{"name": "gas_smell", "enabled": False}]}
    assert classify("Пахнет газом", **off)[0] == "normal"
    narrowed = {"rules": [{"name": "gas_smell", "patterns": {"en": ["smell + gas"]}}]}
    assert classify("Пахнет газом", **narrowed)[0] == "normal" and classify("smell of gas", **narrowed)[0] == "immediate"


def test_a_rules_file_replaces_the_packaged_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("window: 2\nwords:\n  water: 'вод(а|ы|у)'\nrules:\n"
                    "  - name: flood\n    level: high\n    patterns:\n      ru: ['@water + (затопил\\w*|хлещет)']\n", encoding="utf-8")
    assert classify("Затопило квартиру, хлещет вода", rules_file=str(path))[:2] == ("high", "flood")
    assert classify("Пахнет газом", rules_file=str(path))[0] == "normal"
    assert classify("Вода, как всегда по пятницам, затопила", rules_file=str(path))[0] == "normal"  # beyond window 2


def test_bad_rules_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'broken'.*not a valid regular expression"):
        UrgencyRules.from_config({"rules": [{"name": "broken", "level": "high", "patterns": {"ru": ["газ(а"]}}]})
    with pytest.raises(ConfigError, match="@nowhere"):
        UrgencyRules.from_config({"rules": [{"name": "ref", "level": "high", "patterns": {"ru": ["@nowhere"]}}]})
    with pytest.raises(ConfigError, match="normalizer.urgency"):
        NormalizerSettings.from_config({"urgency": {"rules": [{"name": "x", "level": "urgent", "patterns": {}}]}})
    with pytest.raises(ConfigError, match="no such file"):
        UrgencyRules.from_config({"rules_file": str(tmp_path / "missing.yaml")})


def test_folding_keeps_cyrillic_and_drops_latin_accents() -> None:
    assert fold("Ёлка ЙОД Czuć ŁÓDŹ Straße") == "елка йод czuc lodz strasse"


async def test_a_web_complaint_gets_urgency_deadlines_and_an_urgent_receipt(make_config, start_gateway, redis_url):
    client = await start_gateway(make_config())
    resp = await client.post("/web/complaints", json={"phone": "+79161234567", "text": "В подъезде сильно пахнет газом, дети дома!"},
                             headers={"Accept": "text/html"})
    assert resp.status == 201
    assert "Срочное обращение" in await resp.text()
    events = await registry_of(client).read_events("t", "c")
    complaint = events[0].payload["complaint"]
    assert complaint["urgency"] == "immediate" and complaint["meta"]["urgency_rule"] == "gas_smell"
    received = datetime.fromisoformat(complaint["received_at"])
    acknowledge = datetime.fromisoformat(complaint["deadlines"]["acknowledge"])
    assert acknowledge == received.replace(microsecond=0) + timedelta(hours=1)  # deadlines are kept to the second
    assert complaint["meta"]["timezone"] == "Europe/Moscow"
