"""`bench comm`: allreduce bandwidth over real MPI ranks, written as a record."""

import pytest

from bench.core.errors import UsageError
from bench.core.record import read_record
from bench.tools.comm import bus_factor, sizes
from conftest import error_lines

pytestmark = pytest.mark.stack


def test_sizes_and_bus_factor():
    assert sizes(1024, 8192) == [1024, 2048, 4096, 8192]
    assert sizes(1000, 4096) == [1024, 2048, 4096]
    assert bus_factor(2) == 1.0 and bus_factor(8) == 1.75
    with pytest.raises(UsageError):
        sizes(4096, 1024)


def test_allreduce_bandwidth_over_two_mpi_ranks(bench, tmp_path):
    done = bench("comm", "--local-workers", "2", "--max-bytes", "65536", "--iters", "5",
                 "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    record = read_record(done.stdout.strip().splitlines()[-1])
    assert record.kind == "comm" and record.world_size == 2 and record.status == "ok"
    rows = record.metrics["allreduce"]
    assert [r["bytes"] for r in rows] == [1024 * 2 ** i for i in range(7)]
    for row in rows:
        assert row["time_us"] > 0
        assert row["algbw_GBps"] == pytest.approx(row["bytes"] / (row["time_us"] * 1e-6) / 1e9)
        assert row["busbw_GBps"] == pytest.approx(row["algbw_GBps"] * bus_factor(2))
    assert (tmp_path / record.run_id / "allreduce.csv").is_file()


def test_horovods_collective_with_open_mpis_algorithm_forced(bench, tmp_path):
    """Horovod's CPU allreduce is Open MPI's under MPI: `--algorithm` forces Open MPI's choice
    for it (predict_check times Horovod at 2 ranks with the algorithm 4 ranks run)."""
    done = bench("comm", "--strategy", "horovod", "--algorithm", "recursive_doubling", "--local-workers", "2",
                 "--min-bytes", "4096", "--max-bytes", "8192", "--iters", "3", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    record = read_record(done.stdout.strip().splitlines()[-1])
    assert record.status == "ok" and record.strategy == "horovod" and record.world_size == 2
    assert record.config["algorithm"] == "recursive_doubling"
    assert record.metrics["collective"].startswith("horovod")
    assert [r["bytes"] for r in record.metrics["allreduce"]] == [4096, 8192]


@pytest.mark.parametrize("args, message", [
    (["comm"], "bench comm needs 2 or more ranks"),
    (["comm", "--local-workers", "2", "--min-bytes", "0"], "need 4 <= min <= max"),
    (["comm", "--iters", "0"], "--iters >= 1"),
    # the backends say which have a collective to time, and how it cannot run: comm names none
    (["comm", "--strategy", "mirrored", "--local-workers", "2"], "--strategy 'mirrored': must be one of mpi, mwms, horovod"),
    (["comm", "--strategy", "mwms", "--local-workers", "2"], "mwms runs under srun (or with TF_CONFIG)"),
    # Open MPI's algorithm: for mpi4py's allreduce and Horovod's (its CPU collective), not TensorFlow's
    (["comm", "--strategy", "mwms", "--algorithm", "ring"], "only with --strategy mpi or horovod"),
])
def test_bad_comm_input_is_exit_2(bench, tmp_path, args, message):
    done = bench(*args, "--results", str(tmp_path))
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and message in lines[0], done.stderr
