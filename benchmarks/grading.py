"""How many submissions a minute does `make grade` grade, with JOBS=1 and JOBS=2?

Run:  .venv/bin/python benchmarks/grading.py [--quick] [--students N] [--jobs 1 2 ...]

Generates a class in a temporary copy of the course: each student hands in chapters 1 and 2,
half of them the solutions (the source notebooks) and half the untouched student versions.
Then grades the whole class once per JOBS setting, as `make grade JOBS=N` does (each submission
in its own process and course folder, one thread each, training capped at
ATTNEDU_MAX_TRAIN_SECONDS=10), and prints one row per setting: the wall time, the median time
of one submission, submissions per minute and the speed-up over the first setting.
(--quick: two students, chapter 1 only, JOBS=2: a smoke test.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from attnedu import grading

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = ["01-weighted-sums", "02-scaled-dot-product"]


def make_class(root: Path, chapters: list[str], students: int) -> int:
    """A course folder with ``students`` students handing in ``chapters``; returns the number of submissions."""
    (root / "notebooks").mkdir(parents=True)
    for chapter in chapters:
        shutil.copytree(REPO / "notebooks" / chapter, root / "notebooks" / chapter)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    released = {p.parent.name: p for p in grading.release(root)}
    for i in range(students):
        for chapter in chapters:
            given = root / "notebooks" / chapter / f"{chapter}.ipynb" if i % 2 == 0 else released[chapter]
            target = root / "_grading" / "submitted" / f"student{i:03d}" / chapter / f"{chapter}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(given, target)
    return students * len(chapters)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two students, chapter 1 only, JOBS=2 (a smoke test)")
    parser.add_argument("--students", type=int, default=8, help="students in the class (default: 8)")
    parser.add_argument("--jobs", type=int, nargs="+", default=None, help="JOBS settings (default: 1 2; --quick: 2)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or ([2] if args.quick else [1, 2])
    chapters = CHAPTERS[:1] if args.quick else CHAPTERS
    students = 2 if args.quick else args.students
    os.environ.setdefault("ATTNEDU_MAX_TRAIN_SECONDS", "10")
    print(f"cores: {os.cpu_count()}; chapters: {', '.join(chapters)}; students: {students}")
    with tempfile.TemporaryDirectory(prefix="attnedu-grading-bench-") as tmp:
        root = Path(tmp) / "course"
        n = make_class(root, chapters, students)
        print(f"{'jobs':>4} {'submissions':>11} {'wall s':>8} {'median s/submission':>20} "
              f"{'submissions/min':>16} {'speed-up':>9}")
        first = None
        for jobs in args.jobs:
            start = time.perf_counter()
            result = grading.grade(root, jobs=jobs)
            wall = time.perf_counter() - start
            assert result["summary"]["graded"] == n, result["summary"]
            per_minute = n / wall * 60
            first = first or per_minute
            median = statistics.median(s["seconds"] for s in result["stats"].values())
            print(f"{jobs:>4} {n:>11} {wall:>8.1f} {median:>20.1f} {per_minute:>16.1f} {per_minute / first:>8.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
