"""Speed and memory of ABCC's MeanFlow training and prediction on this machine; prints one JSON line last.

    python benchmarks/meanflow.py                   # demo preset (config/config.yaml models section), CPU or GPU
    python benchmarks/meanflow.py --preset paper    # SiT-B/2 on 4x32x32 latents, batch 160, SD-VAE-sized decoder

Measured on synthetic tensors of the preset's shapes (speed does not depend on the values):
- training steps/s: full MeanFlow steps (CFG guidance forwards, JVP, backward, AdamW), after warm-up;
- prediction spectra/s: one-step sampling + VAE decoding + Alg. 1 inverse, per spectrum;
- peak memory of training and of prediction, each phase in its own process (CPU: peak RSS; GPU: peak allocated);
- prediction time of one-step MeanFlow vs 50-step Euler sampling of the same network (sampler only).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PRESETS = {
    # image 64 px; the VAE (-> 4 x 16 x 16 latents) and the backbone from config/config.yaml
    "demo": {"image_size": 64, "vae_in": 1, "from_config": True},
    # the paper: 256 px, sd-vae-ft-ema-sized decoder (4 x 32 x 32), SiT-B/2, batch 160
    "paper": {"image_size": 256, "vae_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
              "vae_in": 3, "hidden_size": 768, "depth": 12, "num_heads": 12, "patch_size": 2, "batch_size": 160},
}


def settings(preset: str) -> dict:
    import yaml

    spec = dict(PRESETS[preset])
    models = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]
    config = models["abcc"]
    if spec.get("from_config"):
        vae = models["vae"]
        spec.update(vae_channels=vae["block_out_channels"], layers_per_block=vae["layers_per_block"],
                    norm_num_groups=vae["norm_num_groups"])
    abcc = {k: config[k] for k in ("hidden_size", "depth", "num_heads", "patch_size", "mlp_ratio", "attention")}
    abcc.update({k: spec[k] for k in ("hidden_size", "depth", "num_heads", "patch_size") if k in spec})
    spec["abcc"] = abcc
    spec["meanflow"] = config["meanflow"]
    spec["batch_size"] = spec.get("batch_size", config["train"]["batch_size"])
    spec["latent_size"] = spec["image_size"] // 2 ** (len(spec["vae_channels"]) - 1)
    return spec


def build(spec: dict, device, jvp_dtype: str | None = None):
    import torch

    from opir.models.abcc import ABCC, ABCCConfig
    from opir.models.conditioning import Condition
    from opir.models.meanflow import MeanFlowConfig

    meanflow = dict(spec["meanflow"], **({"jvp_dtype": jvp_dtype} if jvp_dtype else {}))
    config = ABCCConfig(latent_channels=4, latent_size=spec["latent_size"], profile_dim=34, mixture_dim=1024,
                        meanflow=MeanFlowConfig(**meanflow), **spec["abcc"])
    torch.manual_seed(0)
    model = ABCC(config).to(device)
    b, s = spec["batch_size"], spec["latent_size"]
    cond = Condition(torch.randn(b, 4, s, s), torch.randn(b, 34), torch.randn(b, 1024)).to(device)
    return model, cond, torch.randn(b, 4, s, s, device=device)


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def phase_train(spec: dict, steps: int, jvp_dtype: str | None, queue) -> None:
    import torch

    from opir.core.compute import resolve_device
    from opir.training import autocast_factory

    device = resolve_device("auto")
    model, cond, x = build(spec, device, jvp_dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = autocast_factory(device, "auto")
    times = []
    for step in range(steps + 2):
        sync(device)
        t0 = time.perf_counter()
        terms = model.loss(x, cond, torch.Generator().manual_seed(step), autocast)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    measured = times[2:]  # the first steps pay for allocation and kernel selection
    queue.put({
        "train_steps_per_s": len(measured) / sum(measured),
        "train_step_s_median": sorted(measured)[len(measured) // 2],
        "train_peak_memory_mb": peak_memory_mb(device),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "jvp_dtype": model.config.meanflow.jvp_dtype,
    })


def phase_predict(spec: dict, repeats: int, queue) -> None:
    import numpy as np
    import torch

    from opir.core.compute import resolve_device
    from opir.models.vae import build_small_vae, decode_latents
    from opir.render.waveform import CurveStyle, waveform_to_spectrum
    from opir.training import autocast_factory

    device = resolve_device("auto")
    model, cond, _ = build(spec, device)
    model.eval()
    # an untrained model outputs zero (adaLN-Zero); perturb it so decoded images are not all alike
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    vae = build_small_vae(spec["image_size"], spec["vae_channels"], 4, spec["layers_per_block"],
                          spec["norm_num_groups"], False)
    if spec["vae_in"] == 3:  # the SD VAE is a 3-channel model; its decoder's cost is what matters here
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                            layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=256)
    vae = vae.to(device).eval()
    style = CurveStyle(height=spec["image_size"], width=spec["image_size"], centre=0.5, clip=0.6)
    autocast = autocast_factory(device, "auto")
    generator = torch.Generator()

    def sampler(euler_steps: int) -> float:
        sync(device)
        t0 = time.perf_counter()
        with autocast():
            model.sample(cond, generator.manual_seed(0), euler_steps=euler_steps)
        sync(device)
        return time.perf_counter() - t0

    sampler(0)
    one_step = min(sampler(0) for _ in range(repeats))
    euler = min(sampler(50) for _ in range(max(1, repeats // 3)))

    def predict_once() -> float:
        sync(device)
        t0 = time.perf_counter()
        with autocast():
            z = model.sample(cond, generator.manual_seed(1))
        with autocast():
            images = decode_latents(vae, z.float(), 16, device)
        spectra = np.stack([waveform_to_spectrum(im, 800, style) for im in np.clip(images, 0, 255)])
        assert spectra.shape == (len(cond), 800)
        return time.perf_counter() - t0

    predict_once()
    best = min(predict_once() for _ in range(max(1, repeats // 3)))
    queue.put({
        "predict_spectra_per_s": len(cond) / best,
        "predict_batch": len(cond),
        "predict_peak_memory_mb": peak_memory_mb(device),
        "sample_one_step_s": one_step,
        "sample_euler50_s": euler,
        "euler50_over_one_step": euler / one_step,
    })


def in_child(target, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each prediction measurement")
    parser.add_argument("--jvp-dtype", choices=["float32", "bfloat16"], default=None,
                        help="override models.abcc.meanflow.jvp_dtype (GPU: bfloat16 runs the JVP under autocast)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    spec = settings(args.preset)
    result = {"benchmark": "meanflow", "preset": args.preset, "batch_size": spec["batch_size"],
              "latent": [4, spec["latent_size"], spec["latent_size"]], "image_size": spec["image_size"],
              "backbone": spec["abcc"], "threads": args.threads}
    result.update(in_child(phase_train, spec, args.steps, args.jvp_dtype))
    result.update(in_child(phase_predict, spec, args.repeats))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
