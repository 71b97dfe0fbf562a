"""Data: an IDX reader, the (Fashion-)MNIST loaders, the embedded 8x8 digits, and batching.

Images come back float32 in [0, 1], shaped (N, 1, H, W); labels int64.

Where Fashion-MNIST / MNIST is looked for, in order:
  1. the ``path`` argument;
  2. ``$MINICOMPRESS_DATA/<name>``;
  3. the user cache ``$XDG_CACHE_HOME/minicompress/<name>`` (default ``~/.cache/...``);
  4. ``/usr/share/datasets/<name>`` (Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``);
  5. a download from the official source into the cache, each file checked by SHA-256.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

# mean / std of the Fashion-MNIST training pixels in [0, 1] (the usual normalisation)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Fashion-MNIST: SHA-256 of the *decompressed* IDX files, so a re-compressed copy (as Debian
# ships) also passes; computed from the Debian package ``dataset-fashion-mnist``.
# MNIST: SHA-256 of the *.gz archives* as served, taken from tensorflow-datasets
# (``tensorflow_datasets/url_checksums/mnist.txt``: the storage.googleapis.com cvdf mirror, whose
# files are byte-identical to the PyTorch ossci mirror — same sizes and digests are published
# for both). We have no published digest of the decompressed MNIST files, so for MNIST the
# downloaded archive itself is checked (key ``sha256_gz``).
DATASETS = {
    "fashion-mnist": {
        "urls": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    },
    "mnist": {
        "urls": ["https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "https://ossci-datasets.s3.amazonaws.com/mnist/"],
        "sha256_gz": {
            "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
}


class DatasetNotFoundError(FileNotFoundError):
    pass


# ---- IDX ---------------------------------------------------------------------------------------
# What each Fashion-MNIST / MNIST file may hold: its role and the most items it can have. A header
# is checked against these *before* anything is allocated, so a hostile or corrupt header cannot
# ask for gigabytes.
IMAGE_SIDE = 28
_ROLE = {"train-images-idx3-ubyte": ("images", 60000), "train-labels-idx1-ubyte": ("labels", 60000),
         "t10k-images-idx3-ubyte": ("images", 10000), "t10k-labels-idx1-ubyte": ("labels", 10000)}
MAX_IDX_BYTES = 1 << 30  # any IDX file read without an expected shape


def _idx_header(f, source):
    """Read the magic number and sizes from an open binary file: (dtype, dims, header bytes)."""
    magic = f.read(4)
    if len(magic) < 4:
        raise ValueError(f"{source}: not an IDX file (only {len(magic)} bytes)")
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise ValueError(f"{source}: bad IDX magic number {magic.hex()} (expected 0000XXDD with "
                         f"type XX in {sorted(hex(k) for k in _IDX_DTYPES)})")
    ndim = magic[3]
    if ndim == 0:
        raise ValueError(f"{source}: IDX file declares 0 dimensions")
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise ValueError(f"{source}: truncated IDX header ({4 + len(sizes)} bytes, need {4 + 4 * ndim})")
    dims = tuple(int.from_bytes(sizes[4 * i:4 * i + 4], "big") for i in range(ndim))
    return np.dtype(_IDX_DTYPES[magic[2]]), dims, 4 + 4 * ndim


def _check_dims(dims, dtype, source, shape=None, max_count=None):
    """Refuse a header whose sizes do not match ``shape`` (None = any size on that axis) or whose
    first size exceeds ``max_count``; return the data bytes the header declares."""
    if shape is not None:
        if len(dims) != len(shape) or any(s is not None and d != s for d, s in zip(dims, shape)):
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{source}: IDX header declares shape {dims}, expected {want}")
    if max_count is not None and dims[0] > max_count:
        raise ValueError(f"{source}: IDX header declares {dims[0]:,} items; this file holds at "
                         f"most {max_count:,}")
    nbytes = dtype.itemsize * math.prod(dims)  # Python ints: no overflow
    if nbytes > MAX_IDX_BYTES:
        raise ValueError(f"{source}: IDX header declares {nbytes:,} bytes of data {dims}, more "
                         f"than the {MAX_IDX_BYTES:,} accepted")
    return nbytes


def parse_idx(raw: bytes, source: str = "<bytes>", shape=None, max_count=None) -> np.ndarray:
    """Parse the IDX format: 2 zero bytes, a type code, the number of dimensions, the sizes
    (big-endian uint32), then the data. A wrong magic number or length is an error."""
    import io
    f = io.BytesIO(raw)
    dtype, dims, header = _idx_header(f, source)
    nbytes = _check_dims(dims, dtype, source, shape, max_count)
    if len(raw) != header + nbytes:
        raise ValueError(f"{source}: IDX file has {len(raw)} bytes but its header {dims} "
                         f"({dtype}) needs {header + nbytes}: the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path, shape=None, max_count=None) -> np.ndarray:
    """Read an IDX file, gzip-compressed (``.gz``) or raw, in bounded memory.

    The header is read first and checked against ``shape`` (sizes, None = any) and ``max_count``
    (the most items); then exactly the declared bytes are read — from a raw file only if its
    length matches, from a gzip stream at most declared + 1 bytes — so neither a lying header nor
    a small archive that inflates to gigabytes can exhaust memory.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected an IDX file")
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        try:
            f = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            dtype, dims, header = _idx_header(f, str(path))
            nbytes = _check_dims(dims, dtype, str(path), shape, max_count)
            if not compressed:
                size = os.fstat(raw.fileno()).st_size
                if size != header + nbytes:
                    what = "truncated" if size < header + nbytes else "longer than its header declares"
                    raise ValueError(f"{path}: IDX file is {what}: {size} bytes, but its header "
                                     f"{dims} ({dtype}) needs {header + nbytes}")
            data = f.read(nbytes + 1)  # one byte more: is there anything after the data?
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt gzip data ({e})") from None
    if len(data) != nbytes:
        what = "truncated" if len(data) < nbytes else "longer than its header declares"
        raise ValueError(f"{path}: IDX data is {what} (header {dims} of {dtype} needs "
                         f"{nbytes} bytes{', got ' + str(len(data)) if len(data) < nbytes else ''})")
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_file(path, stem):
    """One of the four (Fashion-)MNIST files, its header checked against what ``stem`` holds."""
    role, count = _ROLE[stem]
    shape = (None, IMAGE_SIDE, IMAGE_SIDE) if role == "images" else (None,)
    return read_idx(path, shape=shape, max_count=count)


