"""Bad input gets a clear error: wrong shapes, bad constructor arguments, non-finite numbers,
corrupt or missing data files (and nothing half-written to the cache)."""
import gzip
import hashlib
import io

import numpy as np
import pytest

from minicompress import data, models, nn, optim
from minicompress.data import DatasetNotFoundError
from minicompress.step import Batch, train_step
from minicompress.train import TrainConfig, fit


# ---- shapes ------------------------------------------------------------------------------------
def test_conv_channel_mismatch_names_layer_and_both_shapes(rng):
    conv = nn.Conv2d(3, 4, 3, rng=rng)
    with pytest.raises(ValueError) as e:
        conv(np.zeros((2, 1, 8, 8), np.float32))
    msg = str(e.value)
    assert "Conv2d(3, 4" in msg and "(N, 3, H, W)" in msg and "(2, 1, 8, 8)" in msg


def test_linear_feature_mismatch_and_wrong_rank(rng):
    fc = nn.Linear(5, 4, rng=rng)
    with pytest.raises(ValueError, match=r"Linear\(5, 4\).*\(N, 5\).*\(2, 6\)"):
        fc(np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match=r"Linear\(5, 4\).*\(2, 1, 5\)"):
        fc(np.zeros((2, 1, 5), np.float32))


def test_pool_wrong_rank_and_too_small(rng):
    with pytest.raises(ValueError, match=r"MaxPool2d.*\(N, C, H, W\).*\(4, 4\)"):
        nn.MaxPool2d(2)(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="larger than the input 2x2"):
        nn.MaxPool2d(3)(np.zeros((1, 1, 2, 2), np.float32))


def test_kernel_larger_than_padded_input(rng):
    with pytest.raises(ValueError, match="kernel 5 is larger than the padded input 4x4"):
        nn.Conv2d(1, 2, 5, padding=1, rng=rng)(np.zeros((1, 1, 2, 2), np.float32))


def test_model_built_for_28x28_rejects_16x16(rng):
    with pytest.raises(ValueError, match=r"Linear\(400, 120\)"):
        models.lenet5(28, rng=rng)(np.zeros((2, 1, 16, 16), np.float32))


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "teacher"])
def test_empty_batch_gives_empty_logits(rng, name):
    """A batch of 0 images is not an error: every model returns (0, classes) logits, in eval and
    in training mode, and its integer model (fused and step by step) (0, classes) logits and
    (0,) predictions."""
    from minicompress.quantize import calibrate, convert, prepare
    model = models.build(name, 8 if name != "teacher" else 28, rng=rng)
    size = 8 if name != "teacher" else 28
    x = rng.standard_normal((4, 1, size, size)).astype(np.float32)
    empty = x[:0]
    for training in (True, False):
        model.train(training)
        assert model(empty).shape == (0, 10)
    if name == "teacher":
        return
    prepare(model, 8, 8, example_input=x)
    calibrate(model, x)
    im = convert(model)
    assert im.forward(empty).shape == (0, 10) and im.forward(empty).dtype == np.float32
    assert im.forward_steps(empty).shape == (0, 10)
    assert im.predict(empty).shape == (0,)
    np.testing.assert_array_equal(im.predict(x), im.forward(x).argmax(1))


