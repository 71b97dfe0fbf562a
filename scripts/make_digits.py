"""Produce minicompress/_data/digits.npz from scikit-learn's copy of the UCI 8x8 digits.

Run once (needs scikit-learn, which is not a runtime dependency):  python scripts/make_digits.py
Data: E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits", UCI ML Repository,
CC BY 4.0.
"""
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

d = load_digits()
x = d.images.astype(np.uint8)  # 0..16
y = d.target.astype(np.uint8)
rng = np.random.default_rng(20240601)
order = rng.permutation(len(x))
test, train = order[:360], order[360:]
out = Path(__file__).resolve().parent.parent / "minicompress" / "_data" / "digits.npz"
np.savez_compressed(out, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
print(f"wrote {out}: {len(train)} train, {len(test)} test")
