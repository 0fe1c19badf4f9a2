"""The shared command line of the benchmark scripts: their options, `--ml-url`, `--json`, and the report
(one `key: value` line each unless --json; always one JSON object as the last line)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

Run = Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]


def bench_main(doc: str | None, options: Callable[[argparse.ArgumentParser], None], run: Run) -> None:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    options(parser)
    parser.add_argument("--ml-url", default=None, help="use a running ML service instead of starting one")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if not args.json:
        width = max(map(len, result), default=0)
        for key, value in result.items():
            print(f"{key:>{width}}: {value}")
    print(json.dumps(result))
