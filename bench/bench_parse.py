"""Wall time and peak RSS of `reminderd validate` on 10,000 commitments, YAML and CSV.

Each run is a fresh process (what a user waits for). Baselines measured in
the same run: an empty interpreter, and the bare parse of the same file
(PyYAML's C loader / the csv module) with no checking at all.

    python bench/bench_parse.py [--n 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZONES = ["Europe/Athens", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]


def make_yaml(n: int, path: Path) -> None:
    rnd = random.Random(1)
    lines = [
        "timezone: Europe/Athens",
        "defaults: {duration: 15m, alarms: [-1d, -1h, -10m], sms: [-30m]}",
        "commitments:",
    ]
    for i in range(n):
        day = 1 + i % 28
        lines += [
            f"  - id: c{i}",
            f"    title: Call customer {i} about the renewal",
            f"    when: 2027-{1 + i % 12:02d}-{day:02d} {8 + i % 10:02d}:{(i * 5) % 60:02d}",
            f"    timezone: {rnd.choice(ZONES)}",
            f'    contact: {{name: Person {i}, company: Company {i % 500}, phone: "+30 210 {1000000 + i:07d}"}}',
            "    purpose: Promised to call back with the numbers",
            "    bring: [Quote, Contract draft]",
            "    questions: [Budget?, Decision date?]",
            "    next_step: Send the contract",
            "    follow_ups: [{after: 2d, purpose: Check in}]",
            "    tags: [q1]",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_csv(n: int, path: Path) -> None:
    rnd = random.Random(1)
    rows = [
        "id,title,when,timezone,contact,company,phone,purpose,bring,questions,next_step,alarms,sms,tags"
    ]
    for i in range(n):
        day = 1 + i % 28
        rows.append(
            f"c{i},Call customer {i} about the renewal,2027-{1 + i % 12:02d}-{day:02d} "
            f"{8 + i % 10:02d}:{(i * 5) % 60:02d},{rnd.choice(ZONES)},Person {i},Company {i % 500},"
            f"+30 210 {1000000 + i:07d},Promised to call back,Quote;Contract draft,Budget?;Decision date?,"
            "Send the contract,-1d;-1h;-10m,-30m,q1"
        )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def measure(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    return elapsed, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def best(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, float]:
    runs = [measure(cmd, cwd) for _ in range(repeat)]
    for _, _, code in runs:
        if code != 0:
            raise SystemExit(f"command failed ({code}): {' '.join(cmd)}")
    return min(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_yaml(args.n, d / "c.yaml")
        make_csv(args.n, d / "c.csv")
        (d / "yaml.config.yaml").write_text("timezone: Europe/Athens\ncommitments: [c.yaml]\n")
        (d / "csv.config.yaml").write_text("timezone: Europe/Athens\ncommitments: [c.csv]\n")
        empty = best([py, "-c", "pass"], d, args.repeat)
        print(
            f"n={args.n}, best of {args.repeat} wall, median peak RSS; python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cpus"
        )
        print(f"{'baseline: empty interpreter':44s} {empty[0]:7.3f} s  {empty[1]:7.1f} MiB")
        for kind, raw in (
            ("yaml", "import yaml,sys; yaml.load(open(sys.argv[1]), Loader=yaml.CSafeLoader)"),
            ("csv", "import csv,sys; list(csv.reader(open(sys.argv[1], newline='')))"),
        ):
            size = (d / f"c.{kind}").stat().st_size / 1e6
            base = best([py, "-c", raw, f"c.{kind}"], d, args.repeat)
            ours = best(
                [py, "-m", "reminderd", "--config", f"{kind}.config.yaml", "validate"],
                d,
                args.repeat,
            )
            goal = 1.0 if kind == "csv" else 2.0
            print(
                f"{'baseline: bare parse, ' + kind + f' ({size:.1f} MB)':44s} {base[0]:7.3f} s  {base[1]:7.1f} MiB"
            )
            print(
                f"{'reminderd validate, ' + kind:44s} {ours[0]:7.3f} s  {ours[1]:7.1f} MiB  "
                f"= {ours[0] / base[0]:.1f}x bare parse; goal < {goal:.0f} s: "
                f"{'met' if ours[0] < goal else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
