"""Rewrite decorators as plain calls, in scripts/mutation.sh's working copy only, so mutmut mutates them.

mutmut 3 leaves alone every decorated class and every decorated function except a lone
@staticmethod or @classmethod, and with them most of callstream's core: the rules live in
dataclasses (EventTimeBounds.violation, KeyCap.name, WindowEntry.apply, PriceCatalogue.lookup,
WindowKey.decode, ...), in properties, in pydantic validators and in lru-cached functions.

    @dataclass(frozen=True)            class Window: ...
    class Window: ...             ->   Window = dataclass(frozen=True)(Window)

    @property                          def end_ms(self): ...
    def end_ms(self): ...         ->   end_ms = property(end_ms)

That is what the decorator syntax means, so the code behaves the same. One exception:
`functools.lru_cache` is dropped, not re-applied. The cached functions are pure, so only speed
changes; kept, the cache would hold the unmutated results of mutmut's first test run (each mutant
runs in a fork of that process) and hide every mutant of those functions.

    python scripts/mutation_undecorate.py FILE...   # rewrites each FILE in place
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DROPPED = ("functools.lru_cache", "lru_cache", "functools.cache", "cache")
MUTMUT_HANDLES = ("staticmethod", "classmethod")


def _rewrite(source: str) -> str:
    lines = source.splitlines(keepends=True)
    removed: set[int] = set()  # 0-based line numbers of decorator lines
    inserts: dict[int, list[tuple[int, str]]] = {}  # after this 0-based line: (indent, line)
    for node in ast.walk(ast.parse(source)):
        if (
            not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            or not node.decorator_list
        ):
            continue
        names = [ast.get_source_segment(source, d) or "" for d in node.decorator_list]
        if isinstance(node, ast.FunctionDef) and len(names) == 1 and names[0] in MUTMUT_HANDLES:
            continue
        for decorator in node.decorator_list:
            assert decorator.end_lineno is not None
            removed.update(range(decorator.lineno - 1, decorator.end_lineno))
        kept = [n for n in names if n.split("(")[0] not in DROPPED]
        if kept:
            indent = " " * node.col_offset
            call = node.name
            for name in reversed(kept):  # the decorator nearest the definition applies first
                call = f"{name}({call})"
            assert node.end_lineno is not None
            inserts.setdefault(node.end_lineno - 1, []).append(
                (node.col_offset, f"{indent}{node.name} = {call}\n")
            )
    out: list[str] = []
    for number, line in enumerate(lines):
        if number not in removed:
            out.append(line)
        # A method's line before its class's: the class body must be complete first.
        out.extend(text for _, text in sorted(inserts.get(number, []), key=lambda item: -item[0]))
    return "".join(out)


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        path.write_text(_rewrite(path.read_text()))


if __name__ == "__main__":
    main(sys.argv[1:])
