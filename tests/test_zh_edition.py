"""The Chinese edition: ``notebooks/zh/NN_name.ipynb`` is the English notebook with every markdown cell
replaced by its translation from ``notebooks/zh/NN_name.md``; the code is the English code.

* every English markdown cell has a translation keyed by the hash of its current text, and no
  translation is left over (a changed English cell fails here, naming the cell, until re-translated);
* both editions have exactly the same code cells, with the same outputs;
* each zh .ipynb is exactly what its sources build (``build_notebooks.py --lang zh``);
* ``README.zh-CN.md`` has the sections and the code blocks of ``README.md``.
"""
import importlib.util
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

SOURCES = build.sources()
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_every_markdown_cell_has_a_current_translation(py):
    problems = build.translation_problems(py, "zh")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_translations_are_chinese(py):
    """A translation that is the English text pasted unchanged would pass the key check."""
    english = [c.source for c in build.read_source(py).cells if c.cell_type == "markdown"]
    have = build.read_translations(build.translation_file(py, "zh"))
    for key, text in have.items():
        assert text not in english, f"{build.translation_file(py).name} en:{key} is the English text itself"
        prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`", "", text, flags=re.S)
        assert len(CJK.findall(prose)) >= 0.3 * len(re.findall(r"[A-Za-z]+", prose)), \
            f"{build.translation_file(py).name} en:{key} (starting {build.first_line(text)!r}) is mostly not Chinese"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_both_editions_have_the_same_code_cells_and_outputs(py):
    english = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    chinese = nbformat.read(build.edition_path(py, "zh"), as_version=4)
    assert [c.cell_type for c in chinese.cells] == [c.cell_type for c in english.cells]
    for i, (e, z) in enumerate(zip(english.cells, chinese.cells)):
        if e.cell_type == "code":
            assert z.source == e.source, f"code cell {i} of {py.stem} differs between the editions"
            assert z.outputs == e.outputs, f"code cell {i} of {py.stem} has other outputs in the zh edition"
        else:
            assert z.source != e.source, f"markdown cell {i} of {py.stem} is not translated"
    assert chinese.metadata.get("language") == "zh"
    assert "jupytext" not in chinese.metadata, "the zh .ipynb must not claim to be paired with a .py"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_zh_notebook_is_what_its_sources_build(py):
    problems = build.edition_differences(py, "zh")
    assert not problems, "\n".join(problems) + "\n(run: python scripts/build_notebooks.py --lang zh)"


def test_a_changed_english_cell_is_reported_by_name(tmp_path):
    """The key check can fail: edit one English markdown cell in a copy and the cell is named."""
    py = SOURCES[0]
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / (py.stem + ".md")).write_text(build.translation_file(py).read_text())
    text = py.read_text()
    edited = text.replace("# ## Glossary", "# ## Glossary (edited)", 1)
    assert edited != text
    (tmp_path / py.name).write_text(edited)
    problems = build.translation_problems(tmp_path / py.name, "zh")
    assert len(problems) == 1, problems
    assert "markdown cell 1 (starting '## Glossary (edited)" in problems[0] and "changed" in problems[0], problems
    assert "(stale)" in problems[0] and f"en:{build.cell_key(build.read_source(tmp_path / py.name).cells[1].source)}" \
        in problems[0], problems
    with pytest.raises(ValueError, match="lacks translations of cell"):
        build.translated(build.read_source(tmp_path / py.name), tmp_path / py.name, "zh")


def test_a_missing_cell_and_a_leftover_translation_are_both_reported(tmp_path):
    py = SOURCES[0]
    (tmp_path / "zh").mkdir()
    text = build.translation_file(py).read_text()
    text = text.replace("<!-- cell 3 en:", "<!-- cell 99 en:", 1)          # the entry no longer names its cell
    text += "\n<!-- cell 42 en:00000000 -->\n一段多余的译文。\n"
    (tmp_path / "zh" / (py.stem + ".md")).write_text(text)
    (tmp_path / py.name).write_text(py.read_text().replace("# ## The whole pipeline in one run",
                                                            "# ## The whole pipeline, in one run", 1))
    problems = build.translation_problems(tmp_path / py.name, "zh")
    assert any("markdown cell 3" in p and "has no translation" in p for p in problems), problems
    assert sum("matches no English cell" in p for p in problems) == 2, problems


def test_an_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="language 'fr' has no translations; accepted: zh"):
        build.translation_file(SOURCES[0], "fr")


def _headings_and_code(text):
    headings = re.findall(r"^## ", text, flags=re.MULTILINE)
    code = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.S)
    return len(headings), code


def test_readme_zh_has_the_sections_and_commands_of_readme():
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    zh_path = ROOT / "README.zh-CN.md"
    assert zh_path.exists(), "README.zh-CN.md is missing"
    zh = zh_path.read_text(encoding="utf-8")
    (n_en, code_en), (n_zh, code_zh) = _headings_and_code(en), _headings_and_code(zh)
    assert n_zh == n_en, f"README.md has {n_en} '## ' sections, README.zh-CN.md has {n_zh}"
    assert code_zh == code_en, "README.zh-CN.md's code blocks differ from README.md's (they must be identical)"
    assert "README.zh-CN.md" in en.split("\n## ")[0], "README.md does not link the Chinese README at its top"


def test_readme_zh_links_point_into_the_repository():
    zh = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert "../shared" not in zh
    assert not re.findall(r".{0,30}#\d", zh), "README.zh-CN.md has an issue-style reference"
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)", zh):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        assert (ROOT / target.split("#")[0]).exists(), f"README.zh-CN.md: link {target} points to a missing file"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_the_chinese_student_edition_is_the_english_one_translated(py):
    """``--student --lang zh``: the same code cells as the English student edition (solutions stripped),
    every markdown cell translated, metadata language zh (the checker's message language)."""
    check = pytest.importorskip("minicompress.check")
    english = check.student_notebook(build.read_source(py), "en")
    chinese = check.student_notebook(build.translated(build.read_source(py), py, "zh"), "zh")
    assert [(c.cell_type, c.source) for c in chinese.cells if c.cell_type == "code"] == \
        [(c.cell_type, c.source) for c in english.cells if c.cell_type == "code"]
    have = set(build.read_translations(build.translation_file(py, "zh")).values())
    assert all(c.source in have for c in chinese.cells if c.cell_type == "markdown")
    assert chinese.metadata["language"] == "zh"
