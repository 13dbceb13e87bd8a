"""Discover a proxy on af-tiny, rank the benchmark with it, export it, search with it (README "Python API")."""

import sys

from gp_proxy import DiscoveryConfig, discover, load_proxy
from vit_space import (
    BatchSpec,
    Budget,
    ProbeSpec,
    SearchConfig,
    Searcher,
    StatsCache,
    bench_fields,
    export_file,
    get_space,
    load_bench,
    rank,
    tasks_for,
)

out = sys.argv[1] if len(sys.argv) > 1 else "runs/api"
cache, spec = StatsCache(f"{out}/cache"), ProbeSpec(BatchSpec("fmnist", image_size=None))  # each space's own size
tasks = tasks_for(["af-tiny"], None, spec, cache, compute_missing=True)  # fmnist + digits, half held out
proxy = load_proxy(discover(tasks, DiscoveryConfig(iterations=300), f"{out}/discover", probe=spec.as_dict()).saved[0])
bench = load_bench("af-tiny")
ranking = rank(proxy, bench, bench_fields(bench, []), spec, cache)
print(f"{proxy.expression}: held-out Kendall tau {ranking.jcm_heldout:.3f}")
print("LaTeX:", export_file(proxy, "latex", f"{out}/proxy.tex").read_text().strip())
search = Searcher(get_space("af-tiny"), [proxy], Budget(0, 50e3, num_classes=10), spec, cache, SearchConfig(count=40))
best = max(search.run(f"{out}/search").evaluated, key=lambda c: c.fitness)
print(f"best of 40 under 50k parameters: {best.arch} ({best.params} parameters)")
