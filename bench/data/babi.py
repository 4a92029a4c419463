"""bAbI QA tasks: the real text format, its parser, and a QA1-format story generator.

The generator writes files in exactly the format of the bAbI tarball (numbered lines;
question lines carry a tab, the answer, a tab and the supporting-fact ids), and they
are read back by the same parser as the real files.
"""

from __future__ import annotations

import random
import re
import tarfile
from pathlib import Path
from typing import IO, Iterable

import numpy as np

from bench.core.errors import DataError
from bench.core.record import atomic_write_text
from bench.data.store import RemoteFile, cache_root, locate, search_dirs, check_data_dir

DATASET = "babi"
TARBALL = RemoteFile(
    name="tasks_1-20_v1-2.tar.gz",
    urls=("http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz",
          "https://s3.amazonaws.com/text-datasets/babi_tasks_1-20_v1-2.tar.gz"),
)
TASK = "qa1_single-supporting-fact"
MEMBER = "tasks_1-20_v1-2/en-10k/" + TASK + "_{split}.txt"

Story = tuple[list[str], list[str], str]   # (story tokens, question tokens, answer)

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(sentence: str) -> list[str]:
    """'Where is Mary?' -> ['Where', 'is', 'Mary', '?']"""
    return _TOKEN.findall(sentence)


def parse_stories(lines: Iterable[str | bytes]) -> list[Story]:
    """Parse bAbI-format lines into (flattened story, question, answer) triples."""
    data: list[Story] = []
    story: list[list[str]] = []
    for number, raw in enumerate(lines, 1):
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        line = line.strip()
        if not line:
            continue
        nid_text, _, text = line.partition(" ")
        if not nid_text.isdigit() or not text:
            raise ValueError(f"line {number}: expected '<id> <sentence>', got {line[:60]!r}")
        if int(nid_text) == 1:
            story = []
        if "\t" in text:
            fields = text.split("\t")
            if len(fields) != 3:
                raise ValueError(f"line {number}: question lines need question, answer and support ids")
            question, answer, _support = fields
            data.append(([tok for sent in story for tok in sent], tokenize(question), answer.strip()))
            story.append([])
        else:
            story.append(tokenize(text))
    return data


def _read(handle: IO[bytes], name: str) -> list[Story]:
    try:
        stories = parse_stories(handle.readlines())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{name}: not in bAbI format ({exc})") from None
    if not stories:
        raise DataError(f"{name}: no questions found")
    return stories


def read_task_dir(folder: Path) -> dict[str, list[Story]]:
    splits = {}
    for split in ("train", "test"):
        path = folder / MEMBER.format(split=split)
        with open(path, "rb") as handle:
            splits[split] = _read(handle, str(path))
    return splits


def read_tarball(path: Path) -> dict[str, list[Story]]:
    try:
        with tarfile.open(path) as tar:
            splits = {}
            for split in ("train", "test"):
                member = MEMBER.format(split=split)
                handle = tar.extractfile(member)
                if handle is None:
                    raise DataError(f"{path}: {member} is not a file")
                splits[split] = _read(handle, f"{path}:{member}")
            return splits
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: corrupt bAbI tarball ({exc})") from None
    except KeyError as exc:
        raise DataError(f"{path}: no {exc} inside; is this the bAbI tasks 1-20 v1-2 tarball?") from None


def load_real(data_dir: str | None, download: bool = True) -> tuple[dict[str, list[Story]], Path]:
    """QA1 10k from an extracted tree or the tarball (pre-staged, cached or downloaded)."""
    check_data_dir(data_dir)
    for folder in search_dirs(DATASET, data_dir):
        if (folder / MEMBER.format(split="train")).is_file():
            return read_task_dir(folder), folder
    # No checksum of the tarball is published with it: it is checked by opening it
    # and reading the QA1 members, and its sha256 goes into the run's provenance.
    folder = locate(DATASET, [TARBALL], data_dir, download=download)
    return read_tarball(folder / TARBALL.name), folder / TARBALL.name


# --- generator -------------------------------------------------------------------------

