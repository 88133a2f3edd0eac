"""Mini speedrun, record 00: the baseline.

A byte-level GPT trained on Shakespeare with the CPU settings of Karpathy's nanoGPT
`config/train_shakespeare_char.py` recipe: 4 layers, 4 heads, 128-wide, 64-byte context,
batch 12, AdamW at lr 1e-3 (betas 0.9/0.99, weight decay 0.1 on matrices), 100 warmup
steps then cosine decay to 1e-4, gradient clipping at 1.0, no dropout, no biases, GELU MLP,
LayerNorm, learned absolute position embeddings, input embedding tied to the output head.

The script reads its data and its goal from the environment (the harness sets them):
  NANOGPT_TRAIN_FILES        glob of training shards (.bin, modded-nanogpt layout)
  NANOGPT_VAL_FILES          glob of validation shards
  NANOGPT_VAL_TOKENS         how many validation tokens to evaluate on (from the start)
  SPEEDRUN_SEED              seed for the weights and the data order (default 0)
  SPEEDRUN_TARGET_VAL_LOSS   stop at the first validation whose loss is <= this
  SPEEDRUN_MODEL_OUT         if set, save the final model there (ONNX, see the end)
"""

import glob
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# Hyperparameters


@dataclass
class Hyperparameters:
    train_files: str = os.environ["NANOGPT_TRAIN_FILES"]
    val_files: str = os.environ["NANOGPT_VAL_FILES"]
    val_tokens: int = int(os.environ["NANOGPT_VAL_TOKENS"])
    seed: int = int(os.environ.get("SPEEDRUN_SEED", "0"))
    target_val_loss: float = float(os.environ.get("SPEEDRUN_TARGET_VAL_LOSS", "0"))
    # model
    vocab_size: int = 256  # bytes
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # context length in bytes
    # optimisation
    batch_size: int = 12  # sequences per step
    num_iterations: int = 5000  # step budget N (also the length of the cosine decay)
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    # evaluation
    val_every: int = 250  # validate every this many steps (and at step 0 and the last step)
    val_batch_size: int = 64  # sequences per validation forward pass


args = Hyperparameters()
torch.manual_seed(args.seed)

# -----------------------------------------------------------------------------
# Model


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)  # q, k, v in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd: int):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=False)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, bias=False)
        self.mlp = MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)  # learned absolute positions
        self.blocks = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one matrix embeds and predicts
        # GPT-2 initialisation: N(0, 0.02), residual projections scaled down by sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                torch.nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:  # inference, and the exported model: logits only
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


# -----------------------------------------------------------------------------
# Data: shards in the modded-nanogpt layout (256 int32 header, then uint16 tokens)


def load_tokens(pattern: str) -> torch.Tensor:
    files = sorted(glob.glob(pattern))
    assert files, f"no files match {pattern}"
    chunks = []
    for path in files:
        header = np.fromfile(path, dtype=np.int32, count=256)
        assert header[0] == 20240520 and header[1] == 1, f"{path}: not a token shard"
        chunks.append(np.fromfile(path, dtype=np.uint16, offset=256 * 4, count=int(header[2])))
    return torch.from_numpy(np.concatenate(chunks).astype(np.int64))


train_data = load_tokens(args.train_files)
val_data = load_tokens(args.val_files)[: args.val_tokens + 1]  # +1: the last target
data_rng = torch.Generator().manual_seed(args.seed)  # the data order depends on the seed only


def get_batch():
    """nanoGPT-style batches: `batch_size` windows at uniformly random offsets."""
    ix = torch.randint(len(train_data) - args.block_size - 1, (args.batch_size,), generator=data_rng)
    x = torch.stack([train_data[i : i + args.block_size] for i in ix])
    y = torch.stack([train_data[i + 1 : i + 1 + args.block_size] for i in ix])
    return x, y


@torch.no_grad()
def evaluate(model) -> float:
    """Mean loss over the first `val_tokens` validation tokens, in non-overlapping windows."""
    model.eval()
    n_seq = args.val_tokens // args.block_size
    x_all = val_data[: n_seq * args.block_size].view(n_seq, args.block_size)
    y_all = val_data[1 : n_seq * args.block_size + 1].view(n_seq, args.block_size)
    total = 0.0
    for i in range(0, n_seq, args.val_batch_size):
        x, y = x_all[i : i + args.val_batch_size], y_all[i : i + args.val_batch_size]
        total += model(x, y).item() * len(x)
    model.train()
    return total / n_seq


# -----------------------------------------------------------------------------
# Optimiser and schedule

model = GPT(args.vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd)
# nanoGPT: weight decay on matrices (and embeddings), none on norms
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
    lr=args.learning_rate,
    betas=(args.beta1, args.beta2),
)


def get_lr(step: int) -> float:
    """Linear warmup, then cosine decay from learning_rate to min_lr over the step budget."""
    if step < args.warmup_iters:
        return args.learning_rate * (step + 1) / (args.warmup_iters + 1)
    ratio = (step - args.warmup_iters) / (args.num_iterations - args.warmup_iters)
    return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.learning_rate - args.min_lr)


# -----------------------------------------------------------------------------
# Training loop

N = args.num_iterations
train_time_ms = 0.0
t0 = time.perf_counter()
for step in range(N + 1):
    last_step = step == N
    if last_step or step % args.val_every == 0:
        train_time_ms += 1000 * (time.perf_counter() - t0)  # stop the clock during validation
        val_loss = evaluate(model)
        print(
            f"step:{step}/{N} val_loss:{val_loss:.4f} train_time:{train_time_ms:.0f}ms "
            f"step_avg:{train_time_ms / max(step, 1):.2f}ms",
            flush=True,
        )
        if val_loss <= args.target_val_loss or last_step:
            break
        t0 = time.perf_counter()

    lr = get_lr(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    x, y = get_batch()
    loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    if step % 100 == 0:
        elapsed = train_time_ms + 1000 * (time.perf_counter() - t0)
        print(
            f"step:{step + 1}/{N} train_loss:{loss.item():.4f} train_time:{elapsed:.0f}ms "
            f"step_avg:{elapsed / (step + 1):.2f}ms",
            flush=True,
        )


# -----------------------------------------------------------------------------
# The final model, for the harness to score itself: an ONNX graph from token ids (batch, block_size)
# to logits (batch, block_size, vocab_size), weights inside, that onnxruntime runs without this file

if model_out := os.environ.get("SPEEDRUN_MODEL_OUT"):
    model.eval()
    torch.onnx.export(
        model,
        (torch.zeros(2, args.block_size, dtype=torch.long),),
        model_out,
        input_names=["tokens"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
        dynamo=True,
        optimize=False,
        verbose=False,
    )
