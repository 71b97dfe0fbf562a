import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def _fashion_available():
    from minicompress.data import DatasetNotFoundError, load_fashion_mnist
    try:
        load_fashion_mnist(download=False)
        return True
    except DatasetNotFoundError:
        return False


@pytest.fixture(scope="session")
def fashion():
    """Normalised Fashion-MNIST, or skip when it is not on disk (CI installs it)."""
    if not _fashion_available():
        pytest.skip("Fashion-MNIST not on disk: apt-get install -y dataset-fashion-mnist")
    from minicompress.data import load_dataset
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def digits():
    from minicompress.data import load_dataset
    return load_dataset("digits")
