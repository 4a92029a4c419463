"""TensorFlow's first import without its native start-up lines.

TensorFlow 2.21 logs through absl before absl is initialised, and those lines ignore
TF_CPP_MIN_LOG_LEVEL (tensorflow#100442): every process printed "WARNING: All log messages
before absl::InitializeLog() ..." and "port.cc] oneDNN custom operations are on ..." twice.
The import runs with file descriptor 2 sent to a temporary file; afterwards every captured
line is written to the real stderr except the absl lines below TF_CPP_MIN_LOG_LEVEL (so
`bench -v`, which sets it to 0, shows them all). Nothing else is held back: a Python warning
or an error raised by the import is replayed as it was.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] ")
SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def import_tensorflow():
    """`import tensorflow`, quietly the first time in a process; returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    level = _min_log_level()
    if level == 0:
        import tensorflow
        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.write("".join(kept_lines(captured.read().decode(errors="replace"), level)))
            sys.stderr.flush()
    return tensorflow


def kept_lines(text: str, level: int) -> list[str]:
    """The lines of captured start-up output to show at TF_CPP_MIN_LOG_LEVEL `level`. A
    continuation of an absl message (indented, or cpu_feature_guard's "To enable ..." line) goes
    with the line before it; any other line without an absl header is kept."""
    kept, keeping = [], True
    for line in text.splitlines(keepends=True):
        header = ABSL_LINE.match(line)
        if line.rstrip("\n") == ABSL_NOTICE:
            keeping = False
        elif header:
            keeping = SEVERITY[header.group(1)] >= level
        elif not line.startswith((" ", "\t", "To enable")):
            keeping = True
        if keeping:
            kept.append(line)
    return kept


def _min_log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0
