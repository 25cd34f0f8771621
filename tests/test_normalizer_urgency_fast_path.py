"""The urgency rules' quick checks (terms searched without their leading lookbehind, and
once over all sentences joined) decide exactly as searching each sentence with each term."""
from __future__ import annotations

import json
from pathlib import Path

from normalizer.urgency_rules import Pattern, Sentence, SentenceIndex, UrgencyRules, split_sentences

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


def decided(rules: UrgencyRules, text: str) -> tuple[str, str, str] | None:
    match = rules.classify(text)
    return (match.rule, match.level, match.excerpt) if match else None


def test_packaged_rules_decide_as_the_sentence_by_sentence_search() -> None:
    rules = UrgencyRules.default()
    texts = [json.loads(line)["text"] for name in ("urgency_labelled.jsonl", "urgency_holdout.jsonl")
             for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    texts += [f"{a} {b}\n{c}" for a, b, c in zip(texts, texts[1:], texts[2:])]  # several sentences
    assert sum(decided(rules, t) is not None for t in texts) > 100
    for text in texts:
        assert decided(rules, text) == slow_classify(rules, text), text


def test_a_term_inside_a_longer_word_is_no_match() -> None:
    pattern = Pattern.compile("газ(а|ом)?", 6, {}, "test")
    assert not pattern.present_in("газета не пришла, бензогаз дорогой.")
    assert pattern.present_in("газета не пришла, пахнет газом!")
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
    index = SentenceIndex(sentences)
    patterns = [p for rule in rules.rules for _, p in rule.patterns]
    ruled_out = 0
    for pattern in patterns:
        in_a_sentence = any(pattern.present_in(s.text) for s in sentences)
        if in_a_sentence:
            assert index.possible(pattern), pattern.source
        if len(pattern.terms) == 1:
            assert index.possible(pattern) == in_a_sentence, pattern.source
        ruled_out += not index.possible(pattern)
    assert ruled_out > len(patterns) / 2
