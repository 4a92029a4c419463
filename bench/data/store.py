"""Finding, downloading and verifying dataset files."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import DataError
from bench.core.record import umask


@dataclass(frozen=True)
class RemoteFile:
    name: str                  # file name inside the dataset folder
    urls: tuple[str, ...]      # canonical URL first, mirrors after
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None    # bytes, where no digest is published


def cache_root() -> Path:
    return Path(os.environ.get("DISTBENCH_CACHE", Path.home() / ".cache" / "distbench" / "data"))


def search_dirs(dataset: str, data_dir: str | None) -> list[Path]:
    """Folders that may hold `dataset`'s files, in order: <dir>/<dataset> and <dir> itself."""
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir))
    elif os.environ.get("DISTBENCH_DATA_DIR"):
        roots.append(Path(os.environ["DISTBENCH_DATA_DIR"]))
    roots.append(cache_root())
    dirs = []
    for root in roots:
        dirs += [root / dataset, root]
    return dirs


def check_data_dir(data_dir: str | None) -> None:
    if data_dir and not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir}: no such directory")


def digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def verify(path: Path, remote: RemoteFile) -> None:
    """Raise DataError when a file does not match its published checksum or size."""
    if remote.sha256 and digest(path, "sha256") != remote.sha256:
        raise DataError(f"{path}: sha256 mismatch (corrupt or a different file); delete it and fetch again")
    if remote.md5 and digest(path, "md5") != remote.md5:
        raise DataError(f"{path}: md5 mismatch (corrupt or a different file); delete it and fetch again")
    if remote.size is not None and path.stat().st_size != remote.size:
        raise DataError(f"{path}: {path.stat().st_size} bytes, expected {remote.size}; delete it and fetch again")


def locate(dataset: str, files: list[RemoteFile], data_dir: str | None, *,
           download: bool = True, verify_files: bool = True) -> Path:
    """The folder holding all `files` of `dataset`, downloading into the cache if allowed."""
    check_data_dir(data_dir)
    candidates = search_dirs(dataset, data_dir)
    for folder in candidates:
        if all((folder / f.name).is_file() for f in files):
            if verify_files:
                for f in files:
                    verify(folder / f.name, f)
            return folder
    offline = os.environ.get("DISTBENCH_OFFLINE", "") not in ("", "0")
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    how = (f"pre-stage {' '.join(f.name for f in files)} in <DIR>/{dataset}/ and pass --data-dir DIR "
           f"or set DISTBENCH_DATA_DIR (download: {files[0].urls[0]})")
    if not download or offline or data_dir:
        reason = "explicit --data-dir" if data_dir else "downloads disabled"
        raise DataError(f"{dataset} not found (looked in {looked}; {reason}): {how}")
    target = cache_root() / dataset
    errors = []
    for f in files:
        if (target / f.name).is_file():
            continue
        try:
            fetch(f, target / f.name)
        except (OSError, urllib.error.URLError) as exc:
            errors.append(f"{f.urls[0]}: {getattr(exc, 'reason', exc)}")
            break
    if errors:
        raise DataError(f"{dataset} not found (looked in {looked}) and download failed ({errors[0]}): {how}")
    return target


def fetch(remote: RemoteFile, destination: Path, timeout_s: float = 60.0) -> Path:
    """Download the first reachable URL to `destination` atomically and verify it."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for url in remote.urls:
        fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{remote.name}.")
        try:
            os.fchmod(fd, 0o666 & ~umask())     # a shared cache stays readable (mkstemp makes 0600)
            with urllib.request.urlopen(url, timeout=timeout_s) as response, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(response, out)
            verify(Path(tmp), remote)
            os.replace(tmp, destination)
            return destination
        except (OSError, urllib.error.URLError, DataError) as exc:
            last_error = exc
            Path(tmp).unlink(missing_ok=True)
    assert last_error is not None
    raise last_error
