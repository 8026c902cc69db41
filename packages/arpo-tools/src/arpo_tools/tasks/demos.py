r"""SFT cold-start demonstrations for the default task: one short tag-protocol trajectory per question, real tool
output.

For a sample of :func:`arpo_tools.tasks.default.default_task`, the assistant turn is::

    <think>{one sentence}</think>
    <search>Stugaenas population</search> <result>
    Page 1: Stugaenas — Stugaenas is a city in … It was founded in 1412 and has a population of 702736. …
    </result>
    <python>print(702736 * 3)</python> <result>
    2108208
    </result>
    <answer>The answer is \boxed{2108208}.</answer>

with the calls of ``sample.extra["calls"]`` in order (``python``: the python call only; ``search``: the search only;
``both``: both). Each ``<result>`` block is the text the rollout inserts — core's ``TagProtocol.format_result``,
``" <result>\n" + text + "\n</result>"`` — around the text the real tool returns:

* search: what the ``search`` MCP tool answers for the query over the embedded corpus with ``search_config()``
  (``SearchToolConfig(top_k=SEARCH_TOP_K)``, BM25 with the tool's defaults): the same query preparation
  (``prepare_query``), the same index (``SearchIndex``), the same rendering (``format_hits``), run in process;
* python: the program's stdout rendered by the python tool's own ``format_result`` (trailing newline dropped), the
  program run in process (it is the task's own one-line ``print``, never model code).

The answer is the sample's gold answer, so every demonstration gets the maximum reward of core's reward function
(format ok, F1 = EM = 1, plus the 0.1 tool bonus for ``both``); a test checks all of them.

Rows are TRL's conversational form, which ``arpo_backends.sft`` reads (the ``<result>`` spans are masked from the
loss there)::

    {"messages": [{"role": "system", …}, {"role": "user", "content": question}, {"role": "assistant", …}],
     "id": sample id, "kind": "python" | "search" | "both"}

Length (train split, assistant turn in characters / SmolLM2 tokens, min–median–max): python 148–153–162 / 60–64–71,
search 277–327–418 / 102–118–143, both 359–416–488 / 139–155–184; the model's own words are 43–74 tokens of it,
the rest is tool output (masked). ``demo_length_summary`` gives the character counts of any rows.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from arpo_core.data.samples import Sample
from arpo_core.toolcalls.tags import RESULT_CLOSE, RESULT_OPEN
from arpo_tools.search.config import SearchToolConfig
from arpo_tools.search.index import IndexSettings, SearchIndex
from arpo_tools.search.render import format_hits
from arpo_tools.search.server import prepare_query
from arpo_tools.tasks.default import default_task, demo_task

__all__ = [
    "SEARCH_TOP_K",
    "THOUGHTS",
    "DemoTools",
    "assistant_text",
    "build_demo",
    "demo_length_summary",
    "demo_rows",
    "format_result",
    "search_config",
    "write_demos",
]

SEARCH_TOP_K = 1
"""Results per search in the demonstrations, and what the default run's search server should be started with
(``search_config()``, or ``arpo tools serve search -o top_k=1``). One passage keeps a result near 170 characters
(about 50 tokens; two would be 330 characters, five 850) and every demonstration under 200 SmolLM2 tokens. The
passage that answers is ranked first for every question of the task with its demonstrated query, and for 99% of
them with the question itself as the query."""

THOUGHTS: Mapping[str, str] = {
    "python": "I will compute this with Python.",
    "search": "I need to search for this.",
    "both": "I will search for the number, then compute with Python.",
    "chain": "I will search for the first fact, then search again with it.",
}
"""The one think block of each kind of demonstration (short: the model is tiny)."""


def search_config(**overrides: Any) -> SearchToolConfig:
    """The search tool's settings for the default task: the embedded corpus, ``top_k=SEARCH_TOP_K``."""
    return SearchToolConfig(**{"top_k": SEARCH_TOP_K, **overrides})


def format_result(text: str) -> str:
    """How the rollout inserts a tool's text after the call: ``" <result>\\n" + text + "\\n</result>"``."""
    return f"{RESULT_OPEN}{text}{RESULT_CLOSE}"


