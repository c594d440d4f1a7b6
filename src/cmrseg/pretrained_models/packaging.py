"""Packaging a trained run as a shipped model: the export zip beside the catalog, and its catalog entry. Apart from
:mod:`cmrseg.pretrained_models` because it exports (:mod:`cmrseg.workflows.export`), which using a shipped model
never needs."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmrseg.errors import CmrsegError
from cmrseg.pretrained_models import CATALOG_FILE, ShippedModel, catalog, package_folder


def package(run: str | Path, name: str, version: str, summary: str, training_data: str,
            notes: Mapping[str, Any], folder: Path | None = None, half: bool = True,
            qc_reference: str | None = None) -> ShippedModel:
    """Export ``run`` as shipped model ``name`` into ``folder`` (default: this package) and enter it in the catalog.

    ``notes`` go into the model card (cross-validated numbers, expected input, limits); ``half`` stores the weights
    in float16 (half the size; they are computed in float32 after loading); ``qc_reference`` names the shipped model
    that checks this one's predictions (:attr:`ShippedModel.qc_reference`)."""
    from cmrseg.formats.cache import file_record
    from cmrseg.io.atomic import atomic_path, write_json_atomic
    from cmrseg.workflows.export import export_run

    folder = folder or package_folder()
    file = name.replace("-", "_") + ".zip"
    with tempfile.TemporaryDirectory() as scratch:  # the export's ledger of written files stays out of the package
        data = export_run(run, Path(scratch) / file, fmt="zip", half=half,
                          notes={"name": name, "version": version, **notes}).read_bytes()
    with atomic_path(folder / file) as tmp:
        tmp.write_bytes(data)
    record = file_record(folder / file)
    entry = ShippedModel(name=name, version=version, file=file, sha256=record["sha256"], bytes=record["size"],
                         summary=summary, training_data=training_data, qc_reference=qc_reference)
    try:
        models = catalog(folder)
    except CmrsegError:
        models = {}
    models[name] = entry
    write_json_atomic(folder / CATALOG_FILE, {"models": [vars(m) for m in models.values()]})
    return entry
