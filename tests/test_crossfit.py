"""interp.cross_fit: the optimism of picking on the reported rows, folds that keep clusters whole and
stratified, seeding, and every input error."""

import pytest
import torch

import interp
from interp.errors import InputError


def best_rate(settings):
    return max(range(len(settings)), key=lambda j: float(settings[j]["rows"]["refused"].mean()))


def rate(rows):
    return {"rate": float(rows["rows"]["refused"].mean())}


def coin_settings(probs, n=60, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [{"rows": {"refused": (torch.rand(n, generator=gen) < p).double()}} for p in probs]


def test_picking_the_best_of_equal_settings_is_optimistic_and_cross_fitting_is_not():
    # ten settings of the same true rate 0.5: the in-sample winner looks better than it is
    settings = coin_settings([0.5] * 10)
    fit = interp.cross_fit(settings, {"rows": None}, best_rate, rate, repeats=50)
    assert fit.in_sample["rate"] > 0.58
    assert fit.mean()["rate"] == pytest.approx(0.5, abs=0.04)
    assert len(fit.held_out) == len(fit.chosen) == 100
    assert len(fit.choice_shares()) > 3  # the winner changes with the rows


def test_a_setting_that_is_better_is_picked_and_read_as_it_is():
    settings = coin_settings([0.5, 0.9, 0.5, 0.5])
    fit = interp.cross_fit(settings, {"rows": None}, best_rate, rate, repeats=30)
    assert fit.in_sample_choice == 1
    assert fit.choice_shares()[1] > 0.9
    assert fit.mean()["rate"] == pytest.approx(float(settings[1]["rows"]["refused"].mean()), abs=0.05)
    assert fit.share(lambda h: h["rate"] >= 0.7) > 0.9


def test_folds_keep_clusters_whole_and_deal_each_part_evenly():
    # part a: 7 clusters of 3 rows; part b: 10 single rows. The metric is the row's cluster label.
    a_labels = [c for c in range(7) for _ in range(3)]
    setting = {"a": {"label": torch.tensor(a_labels)}, "b": {"label": torch.arange(10)}}
    seen_choose, seen_read = [], []

    def choose(settings):
        seen_choose.append({p: settings[0][p]["label"].tolist() for p in ("a", "b")})
        return 0

    def statistic(rows):
        seen_read.append({p: rows[p]["label"].tolist() for p in ("a", "b")})
        return {"n": float(len(rows["a"]["label"]))}

    fit = interp.cross_fit([setting], {"a": a_labels, "b": None}, choose, statistic, folds=3, repeats=4)
    assert len(fit.held_out) == 12 and fit.folds == 3
    # the all-rows pick comes first, its statistic last
    for chose, read in zip(seen_choose[1:], seen_read[:-1], strict=True):
        for labels in (chose["a"], read["a"]):
            assert all(labels.count(c) == 3 for c in set(labels))  # a cluster is never split
        assert sorted(chose["a"] + read["a"]) == a_labels  # the fold left out is exactly what was not seen
        assert sorted(chose["b"] + read["b"]) == list(range(10))
        assert len(set(read["a"])) in (2, 3) and len(read["b"]) in (3, 4)  # 7 and 10 clusters over 3 folds
    assert seen_choose[0] == seen_read[-1] == {"a": a_labels, "b": list(range(10))}  # in-sample: every row


def test_the_same_seed_gives_the_same_folds():
    settings = coin_settings([0.5] * 5)
    one = interp.cross_fit(settings, {"rows": None}, best_rate, rate, repeats=10, seed=3)
    two = interp.cross_fit(settings, {"rows": None}, best_rate, rate, repeats=10, seed=3)
    other = interp.cross_fit(settings, {"rows": None}, best_rate, rate, repeats=10, seed=4)
    assert one == two and one.held_out != other.held_out
    assert one.to_dict()["in_sample_choice"] == one.in_sample_choice


@pytest.mark.parametrize(
    "settings, clusters, kwargs, message",
    [
        ([], {"rows": None}, {}, "at least one setting"),
        (
            [{"rows": {"refused": [1.0, 0.0]}}, {"other": {"refused": [1.0, 0.0]}}],
            {"rows": None},
            {},
            "same parts",
        ),
        (
            [{"rows": {"refused": [1.0, 0.0]}}, {"rows": {"kl": [1.0, 0.0]}}],
            {"rows": None},
            {},
            "same metrics",
        ),
        ([{"rows": {"refused": [1.0, 0.0], "kl": [0.1]}}], {"rows": None}, {}, "one value per row"),
        ([{"rows": {"refused": [1.0, 0.0]}}, {"rows": {"refused": [1.0]}}], {"rows": None}, {}, "expected 2"),
        ([{"rows": {}}], {"rows": None}, {}, "no metrics"),
        ([{"rows": {"refused": [1.0, float("nan")]}}], {"rows": None}, {}, "NaN"),
        ([{"rows": {"refused": [1.0, 0.0]}}], {"other": None}, {}, "one entry per part"),
        ([{"rows": {"refused": [1.0, 0.0]}}], {"rows": [0]}, {}, "one label per row"),
        ([{"rows": {"refused": [1.0, 0.0]}}], {"rows": [0, 0]}, {}, "at least 2 per part"),
        ([{"rows": {"refused": [1.0, 0.0]}}], {"rows": None}, {"folds": 1}, "at least 2"),
        ([{"rows": {"refused": [1.0, 0.0]}}], {"rows": None}, {"repeats": 0}, "at least 1"),
    ],
)
def test_input_errors_name_the_cause(settings, clusters, kwargs, message):
    with pytest.raises(InputError, match=message):
        interp.cross_fit(settings, clusters, lambda s: 0, rate, **kwargs)


def test_a_choice_or_statistic_of_the_wrong_kind_is_refused():
    settings = coin_settings([0.5, 0.5])
    with pytest.raises(InputError, match="index"):
        interp.cross_fit(settings, {"rows": None}, lambda s: 2, rate)
    with pytest.raises(InputError, match="index"):
        interp.cross_fit(settings, {"rows": None}, lambda s: True, rate)
    with pytest.raises(InputError, match="name"):
        interp.cross_fit(settings, {"rows": None}, lambda s: 0, lambda rows: 0.5)
