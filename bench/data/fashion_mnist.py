"""Fashion-MNIST from its four IDX .gz files, and a learnable synthetic stand-in."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from bench.core.errors import DataError
from bench.data.store import RemoteFile, locate

DATASET = "fashion-mnist"
_KERAS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_ZALANDO = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# MD5s as published by Zalando Research (and used by torchvision).
FILES = {
    "train_images": RemoteFile("train-images-idx3-ubyte.gz", (_KERAS + "train-images-idx3-ubyte.gz", _ZALANDO + "train-images-idx3-ubyte.gz"), md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": RemoteFile("train-labels-idx1-ubyte.gz", (_KERAS + "train-labels-idx1-ubyte.gz", _ZALANDO + "train-labels-idx1-ubyte.gz"), md5="25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": RemoteFile("t10k-images-idx3-ubyte.gz", (_KERAS + "t10k-images-idx3-ubyte.gz", _ZALANDO + "t10k-images-idx3-ubyte.gz"), md5="bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": RemoteFile("t10k-labels-idx1-ubyte.gz", (_KERAS + "t10k-labels-idx1-ubyte.gz", _ZALANDO + "t10k-labels-idx1-ubyte.gz"), md5="bb300cfdad3c16e7a12a480ee83cd310"),
}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed) as a numpy array; DataError when malformed."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return body.reshape(shape)
    except (OSError, EOFError, ValueError, struct.error) as exc:
        raise DataError(f"{path}: corrupt IDX file ({exc})") from None


def load(data_dir: str | None, download: bool = True) -> tuple[dict[str, np.ndarray], Path]:
    folder = locate(DATASET, list(FILES.values()), data_dir, download=download)
    arrays = {key: read_idx(folder / f.name) for key, f in FILES.items()}
    return arrays, folder


CHUNK = 4096


def synthetic(n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """Images with Fashion-MNIST's shapes and a learnable, not trivial, class structure.

    Every class pattern mixes a shared background with a class-specific blob pattern
    (classes overlap, as shirts and T-shirts do); samples vary in intensity, are shifted
    by up to 2 pixels and noisy, stored as uint8 like the real files. A nearest-class-mean
    classifier gets about 0.65 on it, an MLP more.
    """
    rng = np.random.default_rng(seed)
    shared = rng.uniform(0, 1, (7, 7)).repeat(4, 0).repeat(4, 1)
    specific = rng.uniform(0, 1, (NUM_CLASSES, 7, 7)).repeat(4, 1).repeat(4, 2)
    prototypes = 0.7 * shared + 0.3 * specific

    # every (class, shift) pattern once; samples are built a chunk at a time in float32
    # (whole-array float64 temporaries of 60,000 images took 13 s a process, most of it
    # page faults, and every worker of a local run makes its own copy)
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    templates = np.stack([np.roll(prototypes, offset, axis=(1, 2)) for offset in offsets], 1).astype(np.float32)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, NUM_CLASSES, n).astype(np.uint8)
        intensity = rng.uniform(0.6, 1.0, n).astype(np.float32)
        shift = rng.integers(0, len(offsets), n)
        images = np.empty((n, 28, 28), np.uint8)
        for start in range(0, n, CHUNK):
            rows = slice(start, min(start + CHUNK, n))
            chunk = templates[labels[rows], shift[rows]] * intensity[rows, None, None]
            chunk += rng.standard_normal(chunk.shape, np.float32) * np.float32(0.3)
            np.clip(chunk, 0, 1, out=chunk)
            images[rows] = chunk * 255
        return images, labels

    train_images, train_labels = make(n_train)
    test_images, test_labels = make(n_test)
    return {"train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels}
