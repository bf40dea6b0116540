"""The paper's harvest split: the 926 train tasks the authors grew JOSH trees on (`--split paper_train`).

Their ids are `josh_train/training_fnames.json` in the verified josh-train 0.1.4 wheel (the same tasks as
the 926 trees the wheel releases), read at run time; nothing of the list is copied into josh.
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

from josh.envs.toolwoz.tasks import strip_suffix
from josh.errors import DataError

PAPER_TRAIN = "paper_train"
TRAINING_FNAMES_MEMBER = "josh_train/training_fnames.json"


@functools.cache
def paper_train_ids() -> tuple[str, ...]:
    """The paper's harvest tasks, sorted, from the cached verified wheel (downloaded first if missing)."""
    from josh.envs.toolwoz.fetch import download_wheel

    return read_paper_train_ids(download_wheel())


def read_paper_train_ids(wheel: Path) -> tuple[str, ...]:
    """The task ids of `training_fnames.json` in the wheel at `wheel` (`MUL0001.json` -> `MUL0001`), sorted;
    `DataError` when the wheel does not hold a list of file names there."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = json.loads(zf.read(TRAINING_FNAMES_MEMBER).decode("utf-8"))
    except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"cannot read the paper's harvest tasks ({TRAINING_FNAMES_MEMBER}) from {wheel}: {exc}; "
            "`josh data fetch --force` downloads the wheel again"
        ) from exc
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{TRAINING_FNAMES_MEMBER} in {wheel} is not a list of task file names")
    return tuple(sorted({strip_suffix(n) for n in names}))