PEOPLE = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "hallway", "garden", "office", "bedroom", "kitchen")
MOVES = ("moved to", "went to", "went back to", "journeyed to", "travelled to")


def generate_story_lines(rng: random.Random, questions: int = 5) -> list[str]:
    """One QA1 story: two moves, then a question, `questions` times (as in the real task)."""
    lines: list[str] = []
    where: dict[str, tuple[str, int]] = {}
    for _ in range(questions):
        for _ in range(2):
            person = rng.choice(PEOPLE)
            # as in bAbI's WhereIsActor: a move is valid only to somewhere else
            here = where.get(person, (None, 0))[0]
            place = rng.choice([p for p in PLACES if p != here])
            lines.append(f"{len(lines) + 1} {person} {rng.choice(MOVES)} the {place}.")
            where[person] = (place, len(lines))
        person = rng.choice(sorted(where))
        place, support = where[person]
        lines.append(f"{len(lines) + 1} Where is {person}? \t{place}\t{support}")
    return lines


def generate_task(folder: Path, seed: int, train_questions: int = 10_000,
                  test_questions: int = 1_000) -> Path:
    """Write QA1 train/test files (10k layout) under `folder`; returns `folder`."""
    rng = random.Random(seed)
    for split, count in (("train", train_questions), ("test", test_questions)):
        path = folder / MEMBER.format(split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for _ in range(max(1, count // 5)):
            lines += generate_story_lines(rng)
        # ranks and concurrent jobs may generate the same files: each writes whole files
        atomic_write_text(path, "\n".join(lines) + "\n")
    return folder


def load_generated(seed: int, train_questions: int = 10_000, test_questions: int = 1_000) -> tuple[dict[str, list[Story]], Path]:
    folder = cache_root() / "babi-generated" / f"seed{seed}-{train_questions}-{test_questions}"
    if not (folder / MEMBER.format(split="test")).is_file():
        generate_task(folder, seed, train_questions, test_questions)
    return read_task_dir(folder), folder


# --- vectorisation ---------------------------------------------------------------------

def vocabulary(*splits: list[Story]) -> list[str]:
    words: set[str] = set()
    for stories in splits:
        for story, question, answer in stories:
            words |= set(story) | set(question) | {answer}
    return sorted(words)


def sentences(story: list[str]) -> list[list[str]]:
    """A flattened story's statements again: every bAbI statement ends with '.'."""
    found: list[list[str]] = [[]]
    for token in story:
        found[-1].append(token)
        if token == ".":
            found.append([])
    return [sentence for sentence in found if sentence]


def vectorize(stories: list[Story], word_index: dict[str, int], story_len: int,
              query_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded id matrices (0 = padding), as keras' pad_sequences does by default."""
    x = np.zeros((len(stories), story_len), np.int32)
    q = np.zeros((len(stories), query_len), np.int32)
    y = np.zeros((len(stories),), np.int32)
    for i, (story, question, answer) in enumerate(stories):
        ids = [word_index[w] for w in story][-story_len:]
        x[i, story_len - len(ids):] = ids
        qids = [word_index[w] for w in question][-query_len:]
        q[i, query_len - len(qids):] = qids
        y[i] = word_index[answer]
    return x, q, y


def vectorize_sentences(stories: list[Story], word_index: dict[str, int], memories: int,
                        sentence_len: int, query_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stories as (memories, sentence_len) id matrices, one row per statement: the last
    statement is always the last row (a memory's row says how recent it is), older ones
    beyond `memories` are dropped; words (and the question's) are right-padded (0 = padding)."""
    x = np.zeros((len(stories), memories, sentence_len), np.int32)
    q = np.zeros((len(stories), query_len), np.int32)
    y = np.zeros((len(stories),), np.int32)
    for i, (story, question, answer) in enumerate(stories):
        kept = sentences(story)[-memories:]
        for row, sentence in enumerate(kept, memories - len(kept)):
            ids = [word_index[w] for w in sentence][:sentence_len]
            x[i, row, :len(ids)] = ids
        qids = [word_index[w] for w in question][:query_len]
        q[i, :len(qids)] = qids
        y[i] = word_index[answer]
    return x, q, y
