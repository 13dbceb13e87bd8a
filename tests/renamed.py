"""A small patch transformer whose modules can be named as timm names them or otherwise (as GPT-NeoX
names its linears), for the probe's `units=` mapping: the same seed gives the same weights."""

import torch
from torch import nn

TIMM = {"attn": "attn", "qkv": "qkv", "proj": "proj", "mlp": "mlp", "fc1": "fc1", "fc2": "fc2"}
NEOX = {"attn": "attention", "qkv": "query_key_value", "proj": "dense"}
NEOX |= {"mlp": "ffn", "fc1": "dense_h_to_4h", "fc2": "dense_4h_to_h"}
NEOX_UNITS = {"qkv": "attention.query_key_value", "proj": "attention.dense"}
NEOX_UNITS |= {"fc1": "ffn.dense_h_to_4h", "fc2": "ffn.dense_4h_to_h"}


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, names: dict[str, str]):
        super().__init__()
        self.heads, self.names = heads, names
        setattr(self, names["qkv"], nn.Linear(dim, 3 * dim))
        self.attn_drop = nn.Dropout(0.0)  # where the probe reads the attention probabilities
        setattr(self, names["proj"], nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = getattr(self, self.names["qkv"])(x).reshape(batch, tokens, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        probs = self.attn_drop((q @ k.mT * q.shape[-1] ** -0.5).softmax(-1))
        return getattr(self, self.names["proj"])((probs @ v).transpose(1, 2).reshape(batch, tokens, dim))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, names: dict[str, str]):
        super().__init__()
        self.names = names
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        setattr(self, names["attn"], _Attention(dim, heads, names))
        mlp = nn.Module()
        setattr(mlp, names["fc1"], nn.Linear(dim, 2 * dim))
        setattr(mlp, names["fc2"], nn.Linear(2 * dim, dim))
        setattr(self, names["mlp"], mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + getattr(self, self.names["attn"])(self.norm1(x))
        mlp = getattr(self, self.names["mlp"])
        return x + getattr(mlp, self.names["fc2"])(nn.functional.gelu(getattr(mlp, self.names["fc1"])(self.norm2(x))))


class PatchTransformer(nn.Module):
    """(B, 3, 16, 16) images -> (B, classes) logits: 4x4 patches, `depth` blocks, mean pooling."""

    def __init__(self, names: dict[str, str], depth: int = 2, dim: int = 24, heads: int = 2, classes: int = 5):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.patch = nn.Conv2d(3, dim, 4, stride=4)
            self.blocks = nn.Sequential(*(_Block(dim, heads, names) for _ in range(depth)))
            self.head = nn.Linear(dim, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.patch(images).flatten(2).transpose(1, 2)).mean(1))
