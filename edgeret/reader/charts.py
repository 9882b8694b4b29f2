"""What the capture view draws: a record's machine answers as labelled bars (inline SVG in the page) and
the facts beside them. Works on the record's JSON as the hub wrote it; unknown keys are left out."""

from __future__ import annotations

from typing import Any

Bars = list[tuple[str, float]]


def bar_groups(findings: dict[str, Any] | None) -> list[tuple[str, Bars]]:
    """[(title, [(label, probability)])] for the hub's findings (fundus quality/DR or OCT quality)."""
    if not isinstance(findings, dict):
        return []
    groups: list[tuple[str, Bars]] = []
    quality = [(k.removeprefix("p_quality_"), v) for k, v in findings.items()
               if k.startswith("p_quality_") and _number(v)]
    if not quality:  # quality-fundus and quality-oct name them p_good, p_usable, p_poor
        quality = [(k[2:], v) for k in ("p_good", "p_usable", "p_poor")
                   if _number(v := findings.get(k))]
    if quality:
        groups.append(("Quality", quality))
    dr = [(f"ICDR {k[5:]}", v) for k, v in sorted(findings.items()) if k.startswith("p_dr_") and _number(v)]
    if dr:
        groups.append(("DR grade", dr))
    risk = [(label, v) for label, key in (("referable", "p_referable"), ("DME", "p_dme"))
            if _number(v := findings.get(key))]
    if risk:
        groups.append(("Referral", risk))
    subs = findings.get("sublabels")
    if isinstance(subs, dict):
        sub_bars = [(str(k).replace("_", " "), v) for k, v in subs.items() if _number(v)]
        if sub_bars:
            groups.append(("Quality sub-scores", sub_bars))
    return groups


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def machine_summary(record: dict[str, Any]) -> dict[str, Any]:
    """Device and hub verdicts, stream size and compression, in a few plain fields."""
    findings = record.get("findings") if isinstance(record.get("findings"), dict) else {}
    device = record.get("device_quality") if isinstance(record.get("device_quality"), dict) else {}
    stream = record.get("stream") if isinstance(record.get("stream"), dict) else {}
    return {
        "device_verdict": device.get("quality", device.get("grade")),
        "device_gradable": device.get("gradable"),
        "hub_task": findings.get("task"),
        "hub_verdict": findings.get("quality", findings.get("grade")),
        # dr-grade says "poor" without a gradable key: the hub's database reads it the same way
        "hub_gradable": findings.get("gradable", findings["quality"] != "poor" if "quality" in findings
                                     else None),
        "hub_result": findings.get("result", findings.get("grade")),
        "dr_grade": findings.get("dr_grade"), "referable": findings.get("referable"),
        "dme": findings.get("dme"), "flags": findings.get("flags") or [],
        "bytes": stream.get("bytes"), "bpp": stream.get("bpp"),
        "ratio": stream.get("compression_ratio"), "codec": stream.get("codec"),
        "size": f"{stream.get('width')} x {stream.get('height')}" if stream.get("width") else None,
        "decode_ms": record.get("decode_ms"),
    }
