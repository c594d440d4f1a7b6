"""Models that ship inside the package: segment a scan with no training.

Each shipped model is an export zip (:mod:`cmrseg.formats.bundle`: weights, config, plan, TTA and clean-up defaults,
model card) beside this file, listed in ``catalog.json`` with its size and sha256. A shipped model is used
wherever a run is: :func:`pretrained_path` gives the zip (checked against the catalog first, so a tampered or
missing file is a one-line error), :func:`load_pretrained` gives a predictor. ``cmrseg predict`` without ``--run``
uses :data:`DEFAULT_MODEL`; ``--model NAME`` picks another; ``cmrseg models --pretrained`` lists them with their card.

How a model gets here: ``scripts/make_pretrained.sh`` trains it and calls
:func:`cmrseg.pretrained_models.packaging.package`.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cmrseg.errors import CmrsegError

if TYPE_CHECKING:
    from cmrseg.inference.predictor import ModelPredictor
    from cmrseg.inference.settings import PredictSettings

CATALOG_FILE = "catalog.json"
DEFAULT_MODEL = "acdc-native-unet"
"""What ``cmrseg predict`` uses without ``--run`` or ``--model``."""
REINSTALL_HINT = "reinstall cmrseg (pip install --force-reinstall cmrseg) to restore it"


@dataclass(frozen=True)
class ShippedModel:
    """One catalog entry: a name users type, the zip beside this module, and what to say about it."""

    name: str
    version: str
    file: str
    sha256: str
    bytes: int
    summary: str
    training_data: str
    qc_reference: str | None = None
    """The shipped model that ``predict`` and ``evaluate`` use as this model's QC reference on volumes
    (:mod:`cmrseg.qc.reference`; ``--no-qc-reference`` skips it)."""

    def describe(self) -> str:
        """The one line ``predict`` prints when it uses this model."""
        return f"using the shipped model {self.name} {self.version} ({self.summary}; trained on {self.training_data})"


def package_folder() -> Path:
    """The folder of the shipped files, in the installed package (or the source tree in development)."""
    return Path(str(resources.files(__name__)))


def catalog(folder: Path | None = None) -> dict[str, ShippedModel]:
    """The shipped models by name, from ``catalog.json``."""
    path = (folder or package_folder()) / CATALOG_FILE
    try:
        entries = json.loads(path.read_text())["models"]
        return {entry["name"]: ShippedModel(**entry) for entry in entries}
    except FileNotFoundError:
        raise CmrsegError(f"{path}: the catalog of shipped models is missing; {REINSTALL_HINT}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise CmrsegError(f"{path}: not a readable catalog of shipped models ({err}); {REINSTALL_HINT}") from None


def find(name: str | None = None) -> ShippedModel:
    """The catalog entry called ``name`` (default :data:`DEFAULT_MODEL`); an unknown name lists the known ones."""
    models = catalog()
    name = name or DEFAULT_MODEL
    if name not in models:
        raise CmrsegError(f"shipped model '{name}' not found; shipped models: {', '.join(sorted(models)) or 'none'}")
    return models[name]


def _checked_file(entry: ShippedModel) -> Path:
    """``entry``'s zip, present and of the catalog's size and sha256 (:func:`cmrseg.formats.cache.file_record`)."""
    from cmrseg.formats.cache import file_record

    path = package_folder() / entry.file
    if not path.is_file():
        raise CmrsegError(f"{path}: the file of shipped model '{entry.name}' is missing; {REINSTALL_HINT}")
    if file_record(path) != {"size": entry.bytes, "sha256": entry.sha256}:
        raise CmrsegError(f"{path}: the file of shipped model '{entry.name}' does not match its catalog sha256 "
                          f"(changed or damaged); {REINSTALL_HINT}")
    return path


def pretrained_path(name: str | None = None) -> Path:
    """The checked export zip of shipped model ``name``: present, of the catalog's size and sha256."""
    return _checked_file(find(name))


def model_source(run: str | Path | None, model: str | None) -> tuple[str | Path, str | None]:
    """What a verb predicts with: the run given, or else the shipped model ``model`` (default
    :data:`DEFAULT_MODEL`), with the line that says which shipped model it is (None for a run)."""
    if run is not None and model is not None:
        raise CmrsegError(f"a run ({run}) and a shipped model ({model}) were both given; choose one")
    if run is not None:
        return run, None
    entry = find(model)
    return _checked_file(entry), entry.describe()


def load_pretrained(name: str | None = None, settings: PredictSettings | None = None) -> ModelPredictor:
    """The shipped model ``name`` (default :data:`DEFAULT_MODEL`) as a predictor with its own TTA and clean-up
    defaults (``settings`` override them, as for any run). Use it like a run::

        predictor = cmrseg.load_pretrained()
        probabilities = predictor.predict_proba([slice_uint8])
    """
    from cmrseg.inference.loading import load_run

    predictor, _ = load_run(pretrained_path(name), settings)
    return predictor


def model_card(name: str | None = None) -> str:
    """The Markdown model card inside shipped model ``name``'s zip."""
    from cmrseg.formats.card import CARD_MARKDOWN

    path = pretrained_path(name)
    with zipfile.ZipFile(path) as archive:
        return archive.read(CARD_MARKDOWN).decode()


def format_catalog(cards: bool = True) -> str:
    """``cmrseg models --pretrained``: each shipped model's line and, with ``cards``, its model card."""
    blocks = []
    for entry in catalog().values():
        default = " (default)" if entry.name == DEFAULT_MODEL else ""
        head = f"{entry.name} {entry.version}{default}: {entry.summary}; trained on {entry.training_data}; " \
               f"{entry.bytes / 1e6:.1f} MB"
        blocks.append(head + ("\n\n" + model_card(entry.name) if cards else ""))
    return "\n\n".join(blocks) if blocks else "no shipped models"
