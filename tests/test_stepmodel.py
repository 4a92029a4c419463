"""Known answers of the step model (analysis/stepmodel.py): steps made from a known model are
fitted back to it, and its terms add up by hand."""

import pytest

from analysis.collectives import Level, allreduce_s, expected_max_normal
from analysis.stepmodel import FitPoint, Levels, StepModel, fit, robust_sigma

S = 1e7
INSIDE = Level(10e-6, 2e9)
RATES = {"fast": Level(50e-6, 1e9), "1gbit": Level(60e-6, 0.125e9), "200mbit": Level(80e-6, 0.025e9)}
TRUE = StepModel(compute_s=0.100, sigma_s=0.004, launch_s=0.003, exposed=0.6, gradient_bytes=S,
                 algorithm="halving_doubling")


def points(model: StepModel) -> list[FitPoint]:
    out = [FitPoint(1, 2, model.step_s(1, 2, Levels(INSIDE, RATES["fast"])), Levels(INSIDE, RATES["fast"]))]
    return out + [FitPoint(2, 1, model.step_s(2, 1, Levels(INSIDE, link)), Levels(INSIDE, link))
                  for link in RATES.values()]


def test_launch_and_overlap_are_recovered_from_steps_at_two_replicas():
    fitted = fit(TRUE.compute_s, TRUE.sigma_s, S, "halving_doubling", points(TRUE))
    assert fitted.launch_s == pytest.approx(0.003, abs=1e-9)
    assert fitted.exposed == pytest.approx(0.6, abs=1e-9) and fitted.overlap == pytest.approx(0.4, abs=1e-9)


def test_the_terms_of_a_step_at_two_nodes_of_two_by_hand():
    levels = Levels(INSIDE, RATES["200mbit"])
    parts = TRUE.parts(2, 2, levels)
    # Rabenseifner's at 2 x 2: 2 (10 us + 0.5 x 10 MB / 2 GB/s) + 2 (80 us + 0.5 x 10 MB / 25 MB/s)
    collective = 2 * (10e-6 + 2.5e-3) + 2 * (80e-6 + 0.2)
    assert parts["allreduce_s"] == pytest.approx(collective)
    assert parts["straggler_s"] == pytest.approx(0.004 * 1.0294, abs=1e-6)
    assert parts["step_s"] == pytest.approx(0.100 + 0.003 + 0.004 * expected_max_normal(4) + 0.6 * collective)


def test_one_replica_pays_no_launch_no_straggler_no_collective():
    assert TRUE.step_s(1, 1, Levels(INSIDE, RATES["fast"])) == pytest.approx(0.100)


def test_collectives_too_alike_to_separate_overlap_from_launch_mean_no_overlap():
    same = [FitPoint(2, 1, 0.2, Levels(INSIDE, RATES["fast"]))] * 3
    fitted = fit(0.1, 0.0, S, "ring", same)
    assert fitted.exposed == 1.0
    collective = allreduce_s("ring", S, 2, 1, INSIDE, RATES["fast"])
    assert fitted.launch_s == pytest.approx(0.1 - collective)


def test_a_negative_overlap_fit_is_kept_at_full_overlap():
    slower_on_fast_links = [FitPoint(2, 1, 0.2 - 0.01 * i, Levels(INSIDE, link)) for i, link in enumerate(RATES.values())]
    fitted = fit(0.1, 0.0, S, "ring", slower_on_fast_links)
    assert fitted.exposed == 0.0 and fitted.launch_s == pytest.approx(0.09)


def test_no_point_is_refused():
    with pytest.raises(ValueError, match="no run at 2 or more replicas"):
        fit(0.1, 0.0, S, "ring", [])


def test_sigma_from_the_ninetieth_percentile():
    assert robust_sigma(1.0, 1.0 + 1.2816) == pytest.approx(1.0)
    assert robust_sigma(1.0, 0.9) == 0.0


def test_a_negative_launch_fit_is_a_line_through_the_origin():
    # steps that grow faster than their collectives: the straight line would cross below zero
    links = list(RATES.values())
    collectives = [allreduce_s("ring", S, 2, 1, INSIDE, link) for link in links]
    steps = [0.1 + 1.2 * c - 0.02 for c in collectives]
    fitted = fit(0.1, 0.0, S, "ring", [FitPoint(2, 1, s, Levels(INSIDE, link)) for s, link in zip(steps, links)])
    rest = [s - 0.1 for s in steps]
    assert fitted.launch_s == 0.0
    assert fitted.exposed == pytest.approx(sum(c * r for c, r in zip(collectives, rest))
                                           / sum(c * c for c in collectives))


def test_points_measured_beside_their_own_one_replica_run_fit_the_same_model():
    """The machine ran 20% slower while some 2-replica runs were measured: each point carries the
    1-replica step of its minutes, and launch and overlap come back as if it had not."""
    import dataclasses
    drifted = []
    for i, point in enumerate(points(TRUE)):
        slow = dataclasses.replace(TRUE, compute_s=TRUE.compute_s * (1.2 if i % 2 else 1.0))
        drifted.append(FitPoint(point.nodes, point.per_node, slow.step_s(point.nodes, point.per_node, point.levels),
                                point.levels, slow.compute_s))
    fitted = fit(TRUE.compute_s, TRUE.sigma_s, S, "halving_doubling", drifted)
    assert fitted.launch_s == pytest.approx(0.003, abs=1e-9) and fitted.exposed == pytest.approx(0.6, abs=1e-9)
    unpaired = fit(TRUE.compute_s, TRUE.sigma_s, S, "halving_doubling",
                   [dataclasses.replace(p, compute_s=None) for p in drifted])
    assert abs(unpaired.launch_s - 0.003) > 0.005          # without the pairing the drift is read as overhead
