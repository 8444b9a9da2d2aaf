import math

import pytest

from trainables.schedule import lr_at, warmup_steps_for


def test_warmup_starts_above_zero_and_reaches_peak_at_its_end():
    assert lr_at(0, 0.1, warmup_steps=10, total_steps=100) == pytest.approx(0.01)
    assert lr_at(9, 0.1, warmup_steps=10, total_steps=100) == pytest.approx(0.1)
    assert lr_at(10, 0.1, warmup_steps=10, total_steps=100) == pytest.approx(0.1)


def test_warmup_is_linear_per_step():
    lrs = [lr_at(s, 0.1, 10, 100) for s in range(10)]
    steps = [b - a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert all(d == pytest.approx(0.01) for d in steps)


def test_no_warmup_gives_peak_from_step_zero_to_the_last_step():
    assert lr_at(0, 0.1, 0, 100) == 0.1
    assert lr_at(99, 0.1, 0, 100) == 0.1


def test_cosine_decays_to_zero_at_the_last_step():
    assert lr_at(10, 1.0, 10, 110, "cosine") == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110, "cosine") == pytest.approx(0.5)
    assert lr_at(110, 1.0, 10, 110, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert not math.isnan(lr_at(0, 1.0, 0, 1, "cosine"))


def test_warmup_length_comes_from_epochs():
    assert warmup_steps_for(1.0, 500) == 500
    assert warmup_steps_for(0.5, 71) == 36
    assert warmup_steps_for(0.0, 71) == 0


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="constant, cosine"):
        lr_at(0, 0.1, 0, 10, "step")
