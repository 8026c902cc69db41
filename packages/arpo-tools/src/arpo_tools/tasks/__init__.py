"""Bundled training tasks: the embedded default of ``arpo train`` and its SFT cold-start demonstrations.

* :mod:`arpo_tools.tasks.default` — ``default_task(n, seed, split)``: arithmetic that needs the Python tool, facts
  that need the search tool over the embedded corpus, and questions that need both (entry point
  ``arpo.datasets: default``).
* :mod:`arpo_tools.tasks.demos` — ``demo_rows`` / ``write_demos``: one short tag-protocol trajectory per question,
  with the real output of the tools, in TRL's conversational ``{"messages": [...]}`` form.
"""

from __future__ import annotations

from arpo_tools.tasks.default import default_task

__all__ = ["default_task"]
