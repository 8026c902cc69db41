"""``python -m arpo_tools.search [--corpus FILE.jsonl] [...]``: serve the search tool over stdio.

``--build-only`` builds (or loads) the index, prints where it is, and exits: warm the cache before a run.
Bad input ends the program with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from arpo_tools.search.config import SearchToolConfig
from arpo_tools.search.corpus import CorpusError
from arpo_tools.search.providers import LocalSearchProvider, SearchError, make_provider
from arpo_tools.search.server import build_server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m arpo_tools.search",
        description="Serve the search tool (MCP) over stdio: BM25 over a JSONL corpus.",
    )
    parser.add_argument("--corpus", type=Path, help="JSONL of {id, title, text} passages (default: the embedded one)")
    parser.add_argument("--provider", choices=["local", "replay", "web"], help="who answers (default: local)")
    parser.add_argument("--backend", choices=["bm25s", "sqlite"], help="BM25 index for local (default: bm25s)")
    parser.add_argument("--replay-file", type=Path, help="replay: JSON object of query → result text")
    parser.add_argument("--replay-fallback", action="store_true", help="replay: answer misses from the local index")
    parser.add_argument("--top-k", type=int, help="results when a call names none (default 5)")
    parser.add_argument("--max-top-k", type=int, help="largest top_k a call may ask (default 20)")
    parser.add_argument("--snippet-chars", type=int, help="characters of text per result (default 400)")
    parser.add_argument("--max-query-chars", type=int, help="longer queries are cut (default 300)")
    parser.add_argument("--cache-dir", type=Path, help="index cache (default $ARPO_CACHE_DIR/search or ~/.cache/…)")
    parser.add_argument("--web-url", help="web: the search API endpoint (key in $ARPO_SEARCH_API_KEY)")
    parser.add_argument("--build-only", action="store_true", help="build or load the index, report, and exit")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SearchToolConfig:
    fields = {
        name: value
        for name, value in vars(args).items()
        if name != "build_only" and value is not None and value is not False
    }
    return SearchToolConfig.model_validate(fields)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        start = time.perf_counter()
        provider = make_provider(config)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        print(f"error: {where}: {first['msg']}", file=sys.stderr)
        return 2
    except (CorpusError, SearchError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.build_only:
        if isinstance(provider, LocalSearchProvider):
            index = provider.index
            how = "built" if index.built else "loaded from cache"
            print(f"{len(index)} passages, {how} in {time.perf_counter() - start:.2f} s: {index.folder}")
        else:
            print(f"provider {provider.name} is ready")
        provider.close()
        return 0
    build_server(config, provider=provider).run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
