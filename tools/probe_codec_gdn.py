"""Probe (build host, torch): does GDN / IGDN lift the codec's transform? Prints one JSON line.

Same skeleton and widths as the shipped fundus-factorized model, trained from scratch as a plain
autoencoder (uniform noise in training, rounding at evaluation, no rate term) on new phantom patches
(seeds 9000..9119), then MS-SSIM on four fresh 512 px phantoms (seeds 200000..) and on
``skimage.data.retina()`` (never trained on). ``base`` keeps LeakyReLU / ReLU as shipped; ``gdn`` puts
GDN after each encoder layer and IGDN after each decoder up-sampling (Balle et al. 2016; beta and
gamma kept positive by squaring). The figures are in plugins/tasks/codec/TRAINING.md::

    python tools/probe_codec_gdn.py base 1500 0 ; python tools/probe_codec_gdn.py gdn 1500 0
"""

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data
from torch import nn

from edgeret_plugins.tasks.codec.losses import distortion, ms_ssim
from edgeret_plugins.tasks.codec.model import CodecConfig, Decoder, Encoder
from edgeret_plugins.tasks.codec.specs import SPECS, patches_from, phantom

CFG = CodecConfig(3, "factorized", widths=(16, 32, 32, 48, 64), dec_widths=(32, 32, 32, 48, 64),
                  latents=(32, 16, 8, 4), lambdas=(1.0,), decoder_edge="mirror")


class GDN(nn.Module):
    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels).view(channels, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(x * x, self.gamma ** 2, self.beta ** 2 + 1e-6)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class AutoEncoder(nn.Module):
    def __init__(self, gdn: bool) -> None:
        super().__init__()
        self.enc, self.dec, self.gdn = Encoder(CFG), Decoder(CFG), gdn
        w, dw = CFG.widths, CFG.dec_widths
        if gdn:
            self.g = nn.ModuleList([GDN(c) for c in w])
            self.ig = nn.ModuleList([GDN(c, True) for c in (dw[4], dw[3], dw[2], dw[1], dw[0])])

    def encode(self, x):
        e = self.enc
        if not self.gdn:
            return e(x)
        h = self.g[0](e.l1(x - 0.5))
        h = self.g[1](e.l2(h))
        a3 = e.l3(h)
        a4 = e.l4(self.g[2](a3))
        a5 = e.l5(self.g[3](a4))
        y0 = e.l6(self.g[4](a5))
        c3, c2, c1 = e.splits
        return (y0, a5[:, :c1], a4[:, :c2], a3[:, :c3])

    def decode(self, ys):
        d = self.dec
        if not self.gdn:
            return d(*ys)
        y0, y1, y2, y3 = ys
        h = self.ig[0](d._up(d.d1, y0))
        h = self.ig[1](d._up(d.d2, torch.cat([h, y1], 1)))
        h = self.ig[2](d._up(d.d3, torch.cat([h, y2], 1)))
        h = self.ig[3](d._up(d.d4, torch.cat([h, y3], 1)))
        h = self.ig[4](d._up(d.d5, h))
        return d.output_layer(h)

    def forward(self, x):
        ys = self.encode(x)
        ys = [y + (torch.rand_like(y) - 0.5) for y in ys] if self.training else [torch.round(y) for y in ys]
        return self.decode(ys)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float() / 255


def main() -> None:
    variant, steps = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    spec = SPECS["fundus-factorized"]
    patches = patches_from((phantom("fundus", s) for s in range(9000, 9120)), spec.patches_per_image, 1)
    model = AutoEncoder(variant == "gdn")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for _ in range(steps):
        idx = torch.randint(0, len(patches), (4,), generator=g)
        x = torch.from_numpy(patches[idx.numpy()]).float() / 255.0
        loss = distortion(x, model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    res = {"variant": variant, "seed": seed, "steps": steps, "train_s": round(time.time() - t0)}
    with torch.no_grad():
        vals = [float(ms_ssim(x, model(x).clamp(0, 1)))
                for x in (_tensor(phantom("fundus", s, size=512)[0]) for s in range(200_000, 200_004))]
        res["phantoms_msssim_rounded"] = round(float(np.mean(vals)), 4)
        x = _tensor(data.retina()[:1408, :1408])
        res["retina_msssim_rounded"] = round(float(ms_ssim(x, model(x).clamp(0, 1))), 4)
        t = time.perf_counter()
        for _ in range(5):
            model.encode(x[:, :, :512, :512])
        res["encode_512_ms_torch"] = round((time.perf_counter() - t) / 5 * 1000, 1)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
