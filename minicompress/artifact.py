"""The compressed-model file: one ``.npz`` holding an integer model, read without pickle.

Layout (see ``docs/FORMAT.md`` for the full specification). The file is a zip archive with three
``.npy`` members, deflate-compressed:

* ``header.npy``  — uint8, the UTF-8 bytes of a JSON object: format name and version, the layer
  list with shapes, bit widths, scales and zero points, and for every tensor where its bytes lie in
  the blob and how they are encoded;
* ``blob.npy``    — uint8, all tensors' bytes back to back;
* ``checksum.npy``— uint8[32], SHA-256 of ``header bytes + blob bytes``.

Why only three members: every ``.npy`` member costs ~200 bytes of zip and npy headers, which at a
10 KB budget would be a fifth of the file if each tensor were its own member.

Tensor encodings (``encoding`` field):

* ``raw``    — the array's bytes, little-endian, C order (``dtype`` and ``shape`` given);
* ``packed`` — signed integer codes, each as its ``bits`` lowest two's-complement bits, most
  significant bit first, concatenated and padded to a whole byte (``quantize.bitpack``);
* ``sparse`` — a bitmask of the non-zero positions (1 bit per element, ``np.packbits`` order)
  followed by the non-zero codes ``packed`` as above;
* ``sparse_gaps`` — the non-zero positions as escape-coded gaps, one byte per gap below 255
  (:func:`gap_bytes`), followed by the non-zero codes ``packed``. At 98 % sparsity this deflates
  to ~25 % less than the bitmask, whose cost is one bit per weight whether kept or not.

Each weight tensor takes the encoding that deflates smallest.

Writing is deterministic (fixed zip timestamps, sorted members), so the same model gives the same
file byte for byte, and atomic (temporary file + rename).
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .io import atomic_write
from .quantize.bitpack import pack_bits, unpack_bits

FORMAT_NAME = "minicompress-integer-model"
FORMAT_VERSION = 1
_MEMBERS = ("blob.npy", "checksum.npy", "header.npy")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ArtifactError(ValueError):
    """The file is not a valid minicompress artifact (damaged, altered, wrong version...)."""


# ---- n-bit codes -------------------------------------------------------------------------------
def gap_bytes(positions) -> bytes:
    """Escape-coded gaps between sorted positions: each gap g = p_i − p_{i−1} − 1 (p_{−1} = −1)
    is written as ⌊g/255⌋ bytes 255 followed by one byte g mod 255. Small gaps (the usual case
    in a pruned layer) cost one byte, and the bytes are skewed enough for deflate to squeeze them
    towards their entropy."""
    gaps = np.diff(np.asarray(positions, np.int64), prepend=-1) - 1
    escapes = gaps // 255
    out = np.full(int(escapes.sum() + len(gaps)), 255, np.uint8)
    # the last byte written for gap i sits after all escapes and remainders before it
    ends = np.cumsum(escapes + 1) - 1
    out[ends] = (gaps % 255).astype(np.uint8)
    return out.tobytes()


def positions_from_gaps(data: bytes) -> np.ndarray:
    """Inverse of :func:`gap_bytes`: a byte b < 255 advances b + 1 and marks a position; 255
    advances 255 and marks nothing."""
    b = np.frombuffer(data, np.uint8).astype(np.int64)
    step = np.where(b == 255, 255, b + 1)
    return (np.cumsum(step) - 1)[b != 255]


def _deflated(data: bytes) -> int:
    return len(zlib.compress(data, 9))


def encode_codes(codes, bits: int) -> tuple[bytes, dict]:
    """Encode signed integer codes as ``packed``, ``sparse`` (bitmask) or ``sparse_gaps``,
    whichever deflates smallest (the file is deflate-compressed)."""
    codes = np.asarray(codes)
    flat = codes.astype(np.int64).ravel()
    base = {"bits": int(bits), "shape": list(codes.shape)}
    nonzero = np.flatnonzero(flat)
    values = pack_bits(flat[nonzero], bits, signed=True).tobytes()
    mask = np.packbits(flat != 0).tobytes()
    index = gap_bytes(nonzero)
    candidates = [
        (pack_bits(flat, bits, signed=True).tobytes(), dict(base, encoding="packed")),
        (mask + values, dict(base, encoding="sparse", nnz=len(nonzero), mask_bytes=len(mask))),
        (index + values, dict(base, encoding="sparse_gaps", nnz=len(nonzero), index_bytes=len(index))),
    ]
    return min(candidates, key=lambda c: (_deflated(c[0]), len(c[0])))


def _unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    try:
        return unpack_bits(np.frombuffer(data, np.uint8), bits, count, signed=True)
    except ValueError as e:
        raise ArtifactError(f"packed codes: {e}") from None


def decode_codes(data: bytes, entry: dict) -> np.ndarray:
    """Inverse of :func:`encode_codes`: the codes as an int32 array of ``entry["shape"]``."""
    shape = tuple(int(s) for s in entry["shape"])
    count = int(np.prod(shape))
    encoding = entry["encoding"]
    if encoding == "packed":
        return _unpack(data, entry["bits"], count).reshape(shape)
    if encoding not in ("sparse", "sparse_gaps"):
        raise ArtifactError(f"unknown tensor encoding {encoding!r}")
    nnz = int(entry["nnz"])
    if encoding == "sparse":
        split = int(entry["mask_bytes"])
        if split != (count + 7) // 8:
            raise ArtifactError(f"sparse tensor: mask of {split} bytes for {count} entries")
        positions = np.flatnonzero(np.unpackbits(np.frombuffer(data[:split], np.uint8))[:count])
    else:
        split = int(entry["index_bytes"])
        positions = positions_from_gaps(data[:split])
    if len(positions) != nnz or (nnz and (positions[-1] >= count or positions[0] < 0)):
        raise ArtifactError(f"sparse tensor: index gives {len(positions)} positions (header "
                            f"says {nnz}) in a tensor of {count}")
    out = np.zeros(count, np.int32)
    out[positions] = _unpack(data[split:], entry["bits"], nnz)
    return out.reshape(shape)


# ---- the container -----------------------------------------------------------------------------
class BlobWriter:
    """Collects tensors into one byte string; each ``add`` returns the header entry."""

    def __init__(self):
        self._parts, self._size = [], 0

    def _append(self, data: bytes, entry: dict) -> dict:
        entry = dict(entry, offset=self._size, nbytes=len(data))
        self._parts.append(data)
        self._size += len(data)
        return entry

    def add_raw(self, array) -> dict:
        a = np.ascontiguousarray(array)
        a = a.astype(a.dtype.newbyteorder("<"))
        return self._append(a.tobytes(), {"encoding": "raw", "dtype": a.dtype.str, "shape": list(a.shape)})

    def add_codes(self, codes, bits: int) -> dict:
        data, entry = encode_codes(codes, bits)
        return self._append(data, entry)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def read_tensor(blob: bytes, entry: dict) -> np.ndarray:
    """Decode one tensor described by a header ``entry``."""
    start, n = int(entry["offset"]), int(entry["nbytes"])
    if start < 0 or start + n > len(blob):
        raise ArtifactError(f"tensor bytes [{start}, {start + n}) lie outside the blob ({len(blob)} bytes)")
    data = blob[start:start + n]
    if entry["encoding"] == "raw":
        dtype = np.dtype(entry["dtype"])
        shape = tuple(entry["shape"])
        if dtype.kind not in "iuf" or dtype.itemsize * int(np.prod(shape)) != n:
            raise ArtifactError(f"raw tensor: {n} bytes do not hold {shape} of {dtype}")
        return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return decode_codes(data, entry)


def checksum(header_bytes: bytes, blob: bytes) -> bytes:
    return hashlib.sha256(header_bytes + blob).digest()


def _npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def write_artifact(path, header: dict, blob: bytes) -> Path:
    """Write header + blob + checksum atomically and deterministically; returns the path."""
    header = dict(header, format=FORMAT_NAME, format_version=FORMAT_VERSION)
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    members = {
        "blob.npy": np.frombuffer(blob, np.uint8),
        "checksum.npy": np.frombuffer(checksum(header_bytes, blob), np.uint8),
        "header.npy": np.frombuffer(header_bytes, np.uint8),
    }
    with atomic_write(path) as f, zipfile.ZipFile(f, "w") as z:
        for name in _MEMBERS:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, _npy_bytes(members[name]), compresslevel=9)
    return Path(path)


def read_artifact(path) -> tuple[dict, bytes]:
    """Read and validate an artifact: (header dict, blob bytes). Nothing is unpickled or run."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            names = sorted(f.files)
            if names != sorted(m[:-4] for m in _MEMBERS):
                raise ArtifactError(f"{path}: members {names}, expected {sorted(m[:-4] for m in _MEMBERS)}")
            arrays = {k: f[k] for k in names}
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise
    except Exception as e:  # BadZipFile, pickled objects, truncated members...
        raise ArtifactError(f"{path}: not a readable artifact ({type(e).__name__}: {e})") from None
    for k, a in arrays.items():
        if a.dtype != np.uint8 or a.ndim != 1:
            raise ArtifactError(f"{path}: member '{k}' must be a 1-D uint8 array, got {a.dtype} {a.shape}")
    header_bytes, blob = arrays["header"].tobytes(), arrays["blob"].tobytes()
    if arrays["checksum"].tobytes() != checksum(header_bytes, blob):
        raise ArtifactError(f"{path}: checksum mismatch — the file was altered or damaged")
    try:
        header = json.loads(header_bytes.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: header is not valid JSON ({e})") from None
    if header.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path}: format {header.get('format')!r}, expected {FORMAT_NAME!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {header.get('format_version')!r}; this "
                            f"minicompress reads version {FORMAT_VERSION}")
    return header, blob
