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
import time
from pathlib import Path

from attnedu import grading, perf
from attnedu.store.cleanup import make_folder

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
    tmp = make_folder("grading-bench")  # /tmp/attnedu-grading-bench-*, marked as this process's
    try:
        root = Path(tmp) / "course"
        n = make_class(root, chapters, students)
        print(f"{'jobs':>4} {'submissions':>11} {'wall s':>8} {'median s/submission':>20} "
              f"{'submissions/min':>16} {'speed-up':>9}")
        first = None
        rows = []
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
            rows.append({"setting": f"JOBS={jobs}", "jobs": jobs, "submissions": n, "wall_s": wall,
                         "median_s": median, "per_minute": per_minute, "speedup": per_minute / first})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    notes = []
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        notes.append(f"{b['setting']} graded {b['per_minute']:.1f} submissions a minute, {b['speedup']:.2f} times "
                     f"as many as {a['setting']} ({a['per_minute']:.1f}), on a machine with {os.cpu_count()} cores.")
        notes.append(f"The median time of one submission was {a['median_s']:.1f} s with {a['setting']} and "
                     f"{b['median_s']:.1f} s with {b['setting']}: each submission runs in its own process with "
                     "one thread, and the parallel processes share the machine.")
    perf.save(
        "grading", quick=args.quick, packages=("nbgrader", "nbconvert", "nbclient", "numpy", "torch"),
        title="Grading a class with make grade",
        about=(f"How many submissions a minute the instructors' `make grade` grades (`attnedu.grading.grade`, "
               f"through nbgrader). A made-up class of {students} students hands in "
               f"{' and '.join(f'`{c}`' for c in chapters)}: half of them hand in the solutions, half the "
               "untouched student versions. The whole class is graded once for each JOBS setting "
               f"({', '.join(str(j) for j in args.jobs)}). Each submission runs in its own process and course "
               "folder, with one thread, and training is capped at "
               f"ATTNEDU_MAX_TRAIN_SECONDS={os.environ['ATTNEDU_MAX_TRAIN_SECONDS']}. The speed-up is against "
               "the first JOBS setting."),
        settings={"students": students, "chapters": len(chapters), "jobs": " ".join(map(str, args.jobs)),
                  "ATTNEDU_MAX_TRAIN_SECONDS": os.environ["ATTNEDU_MAX_TRAIN_SECONDS"]},
        columns=[("jobs", "JOBS", "d"), ("submissions", "submissions", "d"), ("wall_s", "wall s", ".1f"),
                 ("median_s", "median s/submission", ".1f"), ("per_minute", "submissions/min", ".1f"),
                 ("speedup", "speed-up", ".2f")],
        rows=rows,
        plot={"kind": "bar", "label": ["setting"], "value": "per_minute", "group": None,
              "xlabel": "submissions graded per minute", "log": False},
        goals=[], notes=notes,
    )


if __name__ == "__main__":
    main()
