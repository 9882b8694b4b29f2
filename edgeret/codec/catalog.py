"""The codec catalogue: which codec models a weights folder holds, checked against their manifest.

A model has an encoder and a decoder graph (ONNX), a parameter file (``.npz``:
per rate point the gains and the canonical bytes of the integer entropy
tables) and one or more *rate points*. A rate point is what a stream names: its
id is the header's codec id (e.g. ``oct-factorized-q2``) and its model hash is
:func:`rate_digest` over the encoder's and decoder's SHA-256, the gains and the
tables, so changing any of them changes the hash. No torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeret.codec.ert.container import ModelIdentity, model_digest
from edgeret.codec.ert.entropy import IntegerTable
from edgeret.codec.scale import coded_size
from edgeret.errors import EdgeretError, InputError

MANIFEST = "codec_models.json"
MULTIPLE = 32
STRIDES = (32, 16, 8, 4)
MODALITY_CHANNELS = {"oct": 1, "fundus": 3}


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // MULTIPLE) * MULTIPLE, -(-width // MULTIPLE) * MULTIPLE


def rate_digest(encoder_sha: bytes, decoder_sha: bytes, gains: Sequence[np.ndarray] | None,
                inv_gains: Sequence[np.ndarray] | None, tables: Sequence[IntegerTable]) -> bytes:
    """The model hash of one rate point (what every header carries)."""
    parts = [b"edgeret-codec-v1", encoder_sha, decoder_sha]
    for i, table in enumerate(tables):
        for arr in (gains, inv_gains):
            parts.append(b"" if arr is None else np.asarray(arr[i], "<f4").tobytes())
        parts.append(table.to_bytes())
    return model_digest(*parts)


# --- the catalogue ------------------------------------------------------------------------


@dataclass(frozen=True)
class RatePoint:
    id: str  # the header's codec id
    index: int
    model_hash: bytes
    tables: tuple[IntegerTable, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    gains: tuple[np.ndarray, ...] | None
    inv_gains: tuple[np.ndarray, ...] | None
    nominal_bpp: float  # measured at export on validation phantoms
    model: str

    @property
    def model_name(self) -> str:
        return self.id

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.model_name, self.model_hash)


@dataclass
class CodecModel:
    name: str
    modality: str
    variant: str
    channels: int
    latent_channels: tuple[int, ...]
    encoder_path: Path
    decoder_path: Path
    rates: list[RatePoint] = field(default_factory=list)
    levels: int | None = None
    description: str = ""
    default_rate: str | None = None  # rate-point id used when none is asked for (None: the middle one)
    # the highest rate point at which an oversampled image may be coded at half resolution (None: never)
    half_scale_through: str | None = None

    def default_point(self) -> RatePoint:
        points = sorted(self.rates, key=lambda p: p.nominal_bpp)
        named = [p for p in points if p.id == self.default_rate]
        return named[0] if named else points[len(points) // 2]

    def allows_half_scale(self, rate: RatePoint) -> bool:
        through = [p for p in self.rates if p.id == self.half_scale_through]
        return bool(through) and rate.nominal_bpp <= through[0].nominal_bpp

    def latent_shapes(self, height: int, width: int, scale: int = 1) -> list[tuple[int, int, int]]:
        """Latent shapes for a ``height`` x ``width`` image coded at 1/``scale`` of its size."""
        ph, pw = padded_size(*coded_size(height, width, scale))
        return [(c, ph // s, pw // s) for c, s in zip(self.latent_channels, STRIDES, strict=True)]


def _sha_file(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except FileNotFoundError:
        return None


class CodecCatalog:
    """The codec models of one weights folder, checked against their manifest."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, "no codec manifest here (is the codec plugin installed?)") from None
        except (OSError, ValueError) as e:
            raise InputError(path, f"unreadable codec manifest ({e})") from None
        self.models: dict[str, CodecModel] = {}
        try:
            for entry in manifest["models"]:
                model = self._load(entry)
                self.models[model.name] = model
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(path, f"malformed codec manifest ({type(e).__name__}: {e})") from None
        self.rates = {r.id: (m, r) for m in self.models.values() for r in m.rates}

    @classmethod
    def of_plugin(cls, host) -> CodecCatalog:
        """The models the installed `codec-encoder` task ships (its weights folder)."""
        task = host.task("codec-encoder")
        if task.default_model is None:
            raise EdgeretError("the codec-encoder task ships no models; pass --models DIR")
        return cls(task.default_model.parent)

    def _file(self, entry: dict, key: str) -> tuple[Path, bytes]:
        path = self.folder / entry[key]["file"]
        want = bytes.fromhex(entry[key]["sha256"])
        got = _sha_file(path)
        if got is not None and got != want:  # a device bundle may hold only one of the graphs
            raise InputError(path, f"file does not match the codec manifest (sha256 {got.hex()[:12]}…, "
                                   f"expected {want.hex()[:12]}…)")
        return path, want

    def _load(self, entry: dict) -> CodecModel:
        enc_path, enc_sha = self._file(entry, "encoder")
        dec_path, dec_sha = self._file(entry, "decoder")
        npz_path, _ = self._file(entry, "params")
        with np.load(io.BytesIO(npz_path.read_bytes())) as npz:
            arrays = {k: npz[k] for k in npz.files}
        model = CodecModel(
            name=entry["name"], modality=entry["modality"], variant=entry["variant"],
            channels=int(entry["channels"]), latent_channels=tuple(int(c) for c in entry["latent_channels"]),
            encoder_path=enc_path, decoder_path=dec_path, levels=entry.get("levels"),
            description=entry.get("description", ""), default_rate=entry.get("default_rate"),
            half_scale_through=entry.get("half_scale_through"))
        if model.modality not in MODALITY_CHANNELS or len(model.latent_channels) != 4:
            raise ValueError(f"model {model.name}: bad modality or latent count")
        for rate in entry["rates"]:
            r = int(rate["index"])
            tables = tuple(IntegerTable.from_bytes(arrays[f"table_{r}_{i}"].tobytes(), source=str(npz_path))
                           for i in range(4))
            gains = inv = None
            if f"gain_{r}_0" in arrays:
                gains = tuple(arrays[f"gain_{r}_{i}"].astype(np.float32) for i in range(4))
                inv = tuple(arrays[f"inv_gain_{r}_{i}"].astype(np.float32) for i in range(4))
            digest = rate_digest(enc_sha, dec_sha, gains, inv, tables)
            if digest.hex() != rate["model_hash"]:
                raise ValueError(f"rate {rate['id']}: its tables and gains do not give the recorded hash")
            lo, hi = zip(*[(int(a), int(b)) for a, b in rate["symbol_range"]], strict=True)
            model.rates.append(RatePoint(
                id=rate["id"], index=r, model_hash=digest, tables=tables, lo=lo, hi=hi, gains=gains,
                inv_gains=inv, nominal_bpp=float(rate["validation"]["bpp"]), model=model.name))
        return model

    # --- choosing a model ------------------------------------------------------------

    def choose(self, modality: str, variant: str = "factorized",
               rate: str | float | None = None) -> tuple[CodecModel, RatePoint]:
        """The model of this modality and variant, and the rate point closest to ``rate``.

        ``rate``: a target in bits per pixel (closest nominal bpp, in log scale),
        a rate-point id (``oct-factorized-q4``, or ``q4`` for the chosen model), or
        None (the model's default rate point: ``default_rate`` in the manifest,
        else the middle one).
        """
        if isinstance(rate, str) and rate in self.rates:
            model, point = self.rates[rate]
            if model.modality != modality:
                raise EdgeretError(f"rate point '{rate}' belongs to the {model.modality} codec, "
                                   f"not {modality}")
            return model, point
        models = [m for m in self.models.values() if m.modality == modality and m.variant == variant]
        if not models:
            have = ", ".join(sorted(self.models)) or "none"
            raise EdgeretError(f"no {variant} codec for {modality} images is installed (installed: {have})")
        model = models[0]
        points = sorted(model.rates, key=lambda p: p.nominal_bpp)
        if rate is None:
            return model, model.default_point()
        short = {p.id.removeprefix(f"{model.name}-"): p for p in points}  # "q4" for this model's q4
        if isinstance(rate, str) and rate in short:
            return model, short[rate]
        try:
            target = float(rate)
        except ValueError:
            raise EdgeretError(f"--rate {rate!r} is neither bits per pixel nor a rate point "
                               f"(known: {', '.join(sorted(self.rates))})") from None
        if not target > 0 or not math.isfinite(target):
            raise EdgeretError(f"--rate must be a positive number of bits per pixel, got {rate}")
        return model, min(points, key=lambda p: abs(math.log(p.nominal_bpp / target)))
