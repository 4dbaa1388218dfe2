"""Crafted inputs and bounded calls shared by the self-tests of hostile input (archives, backup
folders, the backup CLI).

Guarantees: `time_limit` turns a hang into a TimeoutError (SIGALRM: pytest and its xdist workers
run tests in the main thread); `snapshot_tar` is a small valid snapshot in Qdrant's layout; `sparse_file` makes a file with holes;
`run_cli` runs the aidb-gate CLI in-process and fails the test on any traceback it prints.
"""

from __future__ import annotations

import io
import json
import signal
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aidb_gate import cli


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """A TimeoutError instead of a hang."""
    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {seconds} s: the reader hangs")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot_tar() -> bytes:
    """A small tar in Qdrant's snapshot layout (config.json, 0/segments/, 0/wal/)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = json.dumps({"params": {"vectors": {"size": 3, "distance": "Cosine"}}}).encode()
        info = tarfile.TarInfo("config.json")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        for folder in ("0", "0/segments", "0/wal"):
            entry = tarfile.TarInfo(folder)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(entry)
    return buf.getvalue()


def sparse_file(path: Path, size: int, chunks: dict[int, bytes]) -> None:
    """A file of `size` bytes, zero (holes) but for `chunks` {offset: bytes}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, data in chunks.items():
            fh.seek(offset)
            fh.write(data)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `aidb-gate ARGV`; a traceback in either fails the test."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err
