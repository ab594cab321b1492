"""Writing figures: every figure file of the workflow goes through :func:`save_figure`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from opir.core.h5io import atomic_path

# matplotlib stamps PDFs with the time they were written; without it, the same figure gives the same bytes, so a
# rerun (or the same run on a cluster) can be checked byte for byte and a changed figure shows in a diff.
PDF_METADATA = {"CreationDate": None}


def save_figure(fig, paths: Sequence[str | os.PathLike], dpi: int = 150, close: bool = True) -> None:
    """Write ``fig`` to every path (format from the suffix), each atomically; close it unless ``close`` is False."""
    # matplotlib only where a figure is drawn
    import matplotlib.pyplot as plt

    for path in paths:
        suffix = Path(path).suffix.lstrip(".").lower()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=suffix, metadata=PDF_METADATA if suffix == "pdf" else None)
    if close:
        plt.close(fig)
