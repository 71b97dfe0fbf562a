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
  to ~25 % less than the bitmask, whose cost is one bit per weight whether kept or not;
* ``huffman`` (format version 3) — every code canonical-Huffman coded (:mod:`.huffman`): a table
  of 4-bit code lengths for the codes lo..hi, then the bitstream;
* ``sparse_huffman`` (version 3) — the ``sparse_gaps`` index bytes Huffman coded, then the
  non-zero codes Huffman coded, each block a length table and a bitstream.

Each weight tensor takes the encoding that deflates smallest, the two Huffman ones only when
strictly smaller than the best of the first three; a file that uses neither is written as
version 2, so files without Huffman tensors are byte for byte what they were.

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

from . import huffman
from .io import atomic_write
from .quantize.bitpack import pack_bits, unpack_bits

FORMAT_NAME = "minicompress-integer-model"
FORMAT_VERSION = 3                  # the newest version this code writes and reads
READ_VERSIONS = (2, 3)              # version 2: no Huffman encodings
HUFFMAN_ENCODINGS = ("huffman", "sparse_huffman")
BASE_ENCODINGS = ("packed", "sparse", "sparse_gaps")
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


def huffman_block(symbols, k: int) -> tuple[bytes, int]:
    """(table ‖ bitstream, table bytes) of symbols in [0, k): the k code lengths as nibbles
    (:func:`huffman.lengths_to_bytes`), then the canonical codes (:func:`huffman.encode`)."""
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=k))
    table = huffman.lengths_to_bytes(lengths)
    return table + huffman.encode(symbols, lengths), len(table)


def _huffman_candidates(flat, nonzero, index, base):
    """The ``huffman`` and ``sparse_huffman`` encodings of the codes (see docs/FORMAT.md §4)."""
    lo, hi = int(flat.min()), int(flat.max())
    if hi - lo + 1 > 2 ** huffman.MAX_CODE_LENGTH and \
            len(np.unique(flat)) > 2 ** huffman.MAX_CODE_LENGTH:
        return []                       # more distinct codes than codes of ≤ 15 bits can name
    dense, _ = huffman_block(flat - lo, hi - lo + 1)
    out = [(dense, dict(base, encoding="huffman", lo=lo, hi=hi))]
    if len(nonzero):
        gaps = np.frombuffer(index, np.uint8).astype(np.int64)
        ilo, ihi = int(gaps.min()), int(gaps.max())
        index_block, _ = huffman_block(gaps - ilo, ihi - ilo + 1)
        values = flat[nonzero]
        vlo, vhi = int(values.min()), int(values.max())
        value_block, _ = huffman_block(values - vlo, vhi - vlo + 1)
        out.append((index_block + value_block,
                    dict(base, encoding="sparse_huffman", nnz=len(nonzero), index_bytes=len(gaps),
                         index_lo=ilo, index_hi=ihi, index_nbytes=len(index_block),
                         lo=vlo, hi=vhi)))
    return out


def encode_codes(codes, bits: int, encodings=None) -> tuple[bytes, dict]:
    """Encode signed integer codes as ``packed``, ``sparse`` (bitmask), ``sparse_gaps``,
    ``huffman`` or ``sparse_huffman``, whichever deflates smallest (the file is
    deflate-compressed); ties go to the earlier in that order, so a Huffman encoding is taken
    only when strictly smaller. ``encodings``: the allowed ones (default all five; if none of
    them applies to these codes, all are tried)."""
    encodings = tuple(BASE_ENCODINGS + HUFFMAN_ENCODINGS if encodings is None else encodings)
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
    if set(encodings) & set(HUFFMAN_ENCODINGS) and flat.size:
        candidates += _huffman_candidates(flat, nonzero, index, base)
    # none of the allowed applies (sparse_huffman of all-zero codes, Huffman of more than 2^15
    # distinct codes): the best of those that do
    candidates = [c for c in candidates if c[1]["encoding"] in encodings] or candidates
    return min(candidates, key=lambda c: (_deflated(c[0]), len(c[0])))


def uses_huffman(header: dict) -> bool:
    """Whether any step's weight uses a version-3 (Huffman) encoding."""
    steps = header.get("steps") if isinstance(header, dict) else None
    return isinstance(steps, list) and any(
        isinstance(s, dict) and isinstance(s.get("weight"), dict)
        and s["weight"].get("encoding") in HUFFMAN_ENCODINGS for s in steps)


