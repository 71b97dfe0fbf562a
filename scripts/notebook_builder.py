"""A tiny helper for the notebook generator scripts: collect cells, execute, save with outputs.

    nb = NotebookBuilder("notebooks/07_full_pipeline.ipynb")
    nb.md("# Title")
    nb.code("print(1)")
    nb.build()          # executes in notebooks/ (honours MINICOMPRESS_FAST) and writes the file
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


class NotebookBuilder:
    def __init__(self, path):
        self.path = ROOT / path
        self.cells = []

    def md(self, text):
        self.cells.append(nbformat.v4.new_markdown_cell(text.strip("\n")))

    def code(self, text):
        self.cells.append(nbformat.v4.new_code_cell(text.strip("\n")))

    def build(self, timeout=3600):
        nb = nbformat.v4.new_notebook()
        nb.cells = self.cells
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "notebooks")}})
        client.execute()
        self.path.parent.mkdir(exist_ok=True)
        nbformat.write(nb, self.path)
        mode = "fast" if os.environ.get("MINICOMPRESS_FAST") == "1" else "full"
        print(f"wrote {self.path} ({mode} mode)")
        return self.path
