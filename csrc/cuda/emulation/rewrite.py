#!/usr/bin/env python3
"""Build-time rewrite of a CUDA source for the emulated device (run by CMake; the sources stay untouched).

Three constructs of CUDA C++ do not compile as C++ or need the emulator's help, and only these are rewritten,
each in place on its own line so that __FILE__/__LINE__ and compiler messages still point at the original source:

  kernel<<<grid, block, shared, stream>>>(args)
      -> ::axemu::launch(kernel, "kernel", __FILE__, __LINE__, grid, block, shared, stream)(args)
  __global__ void __launch_bounds__(N, B) name(params) {
      -> __global__ void name(params) { AXEMU_KERNEL_ENTRY(N, B);      (every kernel gets an entry check)
  __shared__ T name[dims];
      -> __shared__ T name[dims]; ::axemu::shared_declared(name, sizeof(name), __FILE__, __LINE__);
         (per-block storage, poisoned with NaN bytes when a block starts, and its size counted)

Usage: rewrite.py INPUT OUTPUT   (writes OUTPUT with a #line directive naming INPUT)
"""

from __future__ import annotations

import re
import sys

IDENT = re.compile(r"[A-Za-z0-9_:]")


def _match_forward(text: str, start: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket closing the one at `start` (skipping nested pairs)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_ch:
            depth += 1
        elif text[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced {open_ch!r} at offset {start}")


def _kernel_expression_start(text: str, end: int) -> int:
    """Start of the kernel expression ending just before `end` (a name, with ::scopes and <template args>)."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if text[i - 1] == ">":  # template arguments: walk back to the matching '<'
        depth = 0
        while i > 0:
            i -= 1
            if text[i] == ">":
                depth += 1
            elif text[i] == "<":
                depth -= 1
                if depth == 0:
                    break
    while i > 0 and IDENT.match(text[i - 1]):
        i -= 1
    return i


def rewrite_launches(text: str) -> str:
    out = []
    pos = 0
    while True:
        open_at = text.find("<<<", pos)
        if open_at < 0:
            out.append(text[pos:])
            return "".join(out)
        close_at = text.find(">>>", open_at)
        if close_at < 0:
            raise ValueError(f"'<<<' without '>>>' at offset {open_at}")
        start = _kernel_expression_start(text, open_at)
        kernel = text[start:open_at].strip()
        config = text[open_at + 3:close_at]
        name = " ".join(kernel.split())
        out.append(text[pos:start])
        out.append(f'::axemu::launch({kernel}, "{name}", __FILE__, __LINE__, {config})')
        pos = close_at + 3


GLOBAL = re.compile(r"\b__global__\b")
BOUNDS = re.compile(r"__launch_bounds__\s*\(")


def rewrite_kernel_entries(text: str) -> str:
    out = []
    pos = 0
    for m in GLOBAL.finditer(text):
        if m.start() < pos:
            continue
        # The declaration up to its parameter list: skip a __launch_bounds__(...) on the way.
        i = m.end()
        bounds = ""
        paren = text.find("(", i)
        b = BOUNDS.search(text, i, paren + 1)
        if b and b.end() - 1 == paren:
            close = _match_forward(text, paren, "(", ")")
            bounds = " ".join(text[paren + 1:close].split())
            out.append(text[pos:b.start()])
            out.append(" " * (close + 1 - b.start()) if "\n" not in text[b.start():close + 1] else "\n" * text[b.start():close + 1].count("\n"))
            pos = close + 1
            paren = text.find("(", pos)
        close = _match_forward(text, paren, "(", ")")
        j = close + 1
        while j < len(text) and text[j].isspace():
            j += 1
        if j >= len(text) or text[j] != "{":  # a declaration, not a definition
            continue
        out.append(text[pos:j + 1])
        out.append(f" AXEMU_KERNEL_ENTRY({bounds});")
        pos = j + 1
    out.append(text[pos:])
    return "".join(out)


SHARED = re.compile(r"\b__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?[^;=(){}]*?\b([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*);")


def rewrite_shared(text: str) -> str:
    def repl(m: re.Match) -> str:
        if "extern" in text[max(0, m.start() - 8):m.start()]:
            return m.group(0)
        name = m.group(1)
        return f"{m.group(0)} ::axemu::shared_declared({name}, sizeof({name}), __FILE__, __LINE__);"
    return SHARED.sub(repl, text)


def rewrite(text: str) -> str:
    return rewrite_shared(rewrite_kernel_entries(rewrite_launches(text)))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    try:
        body = rewrite(text)
    except ValueError as e:
        print(f"{src}: {e}", file=sys.stderr)
        return 1
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{src}"\n{body}')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