def test_integer_model_without_input_record_names_the_step_a_bad_shape_fails(rng):
    """An integer model made by ``convert`` records no input shape; a sample shape its steps
    cannot take is still a one-line error naming the step and what it needs — for the fused and
    the step-by-step path, and for an empty batch — not a NumPy reshape or matmul error."""
    from minicompress.quantize import calibrate, convert, prepare
    cases = {"lenet5": [((1, 7, 8), "step 6 (linear) needs 64 input features, gets 32"),
                        ((3, 8, 8), "step 1 (conv2d) needs images (C, H, W) with C = 1"),
                        ((64,), "step 1 (conv2d) needs images"),
                        ((1, 3, 3), "step 4 (max-pool 2x2) needs images of at least 2x2"),
                        ((1, 0, 4), "step 1 (conv2d) needs images of at least 1x1 (a 3x3 kernel")],
             "lenet300": [((63,), "step 2 (linear) needs 64 input features, gets 63")]}
    for name, bad in cases.items():
        model = models.build(name, 8, rng=rng)
        x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
        prepare(model, 8, 8, example_input=x)
        calibrate(model, x)
        im = convert(model)
        assert im.input is None
        for shape, phrase in bad:
            for n in (2, 0):
                for run in (im.forward, im.forward_steps, im.predict):
                    with pytest.raises(ValueError) as e:
                        run(np.zeros((n,) + shape, np.float32))
                    msg = str(e.value)
                    assert msg.startswith("IntegerModel.forward") and phrase in msg, msg
                    assert f"samples of shape {shape}" in msg and "\n" not in msg


def test_non_array_input(rng):
    with pytest.raises(TypeError, match="numpy array"):
        nn.Linear(2, 2, rng=rng)([[1.0, 2.0]])


# ---- constructor arguments ---------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,name", [
    (dict(in_channels=1, out_channels=2, kernel_size=3, stride=0), "stride"),
    (dict(in_channels=1, out_channels=2, kernel_size=0), "kernel_size"),
    (dict(in_channels=-1, out_channels=2, kernel_size=3), "in_channels"),
    (dict(in_channels=1, out_channels=0, kernel_size=3), "out_channels"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, padding=-1), "padding"),
    (dict(in_channels=1, out_channels=2, kernel_size=2.5), "kernel_size"),
])
def test_conv_bad_arguments(rng, kwargs, name):
    with pytest.raises(ValueError, match=name):
        nn.Conv2d(**kwargs, rng=rng)


def test_other_bad_arguments(rng):
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3, rng=rng)
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(3, -2, rng=rng)
    with pytest.raises(ValueError, match="stride"):
        nn.MaxPool2d(2, stride=0)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.AvgPool2d(-1)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        nn.Linear(3, 3, rng=0)
    with pytest.raises(ValueError, match="input_size"):
        models.build("lenet5", 2, rng=rng)
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        models.build("vgg", rng=rng)
    with pytest.raises(ValueError, match="batch_size"):
        list(data.batches(np.zeros(4), np.zeros(4), 0, rng=rng))
    with pytest.raises(ValueError, match="epochs"):
        fit(models.student(8, rng=rng), optim.Adam(models.student(8, rng=rng).parameters()),
            (np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, int)), TrainConfig(epochs=-1, rng=rng))


# ---- non-finite numbers ------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_stops_fit(rng, digits):
    (xtr, ytr), _ = digits
    model = models.lenet300(8, rng=rng)
    model.fc2.weight.data[0, 0] = np.inf  # as if training had diverged
    opt = optim.Adam(model.parameters(), lr=1e-3)
    with pytest.raises(FloatingPointError, match="training stopped.*NaN or inf"):
        fit(model, opt, (xtr[:256], ytr[:256]), TrainConfig(epochs=1, rng=rng))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_learning_rate_stops_fit_with_clear_error(rng, digits):
    (xtr, ytr), _ = digits
    model = models.lenet300(8, rng=rng)
    opt = optim.SGD(model.parameters(), lr=1e12)
    with pytest.raises(FloatingPointError, match="training stopped"):
        fit(model, opt, (xtr, ytr), TrainConfig(epochs=3, rng=rng, batch_size=32))


def test_non_finite_input_batch(rng):
    model = models.student(8, rng=rng)
    x = np.zeros((2, 1, 8, 8), np.float32)
    x[1, 0, 3, 3] = np.nan
    with pytest.raises(FloatingPointError, match="input batch contains NaN"):
        train_step(model, optim.Adam(model.parameters()), Batch(x, np.array([0, 1])))


