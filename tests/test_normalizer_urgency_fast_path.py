"""The urgency rules' quick checks (terms searched without their leading lookbehind, and
once over all sentences joined) decide exactly as searching each sentence with each term."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.config import ConfigError
from normalizer.urgency_rules import (
    Pattern,
    Sentence,
    SentenceIndex,
    UrgencyRules,
    _first_within,
    _gates_of,
    _word_start_spans,
    _words_of_alternatives,
    split_sentences,
)

DATA = Path(__file__).resolve().parent.parent / "bench" / "data"


def slow_classify(rules: UrgencyRules, text: str) -> tuple[str, str, str] | None:
    """The rules applied sentence by sentence with the terms as compiled: the reference."""
    sentences = split_sentences(text[: rules.max_chars])

    def find(pattern: Pattern, sentence: Sentence) -> str | None:
        plain = Pattern(pattern.source, pattern.terms, pattern.window)  # no quick-check scans
        return plain.find(sentence)

    best = None
    for rule in rules.rules:
        if best is not None and ["normal", "high", "immediate"].index(rule.level) <= ["normal", "high", "immediate"].index(best[1]):
            break
        hit = None
        for sentence in sentences:
            if any(find(p, sentence) for p in rule.unless):
                continue
            hit = next(((rule.name, rule.level, excerpt) for _, p in rule.patterns if (excerpt := find(p, sentence))), None)
            if hit:
                break
        if hit and all(any(find(p, s) for s in sentences for p in group) for group in rule.requires):
            best = hit
    return best


def in_text(pattern: Pattern, text: str) -> bool:
    """Whether every term of ``pattern`` matches somewhere in ``text``."""
    return all(term.search(text) is not None for term in pattern.terms)


def labelled_texts() -> list[str]:
    return [json.loads(line)["text"] for name in ("urgency_labelled.jsonl", "urgency_holdout.jsonl")
            for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def decided(rules: UrgencyRules, text: str) -> tuple[str, str, str] | None:
    match = rules.classify(text)
    return (match.rule, match.level, match.excerpt) if match else None


def test_packaged_rules_decide_as_the_sentence_by_sentence_search() -> None:
    rules = UrgencyRules.default()
    texts = labelled_texts()
    texts += [f"{a} {b}\n{c}" for a, b, c in zip(texts, texts[1:], texts[2:])]  # several sentences
    assert sum(decided(rules, t) is not None for t in texts) > 100
    for text in texts:
        assert decided(rules, text) == slow_classify(rules, text), text


def test_a_term_inside_a_longer_word_is_no_match() -> None:
    pattern = Pattern.compile("газ(а|ом)?", 6, {}, "test")
    assert not in_text(pattern, "газета не пришла, бензогаз дорогой.")
    assert in_text(pattern, "газета не пришла, пахнет газом!")
    assert pattern.find(Sentence.of("Бензогаз? Пахнет газом")) == "газом"


def test_lookbehind_in_a_term_sees_only_its_own_sentence() -> None:
    # joined sentences would put "не" before "газ": such a term is searched sentence by sentence
    rules = UrgencyRules.from_config({"rules": [
        {"name": "gas_test", "level": "immediate", "patterns": {"ru": [r"(?<!не\s)газ"]}}]})
    text = "Плита не\nгаз в подъезде"
    assert len(split_sentences(text)) == 2
    assert decided(rules, text) == ("gas_test", "immediate", "газ") == slow_classify(rules, text)


def test_index_rules_out_only_patterns_that_match_no_sentence() -> None:
    rules = UrgencyRules.default()
    sentences = split_sentences("Нет интернета третий день. Роутер мигает красным. Пахнет газом!")
    patterns = [p for rule in rules.rules for _, p in rule.patterns]
    for index in (SentenceIndex(sentences), SentenceIndex(sentences, rules.words)):
        ruled_out = 0
        for pattern in patterns:
            in_a_sentence = any(in_text(pattern, s.text) for s in sentences)
            if in_a_sentence:
                assert index.possible(pattern), pattern.source
            if len(pattern.terms) == 1:
                assert index.possible(pattern) == in_a_sentence, pattern.source
            ruled_out += not index.possible(pattern)
        assert ruled_out > len(patterns) / 2


def test_a_term_is_gated_by_the_whole_first_words_of_its_alternatives() -> None:
    assert _gates_of(r"нет|отключ\w*|не работает") == [("нет", True), (r"отключ\w*", True), ("не", False)]
    assert _gates_of("газ(а|у|ом)?") == [("газ(а|у|ом)?", True)]
    assert _gates_of(r"(?:розетк\w*|провод(а|ов)?) (искрит|горит)") == [(r"(?:розетк\w*|провод(а|ов)?)", False)]
    assert _gates_of("(power )?(lines?|wires?)") is None  # may begin with "lines": no whole first word
    # the first word ends where a character that is no word character is certain: a space, a "-", a class of such
    assert _gates_of("life[ -]threatening") == [("life", False)]
    assert _gates_of(r"co-melder\w*|co melder\w*") == [("co", False), ("co", False)]
    assert _gates_of("wi-?fi") is None  # the "-" may be missing: "wifi" is one word
    assert _gates_of("life[ a]threatening") is None  # "lifeathreatening" is one word
    assert _gates_of("life[- ]?threatening|x") is None
    assert _gates_of("life[^a]threatening") is None  # a negated class may match a word character
    # every whole word of each alternative, for ruling a term out before any search
    assert _words_of_alternatives("не (топят|греют)|нет тепла") == [["не", "(топят|греют)"], ["нет", "тепла"]]
    assert _words_of_alternatives("danger to (life|health)|life[ -]threatening") == [
        ["danger", "to", "(life|health)"], ["life", "threatening"]]
    assert _words_of_alternatives("(не|невозможно) (могу|можем)? ?(вызвать|позвонить)") == [["(не|невозможно)"]]
    assert _words_of_alternatives("(power )?lines?") is None
    assert _gates_of(r"life[\s-]threatening") is None  # escapes in a class are not judged
    assert _gates_of("зв'язок") is None


def test_unusual_terms_decide_as_the_sentence_by_sentence_search() -> None:
    rules = UrgencyRules.from_config({"rules": [
        {"name": "odd", "level": "immediate", "patterns": {"xx": [
            r"(?<!не )горит", "зв'язок + відсутн\\w*", "wi-?fi + down", "a.c + broken", r"\d{3} + авария",
            "(power )?lines? + down", "нет (света|воды) + (?:третий|пятый) день", "[0-9]+ этаж + потоп\\w*",
            "life[ -]threatening", "co-melder\\w*", "wi-fi-router + dead", "x[-]ray + broken", "не (топят|греют) + батаре\\w*"]}},
        {"name": "plain", "level": "high", "patterns": {"xx": ["нет + связи", "brak + prad\\w*"]}}]})
    texts = ["Горит щиток", "Не горит лампа", "Зв'язок відсутній", "the wi-fi is down", "wifi down", "the a/c is broken",
             "авария на 220 линии", "power lines down", "the lines are down", "нет света третий день", "нет воды уже пятый день",
             "затопило: 5 этаж, потоп", "нет связи с утра", "brak prądu", "Ничего не горит. Нет связи!", "нетсвязи", "",
             "нет\nсвязи", "lines\ndown", "a life-threatening leak", "life threatening", "lifethreatening", "life\nthreatening",
             "the co-melder beeps", "co melder", "co-\nmelder", "my wi-fi-router is dead", "the x-ray is broken", "x ray broken",
             "батареи не топят", "батареи топят, но не греют", "не\nтопят батареи", "топят не батареи", "не греют батареи"]
    fired = 0
    for text in texts:
        assert decided(rules, text) == slow_classify(rules, text), text
        fired += decided(rules, text) is not None
    assert fired >= 12


def test_folding_drops_accents_of_latin_letters_only_as_the_letter_by_letter_reference() -> None:
    import random
    import unicodedata

    from normalizer.urgency_rules import _LATIN_EXTRA, fold

    def reference(text: str) -> str:
        text = unicodedata.normalize("NFD", text.casefold())
        out: list[str] = []
        for ch in text:
            if unicodedata.combining(ch) and out and out[-1] < "\u0250":
                continue
            out.append(ch)
        return " ".join(unicodedata.normalize("NFC", "".join(out)).translate(str.maketrans(_LATIN_EXTRA)).split())

    rnd = random.Random(7)
    alphabet = "aeiouzżźćńąęłóśАБЙйёЁиИ \u0301\u0308\u0306ßǅİıΣς’—đĐøØʼ`−–\t\nX1"
    samples = ["Zażółć gęślą jaźń", "Йод и ёлка", "ÇA VA? Grüße", "e\u0301\u0301x", "и\u0306од", "naïve café", "ΣΊΣΥΦΟΣ"]
    samples += ["".join(rnd.choice(alphabet) for _ in range(40)) for _ in range(3000)]
    for text in samples:
        assert fold(text) == reference(text), repr(text)
    assert fold("Zażółć gęślą jaźń") == "zazolc gesla jazn" and fold("Йод и ёлка") == "йод и елка"


def test_the_patterns_written_to_begin_with_a_character_class_find_what_their_plain_forms_find() -> None:
    """``re`` skips ahead to a pattern's first character class, not to an alternation of
    classes or past a lookbehind; the rewritten patterns must match where the plain ones do."""
    import random

    from normalizer.urgency_rules import _COMBINING, _LATIN_ACCENTS, _MARK_AT_BREAK, _SENTENCE_END

    plain_sentence_end = re.compile(r"[.!?…]\s+|[\n;]+")
    plain_latin_accents = re.compile(f"(?<=[\\x00-\\u024f])[{_COMBINING}]+")
    plain_mark_at_break = re.compile(f"[\\s;.!?…][{_COMBINING}]")  # two characters: the break and the mark

    rnd = random.Random(5)
    alphabet = "ab Яй.!?…;\n\t\u00a0\u2028e\u0301\u0308\u0306\u0483\u20dd\u0250ǅ"
    samples = ["Нет света. Нет воды!\n\n;Газ", "x.\n;\n y", "a;. b", "Hi!! there", "e\u0301\u0308 и\u0306 \u0301x", ""]
    samples += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 24))) for _ in range(20000)]
    for text in samples:
        assert [m.span() for m in _SENTENCE_END.finditer(text)] == [m.span() for m in plain_sentence_end.finditer(text)], repr(text)
        assert [m.span() for m in _LATIN_ACCENTS.finditer(text)] == [m.span() for m in plain_latin_accents.finditer(text)], repr(text)
        assert [m.end() for m in _MARK_AT_BREAK.finditer(text)] == [m.end() for m in plain_mark_at_break.finditer(text)], repr(text)
    assert [m.group() for m in _SENTENCE_END.finditer("Нет света. Нет воды!\n\n;Газ")] == [". ", "!\n\n", ";"]


def test_sentences_are_folded_as_each_sentence_alone() -> None:
    import random
    import re

    from normalizer.urgency_rules import fold

    sentence_end = re.compile(r"(?<=[.!?…])\s+|[\n;]+")  # the definition: the marks stay, the spaces go

    rnd = random.Random(11)
    alphabet = "абвгд ежзЁё АБВ xyzXYZ ąęł e\u0301 ß İ Σ ’ — 12 .!?…;\n\t  "
    samples = ["Нет света. Нет воды!", "Plain ASCII; two parts.\nThird", "Ёлка горит… Газ?", "Zażółć. Gęślą", ""]
    samples += ["".join(rnd.choice(alphabet) for _ in range(60)) for _ in range(3000)]
    for text in samples:
        expected = [fold(part) for part in sentence_end.split(text) if part.strip()]
        assert [s.text for s in split_sentences(text)] == expected, repr(text)


def test_a_term_that_can_match_nothing_ends_its_search_at_the_end_of_the_text() -> None:
    # a term that may match nothing ("(prad\w*)?", once in the packaged Polish rules) sent the
    # quick search past the end of a text ending in a word, where re starts again at the
    # end: "Porazilo mnie" hung the gateway's loop forever. Such terms are refused now, and
    # the search stops at the end whatever the term.
    rules = UrgencyRules.default()
    for text in ("Porazilo mnie", "Kopnęło!", "porazilo", "Kopnęło mnie w kuchni. Prąd jest"):
        assert decided(rules, text) == slow_classify(rules, text), text
    scan, term = re.compile(r"(?:(prad\w*)?)(?!\w)"), re.compile(r"(?<!\w)(?:(prad\w*)?)(?!\w)")
    for text in ("porazilo", "porazilo mnie", "", "a ", " prad", "pradem"):
        expected = term.search(text)
        assert _word_start_spans(scan, text, first=True) == ([expected.span()] if expected else []), text


def test_every_match_of_a_term_found_from_word_starts_is_its_finditer() -> None:
    rules = UrgencyRules.default()
    patterns = [p for rule in rules.rules for p in (*(p for _, p in rule.patterns), *rule.unless)]
    sentences = [s.text for text in labelled_texts() for s in split_sentences(text)]
    sentences += [f"{a} {b}" for a, b in zip(sentences, sentences[1:])]  # terms matching more than once
    compared = found = 0
    for pattern in patterns:
        for scan, term in zip(pattern.scans, pattern.terms):
            for text in sentences:
                expected = [m.span() for m in term.finditer(text)]
                assert _word_start_spans(scan, text) == expected, (term.pattern, text)
                compared += 1
                found += len(expected) > 1
    assert compared > 10_000 and found > 100
    scan, term = re.compile(r"(?:(prad\w*)?)(?!\w)"), re.compile(r"(?<!\w)(?:(prad\w*)?)(?!\w)")  # empty matches
    for text in ("porazilo", "porazilo mnie", "", "a ", " prad", "pradem prad"):
        assert _word_start_spans(scan, text) == [m.span() for m in term.finditer(text)], text


def test_a_term_that_can_match_no_word_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape(r"the term '(prad\w*)?' can match no word")):
        UrgencyRules.from_config({"rules": [{"name": "shock", "level": "immediate", "patterns": {"pl": [r"porazil\w* + (prad\w*)?"]}}]})
    with pytest.raises(ConfigError, match="can match no word"):
        UrgencyRules.from_config({"rules": [{"name": "empty", "level": "high", "patterns": {"en": ["(power)?( outage)?"]}}]})


def test_random_texts_of_the_rules_own_words_decide_as_the_sentence_by_sentence_search() -> None:
    # texts made of the stems and words the packaged rules name, joined by spaces and
    # punctuation, ending in a word or a mark: what a real complaint looks like to the rules
    import random

    source = (Path(__file__).resolve().parent.parent / "normalizer" / "urgency_rules.yaml").read_text(encoding="utf-8")
    vocabulary = sorted({word for word in re.findall(r"[^\W\d_]{2,}", source.split("rules:", 1)[1])
                         if word not in {"name", "level", "description", "patterns", "unless", "requires", "window"}})
    rules, rnd = UrgencyRules.default(), random.Random(5)
    joints = [" ", " ", " ", ", ", ". ", "! ", "\n", " - ", "; "]
    texts = []
    for _ in range(1500):
        words = [rnd.choice(vocabulary) for _ in range(rnd.randint(1, 7))]
        text = "".join(word + rnd.choice(joints) for word in words[:-1]) + words[-1] + rnd.choice(["", "", ".", "!", "?", " "])
        texts.append(text)
    fired = 0
    for text in texts:
        assert decided(rules, text) == slow_classify(rules, text), text
        fired += decided(rules, text) is not None
    assert fired > 150


def test_the_first_combination_within_the_window_is_the_products_first() -> None:
    import itertools
    import random

    def product_first(positions: list[list[tuple[int, int, int]]], window: int) -> list[tuple[int, int, int]] | None:
        for combination in itertools.product(*positions):
            numbers = [p[0] for p in combination]
            if max(numbers) - min(numbers) <= window:
                return list(combination)
        return None

    rnd = random.Random(3)

    def agree(cases: int, max_window: int, words: int, max_matches: int, max_terms: int) -> int:
        """Random cases compared; how many have a combination within the window."""
        found = 0
        for _ in range(cases):
            window = rnd.randint(0, max_window)
            positions = [[(w, 10 * w, 10 * w + 5) for w in sorted(rnd.sample(range(words), rnd.randint(1, max_matches)))]
                         for _ in range(rnd.randint(2, max_terms))]
            assert _first_within(positions, window) == product_first(positions, window), (positions, window)
            found += product_first(positions, window) is not None
        return found

    assert 500 < agree(4000, 6, 40, 6, 4) < 3500
    # terms with many matches, whose positions within the window are found by bisection
    assert 100 < agree(600, 4, 120, 24, 3) < 550


def test_many_matches_of_many_terms_far_apart_are_ruled_out_without_trying_every_combination() -> None:
    # an operator's pattern of four terms, each matching 32 words, never within the window:
    # a million combinations, which took half a second of the event loop for this one sentence
    rules = UrgencyRules.from_config({"rules_file": None, "rules": [
        {"name": "four", "level": "immediate", "window": 4, "patterns": {"en": ["alpha + bravo + charlie + delta"]}}]})
    far = " x x x x x x x x ".join(" ".join([word] * 32) for word in ("alpha", "bravo", "charlie", "delta"))
    assert decided(rules, far) is None
    both = far + ". Then alpha bravo x charlie delta"
    assert decided(rules, both) == ("four", "immediate", "alpha bravo x charlie delta") == slow_classify(rules, both)


@pytest.mark.parametrize("term", [r"(\w+\s?)+газ", r"(не|нет)* (a|b+)*", r"(x{2,} ?)+"])
def test_a_term_that_repeats_a_repeated_part_is_refused(term: str) -> None:
    # (\w+\s?)+газ on words without газ tries every way of cutting them into pieces: 0.15 s
    # of the event loop for five words, 16 times more for each word after
    with pytest.raises(ConfigError, match="repeats a part that repeats itself"):
        UrgencyRules.from_config({"rules": [{"name": "nested", "level": "high", "patterns": {"ru": [f"запах + {term}"]}}]})


def test_terms_with_one_level_of_repeats_are_accepted() -> None:
    rules = UrgencyRules.from_config({"rules_file": None, "rules": [{"name": "flat", "level": "high", "patterns": {
        "ru": [r"(не (топят|греют))+ + батаре\w*", r"x{2,}", r"газ(а|у)?"]}}]})
    assert decided(rules, "Не топят не греют батареи") == ("flat", "high", "не топят не греют батареи")


def test_a_term_matching_many_times_in_one_sentence_finds_its_match_after_the_thirty_second() -> None:
    # every match of a term counts: only the 41st "alpha" of this sentence is near a "bravo"
    # (the terms' matches were cut at 32 per sentence, and this one went unnoticed)
    rules = UrgencyRules.from_config({"rules_file": None, "rules": [
        {"name": "pair", "level": "high", "window": 2, "patterns": {"en": ["alpha + bravo"]}}]})
    text = " ".join(["alpha"] * 40) + " x x x x x alpha y bravo"
    assert decided(rules, text) == ("pair", "high", "alpha y bravo") == slow_classify(rules, text)
    assert decided(rules, " ".join(["alpha"] * 40) + " x x x x x bravo") is None


def test_terms_matching_once_are_within_the_window_by_the_words_from_the_first_to_the_last() -> None:
    rules = UrgencyRules.from_config({"rules_file": None, "rules": [
        {"name": "pair", "level": "high", "window": 2, "patterns": {"xx": ["alpha + bravo", r"-\d + x"]}}]})
    assert decided(rules, "alpha a bravo") == ("pair", "high", "alpha a bravo")
    assert decided(rules, "bravo, a; alpha") is None  # ";" ends the sentence
    assert decided(rules, "bravo, - a alpha!") == ("pair", "high", "bravo, - a alpha")  # marks are no words
    assert decided(rules, "alpha a b bravo") is None
    # a match before the sentence's first word counts as the first word (as a sentence's word numbers do)
    assert decided(rules, "-5 a x") == ("pair", "high", "-5 a x") == slow_classify(rules, "-5 a x")
    assert decided(rules, "-5 a b x") is None


def test_numbers_are_not_remembered_as_words() -> None:
    # every complaint names its own contract or account number: remembered, they filled the
    # word memory with words never seen again, and each look-up went further into memory
    rules = UrgencyRules.from_config({})
    for n in range(1000):
        assert decided(rules, f"Договор {n * 7919}: нет света") == ("total_loss_of_service", "high", "нет света")
    assert decided(rules, "Не могу дозвониться на 112, пахнет газом")[1] == "immediate"  # type: ignore[index]
    assert sorted(rules.words._words) == sorted(["газом", "дозвониться", "договор", "могу", "на", "не", "нет", "пахнет", "света"])


def test_a_term_with_a_one_word_alternative_in_the_text_is_possible_without_a_search() -> None:
    rules = UrgencyRules.from_config({"rules": [
        {"name": "outage_test", "level": "high", "patterns": {"ru": ["(нет|не работает) + свет\\w*"]}}]})
    pattern = next(p for rule in rules.rules if rule.name == "outage_test" for _, p in rule.patterns)
    first = Pattern(pattern.source, pattern.terms[:1], pattern.window, pattern.scans[:1], pattern.joinable[:1])
    whole, others, words = rules.words.plans[id(first.terms[0])]
    assert (len(whole), len(others), len(words), len(words[0])) == (1, 1, 1, 2)  # "нет"; "не" of "не работает"

    def possible(text: str, searchable: bool) -> bool:
        index = SentenceIndex(split_sentences(text), rules.words)
        if not searchable:
            index.text = ""  # what a search reads: an answer that needs one comes out False
        return index.possible(first)

    assert possible("Нет света третий день", searchable=False)  # "нет" is a whole alternative: no search
    assert not possible("Не горит свет", searchable=True)  # "не" without "работает": ruled out by the words
    assert not possible("Не работает свет", searchable=False) and possible("Не работает свет", searchable=True)
    for text in ("Нет света третий день", "Не горит свет", "Не работает свет", "Свет не работает? Нет."):
        assert decided(rules, text) == slow_classify(rules, text), text


def test_a_text_no_pattern_can_match_is_not_cut_into_sentences(monkeypatch: pytest.MonkeyPatch) -> None:
    import normalizer.urgency_rules as module

    cut: list[str] = []
    split_folded = module._split_folded
    monkeypatch.setattr(module, "_split_folded", lambda folded, whole: cut.append(folded) or split_folded(folded, whole))
    rules = UrgencyRules.default()
    assert rules.classify("Hi, my bill for March is wrong. Please check it.") is None
    assert cut == []
    assert decided(rules, "Нет света третий день. Пахнет газом!") == ("gas_smell", "immediate", "пахнет газом")
    assert cut == ["нет света третий день. пахнет газом!"]
