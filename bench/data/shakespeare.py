"""Tiny Shakespeare: the exact 1,115,394-character corpus of the char-RNN references."""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import DataError
from bench.data.store import RemoteFile, locate

DATASET = "tinyshakespeare"
FILE = RemoteFile(
    name="input.txt",
    urls=("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
          "https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt"),
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
)


def load(data_dir: str | None, download: bool = True) -> tuple[str, Path]:
    folder = locate(DATASET, [FILE], data_dir, download=download)
    path = folder / FILE.name
    try:
        return path.read_text(encoding="utf-8"), path
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None


def generated_text(n_chars: int, seed: int) -> str:
    """A learnable stand-in corpus (for --data generated): dialogue lines in the same style."""
    import random
    rng = random.Random(seed)
    speakers = ["ROMEO", "JULIET", "MERCUTIO", "NURSE", "FRIAR LAURENCE", "TYBALT"]
    words = ("thou thee thy love night day sweet fair death heaven speak come go now here there "
             "what why my lord lady good noble heart eyes light true gentle").split()
    parts, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 10)))
        part = f"{rng.choice(speakers)}:\n{line.capitalize()}.\n\n"
        parts.append(part)
        size += len(part)
    return "".join(parts)[:n_chars]
