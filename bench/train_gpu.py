"""Tokens/s and MFU of the ~125M decoder of configs/gpu-125m.yaml on one GPU, bf16.

    .venv/bin/python bench/train_gpu.py [--steps 50] [--batch 16] [--compile] [--config configs/gpu-125m.yaml]
    .venv/bin/python bench/train_gpu.py --device cpu --tiny --steps 3      # smoke run without a GPU

The training step is the one `pipeline.training.pretrain.train_loop` runs (the same model builder,
`sequence_losses`, AdamW, clipping, bf16 autocast), on random token sequences of the
config's length, so the figure is the model's throughput without data loading. MFU =
tokens/s x 6 x parameters / peak bf16 FLOP/s of the device (`pipeline.training.pretrain.PEAK_BF16_FLOPS`);
the attention FLOPs (12 x layers x hidden x seq per token) are reported separately, as
"MFU incl. attention".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class VocabOnly:
    """What the model builder needs of a tokenizer: its size and special ids."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def main() -> None:
    import torch

    from pipeline.config import load_yaml
    from pipeline.training.model import build_clm, flops_per_token, sequence_losses
    from pipeline.training.pretrain import peak_flops

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "gpu-125m.yaml"))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide model (smoke test)")
    args = ap.parse_args()

    cfg = load_yaml(args.config)
    mcfg = cfg.model
    if args.tiny:
        mcfg = mcfg.model_copy(update={"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 4,
                                       "intermediate_size": 128, "max_length": 128})
    vocab = cfg.tokenizer.vocab_size if not args.tiny else 1000
    tok = VocabOnly(vocab)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_clm(mcfg, tok).to(device)
    params = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(model)
    attn = 12 * mcfg.num_layers * mcfg.hidden_size * mcfg.max_length
    if args.compile:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    seq = mcfg.max_length
    data = torch.randint(3, vocab, (args.batch, seq), device=device)

    def step() -> None:
        with autocast:
            logits = model(input_ids=data).logits
            loss_sum, n = sequence_losses(logits, data, True)
            loss = loss_sum.sum() / n.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    tps = args.steps * args.batch * seq / elapsed
    peak = peak_flops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; {params / 1e6:.1f}M parameters; batch {args.batch} x {seq}; bf16 "
          f"{device.type == 'cuda'}; compile {args.compile}; {args.steps} timed steps")
    print(f"tokens/s {tps:,.0f}")
    if peak:
        print(f"MFU {tps * fpt / peak:.1%} (6N), MFU incl. attention {tps * (fpt + attn) / peak:.1%}; "
              f"peak bf16 {peak / 1e12:.0f} TFLOP/s")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