# ---- locating and downloading ------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minicompress"


def _find_file(directory: Path, stem: str):
    for candidate in (directory / (stem + ".gz"), directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _candidate_dirs(name, path):
    """Where to look when neither ``path`` nor ``$MINICOMPRESS_DATA`` chose a folder."""
    return [cache_dir() / name, Path("/usr/share/datasets") / name]


_MAX_RAW_BYTES = 16 + 60000 * IMAGE_SIDE * IMAGE_SIDE  # the largest genuine (train images) file


def _gunzip_bounded(blob, limit):
    """Decompress at most ``limit`` bytes; more is an error (a tiny archive cannot inflate into
    gigabytes here)."""
    import io
    with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
        out = f.read(limit + 1)
    if len(out) > limit:
        raise OSError(f"decompresses to more than {limit:,} bytes")
    return out


def _digest_problem(spec, stem, blob):
    """None if ``blob`` (a downloaded .gz) has the recorded SHA-256, else what is wrong."""
    try:
        if "sha256_gz" in spec:
            expected, digest = spec["sha256_gz"][stem], hashlib.sha256(blob).hexdigest()
        else:
            expected = spec["sha256"][stem]
            digest = hashlib.sha256(_gunzip_bounded(blob, _MAX_RAW_BYTES)).hexdigest()
    except (OSError, EOFError) as e:
        return f"not a valid gzip file ({e})"
    if digest != expected:
        return f"SHA-256 {digest} does not match the expected {expected}"
    return None


def _fetch(spec, stem, timeout):
    """The verified bytes of ``<stem>.gz`` from the first mirror that serves a correct copy."""
    problems = []
    for base in spec["urls"]:
        url = base + stem + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                blob = response.read()
        except OSError as e:
            problems.append(f"{url}: {e}")
            continue
        problem = _digest_problem(spec, stem, blob)
        if problem is None:
            return blob
        problems.append(f"{url}: {problem}")
    raise OSError("; ".join(problems))


def _download(name, target: Path, timeout=30):
    """Download the four files into ``target``. All four are fetched and checked before any is
    written, and each is written atomically, so a failure leaves nothing half-done in the cache."""
    spec = DATASETS[name]
    blobs = {stem: _fetch(spec, stem, timeout) for stem in _FILES if not _find_file(target, stem)}
    target.mkdir(parents=True, exist_ok=True)
    for stem, blob in blobs.items():
        fd, tmp = tempfile.mkstemp(dir=target, prefix="." + stem, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, target / (stem + ".gz"))  # atomic: never a half-written file
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    return target


def _missing(directory: Path):
    return [stem for stem in _FILES if _find_file(directory, stem) is None]


def _chosen_folder(name, path):
    """The folder the user asked for (``path``, else ``$MINICOMPRESS_DATA``), or None.

    A folder that was asked for must hold all four files: when it does not, the error names the
    missing ones — never a silent fall-back to another copy of the data set."""
    if path is not None:
        folders = [Path(path)]
        what = f"path={str(path)!r}"
    elif os.environ.get("MINICOMPRESS_DATA"):
        env = Path(os.environ["MINICOMPRESS_DATA"])
        folders = [env / name, env]
        what = f"MINICOMPRESS_DATA={str(env)!r}"
    else:
        return None
    for d in folders:
        if not _missing(d):
            return d
    if not folders[0].is_dir() and not folders[-1].is_dir():
        raise DatasetNotFoundError(f"{name}: {what} is not a folder; it must hold the four files "
                                   f"{[s + '(.gz)' for s in _FILES]}")
    d = folders[0] if folders[0].is_dir() else folders[-1]
    raise DatasetNotFoundError(f"{name}: folder {d} ({what}) lacks {_missing(d)} (raw or .gz); "
                               f"it must hold all four of {list(_FILES)}")


def _load_idx_dataset(name, path, download):
    chosen = _chosen_folder(name, path)
    if chosen is not None:
        return [read_idx_file(_find_file(chosen, stem), stem) for stem in _FILES]
    searched = []
    for d in _candidate_dirs(name, path):
        searched.append(str(d))
        files = [_find_file(d, stem) for stem in _FILES]
        if all(files):
            return [read_idx_file(f, stem) for f, stem in zip(files, _FILES)]
    if download:
        try:
            d = _download(name, cache_dir() / name)
            return [read_idx_file(_find_file(d, stem), stem) for stem in _FILES]
        except OSError as e:
            reason = f"download failed ({e})"
    else:
        reason = "download disabled"
    raise DatasetNotFoundError(
        f"{name} not found (looked in {searched}; {reason}). Get it in one of three ways:\n"
        f"  1. apt-get install -y dataset-{name}   (Debian/Ubuntu, installs /usr/share/datasets/{name})\n"
        f"  2. put the four *-ubyte(.gz) files in a folder and pass path=... or set MINICOMPRESS_DATA\n"
        f"  3. connect to the internet: the loader downloads them into {cache_dir() / name}"
    )


def _to_images(x, source):
    """IDX pixels → float32 (N, 1, H, W) in [0, 1]. Bytes (0..255) are divided by 255; float
    pixels must already lie in [0, 1] and are kept as they are (never divided twice)."""
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{source}: float pixels must be finite and in [0, 1], got NaN or inf")
        if x.size and not (x.min() >= 0.0 and x.max() <= 1.0):
            raise ValueError(f"{source}: float pixels must be finite and in [0, 1], got "
                             f"[{x.min():g}, {x.max():g}]")
        return x.astype(np.float32)[:, None, :, :]
    if x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError(f"{source}: integer pixels must lie in [0, 255], got [{x.min()}, {x.max()}]")
    return (x.astype(np.float32) / 255.0)[:, None, :, :]


def _to_labels(y, source, num_classes=10):
    """IDX labels → int64 class indices in [0, num_classes)."""
    if y.dtype.kind not in "iu":
        raise ValueError(f"{source}: labels must be integers (IDX type 0x08..0x0c), got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{source}: labels must lie in [0, {num_classes - 1}], got "
                         f"[{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _split(name, x, y, images_stem, labels_stem):
    if len(x) != len(y):
        raise ValueError(f"{name}: {images_stem} holds {len(x)} images but {labels_stem} holds "
                         f"{len(y)} labels")
    return _to_images(x, f"{name} {images_stem}"), _to_labels(y, f"{name} {labels_stem}")


def _load_pair_of_splits(name, path, download):
    xtr, ytr, xte, yte = _load_idx_dataset(name, path, download)
    return _split(name, xtr, ytr, *_FILES[:2]), _split(name, xte, yte, *_FILES[2:])


def load_fashion_mnist(path=None, download=True):
    """Fashion-MNIST: ((x_train (60000,1,28,28), y_train), (x_test (10000,1,28,28), y_test))."""
    return _load_pair_of_splits("fashion-mnist", path, download)


def load_mnist(path=None, download=True):
    """MNIST, same format as :func:`load_fashion_mnist`."""
    return _load_pair_of_splits("mnist", path, download)


def load_digits():
    """The UCI 8x8 handwritten digits (1,797 images, CC BY 4.0), embedded in the package.

    Fixed split (made once by ``scripts/make_digits.py``): 1,437 train / 360 test.
    Pixels 0..16 scaled to [0, 1]; shapes (N, 1, 8, 8).
    """
    with np.load(Path(__file__).parent / "_data" / "digits.npz", allow_pickle=False) as f:
        return ((f["x_train"].astype(np.float32)[:, None] / 16.0, f["y_train"].astype(np.int64)),
                (f["x_test"].astype(np.float32)[:, None] / 16.0, f["y_test"].astype(np.int64)))


def normalize(x, mean, std):
    """(x − mean) / std, float32."""
    if not std > 0:
        raise ValueError(f"normalize: std must be > 0, got {std!r}")
    return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)


def standardization(name):
    """(mean, std) that :func:`load_dataset` standardises ``name`` with: the training pixels'
    statistics (the usual published values for (Fashion-)MNIST, computed for the digits).
    The compressed model's file records them, so it can be run on raw images."""
    if name == "digits":
        xtr = load_digits()[0][0]
        return float(xtr.mean()), float(xtr.std())
    if name == "fashion-mnist":
        return FASHION_MNIST_MEAN, FASHION_MNIST_STD
    if name == "mnist":
        return MNIST_MEAN, MNIST_STD
    raise ValueError(f"load_dataset: unknown data set {name!r}; valid: 'digits', "
                     f"'fashion-mnist', 'mnist'")


def load_dataset(name, normalized=True, path=None):
    """``"digits"``, ``"fashion-mnist"`` or ``"mnist"`` → ((x_train, y_train), (x_test, y_test)).

    With ``normalized=True`` images are standardised with the data set's training mean/std
    (:func:`standardization`).
    """
    mean, std = standardization(name)
    if name == "digits":
        (xtr, ytr), (xte, yte) = load_digits()
    elif name == "fashion-mnist":
        (xtr, ytr), (xte, yte) = load_fashion_mnist(path)
    else:
        (xtr, ytr), (xte, yte) = load_mnist(path)
    if normalized:
        xtr, xte = normalize(xtr, mean, std), normalize(xte, mean, std)
    return (xtr, ytr), (xte, yte)


# ---- batching ----------------------------------------------------------------------------------
def batches(x, y, batch_size, *, rng=None, shuffle=True, drop_last=False):
    """Yield (x_batch, y_batch). Shuffled with ``rng`` (a numpy Generator) when ``shuffle``."""
    if len(x) != len(y):
        raise ValueError(f"batches: x has {len(x)} items but y has {len(y)}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive integer, got {batch_size!r}")
    n = len(x)
    if shuffle:
        if not isinstance(rng, np.random.Generator):
            raise TypeError("batches: shuffle=True needs rng=np.random.default_rng(seed)")
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