class DemoTools:
    """The two tools, in process, answering as the MCP servers do. Use as a context manager, or ``close()``."""

    def __init__(self, config: SearchToolConfig | None = None) -> None:
        self.config = config if config is not None else search_config()
        if self.config.provider != "local":
            raise ValueError(
                f"demonstrations search the local corpus, not provider {self.config.provider!r}; use provider='local'."
            )
        self._index: SearchIndex | None = None

    @property
    def index(self) -> SearchIndex:
        """The BM25 index of the configured corpus, opened (built and cached on first use) when first needed."""
        if self._index is None:
            cfg = self.config
            settings = IndexSettings(backend=cfg.backend, k1=cfg.k1, b=cfg.b, stopwords=cfg.stopwords)
            self._index = SearchIndex.open(cfg.corpus, settings, cfg.cache_dir)
        return self._index

    def search(self, query: str) -> str:
        """What the ``search`` tool returns for ``query`` with its default ``top_k`` (``search_config().top_k``)."""
        text, was_cut = prepare_query(query, self.config.max_query_chars)
        if not text:
            raise ValueError("the query is empty; a demonstration's search needs keywords.")
        result = format_hits(self.index.search(text, self.config.top_k), self.config.snippet_chars)
        if was_cut:
            limit = self.config.max_query_chars
            result += f"\n(The query was cut to its first {len(text)} characters; the limit is {limit}.)"
        return result

    def python(self, code: str) -> str:
        """The python tool's text for ``code`` run to a clean exit: its stdout, rendered by the tool's formatter.

        Runs in this process: only for the task's own programs. A program that raises is a bug in the task.
        """
        from arpo_tools.python_tool.config import PythonToolConfig
        from arpo_tools.python_tool.result import RunOutcome
        from arpo_tools.python_tool.result import format_result as render

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<demo>", "exec"), {"__name__": "__main__"})  # the task's own one-line program
        stdout = out.getvalue()
        defaults = PythonToolConfig()
        outcome = RunOutcome(stdout=stdout, stdout_bytes=len(stdout.encode()), exit_code=0)
        return render(outcome, max_output_bytes=defaults.max_output_bytes, stderr_tail_lines=defaults.stderr_tail_lines)

    def call(self, tool: str, argument: str) -> str:
        if tool == "search":
            return self.search(argument)
        if tool == "python":
            return self.python(argument)
        raise ValueError(f"the default task has no tool {tool!r}; its tools are 'search' and 'python'.")

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def __enter__(self) -> DemoTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _calls(sample: Sample) -> list[tuple[str, str]]:
    """``(tool, argument)`` of each call in ``sample.extra["calls"]``."""
    calls = sample.extra.get("calls")
    if not isinstance(calls, Sequence) or not calls:
        raise ValueError(f"sample {sample.id!r} has no extra['calls']; demonstrations need a default-task sample.")
    out = []
    for call in calls:
        tool = call["tool"]
        out.append((tool, call["query"] if tool == "search" else call["code"]))
    return out


def assistant_text(sample: Sample, tools: DemoTools) -> str:
    """The demonstration's assistant turn for ``sample`` (see the module docstring), tool output included."""
    kind = str(sample.extra.get("kind", ""))
    thought = THOUGHTS.get(kind, THOUGHTS["both"])
    parts = [f"<think>{thought}</think>"]
    for tool, argument in _calls(sample):
        parts.append(f"<{tool}>{argument}</{tool}>{format_result(tools.call(tool, argument))}")
    parts.append(f"<answer>The answer is \\boxed{{{sample.ground_truth[0]}}}.</answer>")
    return "\n".join(parts)


def build_demo(sample: Sample, tools: DemoTools) -> dict[str, Any]:
    """One row ``{"messages": [system, user, assistant], "id", "kind"}`` for ``sample``."""
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in sample.messages]
    messages.append({"role": "assistant", "content": assistant_text(sample, tools)})
    return {"messages": messages, "id": sample.id, "kind": str(sample.extra.get("kind", ""))}


def demo_rows(
    n: int | None = None, seed: int = 0, split: str = "train", *, tools: DemoTools | None = None
) -> list[dict[str, Any]]:
    """Demonstrations of the SFT cold start (``n=None``: ``demo_task(seed)``, single-tool use and a few
    search-then-compute questions), or of ``default_task(n, seed, split)`` for a given ``n``, in its order."""
    samples = demo_task(seed) if n is None and split == "train" else default_task(n, seed, split)
    if tools is not None:
        return [build_demo(sample, tools) for sample in samples]
    with DemoTools() as own:
        return [build_demo(sample, own) for sample in samples]


def write_demos(
    path: str | Path, n: int | None = None, seed: int = 0, *, split: str = "train", tools: DemoTools | None = None
) -> Path:
    """Write ``demo_rows(n, seed, split)`` to ``path`` as JSONL (one row a line, UTF-8); returns the path."""
    rows = demo_rows(n, seed, split, tools=tools)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def demo_length_summary(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per kind: count and min / median / max characters of the assistant turn (the trained text plus results)."""
    by_kind: dict[str, list[int]] = {}
    for row in rows:
        by_kind.setdefault(str(row["kind"]), []).append(len(row["messages"][-1]["content"]))
    summary = {}
    for kind, lengths in sorted(by_kind.items()):
        lengths.sort()
        summary[kind] = {
            "count": len(lengths),
            "min": lengths[0],
            "median": lengths[len(lengths) // 2],
            "max": lengths[-1],
        }
    return summary
