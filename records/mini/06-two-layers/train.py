"""Mini speedrun, record 06: two layers instead of four.

Record 05 with half the depth, and a step budget of 1050 instead of 850. At this budget
(under a million training bytes) the four-layer model is far larger than the data can use:
two layers learn almost as much per step at a bit over half the cost of a step, since
each layer's matrices cost the same in the forward and backward passes and in Muon's
Newton-Schulz iteration. The smaller model needs a few more steps and gets them.

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
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # context length in bytes
    # optimisation
    batch_size: int = 12  # sequences per step
    num_iterations: int = 1050  # step budget N; the cooldown ends here
    learning_rate: float = 3e-3  # peak AdamW lr (embeddings and norm gains)
    muon_lr: float = 0.03  # peak Muon lr (hidden matrices); the same schedule scales both
    muon_momentum: float = 0.95
    warmup_iters: int = 50
    cooldown_frac: float = 0.5  # fraction of the budget spent decaying the lr linearly to 0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    # evaluation
    val_every: int = 100  # validate every this many steps (and at step 0 and the last step)
    val_batch_size: int = 64  # sequences per validation forward pass


args = Hyperparameters()
torch.manual_seed(args.seed)

# -----------------------------------------------------------------------------
# Model


class Rotary(nn.Module):
    """Rotary position embedding: rotate pairs of channels by angle position * frequency."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (max_len, head_dim / 2)
        self.register_buffer("cos", angles.cos()[None, None], persistent=False)
        self.register_buffer("sin", angles.sin()[None, None], persistent=False)

    def forward(self, x):  # x: (B, n_head, T, head_dim)
        T = x.size(-2)
        cos, sin = self.cos[..., :T, :], self.sin[..., :T, :]
        x1, x2 = x.chunk(2, dim=-1)  # channel i is paired with channel i + head_dim / 2
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int):
        super().__init__()
        self.n_head = n_head
        self.rotary = Rotary(n_embd // n_head, block_size)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)  # q, k, v in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))  # QK-norm: bounded logits
        q, k = self.rotary(q), self.rotary(k)  # positions enter here, and only here
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
    def __init__(self, n_embd: int, n_head: int, block_size: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=False)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
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
        self.blocks = nn.ModuleList([Block(n_embd, n_head, block_size) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one matrix embeds and predicts
        # GPT-2 initialisation: N(0, 0.02), residual projections scaled down by sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                torch.nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx, targets=None):
        x = self.wte(idx)  # no position embedding: the attention layers apply rotary
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
# Optimisers and schedule


def zeropower_via_newtonschulz5(G, steps: int = 5):
    """Approximately replace G = U S V^T by U V^T (all singular values -> ~1).

    A quintic Newton-Schulz iteration whose coefficients are chosen to push small singular
    values up fast; it converges only roughly (to ~[0.7, 1.2]), which is all Muon needs.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G / (G.norm() + 1e-7)  # spectral norm <= Frobenius norm <= 1
    transposed = G.size(0) > G.size(1)
    if transposed:  # iterate on the smaller Gram matrix
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton-Schulz: Nesterov momentum, then orthogonalise.

    Every direction of the update gets the same magnitude, so the rare directions that
    SGD or Adam updates barely move are learned as fast as the dominant ones.
    """

    def __init__(self, params, lr: float, momentum: float):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad)
                update = zeropower_via_newtonschulz5(p.grad.add(buf, alpha=group["momentum"]))
                # tall matrices: scale up so the update's RMS per entry is comparable
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.add_(update, alpha=-group["lr"] * scale)


model = GPT(args.vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd)
hidden = [p for p in model.blocks.parameters() if p.dim() == 2]  # attention and MLP matrices
# embedding tables (wte is also the tied head) are lookups, not linear maps: they stay on AdamW
embeds = [p for name, p in model.named_parameters() if p.dim() == 2 and not name.startswith("blocks.")]
norms = [p for p in model.parameters() if p.dim() < 2]
adamw = torch.optim.AdamW(
    [{"params": embeds, "weight_decay": args.weight_decay}, {"params": norms, "weight_decay": 0.0}],
    lr=args.learning_rate,
    betas=(args.beta1, args.beta2),
)
muon = Muon(hidden, lr=args.muon_lr, momentum=args.muon_momentum)
optimizers = [adamw, muon]
for opt in optimizers:
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]


def get_lr_multiplier(step: int) -> float:
    """Warmup-stable-decay: linear warmup, constant, then linear cooldown to 0 at step N.

    Most of the loss drop of a decayed schedule happens while the lr anneals, so the
    cooldown is long and ends at the step budget rather than at some far-off step.
    """
    if step < args.warmup_iters:
        return (step + 1) / (args.warmup_iters + 1)
    cooldown_start = int(args.num_iterations * (1 - args.cooldown_frac))
    if step < cooldown_start:
        return 1.0
    return (args.num_iterations - step) / (args.num_iterations - cooldown_start)


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

    multiplier = get_lr_multiplier(step)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
    x, y = get_batch()
    loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)

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
