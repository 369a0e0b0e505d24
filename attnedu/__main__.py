"""``python -m attnedu <command>``: the course's commands.

==========  ====================================================================================
command     what it does
==========  ====================================================================================
``doctor``  checks this machine for the course: Python, every package, the two model packages,
            SQLite's FTS5, the PostgreSQL wheel, free disk and memory (:mod:`attnedu.doctor`)
==========  ====================================================================================

Each command is a module with a ``main(argv)`` that returns the exit status; this one only
chooses it. Without a command, or with one it does not know, it prints the usage and exits
with 2 (``--help`` prints it and exits with 0).
"""

from __future__ import annotations

import importlib
import sys

#: command -> (its module, one line on what it does)
COMMANDS = {
    "doctor": ("attnedu.doctor", "check Python, the packages, the models, FTS5, PostgreSQL, disk and memory"),
}


def usage() -> str:
    """The usage text: every command, and the tools that run as modules of their own."""
    lines = ["usage: python -m attnedu <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "`python -m attnedu <command> --help` says more about one. Other tools run as modules:",
              "python -m attnedu.build, attnedu.coursebook, attnedu.grading (see README.md)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the command named by ``argv[0]`` with the rest of ``argv``; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        problem = "no command given" if not argv else f"unknown command {argv[0]!r}"
        print(f"python -m attnedu: {problem}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
