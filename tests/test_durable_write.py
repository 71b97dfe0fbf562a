"""Files are written atomically and durably: nothing half-written under the final name, no
temporary file left behind — after an exception, Ctrl-C, or a ``kill -9`` (on Linux the data go
to an unnamed O_TMPFILE file that dies with its writer; elsewhere the next write to the same path
removes the killed writer's part)."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minicompress import io as mio
from minicompress.artifact import write_artifact

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_write_that_raises_midway_leaves_nothing(tmp_path, exc):
    target = tmp_path / "out" / "model.npz"
    with pytest.raises(exc):
        with mio.atomic_write(target) as f:
            f.write(b"x" * 10_000)
            raise exc("stopped mid-write")
    assert list(target.parent.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with mio.atomic_write(target) as f:
            f.write(b"new, but incomplete")
            raise RuntimeError
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_durable_write_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.fstat(fd).st_mode)
        return real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    write_artifact(tmp_path / "m.npz", {}, b"abc")
    import stat
    assert [stat.S_ISREG(m) for m in synced] == [True, False]     # the file, then the directory
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644


_WRITER = """
import sys, time
import minicompress.io as mio
from minicompress.io import atomic_write
if sys.argv[2] == "named":        # the fallback where the platform has no O_TMPFILE
    mio._open_unnamed = lambda directory: None
with atomic_write(sys.argv[1]) as f:
    f.write(b"half of a file")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
    f.write(b"the other half")
"""


def unnamed_files_supported(directory) -> bool:
    fd = mio._open_unnamed(Path(directory))
    if fd is None:
        return False
    os.close(fd)
    return True


@pytest.mark.parametrize("way", ["unnamed", "named"])
def test_a_killed_writer_leaves_no_output_and_the_next_write_no_part(tmp_path, way):
    """kill -9 mid-write: with O_TMPFILE nothing at all is left; with a named part (other
    platforms) the part is left, and the next write to the same path removes it."""
    if way == "unnamed" and not unnamed_files_supported(tmp_path):
        pytest.skip("no O_TMPFILE on this platform/file system")
    target = tmp_path / "model.npz"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), way], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)                 # no cleanup can run
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    parts = list(tmp_path.iterdir())
    if way == "unnamed":
        assert parts == []                                # the unnamed file died with its writer
    else:
        assert [p.name for p in parts] == [f".model.npz.{proc.pid}-{parts[0].name.split('-')[1]}"]
        assert mio.stale_parts(target) == parts

    write_artifact(target, {"meta": {}}, b"")             # the next run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_a_running_writers_part_is_left_alone(tmp_path):
    """A part whose process is alive (another writer still at work) is not removed."""
    target = tmp_path / "m.npz"
    live = target.with_name(f".m.npz.{os.getppid()}-00ff.part")
    live.write_bytes(b"someone else's")
    write_artifact(target, {}, b"")
    assert live.exists() and mio.stale_parts(target) == []


def test_save_npz_is_atomic_too(tmp_path):
    mio.save_npz_atomic(tmp_path / "a.npz", {"x": np.arange(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


_COMPRESS = """
import sys, time
from contextlib import contextmanager
import minicompress.artifact as art
real = art.atomic_write

@contextmanager
def held_open(path):
    # the real atomic_write, paused half-way through writing the artifact at --out
    with real(path) as f:
        if str(path) == sys.argv[2]:
            f.write(b"half of an artifact")
            f.flush()
            print("writing", flush=True)
            time.sleep(120)
        yield f

art.atomic_write = held_open
from minicompress.__main__ import main
sys.exit(main(["compress", "--recipe", sys.argv[1], "--out", sys.argv[2], "--quiet"]))
"""

TINY = {"seed": 3, "dataset": "digits", "batch_size": 64,
        "teacher": {"model": "student", "epochs": 1}, "distill": None,
        "prune": {"sparsity": 0.5, "epochs": 1, "lr": 1e-3},
        "quantize": {"weight_bits": 4, "activation_bits": 8, "epochs": 0}}


def test_a_compress_run_killed_while_writing_leaves_nothing_at_out(tmp_path):
    """``compress`` killed with SIGKILL in the middle of writing its artifact: nothing at --out;
    the next ``compress`` to the same --out writes it and leaves no part behind."""
    import json
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(TINY))
    out = tmp_path / "out" / "model.npz"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _COMPRESS, str(recipe), str(out)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert not out.exists()
    # what kill -9 leaves: nothing where the artifact was an unnamed O_TMPFILE file, else one part
    left = list(out.parent.iterdir())
    assert len(left) == (0 if unnamed_files_supported(out.parent) else 1)
    assert mio.stale_parts(out) == left

    done = subprocess.run([sys.executable, "-m", "minicompress", "compress", "--recipe",
                           str(recipe), "--out", str(out), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.npz"]
