"""Proxies on ViTs: zero-cost pass proxies (`zero_cost`), scoring architectures with any proxy
(`scores`), discovery tasks from benchmarks (`tasks`) and rankings against ground truth (`rank`)."""

from vit_space.proxies.ranking import Ranking, rank
from vit_space.proxies.scores import Scores, catalogue, proxy_scores, resolve_proxy
from vit_space.proxies.tasks import bench_tasks, tasks_for

__all__ = ["Ranking", "Scores", "bench_tasks", "catalogue", "proxy_scores", "rank", "resolve_proxy", "tasks_for"]
