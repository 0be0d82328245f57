"""Named variants: one network, several official behaviours around it.

Where a model's official code runs the same weights in more than one way (two engines that
resize differently, a demo and an evaluation script), each behaviour is its own spec: the base
spec is the default and every other behaviour is ``<base id>@<tag>``. A variant shares the base's
checkpoint files (same folder, same hashes) and has its own preprocessing version, so it has its
own cache key and its own row in every table. ``variant_note`` names the official file:line the
behaviour follows and why the default is the default.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.models.spec import ModelSpec, Preprocessing

SEPARATOR = "@"


def variant_id(base_id: str, tag: str) -> str:
    return f"{base_id}{SEPARATOR}{tag}"


def make_variant(
    base: ModelSpec,
    tag: str,
    *,
    note: str,
    preprocessing: Preprocessing | None = None,
    options: dict[str, Any] | None = None,
    **changes: Any,
) -> ModelSpec:
    """``base`` run the way ``tag`` names; ``preprocessing`` must carry a new version string."""
    prep = preprocessing or base.preprocessing
    if prep.version == base.preprocessing.version:
        raise ValueError(f"variant {tag!r} of {base.id} needs its own preprocessing version")
    shared_folder = {"checkpoint_dir": base.options.get("checkpoint_dir", base.id)}
    return replace(
        base,
        id=variant_id(base.id, tag),
        name=f"{base.name} [{tag}]",
        preprocessing=prep,
        options={**base.options, **shared_folder, **(options or {})},
        variant_of=base.id,
        variant_note=note,
        **changes,
    )


def variant_role(spec: ModelSpec, all_ids: set[str] | frozenset[str]) -> str:
    """"default" for a base that has variants, "variant of <base>" for a variant, else ""."""
    if spec.variant_of:
        return f"variant of {spec.variant_of}"
    if any(other.startswith(spec.id + SEPARATOR) for other in all_ids):
        return "default"
    return ""


ALIGNED_CROPS_SUFFIX = "+aligned-crops"


def declare_aligned_crops(spec: ModelSpec) -> ModelSpec:
    """``spec`` taking pre-cropped stimuli as faces already aligned the way its authors align
    them (the run option ``aligned_crops``), under its own preprocessing version.

    Only models whose crop is a landmark alignment (the Multitask-CNN family) change; the
    official ``run_pretrained_model.py`` reads such crops directly. Other specs come back as
    they are, so the option can be given to a run of several models.
    """
    if spec.preprocessing.crop != "aligned_5pt" or spec.options.get("aligned_crops"):
        return spec
    prep = spec.preprocessing
    return replace(
        spec,
        preprocessing=replace(prep, version=prep.version + ALIGNED_CROPS_SUFFIX),
        options={**spec.options, "aligned_crops": True},
    )
