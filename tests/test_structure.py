"""The shape of the code: short signatures, no import cycles, one Adam per trainer, one training
loop whose batches carry labels and indices apart."""
import ast
import inspect
import pkgutil
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest

import minicompress
from minicompress import distill, models, optim, pipeline, prune, quantize
from minicompress.recipe import validate
from minicompress.train import TrainConfig

PACKAGE = Path(minicompress.__file__).parent
MAX_PARAMETERS = 8


def package_modules():
    return ["minicompress"] + [m.name for m in pkgutil.walk_packages([str(PACKAGE)], "minicompress.")]


def functions_of(module):
    """Every function and method defined in ``module`` (not imported into it)."""
    for _, obj in vars(module).items():
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            yield obj.__qualname__, obj
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            for name, member in vars(obj).items():
                fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if inspect.isfunction(fn):
                    yield f"{obj.__qualname__}.{name}", fn


def parameter_count(fn):
    """What a caller passes: every parameter but a method's ``self`` / ``cls``."""
    names = list(inspect.signature(fn).parameters)
    return len(names) - (1 if names and names[0] in ("self", "cls") else 0)


def test_no_function_takes_more_than_eight_parameters():
    too_long = []
    for name in package_modules():
        module = import_module(name)
        for qualname, fn in functions_of(module):
            n = parameter_count(fn)
            if n > MAX_PARAMETERS:
                too_long.append(f"{name}.{qualname}: {n}")
    assert not too_long, f"more than {MAX_PARAMETERS} parameters (group options in a dataclass): {too_long}"


def test_parameter_count_check_sees_methods_and_functions():
    found = dict(functions_of(import_module("minicompress.train")))
    assert "fit" in found and "Trainer.fit" in found and "CosineLR.after_step" in found
    assert parameter_count(found["fit"]) == 7 and parameter_count(found["Trainer.fit"]) == 1


# ---- imports -------------------------------------------------------------------------------------
def module_imports(path, module):
    """Names of the minicompress modules that the file at ``path`` (module ``module``) imports,
    at any depth (a function-level import counts as much as one at the top)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("minicompress"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("minicompress"):
                continue
            for a in node.names:  # "from . import optim" imports the module minicompress.optim
                sub = f"{target}.{a.name}"
                out.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                        or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else target)
    return out


def import_graph():
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        graph[module] = module_imports(path, module) - {module}
    return graph


def find_cycle(graph):
    """A list of modules that import each other in a loop, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            # a package's __init__ only hands names on: importing it is importing its modules
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle_among_minicompress_modules():
    graph = import_graph()
    # a package imports its own modules (__init__ hands names on): leave those edges out
    graph = {m: {n for n in deps if not n.startswith(m + ".")} for m, deps in graph.items()}
    assert "minicompress.train" in graph and "minicompress.parallel" in graph["minicompress.train"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_cycle_finder_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# ---- one Adam per trainer --------------------------------------------------------------------------
@pytest.fixture
def adams(monkeypatch):
    """Every Adam built while the test runs, with its parameter-group names."""
    made = []
    original = optim.Adam.__init__

    def counting_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(optim.Adam, "__init__", counting_init)
    return made


def _digits(n=256):
    from minicompress.data import load_dataset
    (x, y), _ = load_dataset("digits")
    return x[:n], y[:n]


def test_learned_mask_prune_uses_one_adam_with_weights_and_scores(adams):
    data = _digits()
    model = models.lenet300(8, rng=np.random.default_rng(0))
    prune.learned_mask_prune(model, data, prune.MaskPruning(0.5), TrainConfig(1, np.random.default_rng(1)))
    assert len(adams) == 1
    assert [g["name"] for g in adams[0].param_groups] == ["weights", "mask scores"]


def test_learned_filter_prune_uses_one_adam(adams):
    data = _digits()
    model = models.lenet5(8, rng=np.random.default_rng(0))
    prune.learned_filter_prune(model, data, prune.FilterPruning({"conv1": 0.5}),
                               TrainConfig(1, np.random.default_rng(1)))
    assert len(adams) == 1
    assert [g["name"] for g in adams[0].param_groups] == ["weights", "filter scores"]


def test_qat_uses_one_adam_with_step_sizes_offsets_and_weights(adams):
    x, y = _digits()
    model = models.lenet300(8, rng=np.random.default_rng(0))
    quantize.prepare(model, 4, 4, input_kind="asymmetric")
    quantize.calibrate(model, x)
    quantize.train_quantized(model, (x, y), TrainConfig(1, np.random.default_rng(1)), lr_weights=1e-4)
    assert len(adams) == 1
    assert [g["name"] for g in adams[0].param_groups] == ["step sizes", "offsets", "weights"]


def test_distillation_with_a_hint_uses_one_adam(adams):
    from minicompress.nn import Linear
    x, y = _digits()
    teacher = distill.freeze(models.lenet300(8, rng=np.random.default_rng(0)))
    student = models.student(8, hidden=16, rng=np.random.default_rng(1))
    hint = distill.HintLoss(Linear(16, 300, rng=np.random.default_rng(2)), "relu1", "relu1")
    kd = distill.DistillationLoss(2.0, 0.5, teacher=teacher, hint=hint)
    distill.fit_distill(student, (x, y), kd, TrainConfig(1, np.random.default_rng(3)), hint_lr=1e-2)
    assert len(adams) == 1
    assert [(g["name"], g["lr"]) for g in adams[0].param_groups] == [
        ("weights", 1e-3), ("hint regressors", 1e-2)]


# ---- labels are labels, indices are indices ----------------------------------------------------
def test_distilled_stages_report_the_accuracy_on_the_labels(monkeypatch):
    """The prune and quantize stages distil (their loss looks teacher logits up by the batch's
    indices); the accuracy they report must compare predictions with the *labels*. It once
    compared them with the indices and printed acc≈0.001 every epoch."""
    from minicompress import train
    shown = []

    class Recording(train.Progress):
        def update(self, n=1, **info):
            if "acc" in info:
                shown.append((self.desc, info["acc"]))
            super().update(n, **info)

    monkeypatch.setattr(train, "Progress", Recording)
    recipe = validate({"seed": 0, "dataset": "digits", "batch_size": 64,
                       "teacher": {"model": "lenet300", "epochs": 3},
                       "distill": {"model": "student", "hidden": 32, "epochs": 3},
                       "prune": {"sparsity": 0.5, "epochs": 1, "lr": 1e-3},
                       "quantize": {"weight_bits": 8, "activation_bits": 8, "epochs": 1},
                       "export": None})
    pipeline.run(recipe, progress=False)
    last = {desc.split()[0]: acc for desc, acc in shown}
    assert set(last) == {"teacher", "distill", "prune", "quantize"}
    for stage, acc in last.items():
        # chance is 0.1; predictions compared with indices agree about once in 1,437 images
        assert acc > 0.3, f"{stage}: training accuracy {acc} (labels compared with indices?)"
