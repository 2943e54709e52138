"""The written comparison and the terminal leaderboard: sentences carry the numbers, verdicts follow the tests.

Run with `pytest tests/report`; checks leader, gaps (Welch + interval overlap), n=1 wording, terminal alignment.
"""

from __future__ import annotations

import re

import pytest
from scipy import stats

from peftlab.report import leaderboard_text, summarize
from peftlab.report.compare import compare_all, gap_tests, welch_p


def test_every_sentence_has_a_number(records):
    comparison = compare_all(summarize(records))
    assert set(comparison) == {"sst2-mini", "fashion-mini"}
    for sentences in comparison.values():
        assert len(sentences) >= 6
        for s in sentences:
            assert re.search(r"\d", s), s


def test_leader_cheapest_and_gap_verdicts(records):
    comparison = compare_all(summarize(records))
    fashion = " ".join(comparison["fashion-mini"])
    assert "full leads at 0.860 ± 0.025 accuracy (3 seeds)" in fashion
    assert "+0.760 over the untrained baseline's 0.100" in fashion
    assert "Cheapest in trainable parameters: head with 258" in fashion
    assert "Fastest to train: head at 1.26 s" in fashion
    assert "Over lora at 0.800 ± 0.025, the 0.060 gap is larger than the two half-widths" in fashion
    assert "a real difference" in fashion

    sst2 = comparison["sst2-mini"]
    lora_gap = next(s for s in sst2 if s.startswith("Over lora"))
    # full 0.8417 vs lora 0.84: 0.002 apart with ±0.025 intervals -> noise
    assert "the 0.002 gap is within the two half-widths combined" in lora_gap
    assert "seed noise, not a real difference" in lora_gap


def test_welch_p_matches_scipy_and_gap_fields(records):
    rows = [r for r in summarize(records) if r["dataset"] == "sst2-mini"]
    gaps = gap_tests(rows)
    assert [g.other["method"] for g in gaps] == ["lora", "head"]
    expected = stats.ttest_ind([0.845, 0.83, 0.85], [0.84, 0.85, 0.83], equal_var=False).pvalue
    assert gaps[0].p_value == pytest.approx(expected)
    assert gaps[0].overlap is True and gaps[1].overlap is False
    assert gaps[1].gap == pytest.approx((0.845 + 0.83 + 0.85) / 3 - 0.71)
    assert welch_p([0.5], [0.6, 0.7]) is None  # one seed: untestable


def test_single_seed_is_said_not_hidden(records):
    one = [r for r in records if r["seed"] == 0 and r["status"] == "ok"]
    sentences = compare_all(summarize(one))["sst2-mini"]
    text = " ".join(sentences)
    assert "(n=1, no CI)" in text
    assert "one seed" in text and "cannot be tested" in text
    assert "±" not in text  # no interval is invented


def test_leaderboard_text_sorted_and_aligned(records):
    text = leaderboard_text(summarize(records))
    blocks = text.split("\n\n")
    assert blocks[0].startswith("fashion-mini (image-classification)")
    lines = blocks[0].splitlines()
    header, rule, body = lines[1], lines[2], lines[3:6]
    assert set(rule) == {"-"} and len(rule) == len(header)
    assert [line.split()[1] for line in body] == ["full", "lora", "head"]
    # the accuracy column ends at the same character in every line
    ends = {line.index("± 0.025") + len("± 0.025") for line in body}
    assert len(ends) == 1
    assert "0.860 ± 0.025" in body[0] and "4.39M" in body[0] and "12.6 s" in body[0]
    assert "PARAMS MISMATCH" in body[1]
    assert leaderboard_text([]) == "No successful runs to rank."
