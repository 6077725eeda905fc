"""The base the searched trials chose (``search.base_choice``), on synthetic trial values."""

from __future__ import annotations

import numpy as np

from policysearch.policy.definition import Policy, randaugment
from policysearch.search.base_choice import MIN_TRIALS, choose_base


def trials(spec: list[tuple[bool, bool, float]], spread: float = 0.006,
           seed: int = 0) -> list[tuple[Policy, float]]:
    """(flip, crop, mean value) per trial; values scattered as the ops and the seed do."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (flip, crop, mean) in enumerate(spec):
        base = {"flip": flip, **({} if crop else {"crop_padding": 0})}
        policy = Policy.from_dict({**randaugment(1 + i % 3, 5 + i % 20).to_dict(), "base": base})
        out.append((policy, float(mean + rng.normal(0, spread))))
    return out


def test_a_flip_that_costs_is_turned_off_and_a_crop_inside_the_noise_is_kept() -> None:
    spec = ([(True, True, 0.94)] * 6 + [(False, True, 0.962)] * 20
            + [(False, False, 0.963)] * 14 + [(True, False, 0.94)] * 4)
    choice = choose_base(trials(spec))
    assert choice.changes == {"flip": False}
    assert choice.suffix == "flip off"
    assert "score higher with the base flip off" in choice.sentence()
    assert len(choice.evidence) == 2 and "Welch" in choice.evidence[0]


def test_a_flip_that_helps_stays_and_the_base_is_the_experiments() -> None:
    spec = [(True, True, 0.55)] * 12 + [(False, True, 0.52)] * 8
    choice = choose_base(trials(spec))
    assert choice.changes == {} and choice.suffix == ""
    assert "do not score higher" in choice.sentence()


def test_too_few_trials_on_one_side_decide_nothing() -> None:
    spec = [(True, True, 0.90)] * 10 + [(False, True, 0.99)] * (MIN_TRIALS - 1)
    choice = choose_base(trials(spec))
    assert choice.changes == {}
    assert "too few" in choice.evidence[0]


def test_a_space_that_does_not_search_the_base_says_nothing() -> None:
    choice = choose_base(trials([(True, True, 0.5)] * 8))
    assert choice.changes == {} and choice.evidence == []
    assert choice.sentence() == ("the searched trials do not score higher with the base flip or "
                                 "crop off")


def test_the_crop_is_judged_among_the_trials_on_the_chosen_flip() -> None:
    # crop off looks better over all trials only because the flip-on trials keep the crop
    confounded = [(True, True, 0.90)] * 8 + [(False, True, 0.96)] * 6 + [(False, False, 0.96)] * 6
    assert choose_base(trials(confounded)).changes == {"flip": False}
    spec = [(True, True, 0.90)] * 8 + [(False, True, 0.93)] * 6 + [(False, False, 0.96)] * 8
    choice = choose_base(trials(spec))
    assert choice.changes == {"flip": False, "crop_padding": 0}
    assert choice.suffix == "flip and crop off"
