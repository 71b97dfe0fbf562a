"""The checker speaks Chinese: every message a student can see has a ``zh`` entry.

* every mistake hint of the registry has a non-empty ``zh`` with Chinese characters, different from
  its English (so a hint added in English only fails here, naming the exercise and the mistake);
* every output formula has a non-empty ``zh`` (math may read the same in both languages);
* every generic message of the checker has Chinese and the same ``{placeholders}`` as its English;
* each mistake, run with ``lang="zh"``, is named by its Chinese hint; a notebook whose metadata says
  ``language: zh`` gets the Chinese hint for a missing bias correction.
"""
import re
import string

import numpy as np
import pytest

from minicompress import check as C
from minicompress.exercises import EXERCISES, Exercise, Mistake, Output

CJK = re.compile(r"[\u4e00-\u9fff]")


def untranslated(exercises):
    """``[(exercise, mistake key or output name, why)]`` for every message without proper Chinese."""
    problems = []
    for name, e in exercises.items():
        for m in e.mistakes:
            zh = m.hint.get("zh", "")
            if not CJK.search(zh):
                problems.append((name, m.key, "hint has no Chinese zh"))
            elif zh == m.hint["en"]:
                problems.append((name, m.key, "zh is the English text"))
        for o in e.outputs:
            if not o.formula.get("zh", "").strip():
                problems.append((name, o.name, "formula has no zh"))
    return problems


def test_every_hint_and_formula_of_the_registry_has_chinese():
    assert untranslated(EXERCISES) == []


def test_an_english_only_hint_is_caught():
    """The walk above can fail: an exercise with an English-only hint (and formula) is reported."""
    fake = Exercise("fake", "01", "y = x", (Output("y", {"en": "x"}),), (),
                    (Mistake("slip", lambda x: (x,), {"en": "a hint in English only"}),
                     Mistake("copied", lambda x: (x,), {"en": "same", "zh": "same"})))
    assert untranslated({"fake": fake}) == [("fake", "slip", "hint has no Chinese zh"),
                                            ("fake", "copied", "hint has no Chinese zh"),
                                            ("fake", "y", "formula has no zh")]


def _fields(template):
    return sorted(f for _, f, _, _ in string.Formatter().parse(template) if f is not None)


@pytest.mark.parametrize("key", list(C.TEXT))
def test_every_checker_message_has_chinese_with_the_same_placeholders(key):
    entry = C.TEXT[key]
    assert CJK.search(entry.get("zh", "")), key
    assert _fields(entry["zh"]) == _fields(entry["en"]), key


@pytest.mark.parametrize("name", list(EXERCISES))
def test_every_mistake_is_named_in_chinese(name):
    """The same slips as ``test_every_mistake_is_wrong_and_named``, reported with lang="zh"."""
    e = EXERCISES[name]
    for mistake in e.mistakes:
        wrong = (lambda **kw: mistake.wrong(**kw)[0]) if len(e.outputs) == 1 else mistake.wrong
        with np.errstate(all="ignore"):
            ok, messages = C.run_exercise(name, wrong, lang="zh")
        assert not ok, (name, mistake.key)
        assert any(mistake.hint["zh"] in m for m in messages), (name, mistake.key, messages)
        assert not any(mistake.hint["en"] in m for m in messages), (name, mistake.key, messages)


def test_a_missing_bias_correction_gets_the_chinese_hint():
    ok, messages = C.run_exercise("bias_correction", lambda m, v, beta1, beta2, t: (m, v), lang="zh")
    assert not ok
    assert "偏差修正" in messages[0] and "应为" in messages[0], messages
    assert "bias correction" not in messages[0], messages


def test_a_zh_notebook_gets_the_chinese_hint(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("def bias_correction(m, v, beta1, beta2, t):\n    return m, v")]
    nb.metadata["language"] = "zh"
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    results = C.check_notebook(path, names=["bias_correction"])
    ok, messages = results["bias_correction"]
    assert not ok and "是不是漏了偏差修正" in messages[0], messages
