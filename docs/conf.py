"""Sphinx configuration of the tvm-mp documentation: the tutorials (executed by sphinx-gallery), the API reference
(autodoc from the docstrings) and the design and benchmark notes (Markdown, through myst-parser).

Build (warnings are errors), from the repository root::

    python -m pip install -e ".[docs]"
    python -m sphinx -W -b html docs /tmp/tvm-mp-docs
"""

import os
import sys
from pathlib import Path

import tvm_mp  # the installed package (pip install -e), or the checkout on PYTHONPATH

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _sorting (the tutorials' gallery order)

project = "tvm-mp"
author = "the tvm-mp authors"
release = version = tvm_mp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_tutorials/*.ipynb", "auto_tutorials/*.py", "data", "cost_model_eval",
                    "cost_model_eval_accel", "host_mixed", "accel_mixed", "**.ipynb_checkpoints"]

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# the Markdown notes link to source files of the repository (outside the documentation): those links are not
# documents of the site
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "tutorials"),
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/tutorial_",  # execute every tutorial_*.py
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "_sorting.TutorialNumberSortKey",  # tutorial_10 after tutorial_9
}

html_theme = "alabaster"
html_static_path = []
