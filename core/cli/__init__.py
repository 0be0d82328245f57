"""Command-line commands, one module per area (registered in core.__main__).

``COMMANDS`` names each command's module and one-line summary, so ``python -m core --help``
lists every command without importing any of the modules (and their pandas, SQLAlchemy or
scipy), and running a command imports only the module that defines it.
"""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "import-stimuli": ("core.cli.stimuli", "import images, folders and ZIP archives into a study"),
    "import-metadata": ("core.cli.stimuli", "attach a CSV/TSV/XLSX of stimulus attributes to a study"),
    "import-ratings": ("core.cli.ratings", "import a rating file (CSV/TSV/XLSX) into a study as one batch"),
    "rating-batches": ("core.cli.ratings", "list a study's rating batches"),
    "demo": ("core.cli.ratings", "load the small synthetic demo study"),
    "report": ("core.cli.report", "write every agreement table (CSV, XLSX, LaTeX) and figure into a folder"),
    "models": ("core.cli.models", "list models with their checkpoint state"),
    "download": ("core.cli.models", "download and verify a model's checkpoints"),
    "register-checkpoint": ("core.cli.models", "register a local checkpoint file (e.g. for dead links)"),
    "register-card": ("core.cli.models", "register a model from a model card plus an ONNX/TorchScript file"),
    "install-mtcnn": (
        "core.cli.models",
        "get the MTCNN face-detector weights (verified download, or from a facenet-pytorch wheel)",
    ),
    "install-fan68": (
        "core.cli.models",
        "get the optional fan68 detector's weights (S3FD + FAN, for EmoNet's evaluation crop)",
    ),
    "detect-faces": ("core.cli.models", "run the face stage over a study"),
    "run": ("core.cli.models", "run models over a study (cached, resumable)"),
    "check-fp16": ("core.cli.models", "compare fp16 with fp32 outputs (CUDA)"),
    "import-predictions": ("core.cli.models", "import another tool's predictions (CSV/TSV/XLSX) as a model"),
    "worker": ("core.cli.jobs", "run queued jobs (model runs, face stage, fp16 checks, report exports)"),
    "jobs": ("core.cli.jobs", "list a study's jobs with their progress"),
    "cancel": ("core.cli.jobs", "cancel a queued or running job"),
    "export-bundle": (
        "core.cli.bundle", "write one study (stimuli, ratings, predictions, models) as a bundle ZIP"
    ),
    "import-bundle": (
        "core.cli.bundle", "add a study from a bundle ZIP (a name clash gets a dated new name)"
    ),
    "hash-password": ("core.cli.access", "print the scrypt hash of a login password for secrets.toml"),
    "study-settings": ("core.cli.access", "set whether reviewers may see a study's original face images"),
}


def summary(command: str) -> str:
    """The one-line help of a command, as ``python -m core --help`` lists it."""
    return COMMANDS[command][1]
