"""A stream's header may declare any size: the hub refuses one over its limit before decoding, and
decoding a large one (in tiles) costs bounded memory."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
from hub_helpers import empty_stream, one_spooled_scan, start_hub, stored_records

from edgeret.camera.upload import Uploader
from edgeret.codec.session import LATENT_NAMES, CodecCatalog, CodecSession, dequantize, run_decoder
from edgeret.plugin.host import get_host

REPO = Path(__file__).resolve().parents[2]


def test_a_200_byte_stream_declaring_a_huge_image_is_refused_before_decoding(tmp_path):
    catalog = CodecCatalog.of_plugin(get_host())
    attack = empty_stream(catalog, "fundus-factorized-q6", 4096, 4096)
    assert len(attack) < 300
    item = one_spooled_scan(tmp_path)
    store = tmp_path / "store"
    hub = start_hub(store, max_pixels=2_000_000)
    try:
        uploader = Uploader(hub.url)
        capture_id = hashlib.sha256(attack).hexdigest()
        refused = uploader.send(capture_id, attack, {"source_name": "attack.ert"})
        ok = uploader.send(item.capture_id, item.read_stream(), item.meta)
    finally:
        hub.stop()
    assert refused.kind == "rejected" and "HTTP 413" in refused.detail, refused
    assert "4096x4096" in refused.detail and "2000000 pixels" in refused.detail
    assert ok.kind == "delivered"  # the hub still serves, and a normal capture goes through
    records = list(stored_records(store).values())
    assert [r["capture_id"] for r in records] == [item.capture_id]


def test_tiled_decoding_gives_exactly_the_whole_image_for_every_shipped_model():
    host = get_host()
    catalog = CodecCatalog.of_plugin(host)
    session = CodecSession(catalog, host.backend("onnxruntime"), threads=1)
    rng = np.random.default_rng(0)
    seen = set()
    for model, rate in catalog.rates.values():
        if model.name in seen:
            continue
        seen.add(model.name)
        shape = (200, 330, 3) if model.channels == 3 else (200, 330)
        image = (rng.random(shape) * 255).astype(np.uint8)
        encoded = session.encode(image, model, rate, scale=1)
        feeds = {name: dequantize(q, None if rate.inv_gains is None else rate.inv_gains[i])
                 for i, (name, q) in enumerate(zip(LATENT_NAMES, encoded.symbols, strict=True))}
        runner = session._runner(model.decoder_path)
        whole = runner.run(feeds)["image"]
        tiled = run_decoder(runner, feeds, tile=3)  # 7 x 11 main-latent cells: 3 x 4 tiles
        np.testing.assert_array_equal(tiled, whole, err_msg=model.name)
    assert {m.modality for m in catalog.models.values()} <= {m for m in ("fundus", "oct")}
    assert len(seen) >= 4


def test_decoding_a_large_declared_image_stays_within_the_stated_memory(tmp_path):
    """8 megapixels: about 8 GB with the whole-image decoder, bounded by the tiles now
    (the figure in MAX_PIXELS' comment: 0.65 GB + 30 bytes per pixel)."""
    catalog = CodecCatalog.of_plugin(get_host())
    path = tmp_path / "large.ert"
    path.write_bytes(empty_stream(catalog, "fundus-factorized-q6", 4096, 2048))
    code = ("import resource, sys\n"
            "from edgeret.plugin.host import get_host\n"
            "from edgeret.codec.session import CodecCatalog, CodecSession\n"
            "host = get_host()\n"
            "session = CodecSession(CodecCatalog.of_plugin(host), host.backend('onnxruntime'), threads=1)\n"
            "image = session.decode_bytes(open(sys.argv[1], 'rb').read()).image\n"
            "try:\n"  # VmHWM: this process's own peak; ru_maxrss keeps the forking pytest's across exec
            "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
            "except OSError:\n"
            "    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(image.shape, int(hwm) * 1024)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO,
                         timeout=300, check=True).stdout.split()
    peak = int(out[-1])
    assert "(2048, 4096, 3)" in " ".join(out)
    # the stated figure plus a margin for allocator noise; the whole-image decoder took about 8 GB
    assert peak < 0.7e9 + 35 * 4096 * 2048, f"peak RSS {peak / 1e9:.2f} GB"
