"""`speedrun view`: a results root as web pages (the search tree, and per node its diffs, log,
loss curve, transcript and cost), as a static site or served live while runs go on."""

from harness.view.load import NodeView, RunView, load_run
from harness.view.page import render_index, render_run
from harness.view.site import build_site, page_name

__all__ = ["NodeView", "RunView", "build_site", "load_run", "page_name", "render_index", "render_run"]
