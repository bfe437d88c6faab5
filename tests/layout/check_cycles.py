#!/usr/bin/env python3
"""No knots between the files of playhead: fails on any cycle between modules.

A module is a .c file with the header of the same name (common/src/x.c with
common/include/playhead/x.h; ingest/x.c with ingest/x.h); a header without a .c of its name (a
program's shared header such as ingest/ingest.h) is a module of its own. Two graphs are checked
over the sources of common/ and of every program (ingest/, consumer/, api/):

  includes  A -> B when a file of A has #include "..." of a file of B;
  calls     A -> B when A's .c calls a function that B's .c defines (an external one; a
            program's file resolves names in its program and in common/). Naming a function
            without calling it, to pass it as a callback, is no arrow: that is the way back.

Either graph having a cycle (A -> ... -> A) fails, and each cycle found is printed with the
includes or the functions that make its arrows. The call graph is what catches two files that
call each other through one shared header (STYLE.md: "a module does not call back into its
caller"). `--self-test` checks the checker on small trees with and without a cycle.

Usage: check_cycles.py [ROOT]   (ROOT: the repository, by default this file's ../..)
       check_cycles.py --self-test
"""
import os
import re
import sys
import tempfile

PROGRAMS = ("ingest", "consumer", "api")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# A function definition at the start of a line: type words, the name, its parameters, then "{".
DEFINITION = re.compile(r"^(?!static\b)(?:[A-Za-z_][\w \t\*]*?[\s\*])([A-Za-z_]\w*)\s*\([^;{]*\)\s*\{", re.M)
CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
STRING = re.compile(r'"(?:\\.|[^"\\\n])*"' + r"|'(?:\\.|[^'\\\n])*'")


def sources(root):
    """Paths (relative to root) of every .c and .h of common/ and the programs."""
    out = []
    dirs = [os.path.join("common", "src"), os.path.join("common", "include", "playhead")]
    dirs += list(PROGRAMS)
    for d in dirs:
        full = os.path.join(root, d)
        if not os.path.isdir(full):
            continue
        for name in sorted(os.listdir(full)):
            if name.endswith((".c", ".h")):
                out.append(os.path.join(d, name))
    return out


def module_of(path):
    """The module of a file: its folder (common for common/) and its name without extension."""
    parts = path.split(os.sep)
    stem = os.path.splitext(parts[-1])[0]
    top = parts[0]
    return "%s/%s" % (top, stem)


def resolve(root, path, target):
    """The source file an #include "target" in `path` names, or None (a system or generated one)."""
    for base in (os.path.dirname(path), os.path.join("common", "include")):
        cand = os.path.normpath(os.path.join(base, target))
        if os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def strip(text):
    return STRING.sub('""', COMMENT.sub(" ", text))


def graphs(root):
    files = sources(root)
    texts = {f: open(os.path.join(root, f), encoding="utf-8", errors="replace").read() for f in files}
    includes = {}  # module -> {module: [why]}
    for f in files:
        for target in INCLUDE.findall(texts[f]):
            to = resolve(root, f, target)
            if to is None:
                continue
            a, b = module_of(f), module_of(to)
            if a != b:
                includes.setdefault(a, {}).setdefault(b, []).append("%s includes %s" % (f, to))
    defined = {}  # function -> the modules defining it (each program links alone: main() thrice)
    code = {f: strip(texts[f]) for f in files if f.endswith(".c")}
    for f, text in code.items():
        for name in DEFINITION.findall(text):
            defined.setdefault(name, set()).add(module_of(f))
    calls = {}
    for f, text in code.items():
        a = module_of(f)
        linked = (a.split("/")[0], "common")  # what a program's file can call: itself and common/
        for name in sorted(set(CALL.findall(text))):
            targets = {m for m in defined.get(name, ()) if m.split("/")[0] in linked}
            if a in targets:
                continue  # its own function (or a definition, which the pattern also matches)
            for b in sorted(targets):
                calls.setdefault(a, {}).setdefault(b, []).append("%s uses %s()" % (f, name))
    return includes, calls


