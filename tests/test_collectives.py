"""Known answers of the allreduce model (analysis/collectives.py), computed by hand: S = 1e8
bytes; inside a node alpha 1 us, B 100 GB/s; between nodes alpha 5 us, B 10 GB/s."""

import math

import pytest

from analysis.collectives import Level, allreduce_s, inter_node_bytes, ring_s

S = 1e8
INSIDE, BETWEEN = Level(1e-6, 1e11), Level(5e-6, 1e10)

# (per_node, nodes): (ring, tree, hierarchical) seconds
KNOWN = {
    # g = 1: ring = 2(N-1) 5us + 2(N-1)/N 10 ms; tree = 2 log2(N) 5us + 20 ms; hierarchical = ring
    (1, 2): (0.01001, 0.02001, 0.01001),
    (1, 4): (0.01503, 0.02002, 0.01503),
    (1, 8): (0.01757, 0.02003, 0.01757),
    (1, 64): (0.0203175, 0.02006, 0.0203175),
    # g = 2, P = 2N: ring over P ranks at the inter-node link; tree + 2 us of the chain inside;
    # hierarchical: inside 2 (1 us + 0.5 ms) = 1.002 ms, then 2(N-1) 5 us + 2(N-1)/N 10 ms
    (2, 2): (0.01503, 0.020012, 0.011012),
    (2, 4): (0.01757, 0.020022, 0.016032),
    (2, 8): (0.0189, 0.020032, 0.018572),
    (2, 64): (0.02111375, 0.020062, 0.0213195),
}


@pytest.mark.parametrize("shape", list(KNOWN))
def test_each_algorithm_at_known_shapes(shape):
    per_node, nodes = shape
    for algorithm, expected in zip(("ring", "tree", "hierarchical"), KNOWN[shape]):
        assert allreduce_s(algorithm, S, nodes, per_node, INSIDE, BETWEEN) == pytest.approx(expected, rel=1e-9), algorithm


def test_one_node_is_a_ring_inside_it_whatever_the_algorithm():
    for algorithm in ("ring", "tree", "hierarchical"):
        assert allreduce_s(algorithm, S, 1, 2, INSIDE, BETWEEN) == pytest.approx(0.001002)   # 2 us + 1 ms
        assert allreduce_s(algorithm, S, 1, 1, INSIDE, BETWEEN) == 0.0
    assert ring_s(S, 4, INSIDE) == pytest.approx(6e-6 + 1.5e-3)


def test_bytes_over_a_nodes_link():
    assert inter_node_bytes("ring", S, 4, 2) == pytest.approx(2 * 7 / 8 * S)
    assert inter_node_bytes("hierarchical", S, 4, 2) == pytest.approx(2 * 3 / 4 * S)
    assert inter_node_bytes("tree", S, 4, 2) == 2 * S and inter_node_bytes("ring", S, 1, 2) == 0.0


def test_unknown_algorithm_or_shape_is_refused():
    with pytest.raises(ValueError, match="unknown allreduce algorithm 'butterfly'"):
        allreduce_s("butterfly", S, 2, 1, INSIDE, BETWEEN)
    with pytest.raises(ValueError, match="0 nodes"):
        allreduce_s("ring", S, 0, 1, INSIDE, BETWEEN)


def test_the_slowest_of_n_replicas_in_standard_deviations():
    from analysis.collectives import expected_max_normal
    # tabulated expected maxima of n standard normals (Tippett 1925; Harter 1961)
    for count, expected in ((1, 0.0), (2, 0.5642), (4, 1.0294), (8, 1.4236), (100, 2.5076)):
        assert expected_max_normal(count) == pytest.approx(expected, abs=1e-3), count


# Rabenseifner's: 2 [log2(g) 1 us + (g-1)/g 1 ms] + 2 [log2(N) 5 us + (N-1)/N 10 ms]
HALVING_DOUBLING = {(1, 2): 0.01001, (1, 4): 0.01502, (1, 8): 0.01753, (1, 64): 0.0197475,
                    (2, 2): 0.011012, (2, 4): 0.016022, (2, 8): 0.018532, (2, 64): 0.0207495,
                    # 3 nodes: 2 of them as above, the third folded in and out: + 2 (5 us + 10 ms)
                    (1, 3): 0.03002}


@pytest.mark.parametrize("shape", list(HALVING_DOUBLING))
def test_halving_doubling_at_known_shapes(shape):
    per_node, nodes = shape
    assert allreduce_s("halving_doubling", S, nodes, per_node, INSIDE, BETWEEN) == pytest.approx(
        HALVING_DOUBLING[shape], rel=1e-9)


