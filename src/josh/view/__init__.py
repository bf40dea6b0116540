"""Trees and eval run files as one self-contained HTML report (`josh view`)."""

from josh.view.page import ReportWritten, render_page, write_report
from josh.view.run_html import failed_first, render_rollout
from josh.view.source import ViewSource, detect_kind, load_source
from josh.view.tree_html import TreeShape, render_tree, tree_shape

__all__ = [
    "ReportWritten",
    "TreeShape",
    "ViewSource",
    "detect_kind",
    "failed_first",
    "load_source",
    "render_page",
    "render_rollout",
    "render_tree",
    "tree_shape",
    "write_report",
]