MAX_TENSOR_ELEMENTS = 2 ** 22   # 4.2 M codes per tensor (the teacher's largest: 0.8 M)
MAX_DIM = 2 ** 24
RAW_DTYPES = ("<i4", "<f4")
ENTRY_KEYS = {"raw": {"encoding", "offset", "nbytes", "dtype", "shape"},
              "packed": {"encoding", "offset", "nbytes", "bits", "shape"},
              "sparse": {"encoding", "offset", "nbytes", "bits", "shape", "nnz", "mask_bytes"},
              "sparse_gaps": {"encoding", "offset", "nbytes", "bits", "shape", "nnz", "index_bytes"},
              "huffman": {"encoding", "offset", "nbytes", "bits", "shape", "lo", "hi"},
              "sparse_huffman": {"encoding", "offset", "nbytes", "bits", "shape", "nnz",
                                 "index_bytes", "index_lo", "index_hi", "index_nbytes", "lo", "hi"}}


def json_int(value, what, lo, hi) -> int:
    """A JSON integer in [lo, hi] (not a bool, not a float such as 3.0), else ArtifactError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ArtifactError(f"{what} must be an integer in [{lo}, {hi}], got {show(value)}")
    return value


def show(value) -> str:
    """A JSON value for an error message, cut to 60 characters."""
    text = json.dumps(value) if isinstance(value, (int, float, str, list, dict, type(None))) \
        else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def entry_shape(entry: dict, what="shape") -> tuple:
    """The declared shape, each dimension in [1, MAX_DIM], at most MAX_TENSOR_ELEMENTS in all."""
    shape = entry.get("shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4:
        raise ArtifactError(f"{what} must be a list of 1 to 4 integers, got {show(shape)}")
    dims = tuple(json_int(d, what, 1, MAX_DIM) for d in shape)
    count = 1
    for d in dims:
        count *= d
    if count > MAX_TENSOR_ELEMENTS:
        raise ArtifactError(f"{what} {list(dims)} has {count} elements; at most "
                            f"{MAX_TENSOR_ELEMENTS} are accepted")
    return dims


def check_entry(entry, blob_size: int) -> dict:
    """Validate a tensor reference against the blob *before* anything is allocated: its keys,
    offset and byte count, shape and element count, and that the byte count is exactly what the
    encoding needs for that shape. Returns the entry; raises ArtifactError naming the key."""
    if not isinstance(entry, dict):
        raise ArtifactError(f"must be a tensor reference (a JSON object), got {show(entry)}")
    encoding = entry.get("encoding")
    if not isinstance(encoding, str) or encoding not in ENTRY_KEYS:   # a list is not hashable
        raise ArtifactError(f"encoding must be one of {sorted(ENTRY_KEYS)}, got {show(encoding)}")
    if set(entry) != ENTRY_KEYS[encoding]:
        raise ArtifactError(f"a {encoding} tensor has exactly the keys {sorted(ENTRY_KEYS[encoding])}, "
                            f"got {sorted(entry)}")
    offset = json_int(entry["offset"], "offset", 0, blob_size)
    nbytes = json_int(entry["nbytes"], "nbytes", 0, blob_size - offset)
    shape = entry_shape(entry)
    count = int(np.prod(shape))
    if encoding == "raw":
        if entry["dtype"] not in RAW_DTYPES:
            raise ArtifactError(f"dtype must be one of {list(RAW_DTYPES)}, got {show(entry['dtype'])}")
        need = np.dtype(entry["dtype"]).itemsize * count
    else:
        bits = json_int(entry["bits"], "bits", 1, 16)
        need = -(-count * bits // 8)
        if encoding == "sparse":
            nnz = json_int(entry["nnz"], "nnz", 0, count)
            mask = json_int(entry["mask_bytes"], "mask_bytes", -(-count // 8), -(-count // 8))
            need = mask + -(-nnz * bits // 8)
        elif encoding == "sparse_gaps":
            nnz = json_int(entry["nnz"], "nnz", 0, count)
            # every marked position costs one byte, every 255 skipped positions one escape byte
            index = json_int(entry["index_bytes"], "index_bytes", nnz, nnz + count // 255)
            need = index + -(-nnz * bits // 8)
        elif encoding in HUFFMAN_ENCODINGS:
            _check_huffman_sizes(entry, encoding, bits, count, nbytes)
            need = nbytes
    if nbytes != need:
        raise ArtifactError(f"nbytes is {nbytes}, but a {encoding} tensor of shape {list(shape)} "
                            f"needs exactly {need}")
    return entry


def _block_bounds(symbols: int, k: int) -> tuple[int, int]:
    """Smallest and largest byte count of a Huffman block of ``symbols`` symbols over an
    alphabet of k: the ⌈k/2⌉-byte length table plus 1 to 15 bits per symbol."""
    table = -(-k // 2)
    return table + -(-symbols // 8), table + -(-symbols * huffman.MAX_CODE_LENGTH // 8)


def _check_huffman_sizes(entry, encoding, bits, count, nbytes):
    """Header-only checks of a Huffman tensor: alphabet ranges inside the b-bit codes, and byte
    counts that N (or nnz) codes of 1 to 15 bits can fill — so a claim cannot ask for more than
    the bytes that are there."""
    lo = json_int(entry["lo"], "lo", -2 ** (bits - 1), 2 ** (bits - 1) - 1)
    hi = json_int(entry["hi"], "hi", lo, 2 ** (bits - 1) - 1)
    symbols = count
    if encoding == "sparse_huffman":
        symbols = nnz = json_int(entry["nnz"], "nnz", 1, count)
        index = json_int(entry["index_bytes"], "index_bytes", nnz, nnz + count // 255)
        ilo = json_int(entry["index_lo"], "index_lo", 0, 254)
        ihi = json_int(entry["index_hi"], "index_hi", ilo, 255)
        least, most = _block_bounds(index, ihi - ilo + 1)
        index_nbytes = json_int(entry["index_nbytes"], "index_nbytes", least, most)
        nbytes -= index_nbytes
    least, most = _block_bounds(symbols, hi - lo + 1)
    if not least <= nbytes <= most:
        raise ArtifactError(f"nbytes: the {'values' if encoding == 'sparse_huffman' else 'codes'}"
                            f" block of this {encoding} tensor is {nbytes} bytes; {symbols} codes "
                            f"over {hi - lo + 1} values need {least} to {most}")


def _huffman_symbols(data, k: int, count: int, what: str) -> np.ndarray:
    """``count`` symbols in [0, k) from a Huffman block (length table ‖ bitstream)."""
    split = -(-k // 2)
    try:
        lengths = huffman.lengths_from_bytes(data[:split], k)
        return huffman.decode(data[split:], lengths, count)[0]
    except huffman.HuffmanError as e:
        raise ArtifactError(f"{what}: {e}") from None


def _positions(index: np.ndarray, count: int, nnz: int) -> np.ndarray:
    """Positions from ``sparse_gaps`` index bytes, checked: no trailing escape, nnz of them, all
    inside the tensor."""
    if len(index) and index[-1] == 255:
        raise ArtifactError("sparse_gaps index must not end with an escape byte 255")
    positions = positions_from_gaps(index)
    if len(positions) != nnz or (nnz and positions[-1] >= count):
        raise ArtifactError(f"sparse index gives {len(positions)} positions"
                            + (f" up to {positions[-1]}" if len(positions) else "")
                            + f"; the header says nnz={nnz} in a tensor of {count}")
    return positions


def _decode_huffman(data: bytes, entry: dict, count: int) -> np.ndarray:
    """The codes of a ``huffman`` or ``sparse_huffman`` tensor as a flat int32 array."""
    lo, hi = entry["lo"], entry["hi"]
    if entry["encoding"] == "huffman":
        return (_huffman_symbols(data, hi - lo + 1, count, "huffman codes") + lo).astype(np.int32)
    split, nnz = entry["index_nbytes"], entry["nnz"]
    gaps = _huffman_symbols(data[:split], entry["index_hi"] - entry["index_lo"] + 1,
                            entry["index_bytes"], "sparse_huffman index") + entry["index_lo"]
    positions = _positions(gaps.astype(np.uint8), count, nnz)
    values = _huffman_symbols(data[split:], hi - lo + 1, nnz, "sparse_huffman values") + lo
    if np.any(values == 0):
        raise ArtifactError("a sparse tensor's listed codes must all be non-zero")
    out = np.zeros(count, np.int32)
    out[positions] = values
    return out


def _unpack(data, bits: int, count: int) -> np.ndarray:
    """``count`` signed codes of ``bits`` bits; the padding bits of the last byte must be 0."""
    packed = np.frombuffer(data, np.uint8)
    if count * bits % 8 and packed[-1] & ((1 << (8 - count * bits % 8)) - 1):
        raise ArtifactError("the padding bits after the last code must be 0")
    return unpack_bits(packed, bits, count, signed=True)


def decode_codes(data: bytes, entry: dict) -> np.ndarray:
    """Inverse of :func:`encode_codes`: the codes as an int32 array of ``entry["shape"]``.
    ``entry`` must have passed :func:`check_entry` (so the byte counts are right)."""
    shape = tuple(entry["shape"])
    count = int(np.prod(shape))
    encoding = entry["encoding"]
    if encoding == "packed":
        return _unpack(data, entry["bits"], count).reshape(shape)
    if encoding in HUFFMAN_ENCODINGS:
        return _decode_huffman(data, entry, count).reshape(shape)
    nnz = entry["nnz"]
    if encoding == "sparse":
        split = entry["mask_bytes"]
        bits = np.unpackbits(np.frombuffer(data[:split], np.uint8))
        if bits[count:].any():
            raise ArtifactError("sparse mask: the padding bits after the last entry must be 0")
        positions = np.flatnonzero(bits)
        if len(positions) != nnz:
            raise ArtifactError(f"sparse index gives {len(positions)} positions; the header "
                                f"says nnz={nnz} in a tensor of {count}")
    else:
        split = entry["index_bytes"]
        positions = _positions(np.frombuffer(data[:split], np.uint8), count, nnz)
    values = _unpack(data[split:], entry["bits"], nnz)
    if np.any(values == 0):
        raise ArtifactError("a sparse tensor's listed codes must all be non-zero")
    out = np.zeros(count, np.int32)
    out[positions] = values
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

    def add_codes(self, codes, bits: int, encodings=None) -> dict:
        data, entry = encode_codes(codes, bits, encodings)
        return self._append(data, entry)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def read_tensor(blob: bytes, entry: dict) -> np.ndarray:
    """Decode one tensor described by a header ``entry`` (validated first: :func:`check_entry`)."""
    check_entry(entry, len(blob))
    start, n = entry["offset"], entry["nbytes"]
    data = blob[start:start + n]
    if entry["encoding"] == "raw":
        dtype = np.dtype(entry["dtype"])
        return np.frombuffer(data, dtype).reshape(tuple(entry["shape"])).astype(dtype.newbyteorder("="))
    return decode_codes(data, entry)


def checksum(header_bytes: bytes, blob: bytes) -> bytes:
    return hashlib.sha256(header_bytes + blob).digest()


def _npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def artifact_bytes(header: dict, blob: bytes) -> bytes:
    """The file's bytes for a header (with its ``format`` and ``format_version``, kept as given)
    and a blob: the three members, deflated at level 9, fixed timestamps and permissions."""
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    members = {
        "blob.npy": np.frombuffer(blob, np.uint8),
        "checksum.npy": np.frombuffer(checksum(header_bytes, blob), np.uint8),
        "header.npy": np.frombuffer(header_bytes, np.uint8),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in _MEMBERS:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, _npy_bytes(members[name]), compresslevel=9)
    return buf.getvalue()


def versioned(header: dict) -> dict:
    """The header with ``format`` and ``format_version``: 3 if a weight uses a Huffman encoding,
    else 2 (so a file without one reads in every version-2 reader, byte for byte as before)."""
    return dict(header, format=FORMAT_NAME, format_version=3 if uses_huffman(header) else 2)


def write_artifact(path, header: dict, blob: bytes) -> Path:
    """Write header + blob + checksum atomically and deterministically; returns the path."""
    return write_file_bytes(path, artifact_bytes(versioned(header), blob))


def write_file_bytes(path, data: bytes) -> Path:
    """Write an artifact's bytes atomically and durably (:func:`io.atomic_write`)."""
    with atomic_write(path) as f:
        f.write(data)
    return Path(path)


