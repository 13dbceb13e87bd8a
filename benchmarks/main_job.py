"""Main-job timings: the README's first command on a fresh clone, install and job timed apart.

A fresh clone of the repository's HEAD in --work runs the install part of the README's first
Quickstart command (a new venv, pip's cache off, so everything is downloaded as on a new
machine), then `autoprox run` twice with a new HOME and no AUTOPROX_* variables: with an empty
cache, then again (the rerun resumes every step), then once more from scratch (a new HOME and
folder) with OMP_NUM_THREADS=1 for comparison. With `unshare` the job runs without a network. Each
phase records the load average before and after; the report says what the install downloaded.

    python benchmarks/main_job.py --work /tmp/main-job --out results/main_job.md
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from gp_proxy.markdown import table, write_report

DOWNLOAD = re.compile(r"Downloading (\S+) \(([\d.]+) (kB|MB|GB)\)")
UNIT = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def quickstart(readme: Path) -> tuple[str, str]:
    """(install part, job part) of the README's first Quickstart command."""
    text = readme.read_text()
    block = text[text.index("## Quickstart") :].split("```")[1]
    first = block.strip().splitlines()[0]
    install, job = first.rsplit(" && ", 1)
    return install, job


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(command: str, cwd: Path, env: dict[str, str], log: Path) -> tuple[float, str, str, str]:
    """Run `command` with bash; (seconds, load before, load after, output). Raises on failure."""
    before, start = loadavg(), time.perf_counter()
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    seconds, after = time.perf_counter() - start, loadavg()
    log.write_text(result.stdout + result.stderr)
    if result.returncode:
        raise SystemExit(f"`{command}` failed ({result.returncode}); its output is in {log}")
    return seconds, before, after, result.stdout + result.stderr


def downloads(output: str) -> list[tuple[str, float]]:
    """(file, MB) of every download pip reported, largest first."""
    found = {name: float(size) * UNIT[unit] for name, size, unit in DOWNLOAD.findall(output)}
    return sorted(found.items(), key=lambda item: -item[1])


def du_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()[0]) / 1024


def job_env(home: Path, venv: Path) -> dict[str, str]:
    """The environment of a new user: a new HOME, the venv first on PATH, no AUTOPROX_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOPROX_", "XDG_", "VIRTUAL_ENV"))}
    return {**env, "HOME": str(home), "PATH": f"{venv / 'bin'}:{env['PATH']}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="the repository to clone (its HEAD)")
    parser.add_argument("--work", default="/tmp/main-job", help="scratch folder (emptied first)")
    parser.add_argument("--out", default="results/main_job.md")
    args = parser.parse_args()
    work, repo = Path(args.work), Path(args.repo).resolve()
    shutil.rmtree(work, ignore_errors=True)
    clone, home = work / "autoprox", work / "home"
    home.mkdir(parents=True)
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout
    install, job = quickstart(clone / "README.md")
    env = job_env(home, clone / ".venv")
    seconds, before, after, output = timed(install, clone, {**env, "PIP_NO_CACHE_DIR": "1"}, work / "install.log")
    rows = [f"| install: `{install}` | {seconds:.0f} | {before} | {after} |"]
    offline = shutil.which("unshare") is not None and os.geteuid() == 0
    command = f"unshare -n bash -c '{job}'" if offline else job
    phases = [
        ("job, empty cache", clone, env),
        ("job again, warm cache (resumes)", clone, env),
        (
            "job, empty cache, OMP_NUM_THREADS=1",
            work / "one-thread",
            {**job_env(work / "home-one-thread", clone / ".venv"), "OMP_NUM_THREADS": "1"},
        ),
    ]
    for number, (phase, cwd, phase_env) in enumerate(phases):
        cwd.mkdir(exist_ok=True)
        Path(phase_env["HOME"]).mkdir(exist_ok=True)
        seconds, before, after, _ = timed(command, cwd, phase_env, work / f"job-{number}.log")
        rows.append(f"| {phase}: `{command}` | {seconds:.1f} | {before} | {after} |")
    files = downloads(output)
    total = sum(mb for _, mb in files)
    largest = ", ".join(f"{name.split('-')[0]} {mb:.0f} MB" for name, mb in files[:6])
    write_report(
        args.out,
        "Main job: the README's first command, timed",
        "python benchmarks/main_job.py",
        f"A fresh clone (commit {commit.strip()}) in {work}, a new HOME, no AUTOPROX_* variables, "
        f"{os.cpu_count()} CPUs (load averages are 1/5/15-minute, from /proc/loadavg; other work shares the machine). "
        f"Debian's Fashion-MNIST is {'installed' if DEBIAN_FMNIST.is_dir() else 'not installed'}; the job runs "
        f"{'without a network (`unshare -n`)' if offline else 'with the network'}.",
        table(["phase", "seconds", "load before", "load after"], rows),
        f"The install downloaded {len(files)} files, {total / 1e3:.2f} GB (pip's cache off); the largest: {largest}. "
        f"The venv takes {du_mb(clone / '.venv') / 1e3:.1f} GB.",
    )


if __name__ == "__main__":
    main()