def test_halving_doubling_inside_one_node_has_log_latency():
    assert allreduce_s("halving_doubling", S, 1, 4, INSIDE, BETWEEN) == pytest.approx(2 * (2e-6 + 0.75e-3))


def test_nccl_takes_the_faster_of_ring_and_tree():
    for per_node, nodes in KNOWN:
        ring, tree, _ = KNOWN[per_node, nodes]
        assert allreduce_s("nccl", S, nodes, per_node, INSIDE, BETWEEN) == pytest.approx(min(ring, tree), rel=1e-9)


def test_every_backend_with_a_collective_names_a_known_algorithm_on_cpus_and_gpus():
    import strategies
    from analysis.collectives import ALGORITHMS
    said = {name: strategies.get_class(name).allreduce for name in ("default", "mirrored", "mwms", "horovod")}
    assert said["default"] == {}
    for name in ("mirrored", "mwms", "horovod"):
        assert set(said[name]) == {"cpu", "gpu"} and set(said[name].values()) <= set(ALGORITHMS), name


@pytest.mark.parametrize("algorithm", ["ring", "halving_doubling", "hierarchical", "tree"])
@pytest.mark.parametrize("nodes, per_node", [(2, 1), (2, 2), (4, 2)])
def test_the_between_level_is_read_back_from_a_collective_at_any_shape(algorithm, nodes, per_node):
    """A `bench comm` at 2 nodes x 2 measures both levels at once: with the inside level known
    (its one-node run), the between level is what is left."""
    from analysis.collectives import Measured, between_level
    sizes = [2.0 ** k for k in range(17, 24)]
    times = tuple((size, allreduce_s(algorithm, size, nodes, per_node, INSIDE, BETWEEN)) for size in sizes)
    level = between_level(algorithm, [Measured(nodes, per_node, times)], INSIDE, around=1 << 20)
    assert level.alpha == pytest.approx(BETWEEN.alpha, rel=1e-6) and level.bandwidth == pytest.approx(BETWEEN.bandwidth)


def test_the_between_level_of_a_ring_at_2_x_2_by_hand():
    """Ring over 4 ranks: 6 alpha_b + 1.5 S / B_b whatever the inside level; 1 MiB in 6.3 ms and
    2 MiB in 12.3 ms: 1.5 MiB / B_b = 6 ms, 6 alpha_b = 0.3 ms."""
    from analysis.collectives import Measured, between_level
    mib = float(1 << 20)
    level = between_level("ring", [Measured(2, 2, ((mib, 6.3e-3), (2 * mib, 12.3e-3)))], INSIDE)
    assert level.alpha == pytest.approx(50e-6) and level.bandwidth == pytest.approx(1.5 * mib / 6e-3)


def test_a_ring_at_2_x_1_and_2_x_2_separates_latency_from_bytes_at_one_size():
    """One size at two shapes: 2 alpha + S/B = 5.5 ms and 6 alpha + 1.5 S/B = 9.0 ms (S = 1 MiB):
    alpha = 0.25 ms, S/B = 5 ms. Neither shape alone could tell them apart."""
    from analysis.collectives import Measured, between_level
    mib = float(1 << 20)
    level = between_level("ring", [Measured(2, 1, ((mib, 5.5e-3),)), Measured(2, 2, ((mib, 9.0e-3),))], INSIDE)
    assert level.alpha == pytest.approx(0.25e-3) and level.bandwidth == pytest.approx(mib / 5e-3)


def test_a_time_that_does_not_grow_with_size_is_latency_only():
    from analysis.collectives import Measured, between_level
    level = between_level("ring", [Measured(2, 1, ((1e6, 4e-3), (2e6, 4e-3)))], Level(0.0, math.inf))
    assert level == Level(pytest.approx(2e-3), math.inf)


def test_a_between_level_needs_two_nodes_and_two_sizes():
    from analysis.collectives import Measured, between_level
    with pytest.raises(ValueError, match="2 or more nodes"):
        between_level("ring", [Measured(1, 2, ((1.0, 1.0), (2.0, 2.0)))], INSIDE)
    with pytest.raises(ValueError, match="2 or more message sizes"):
        between_level("ring", [Measured(2, 1, ((1e6, 1e-3),))], INSIDE)
    with pytest.raises(ValueError, match="2 or more message sizes"):     # the same counts at both shapes
        between_level("halving_doubling", [Measured(2, 1, ((1e6, 1e-3),)), Measured(2, 2, ((1e6, 1.2e-3),))], INSIDE)
