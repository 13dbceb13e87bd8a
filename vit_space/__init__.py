"""ViT search spaces on timm, ViT-Bench-101, proxy batches and the statistics probe."""
