"""Saving and loading arrays: ``.npz`` files, written atomically and durably, read without pickle."""
from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .nn.checks import check_module


# ---- atomic, durable writes --------------------------------------------------------------------
# A file is written to a temporary sibling ``.<name>.<pid>-<random>.part`` and renamed over
# ``<name>`` only when complete. Ordinary failures (an exception, Ctrl-C) remove the temporary
# file in a ``finally``. A ``kill -9`` runs no cleanup, so the pid is in the name: the next write
# to the same path removes every part whose writer process no longer exists. A part whose pid is
# alive (its writer still running, or the pid reused by another process) is left alone.
def part_name(path: Path) -> Path:
    """The temporary sibling of ``path`` this process writes to (unique per call)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)           # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:       # exists, owned by someone else
        return True
    return True


def stale_parts(path) -> list:
    """Temporary parts of ``path`` left by writers that no longer run (killed mid-write)."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)-[0-9a-f]+\.part")
    if not path.parent.is_dir():
        return []
    found = []
    for p in path.parent.iterdir():
        m = pattern.fullmatch(p.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            found.append(p)
    return sorted(found)


def remove_stale_parts(path) -> list:
    """Delete :func:`stale_parts` of ``path``; returns what was removed."""
    removed = []
    for p in stale_parts(path):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:  # another process cleaned it first
            pass
    return removed


def _fsync_dir(directory: Path):
    """Make a rename in ``directory`` durable (POSIX: the entry lives in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:               # e.g. a platform where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_unnamed(directory: Path):
    """A file descriptor for an unnamed file in ``directory`` (Linux ``O_TMPFILE``), or None where
    the platform or file system has none. A process killed while writing it leaves nothing behind:
    the file gets a name only once its data are complete."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, flag | os.O_WRONLY, 0o644)
    except OSError:               # a file system without O_TMPFILE support
        return None


def _name_unnamed(fd: int, name: Path):
    """Give the unnamed file ``fd`` the name ``name`` (linkat with AT_SYMLINK_FOLLOW through
    /proc, as open(2) describes for O_TMPFILE; a directory fd makes Python call linkat)."""
    dir_fd = os.open(name.parent, os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{fd}", name.name, dst_dir_fd=dir_fd, follow_symlinks=True)
    finally:
        os.close(dir_fd)


@contextmanager
def atomic_write(path):
    """Open ``path`` for writing through a temporary file that replaces ``path`` only when the
    block succeeds: a crash, an exception or Ctrl-C never leaves a half-written file under the
    final name, and never leaves the temporary file either.

    Where Linux offers ``O_TMPFILE`` the data go to an unnamed file, named (as :func:`part_name`)
    only after they are complete and fsync'ed, and renamed over ``path`` at once: even ``kill -9``
    during the write leaves no trace. Elsewhere the part is named from the start, and parts of
    writers killed mid-write are removed by the next write to the same path.

    Durable: the data are fsync'ed before the rename and the directory after it, so once this
    returns the new file survives a power cut. Files are made readable by everyone (0644), like an
    ordinary ``open``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    tmp = part_name(path)
    fd = _open_unnamed(path.parent)
    unnamed = fd is not None
    if not unnamed:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o644)      # independent of the umask
            if unnamed:                        # the complete file gets its (temporary) name
                _name_unnamed(f.fileno(), tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def save_npz_atomic(path, arrays: dict, compressed: bool = False):
    """Write ``arrays`` to an ``.npz`` at ``path`` atomically (see :func:`atomic_write`)."""
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f"save_npz_atomic: '{k}' is an object array; only numeric/str arrays "
                            f"are saved (files are read without pickle)")
    with atomic_write(path) as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
    return Path(path)


def load_npz(path) -> dict:
    """Read every array of an ``.npz`` (never unpickling); a damaged file is a clear error."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as e:
        raise ValueError(f"{path}: refusing to load (it holds pickled objects or is damaged): {e}") from None
    except (OSError, EOFError, KeyError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a valid .npz file ({e})") from None
    except Exception as e:  # zipfile.BadZipFile and friends
        raise ValueError(f"{path}: not a valid .npz file ({type(e).__name__}: {e})") from None


def save_model(model, path):
    """Save ``model.state_dict()`` (PyTorch-style names) to an ``.npz`` file."""
    check_module(model)
    return save_npz_atomic(path, dict(model.state_dict()))


def load_model(model, path, strict: bool = True):
    """Load an ``.npz`` state dict (ours or ``{k: v.numpy()}`` of a PyTorch one) into ``model``."""
    check_module(model)
    return model.load_state_dict(load_npz(path), strict=strict)