def test_non_finite_input_to_evaluate(rng):
    from minicompress.train import evaluate
    x = np.zeros((3, 1, 8, 8), np.float32)
    x[2, 0, 0, 0] = np.inf
    with pytest.raises(FloatingPointError, match="predict: the input contains NaN or inf"):
        evaluate(models.student(8, rng=rng), x, np.zeros(3, int))


def test_cross_entropy_bad_targets():
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        nn.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="integers"):
        nn.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


# ---- data files --------------------------------------------------------------------------------
def _idx(arr, code=0x08):
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _fake_dataset(rng, n_train=5, n_test=3):
    """Tiny IDX files with the real names: {stem: raw bytes}, plus the arrays."""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    return {k: _idx(v) for k, v in arrays.items()}, arrays


def _write(folder, files, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, raw in files.items():
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data set visible: empty cache, no $MINICOMPRESS_DATA, Debian path hidden."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MINICOMPRESS_DATA", raising=False)
    real = data._candidate_dirs
    monkeypatch.setattr(data, "_candidate_dirs", lambda name, path: [
        d for d in real(name, path) if not str(d).startswith("/usr/share/datasets")])

    def no_network(*a, **k):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    return tmp_path


def test_loader_search_order(isolated, rng, monkeypatch):
    a_files, a = _fake_dataset(rng, 5)
    b_files, b = _fake_dataset(rng, 6)
    c_files, c = _fake_dataset(rng, 7)
    explicit = _write(isolated / "explicit", a_files, gz=False)       # raw IDX
    _write(isolated / "env" / "fashion-mnist", b_files)                # gzip
    _write(isolated / "cache" / "minicompress" / "fashion-mnist", c_files)
    # 3. only the cache
    (xtr, ytr), (xte, yte) = data.load_fashion_mnist()
    assert len(xtr) == 7
    np.testing.assert_array_equal(ytr, c["train-labels-idx1-ubyte"])
    # 2. $MINICOMPRESS_DATA wins over the cache
    monkeypatch.setenv("MINICOMPRESS_DATA", str(isolated / "env"))
    (xtr, ytr), _ = data.load_fashion_mnist()
    assert len(xtr) == 6
    # 1. an explicit path wins over everything
    (xtr, ytr), (xte, yte) = data.load_fashion_mnist(path=explicit)
    assert xtr.shape == (5, 1, 28, 28) and xte.shape == (3, 1, 28, 28)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    np.testing.assert_allclose(xtr[:, 0] * 255, a["train-images-idx3-ubyte"], atol=1e-4)


def test_nothing_found_offline_names_the_three_ways(isolated):
    with pytest.raises(DatasetNotFoundError) as e:
        data.load_fashion_mnist()
    msg = str(e.value)
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert "MINICOMPRESS_DATA" in msg and "download" in msg and "network disabled" in msg


def test_corrupt_local_file_is_a_clear_error(isolated, rng):
    files, _ = _fake_dataset(rng)
    files["t10k-images-idx3-ubyte"] = files["t10k-images-idx3-ubyte"][:-10]  # truncated
    folder = _write(isolated / "d", files, gz=False)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
        data.load_fashion_mnist(path=folder)


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _serve(monkeypatch, blobs, calls):
    def urlopen(url, timeout=None):
        calls.append(url)
        return _Response(blobs[url.rsplit("/", 1)[1][:-3]])
    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)


def _cache_files(isolated):
    root = isolated / "cache"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_download_with_bad_bytes_saves_nothing(isolated, rng, monkeypatch):
    files, _ = _fake_dataset(rng)
    blobs = {stem: gzip.compress(raw) for stem, raw in files.items()}
    spec = {"urls": ["https://mirror.invalid/"],
            "sha256": {s: hashlib.sha256(r).hexdigest() for s, r in files.items()}}
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", spec)
    blobs["t10k-labels-idx1-ubyte"] = gzip.compress(b"\x00\x00\x08\x01tampered")  # wrong digest
    calls = []
    _serve(monkeypatch, blobs, calls)
    with pytest.raises(DatasetNotFoundError, match="SHA-256 .* does not match"):
        data.load_fashion_mnist()
    assert len(calls) == 4          # all four were fetched and checked ...
    assert _cache_files(isolated) == []  # ... and not one was written
    blobs["t10k-labels-idx1-ubyte"] = b"this is not gzip at all"
    with pytest.raises(DatasetNotFoundError, match="not a valid gzip"):
        data.load_fashion_mnist()
    assert _cache_files(isolated) == []


