"""Data: the bAbI format and generator, IDX files, checksums, and failures that say where we looked."""

import gzip
import random
import shutil
import struct
import tarfile

import numpy as np
import pytest

from bench.core.errors import DataError
from bench.data import babi, fashion_mnist, shakespeare, store
from conftest import SHARED_DATA

# Verbatim shape of the real qa1 files: numbered lines, question \t answer \t support.
REAL_FORMAT = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
1 Sandra travelled to the office.
2 Sandra went to the bathroom.
3 Where is Sandra? \tbathroom\t2
"""


def test_parser_reads_the_real_format():
    stories = babi.parse_stories(REAL_FORMAT.splitlines(keepends=True))
    assert len(stories) == 3
    story, question, answer = stories[1]
    assert question == ["Where", "is", "Daniel", "?"] and answer == "hallway"
    assert story[:5] == ["Mary", "moved", "to", "the", "bathroom"]
    assert len(story) == 6 + 6 + 7 + 6              # 4 statements so far, questions excluded
    assert stories[2][0] == "Sandra travelled to the office . Sandra went to the bathroom .".split()


def test_generator_writes_the_same_format_with_correct_supporting_facts(tmp_path):
    babi.generate_task(tmp_path, seed=1, train_questions=200, test_questions=50)
    lines = (tmp_path / babi.MEMBER.format(split="train")).read_text().splitlines()
    statements = {}
    questions = 0
    for line in lines:
        nid, text = line.split(" ", 1)
        if nid == "1":
            statements = {}
        if "\t" in text:
            question, answer, support = text.split("\t")
            person = question.split()[2].rstrip("?")
            fact = statements[int(support)]
            assert fact.split()[0] == person and fact.rstrip(".").endswith(answer)
            questions += 1
        else:
            statements[int(nid)] = text
    assert questions == 200
    parsed = babi.read_task_dir(tmp_path)
    assert len(parsed["train"]) == 200 and len(parsed["test"]) == 50


def test_tarball_is_read_like_the_real_one(tmp_path):
    tree = babi.generate_task(tmp_path / "tree", seed=2, train_questions=20, test_questions=10)
    tarball = tmp_path / "babi" / babi.TARBALL.name
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree / "tasks_1-20_v1-2", arcname="tasks_1-20_v1-2")
    stories, location = babi.load_real(str(tmp_path))
    assert location == tarball and len(stories["test"]) == 10


def test_corrupt_tarball_is_a_data_error(tmp_path):
    (tmp_path / "babi").mkdir()
    (tmp_path / "babi" / babi.TARBALL.name).write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="corrupt bAbI tarball"):
        babi.load_real(str(tmp_path))


def test_malformed_babi_lines_are_a_data_error(tmp_path):
    path = tmp_path / babi.MEMBER.format(split="train")
    path.parent.mkdir(parents=True)
    path.write_text("Mary moved to the bathroom.\n")
    with pytest.raises(DataError, match="not in bAbI format"):
        babi.read_task_dir(tmp_path)


def test_vectorize_pads_left_with_zero():
    index = {"a": 1, "b": 2, "c": 3}
    x, q, y = babi.vectorize([(["a", "b"], ["c"], "a")], index, story_len=4, query_len=2)
    assert x.tolist() == [[0, 0, 1, 2]] and q.tolist() == [[0, 3]] and y.tolist() == [1]


def test_statements_get_one_slot_each_newest_last():
    index = {w: i for i, w in enumerate("a b c d . ?".split(), 1)}
    story = "a b . c . d a b .".split()
    assert babi.sentences(story) == [["a", "b", "."], ["c", "."], ["d", "a", "b", "."]]
    x, q, y = babi.vectorize_sentences([(story, ["c", "?"], "d")], index, memories=4, sentence_len=4,
                                       query_len=3)
    assert x.tolist() == [[[0, 0, 0, 0], [1, 2, 5, 0], [3, 5, 0, 0], [4, 1, 2, 5]]]
    assert q.tolist() == [[3, 6, 0]] and y.tolist() == [4]
    x, _, _ = babi.vectorize_sentences([(story, ["c"], "d")], index, memories=2, sentence_len=4, query_len=1)
    assert x.tolist() == [[[3, 5, 0, 0], [4, 1, 2, 5]]]        # the oldest statement is dropped


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_round_trip_and_corruption(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (5, 28, 28))
    write_idx(tmp_path / "x.gz", images)
    assert (fashion_mnist.read_idx(tmp_path / "x.gz") == images).all()
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="corrupt IDX"):
        fashion_mnist.read_idx(tmp_path / "bad.gz")


def test_real_fashion_mnist_files_are_checked_against_published_md5(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for remote in fashion_mnist.FILES.values():
        write_idx(folder / remote.name, np.zeros((2, 28, 28)))
    with pytest.raises(DataError, match="md5 mismatch"):
        fashion_mnist.load(str(tmp_path))


def test_synthetic_images_have_real_shapes_and_learnable_classes():
    arrays = fashion_mnist.synthetic(2000, 500, seed=0)
    assert arrays["train_images"].shape == (2000, 28, 28) and arrays["train_images"].dtype == np.uint8
    assert set(np.unique(arrays["train_labels"])) == set(range(10))
    # a nearest-class-mean classifier beats chance by far: there is class structure to learn
    x = arrays["train_images"].reshape(2000, -1) / 255.0
    means = np.stack([x[arrays["train_labels"] == k].mean(0) for k in range(10)])
    xt = arrays["test_images"].reshape(500, -1) / 255.0
    predicted = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == arrays["test_labels"]).mean() > 0.5


def test_tiny_shakespeare_is_the_exact_file():
    text, path = shakespeare.load(str(SHARED_DATA))
    assert len(text) == 1_115_394 and len(set(text)) == 65
    assert path == SHARED_DATA / "tinyshakespeare" / "input.txt"


def test_modified_corpus_fails_its_checksum(tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    shutil.copy(SHARED_DATA / "tinyshakespeare" / "input.txt", tmp_path / "tinyshakespeare" / "input.txt")
    with open(tmp_path / "tinyshakespeare" / "input.txt", "a") as handle:
        handle.write("extra")
    with pytest.raises(DataError, match="sha256 mismatch"):
        shakespeare.load(str(tmp_path))


def test_missing_data_says_where_it_looked_and_how_to_prestage(tmp_path, monkeypatch):
    monkeypatch.delenv("DISTBENCH_DATA_DIR")
    with pytest.raises(DataError) as info:
        fashion_mnist.load(None)
    message = str(info.value)
    assert "looked in" in message and str(store.cache_root()) in message
    assert "--data-dir" in message and "train-images-idx3-ubyte.gz" in message


def test_download_is_attempted_from_the_canonical_url_and_failure_is_reported(tmp_path, monkeypatch):
    """No internet here: the real download code runs and its failure is one clear error."""
    monkeypatch.delenv("DISTBENCH_DATA_DIR")
    monkeypatch.setenv("DISTBENCH_OFFLINE", "0")
    monkeypatch.setenv("DISTBENCH_CACHE", str(tmp_path))
    try:
        text, _ = shakespeare.load(None)
    except DataError as exc:
        assert "download failed" in str(exc) and shakespeare.FILE.urls[0] in str(exc)
        assert not list(tmp_path.rglob("input.txt"))      # no partial file left behind
    else:                                                 # a machine with internet
        assert len(text) == 1_115_394


def test_generated_text_is_deterministic():
    assert shakespeare.generated_text(500, seed=3) == shakespeare.generated_text(500, seed=3)
    assert random.Random(0) is not None


def test_concurrent_generation_of_the_same_task_is_safe(tmp_path):
    """Ranks of one job (or concurrent jobs) generate the same files at the same moment."""
    import subprocess
    import sys
    script = ("import sys; from pathlib import Path; from bench.data import babi\n"
              "for _ in range(30):\n"
              "    babi.generate_task(Path(sys.argv[1]), seed=5, train_questions=300, test_questions=50)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)]) for _ in range(6)]
    assert all(p.wait() == 0 for p in procs)
    assert len(babi.read_task_dir(tmp_path)["train"]) == 300
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.stack
@pytest.mark.parametrize("fraction, train, val", [(0.1, 360, 40), (0.0, 400, None)])
def test_memnn_holds_out_the_last_training_questions_for_validation(fraction, train, val):
    from bench import workloads
    from bench.core.hparams import resolve
    memnn = workloads.get("memnn")
    hp = resolve(memnn.space, {"train_questions": "400", "validation_fraction": str(fraction)}, "memnn")
    data = memnn.load("generated", None, hp, seed=0)
    assert data.info["train_samples"] == train == len(data.splits["train"][1])
    assert (len(data.splits["val"][1]) if "val" in data.splits else None) == val
    assert len(data.splits["test"][1]) == 1000


@pytest.mark.stack
@pytest.mark.parametrize("settings, story_shape", [({}, None), ({"story_layout": "statements"}, (70,)),
                                                  ({"architecture": "memn2n"}, (10, 7))])
def test_memnn_story_layouts_have_the_shapes_of_qa1(settings, story_shape):
    """Statement layouts: 10 statements of at most 7 words. The word layout is as long as
    the longest story (68 words in real QA1 and the synthetic data)."""
    from bench import workloads
    from bench.core.hparams import resolve
    memnn = workloads.get("memnn")
    hp = resolve(memnn.space, dict(settings), "memnn")     # QA1 10k
    for source in ("generated", "synthetic"):
        data = memnn.load(source, None, hp, seed=0)
        (story, question), answer = next(iter(memnn.dataset(data, "train", 8, hp, 0, training=True)))
        assert tuple(story.shape) == (8, *(story_shape or (data.info["story_len"],)))
        assert tuple(question.shape) == (8, 4) and tuple(answer.shape) == (8,)
        assert story_shape or 60 < data.info["story_len"] <= 70


@pytest.mark.stack
@pytest.mark.parametrize("stream", [False, True], ids=["pass-repeated", "one-stream"])
def test_shuffled_pipeline_is_a_seeded_permutation_each_epoch_with_pairs_kept(stream):
    """The gathered-batch path of `from_arrays`: what `shuffle(size)` + `batch(drop_remainder)`
    gave, whether a pass is iterated again or the passes follow in one stream (`repeat`)."""
    from bench.workloads import pipeline
    x = np.arange(100, dtype=np.int32)

    def first_columns(seed, batches, batch=10):
        ds = pipeline.from_arrays((x, 2 * x), batch, seed, training=True, repeat=stream)
        batches_of = iter(ds if stream else ds.repeat())
        out = []
        for _ in range(batches):
            xs, ys = next(batches_of)
            assert (ys.numpy() == 2 * xs.numpy()).all()
            out.append(xs.numpy())
        return np.concatenate(out)

    two_epochs = first_columns(7, 20)
    three_epochs = first_columns(7, 30)
    assert (three_epochs[:200] == two_epochs).all()
    assert sorted(three_epochs[:100]) == sorted(three_epochs[100:200]) == sorted(three_epochs[200:]) == list(range(100))
    assert (three_epochs[:100] != three_epochs[100:200]).any() and (three_epochs[100:200] != three_epochs[200:]).any()
    assert (first_columns(7, 20) == two_epochs).all() and (first_columns(8, 20) != two_epochs).any()
    one_pass = pipeline.from_arrays((x, x), 30, 7, training=True)
    assert [int(xs.shape[0]) for xs, _ in one_pass] == [30, 30, 30]


@pytest.mark.stack
@pytest.mark.parametrize("count", [2, 3, 4])
def test_shards_of_every_batch_make_the_global_batch_and_no_shard_builds_another(count):
    """Training: shard i of step k holds rows [i*b/n, (i+1)*b/n) of the global batch of step
    k; evaluation: every sample once, the last partial batch split as evenly as it goes."""
    from bench.core.sharding import Shard
    from bench.workloads import pipeline
    x = np.arange(103, dtype=np.int32)
    batch = 12

    def batches(shard, training, steps=None):
        ds = pipeline.from_arrays((x, 2 * x), batch, 5, training=training, shuffle_buffer=40, shard=shard,
                                  repeat=bool(steps))
        out = []
        for xs, ys in (ds.take(steps) if steps else ds):
            assert (ys.numpy() == 2 * xs.numpy()).all()
            out.append(xs.numpy())
        return out

    whole = batches(Shard(), True, steps=16)                     # two epochs of 8 full batches
    parts = [batches(Shard(i, count), True, steps=16) for i in range(count)]
    for step, global_batch in enumerate(whole):
        assert (np.concatenate([p[step] for p in parts]) == global_batch).all()
        assert [len(p[step]) for p in parts] == [Shard(i, count).size(batch) for i in range(count)]
    first_epoch = np.concatenate(whole[:8])
    assert len(set(first_epoch)) == 96 and (first_epoch != np.sort(first_epoch)).any()
    windows = first_epoch // 40                                  # shuffle_buffer 40: permuted within windows of 40
    assert (np.diff(windows) >= 0).all()
    evaluation = [batches(Shard(i, count), False) for i in range(count)]
    rows = np.sort(np.concatenate([b for shard in evaluation for b in shard]))
    assert (rows == x).all()
    assert {len(shard) for shard in evaluation} == {9}            # 103 = 8 x 12 + 7: as many steps on every shard
    sparse = [batches(Shard(i, 12), False) for i in range(12)]    # 7 rows of the last batch over 12 shards
    assert {len(shard) for shard in sparse} == {9} and sorted(len(shard[-1]) for shard in sparse) == [0] * 5 + [1] * 7


@pytest.mark.stack
def test_a_stateful_shard_keeps_its_own_contiguous_streams():
    from bench.core.sharding import Shard
    from bench.workloads.charrnn import contiguous_batches
    ids = np.arange(1000, dtype=np.int32)
    x, y = contiguous_batches(ids, batch=4, seq=10)
    for index in range(2):
        xs, ys = contiguous_batches(ids, batch=4, seq=10, shard=Shard(index, 2))
        assert (xs == x[:, 2 * index:2 * index + 2]).all() and (ys == y[:, 2 * index:2 * index + 2]).all()
        assert (xs[1, :, 0] == xs[0, :, -1] + 1).all()            # row i's next sequence continues it


@pytest.mark.stack
def test_a_training_pass_states_its_length():
    """Keras counts evaluate()'s and fit()'s steps from it (unknown, it averaged 3 batches as 4)."""
    import tensorflow as tf
    from bench.core.sharding import Shard
    from bench.workloads import pipeline
    x = np.arange(103, dtype=np.int32)
    for shard in (Shard(), Shard(1, 3)):
        ds = pipeline.from_arrays((x, x), 12, 5, training=True, shard=shard)
        assert int(ds.cardinality()) == 8 and int(ds.take(3).cardinality()) == 3
        stream = pipeline.from_arrays((x, x), 12, 5, training=True, shard=shard, repeat=True)
        assert int(stream.cardinality()) == tf.data.INFINITE_CARDINALITY
        assert int(pipeline.from_arrays((x, x), 12, 5, training=False, shard=shard).cardinality()) == 9
