"""Saving and loading arrays: ``.npz`` files, written atomically, read without pickle."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_write(path):
    """Open ``path`` for writing through a temporary file that is renamed into place only when the
    block succeeds, so a crash or Ctrl-C never leaves a half-written file under the final name.
    Files are made readable by everyone (0644), like an ordinary ``open``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    return save_npz_atomic(path, dict(model.state_dict()))


def load_model(model, path, strict: bool = True):
    """Load an ``.npz`` state dict (ours or ``{k: v.numpy()}`` of a PyTorch one) into ``model``."""
    return model.load_state_dict(load_npz(path), strict=strict)
