"""The teaching path and the lab records stay readable and true.

README and docs/ speak to a reader who has only this repository: no issue numbers, no links to
files that are not here; the equation map names functions and tests that exist; the recipes
validate; the results folder holds one current file per benchmark script.
"""
import importlib
import json
import re
from pathlib import Path

import pytest

from minicompress.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NETWORKS = ("lenet300", "lenet5", "teacher", "student")

# [text](target) and ![alt](target); the target ends at whitespace or ')'
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")


def _relative_links(text):
    """Link targets that point into the repository (not web addresses, not in-page anchors)."""
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        yield target.split("#")[0]


def test_readme_is_an_entry_not_a_lab_book():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; at most 200 (details go to docs/)"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_issue_numbers(path):
    text = path.read_text()
    numbered = re.findall(r".{0,30}#\d.{0,10}", text)
    assert not numbered, f"{path.name}: issue-style reference(s) {numbered}"
    words = re.findall(r".{0,30}\bissues?\b.{0,10}", text, flags=re.IGNORECASE)
    assert not words, f"{path.name}: mentions an issue: {words}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_point_to_files_in_the_repository(path):
    text = path.read_text()
    assert "../shared" not in text, f"{path.name} refers to a file outside the repository"
    for target in _relative_links(text):
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name}: link {target} leaves the repository"
        assert resolved.exists(), f"{path.name}: link {target} points to a missing file"


def test_design_notes_are_in_the_repository():
    for path in DOCS:
        for m in re.finditer(r"[\w./-]*DESIGN\.md", path.read_text()):
            ref = m.group(0)
            assert ref in ("DESIGN.md", "docs/DESIGN.md") and (ROOT / "docs" / "DESIGN.md").exists(), \
                f"{path.name}: {ref} (the design notes are docs/DESIGN.md)"


def test_repository_paths_named_in_docs_exist():
    """Every `benchmarks/…`, `recipes/…`, `figures/…`, `docs/…` path written in code style."""
    for path in DOCS:
        for ref in re.findall(r"`((?:benchmarks|recipes|figures|docs|scripts|minicompress|tests)/[^`\s]*)`",
                              path.read_text()):
            if any(c in ref for c in "*<{"):
                continue   # a pattern, not a file
            assert (ROOT / ref).exists(), f"{path.name}: {ref} does not exist"


def test_results_files_cited_in_results_md_exist():
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    text = re.sub(r"`python [^`]*`", "", text)   # a command's own --out/--report names are not citations
    cited = set(re.findall(r"\b([a-z0-9_]+\.json)\b", text))
    cited -= {p.name for p in (ROOT / "recipes").glob("*.json")}
    assert cited, "RESULTS.md cites no results files"
    for name in cited:
        assert (ROOT / "benchmarks" / "results" / name).exists(), f"RESULTS.md cites missing {name}"


def _equation_rows():
    for line in (ROOT / "docs" / "EQUATIONS.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and cells[0] not in ("document", "---"):
            yield cells


def _resolve(dotted):
    """``quantize.observers.observe`` → the object minicompress.quantize.observers.observe."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("minicompress." + ".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module minicompress.{parts[0]}")


def test_equation_map_names_code_and_tests_that_exist():
    rows = list(_equation_rows())
    assert len(rows) >= 30, f"docs/EQUATIONS.md: only {len(rows)} rows parsed"
    for document, equation, code, tests, notebook in rows:
        names = re.findall(r"`([^`]+)`", code)
        assert names, f"EQUATIONS.md row {document!r}: no code named"
        for name in names:
            try:
                _resolve(name)
            except (ImportError, AttributeError) as e:
                pytest.fail(f"EQUATIONS.md row {document!r}: {name} does not exist ({e})")
        tests_named = re.findall(r"`([^`]+)`", tests)
        assert tests_named, f"EQUATIONS.md row {document!r}: no test named"
        for ref in tests_named:
            file, _, func = ref.partition("::")
            source = (ROOT / "tests" / file).read_text() if (ROOT / "tests" / file).exists() else ""
            assert re.search(rf"^\s*def {re.escape(func)}\(", source, re.M), \
                f"EQUATIONS.md row {document!r}: no test {ref}"


def test_readme_equation_rows_exist_too():
    text = (ROOT / "README.md").read_text()
    for ref in re.findall(r"`(test_\w+\.py)::(test_\w+)`", text):
        source = (ROOT / "tests" / ref[0]).read_text()
        assert re.search(rf"^\s*def {ref[1]}\(", source, re.M), f"README: no test {ref}"


def test_recipes_folder_holds_a_few_examples():
    files = sorted(p.name for p in (ROOT / "recipes").iterdir())
    assert 1 <= len(files) <= 5, f"recipes/ has {len(files)} files {files}; sweeps go in benchmarks/recipes/"


RECIPES = sorted((ROOT / "recipes").glob("*.json")) + sorted((ROOT / "benchmarks" / "recipes").glob("*.json"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_validates(path):
    load_recipe(path)


def test_no_recipe_is_there_twice():
    seen = {}
    for path in RECIPES:
        key = json.dumps(json.loads(path.read_text()), sort_keys=True)
        assert key not in seen, f"{path} is the same recipe as {seen[key]}"
        seen[key] = path


def test_one_results_file_per_benchmark_script():
    """``<script>.json``, or ``<script>_<network>.json`` for a script run once per network."""
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    allowed = scripts | {f"{s}_{net}" for s in scripts for net in NETWORKS}
    for path in (ROOT / "benchmarks" / "results").iterdir():
        assert path.suffix == ".json", f"benchmarks/results/{path.name}: not a results file"
        assert path.stem in allowed, (f"benchmarks/results/{path.name} is not named after a benchmark "
                                      f"script (<script>.json or <script>_<network>.json)")
        json.loads(path.read_text())


def test_pipeline_sweep_reports_name_recipes_that_exist():
    sweep = json.loads((ROOT / "benchmarks" / "results" / "pipeline_sweep.json").read_text())
    names = {p.stem for p in RECIPES}
    for name, report in sweep["reports"].items():
        assert name in names, f"pipeline_sweep.json reports {name}, which has no recipe file"
        if report.get("recipe_file"):
            assert (ROOT / report["recipe_file"]).exists(), f"{name}: {report['recipe_file']} missing"
    assert {c["name"] for c in sweep["configurations"]} <= set(sweep["reports"])