# Limits a reader enforces before it allocates anything (docs/FORMAT.md, "Limits"). They are
# far above every model minicompress builds (the largest, the Fashion-MNIST teacher, 0.83 M
# weights, is under 1 MB even dense at 8 bits) and keep a hostile file from asking for gigabytes.
MAX_HEADER_BYTES = 16 * 2 ** 20
MAX_BLOB_BYTES = 32 * 2 ** 20
_NPY_PREAMBLE = 4096              # an .npy header is at most this long for a 1-D uint8 array


def _parse_npy_uint8(data: bytes, name: str) -> memoryview:
    """The payload of an ``.npy`` member that must hold a 1-D little-endian uint8 array."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"npy version {version}")
    except ValueError as e:
        raise ArtifactError(f"member '{name}' is not a plain .npy array ({e})") from None
    if dtype != np.uint8 or len(shape) != 1:
        raise ArtifactError(f"member '{name}' must be a 1-D uint8 array, got {dtype} {shape}")
    payload = memoryview(data)[buf.tell():]
    if len(payload) != shape[0]:
        raise ArtifactError(f"member '{name}' declares {shape[0]} bytes but holds {len(payload)}")
    return payload


def _read_members(path: Path) -> dict:
    """The three members' payloads. Each member's size is checked against its limit before it is
    decompressed, and decompression stops at the limit (a zip's sizes can lie), so a
    decompression bomb costs at most the limit."""
    limits = {"header.npy": MAX_HEADER_BYTES, "blob.npy": MAX_BLOB_BYTES, "checksum.npy": 32}
    try:
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist()]
            if sorted(names) != sorted(_MEMBERS):
                raise ArtifactError(f"members {names}, expected exactly {list(_MEMBERS)}")
            out = {}
            for info in z.infolist():
                cap = limits[info.filename] + _NPY_PREAMBLE
                if info.file_size > cap:
                    raise ArtifactError(f"member '{info.filename}' declares {info.file_size} bytes; "
                                        f"at most {limits[info.filename]} are accepted")
                with z.open(info) as f:
                    data = f.read(cap + 1)
                if len(data) > cap:
                    raise ArtifactError(f"member '{info.filename}' inflates past its declared "
                                        f"size; at most {limits[info.filename]} bytes are accepted")
                out[info.filename[:-4]] = _parse_npy_uint8(data, info.filename)
            return out
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise
    except Exception as e:  # BadZipFile, CRC errors, truncated members, zlib errors...
        raise ArtifactError(f"not a readable artifact ({type(e).__name__}: {e})") from None


def read_artifact(path) -> tuple[dict, bytes]:
    """Read and validate the container: (header dict, blob bytes). Nothing is unpickled or run;
    the header's *values* are checked by the reader of the model (``serialize``)."""
    path = Path(path)
    try:
        members = _read_members(path)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    header_bytes, blob = members["header"], members["blob"]
    if len(members["checksum"]) != 32:
        raise ArtifactError(f"{path}: member 'checksum.npy' must hold 32 bytes (SHA-256), "
                            f"got {len(members['checksum'])}")
    digest = hashlib.sha256(header_bytes)
    digest.update(blob)
    if members["checksum"].tobytes() != digest.digest():
        raise ArtifactError(f"{path}: checksum mismatch — the file was altered or damaged")
    try:
        header = json.loads(header_bytes.tobytes().decode("utf-8"), parse_constant=_no_constant,
                            object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ArtifactError(f"{path}: header is not valid JSON ({type(e).__name__}: "
                            f"{str(e)[:200]})") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    if header.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path}: format {str(header.get('format'))[:80]!r}, expected "
                            f"{FORMAT_NAME!r}")
    version = header.get("format_version")
    if isinstance(version, bool) or version not in READ_VERSIONS:
        raise ArtifactError(f"{path}: format version {str(header.get('format_version'))[:20]}; "
                            f"this minicompress reads versions {READ_VERSIONS[0]} and "
                            f"{READ_VERSIONS[-1]}"
                            + (" (version 1 files do not record the input shape and "
                               "standardisation: export the model again)"
                               if header.get("format_version") == 1 else ""))
    if version == 2 and uses_huffman(header):
        raise ArtifactError(f"{path}: a version-2 file cannot hold huffman or sparse_huffman "
                            f"tensors (they are version 3)")
    return header, blob.tobytes()


def _unique_keys(pairs):
    """A JSON object whose keys repeat has two readings; refuse it."""
    out = dict(pairs)
    if len(out) != len(pairs):
        keys = [k for k, _ in pairs]
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return out


def _no_constant(name):
    """JSON has no NaN or Infinity; Python's parser accepts them unless told not to."""
    raise ValueError(f"{name} is not a JSON number")
