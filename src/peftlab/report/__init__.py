"""Comparison reports: aggregation across seeds, Pareto fronts, written comparison, plots, HTML/Markdown/CSV/JSON.

`write_report(records, out_dir)` writes everything; `leaderboard_text(summarize(records))` prints a terminal table.
"""

from peftlab.report.aggregate import ci95, summarize
from peftlab.report.pareto import pareto_front
from peftlab.report.terminal import leaderboard_text
from peftlab.report.write import write_report

__all__ = ["ci95", "leaderboard_text", "pareto_front", "summarize", "write_report"]