def test_download_with_correct_bytes_fills_the_cache(isolated, rng, monkeypatch):
    files, arrays = _fake_dataset(rng)
    blobs = {stem: gzip.compress(raw) for stem, raw in files.items()}
    # checked on the archive itself, as MNIST is
    spec = {"urls": ["https://mirror.invalid/"],
            "sha256_gz": {s: hashlib.sha256(b).hexdigest() for s, b in blobs.items()}}
    monkeypatch.setitem(data.DATASETS, "mnist", spec)
    calls = []
    _serve(monkeypatch, blobs, calls)
    (xtr, ytr), (xte, yte) = data.load_mnist()
    np.testing.assert_array_equal(yte, arrays["t10k-labels-idx1-ubyte"])
    assert _cache_files(isolated) == sorted(s + ".gz" for s in files)  # no *.part left behind
    # second call: found in the cache, no network
    data.load_mnist()
    assert len(calls) == 4


def test_recorded_digests_look_like_sha256():
    for name, spec in data.DATASETS.items():
        digests = spec.get("sha256") or spec.get("sha256_gz")
        assert set(digests) == set(data._FILES), name
        assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests.values()), name


# ---- wrong kinds of argument: a TypeError naming the argument, not an AttributeError inside ----
def _lenet5():
    return models.build("lenet5", 8, rng=np.random.default_rng(0))


@pytest.mark.parametrize("call", [
    lambda p, q, v: p.prune_by_score(v, 0.5),
    lambda p, q, v: p.sparsity(v),
    lambda p, q, v: p.remove(v),
    lambda p, q, v: p.masks(v),
    lambda p, q, v: p.gates(v),
    lambda p, q, v: p.filter_scores(v),
    lambda p, q, v: p.prunable_layers(v),
    lambda p, q, v: q.quantizers(v),
    lambda p, q, v: q.quantizer_parameters(v),
    lambda p, q, v: q.weight_parameters(v),
], ids=["prune_by_score", "sparsity", "remove", "masks", "gates", "filter_scores",
        "prunable_layers", "quantizers", "quantizer_parameters", "weight_parameters"])
@pytest.mark.parametrize("value", [None, 3, [1, 2], np.zeros((2, 2)), "lenet5"],
                         ids=["None", "int", "list", "array", "str"])
def test_a_model_argument_that_is_not_a_module_names_the_argument(call, value):
    from minicompress import prune, quantize
    with pytest.raises(TypeError, match=r"^model must be a minicompress Module.*got "):
        call(prune, quantize, value)


def test_get_mask_and_layer_lists_are_checked():
    from minicompress import prune
    with pytest.raises(TypeError, match="layer must be a minicompress WeightedLayer"):
        prune.get_mask(np.zeros(3))
    for layers in (np.array([]), "conv1", [], [1]):      # an empty array used to divide by zero
        with pytest.raises(TypeError, match="layers must be"):
            prune.sparsity(_lenet5(), layers)
    with pytest.raises(TypeError, match="layers must be a list of layer names"):
        prune.filter_scores(_lenet5(), layers="conv1")
    with pytest.raises(ValueError, match="'relu1' cannot be filter-pruned: valid layers are"):
        prune.filter_scores(_lenet5(), layers=("relu1",))


@pytest.mark.parametrize("keep", [[0.0, 1.7], np.array([1 + 0j]), np.array([10 ** 30], object)],
                         ids=["floats", "complex", "huge-int-object"])
