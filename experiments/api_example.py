"""Discover a proxy on af-tiny, rank the benchmark with it, export it, search with it (README "Python API")."""

import sys

import gp_proxy as gp
import vit_space as vs

out = sys.argv[1] if len(sys.argv) > 1 else "runs/api"
cache, spec = vs.StatsCache(f"{out}/cache"), vs.ProbeSpec(vs.BatchSpec("fmnist", image_size=None))  # own input size
tasks = vs.tasks_for(["af-tiny"], None, spec, cache, compute_missing=True)  # fmnist + digits, half held out
run = gp.discover(tasks, gp.DiscoveryConfig(iterations=300), f"{out}/discover", probe=spec.as_dict())
proxy, bench = gp.load_proxy(run.saved[0]), vs.load_bench("af-tiny")
ranking = vs.rank(proxy, bench, vs.bench_fields(bench, []), spec, cache)
print(f"{proxy.expression}: held-out Kendall tau {ranking.jcm_heldout:.3f}")
print("LaTeX:", vs.export_file(proxy, "latex", f"{out}/proxy.tex").read_text().strip())
budget = vs.Budget(0, 50e3, num_classes=10)
state = vs.search(vs.get_space("af-tiny"), [proxy], budget, spec, cache, vs.SearchConfig(count=40), f"{out}/search")
best = max(state.evaluated, key=lambda c: c.fitness)
print(f"best of 40 under 50k parameters: {best.arch} ({best.params} parameters)")