def cycles(graph):
    """One cycle per strongly connected component of more than one module (Tarjan), as a list of
    modules [m0, m1, ..., m0]."""
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(set(comp))

    for v in sorted(set(graph) | {w for e in graph.values() for w in e}):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:
        start = min(comp)
        # shortest way back to start inside the component (breadth first)
        prev, frontier, found = {start: None}, [start], None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, {})):
                    if w not in comp:
                        continue
                    if w == start:
                        found = v
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [start]
        v = found
        while v is not None and v != start:
            path.append(v)
            v = prev[v]
        path.append(start)
        path = [path[0]] + list(reversed(path[1:-1])) + [start]
        out.append(path)
    return out


def report(kind, graph):
    found = cycles(graph)
    lines = []
    for path in found:
        lines.append("%s cycle: %s" % (kind, " -> ".join(path)))
        for a, b in zip(path, path[1:]):
            why = graph[a][b]
            lines.append("    %s -> %s: %s%s" % (a, b, "; ".join(why[:3]), " ..." if len(why) > 3 else ""))
    return found, lines


def check(root):
    includes, calls = graphs(root)
    found_i, lines_i = report("include", includes)
    found_c, lines_c = report("call", calls)
    return found_i, found_c, lines_i + lines_c


def self_test():
    """Small trees with the cycles each should show (includes, calls)."""
    cases = [
        # a.c includes b.h and b.c includes a.h: an include cycle between a and b
        ({
            "ingest/a.h": "int a_f(void);\n",
            "ingest/a.c": '#include "a.h"\n#include "b.h"\nint a_f(void)\n{\n    return 0;\n}\n',
            "ingest/b.h": "int b_f(void);\n",
            "ingest/b.c": '#include "b.h"\n#include "a.h"\nint b_f(void)\n{\n    return 1;\n}\n',
        }, [["ingest/a", "ingest/b", "ingest/a"]], []),
        # one shared header, two .c calling each other: a call cycle, no include cycle
        ({
            "api/app.h": "int one(void);\nint two(void);\n",
            "api/one.c": '#include "app.h"\nint one(void)\n{\n    return two(); /* two() */\n}\n',
            "api/two.c": '#include "app.h"\nint two(void)\n{\n    return one();\n}\n',
        }, [], [["api/one", "api/two", "api/one"]]),
        # a three-module include cycle through common/, a header included by name from a program
        ({
            "common/include/playhead/x.h": '#include "playhead/y.h"\n',
            "common/include/playhead/y.h": "",
            "common/src/y.c": '#include "playhead/y.h"\n#include "../../consumer/z.h"\n',
            "consumer/z.h": "",
            "consumer/z.c": '#include "z.h"\n#include "playhead/x.h"\n',
        }, [["common/x", "common/y", "consumer/z", "common/x"]], []),
        # one way only, a static function of the same name in both, a call inside a comment or a
        # string: no cycle
        ({
            "ingest/p.h": "void p_run(void);\n",
            "ingest/p.c": '#include "p.h"\n#include "q.h"\nstatic void helper(void)\n{\n}\n'
                          'void p_run(void)\n{\n    helper();\n    q_run();\n}\n',
            "ingest/q.h": "void q_run(void);\n",
            "ingest/q.c": '#include "q.h"\nstatic void helper(void)\n{\n}\n'
                          'void q_run(void)\n{\n    helper(); /* p_run() */\n    puts("p_run()");\n}\n',
        }, [], []),
    ]
    for files, want_includes, want_calls in cases:
        with tempfile.TemporaryDirectory(prefix="ph-cycles-") as d:
            for path, text in files.items():
                full = os.path.join(d, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w") as f:
                    f.write(text)
            got = check(d)[:2]
        assert got == (want_includes, want_calls), (sorted(files), got)
    print("check_cycles.py: self-test passed (%d trees)" % len(cases))
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    if not sources(root):
        print("check_cycles.py: no sources under %s" % root, file=sys.stderr)
        return 2
    fi, fc, lines = check(root)
    if lines:
        print("\n".join(lines), file=sys.stderr)
        print("check_cycles.py: %d include cycle(s), %d call cycle(s)" % (len(fi), len(fc)), file=sys.stderr)
        return 1
    print("check_cycles.py: no include or call cycle among %d files" % len(sources(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
