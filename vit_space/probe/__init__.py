"""Probing untrained networks: hooks on their linears (`hooks`), the conditions a network is fed under
(`conditions`), per-head attention statistics (`heads`), sketched statistics (`sketch`), the
statistics cache (`cache`) and the sketch's fidelity to full tensors (`fidelity`)."""

from vit_space.probe.cache import ProbeSpec, StatsCache, fill, load_bundle, probe_arch
from vit_space.probe.hooks import probe

__all__ = ["ProbeSpec", "StatsCache", "fill", "load_bundle", "probe", "probe_arch"]
