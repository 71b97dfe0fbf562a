"""Wait for the shared teacher checkpoint instead of training a second copy of it."""
import time

from minicompress.data import cache_dir


def wait_for_teacher(name="teacher", poll=20, timeout=3 * 3600):
    path = cache_dir() / "checkpoints" / f"{name}_fashion_e10_s0.npz"
    start = time.time()
    while not path.exists():
        if time.time() - start > timeout:
            raise TimeoutError(f"no {path} after {timeout}s; run benchmarks/train_dense.py")
        print(f"waiting for {path} ...", flush=True)
        time.sleep(poll)
    return path