def test_remove_filters_takes_only_integer_indices_or_a_mask(keep):
    from minicompress import prune
    with pytest.raises(TypeError, match="keep must be integer indices or a boolean mask"):
        prune.remove_filters(_lenet5(), "conv1", keep)    # 1.7 used to become filter 1


@pytest.mark.parametrize("dtype", [np.complex64, object, "U3"])
def test_a_complex_or_object_input_is_refused_by_the_first_layer(dtype):
    model = _lenet5()
    model.eval()
    with pytest.raises(TypeError, match=r"Conv2d.*real-valued.*got dtype"):
        model(np.zeros((2, 1, 8, 8), dtype))                  # complex gave complex logits


def test_complex_arrays_are_refused_where_numbers_are_read():
    from minicompress import prune, quantize
    from minicompress.quantize.fixed_point import quantize_multiplier
    z = np.ones((4, 1, 8, 8), np.complex64)
    with pytest.raises(TypeError, match="example_input must be an array of real numbers"):
        quantize.prepare(_lenet5(), 8, 8, input_kind="auto", example_input=z)
    with pytest.raises(TypeError, match="scores of weight must be an array of real numbers"):
        prune.nm_mask(np.ones((2, 4), complex))
    with pytest.raises(TypeError, match="M must be an array of real numbers"):
        quantize_multiplier(np.array([0.5 + 1j]))


@pytest.mark.parametrize("call", [
    lambda v, x, p: __import__("minicompress.io", fromlist=["io"]).save_model(v, p / "m.npz"),
    lambda v, x, p: __import__("minicompress.io", fromlist=["io"]).load_model(v, p / "m.npz"),
    lambda v, x, p: __import__("minicompress.train", fromlist=["t"]).predict(v, x),
    lambda v, x, p: __import__("minicompress.train", fromlist=["t"]).evaluate(v, x, np.zeros(4, int)),
    lambda v, x, p: __import__("minicompress.metrics", fromlist=["m"]).model_bytes(v),
    lambda v, x, p: __import__("minicompress.metrics", fromlist=["m"]).latency(v, x),
    lambda v, x, p: fit(v, None, (x, np.zeros(4, int)), TrainConfig(1, np.random.default_rng(0))),
], ids=["save_model", "load_model", "predict", "evaluate", "model_bytes", "latency", "fit"])
def test_io_train_and_metrics_name_a_model_that_is_not_a_module(call, tmp_path):
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(TypeError, match=r"^model must be a minicompress Module.*got ndarray"):
        call(np.zeros(3), x, tmp_path)


def test_prepare_options_and_calibrate_data_are_checked():
    from minicompress import quantize
    with pytest.raises(TypeError, match="options must be a QuantizerOptions or None, got dict"):
        quantize.prepare(_lenet5(), 8, 8, input_kind="asymmetric", options={"input_bits": 8})
    fake = quantize.prepare(_lenet5(), 8, 8, input_kind="asymmetric")
    x = np.zeros((4, 1, 8, 8), np.float32)
    for bad, message in ((x[:0], "non-empty batch"), (np.zeros(3), "non-empty batch"),
                         (x.astype(complex), "real numbers"), ([[1, "a"]], "real numbers")):
        with pytest.raises((ValueError, TypeError), match=message):   # was "saw no data"
            quantize.calibrate(fake, bad)
    for size in (0, -1, 2.5):
        with pytest.raises(ValueError, match="calibrate: batch_size"):
            quantize.calibrate(fake, x, batch_size=size)


def test_softmax_takes_array_likes_and_refuses_complex():
    np.testing.assert_allclose(nn.softmax([0.0, 0.0]), [0.5, 0.5])   # a list used to fail
    with pytest.raises(TypeError, match="softmax: z must be an array of real numbers"):
        nn.softmax(np.ones(3, complex))
    with pytest.raises(TypeError, match="log_softmax: z"):
        nn.log_softmax(np.array(["a"]))
