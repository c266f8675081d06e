"""interp.bootstrap_interval: clusters, strata, weights, paired differences, verdicts and errors."""

import pytest
import torch

import interp
from interp.errors import InputError


def test_a_rate_interval_covers_the_truth_at_about_its_level():
    gen = torch.Generator().manual_seed(0)
    hits = 0
    for trial in range(200):
        rows = (torch.rand(60, generator=gen) < 0.3).double()
        iv = interp.bootstrap_interval({"rows": (rows, None)}, resamples=1000, seed=trial)
        assert iv.estimate == pytest.approx(float(rows.mean()))
        hits += iv.low <= 0.3 <= iv.high
    assert 0.88 <= hits / 200 <= 0.99


def test_rows_of_a_cluster_move_together():
    # six requests, three identical renderings each: the interval is that of six rows, not eighteen
    requests = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    rows = [v for v in requests for _ in range(3)]
    clustered = interp.bootstrap_interval({"image": (rows, [i // 3 for i in range(18)])})
    as_requests = interp.bootstrap_interval({"image": (requests, None)})
    as_rows = interp.bootstrap_interval({"image": (rows, None)})
    assert clustered.clusters == 6 and clustered.n == 18 and as_rows.clusters == 18
    assert (clustered.low, clustered.high) == pytest.approx((as_requests.low, as_requests.high), abs=1e-9)
    assert clustered.high - clustered.low > 1.3 * (as_rows.high - as_rows.low)


def test_parts_pool_by_rows_or_combine_by_weights():
    a, b = [1.0] * 10 + [0.0] * 10, [1.0] * 2 + [0.0] * 18
    pooled = interp.bootstrap_interval({"a": (a, None), "b": (b, None)})
    assert pooled.estimate == pytest.approx(12 / 40) and pooled.n == 40
    gap = interp.bootstrap_interval({"a": (a, None), "b": (b, None)}, weights={"a": 1.0, "b": -1.0})
    assert gap.estimate == pytest.approx(0.5 - 0.1)
    assert gap.low < 0.4 < gap.high and gap.low > 0.0  # a gap this large is told apart from none
    # stratified: a part of constant rows adds no width
    flat = interp.bootstrap_interval({"a": (a, None), "c": ([1.0] * 20, None)}, weights={"a": 1.0, "c": -1.0})
    alone = interp.bootstrap_interval({"a": (a, None)})
    assert flat.high - flat.low == pytest.approx(alone.high - alone.low, abs=1e-9)


def test_a_paired_difference_is_the_interval_of_row_differences():
    before = torch.tensor([0.0] * 30 + [1.0] * 10)
    after = before.clone()
    after[:3] = 1.0  # three rows newly refused
    rise = interp.bootstrap_interval({"rows": (after - before, None)})
    assert rise.estimate == pytest.approx(3 / 40) and rise.low >= 0.0
    assert rise.verdict(0.05) == "undecided" and rise.verdict(0.25) == "met"
    assert interp.bootstrap_interval({"rows": ([0.5] * 5, None)}).verdict(0.1) == "not met"
    assert interp.bootstrap_interval({"rows": ([0.9] * 5, None)}).verdict(0.8, at_most=False) == "met"


def test_same_seed_same_interval_and_level_widens_it():
    rows = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    one, two = (interp.bootstrap_interval({"r": (rows, None)}, seed=3) for _ in range(2))
    assert one == two
    wide = interp.bootstrap_interval({"r": (rows, None)}, level=0.99, seed=3)
    assert wide.low <= one.low and wide.high >= one.high and wide.to_dict()["level"] == 0.99


@pytest.mark.parametrize(
    "parts, kwargs, match",
    [
        ({}, {}, "at least one part"),
        ({"a": ([], None)}, {}, "no rows"),
        ({"a": ([1.0, float("nan")], None)}, {}, "NaN"),
        ({"a": ([1.0, 0.0], [0])}, {}, "one label per row"),
        ({"a": ([1.0], None)}, {"level": 1.0}, "strictly between"),
        ({"a": ([1.0], None)}, {"resamples": 10}, "at least 100"),
        ({"a": ([1.0], None)}, {"weights": {"b": 1.0}}, "one weight per part"),
    ],
)
def test_bad_input_is_refused_with_the_fix(parts, kwargs, match):
    with pytest.raises(InputError, match=match):
        interp.bootstrap_interval(parts, **kwargs)
