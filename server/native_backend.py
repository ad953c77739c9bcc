"""Triton's native onnxruntime backend, built once here: what the NGC image runs the classifier with.

    python -m server.native_backend            # build (cached) and print the backend's folder

NGC `tritonserver:24.10-py3` is Triton 2.51 with the onnxruntime backend of branch r24.10 on
ONNX Runtime 1.19.2. The pytriton wheel ships the same server (2.51) but only the Python
backend, so the container repository's classifier (`backend: "onnxruntime"`) needs this build
to run here. It takes about a minute on 2 cores and is cached under build/native/.

Inputs, none from GitHub when the shared vendor folder is there:
- sources of onnxruntime_backend, backend, core, common (r24.10): FINSENT_TRITON_SRC or
  ../shared/vendor/triton-r24.10 next to the checkout (tarballs), else GitHub (or a mirror of it
  in FINSENT_TRITON_GITHUB);
- the ONNX Runtime 1.19.2 C API header: the same folder's ../onnxruntime-1.19.2/include, else
  the ORT release tarball from GitHub;
- libonnxruntime.so.1.19.2: the npm package onnxruntime-node@1.19.2 (the npm registry), else
  the ORT release tarball;
- Debian cmake, g++, rapidjson-dev and googletest (make setup installs them).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

from export.runtime import CONTAINER_ORT

TRITON_BRANCH = "r24.10"
ORT_VERSION = CONTAINER_ORT
REPOS = ("onnxruntime_backend", "backend", "core", "common")
REPO_ROOT = Path(__file__).resolve().parent.parent
VENDOR = REPO_ROOT.parent / "shared" / "vendor"
# FINSENT_TRITON_GITHUB: a mirror of github.com/triton-inference-server, e.g. behind a proxy.
GITHUB_SOURCE = (
    os.environ.get("FINSENT_TRITON_GITHUB", "https://github.com/triton-inference-server")
    + "/{repo}/archive/refs/heads/"
    + TRITON_BRANCH
    + ".tar.gz"
)
ORT_RELEASE = (
    f"https://github.com/microsoft/onnxruntime/releases/download/v{ORT_VERSION}/onnxruntime-linux-x64-{ORT_VERSION}.tgz"
)
NPM_PACKAGE = f"onnxruntime-node@{ORT_VERSION}"
NPM_LIBRARY = f"package/bin/napi-v3/linux/x64/libonnxruntime.so.{ORT_VERSION}"
LIBRARY = "libtriton_onnxruntime.so"
DEFAULT_WORK = REPO_ROOT / "build" / "native"  # this checkout's build: shared by make serve, tests, benchmarks
DEBIAN_HINT = "install the build's Debian packages with `make setup` (cmake g++ rapidjson-dev googletest)"


class BuildError(RuntimeError):
    """The backend could not be built; the message says what to do."""


def source_folder() -> Path:
    return Path(os.environ.get("FINSENT_TRITON_SRC") or VENDOR / f"triton-{TRITON_BRANCH}")


def _download(url: str, dest: Path, what: str) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=20) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise BuildError(
            f"{what} is not here and could not be downloaded ({url}: {exc}). Offline, put the "
            f"tarballs {', '.join(f'{r}-{TRITON_BRANCH}.tar.gz' for r in REPOS)} in a folder and set "
            f"FINSENT_TRITON_SRC to it (../shared/vendor/triton-{TRITON_BRANCH} is the default)"
        ) from None
    return dest


def _unpack(tarball: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
        top = os.path.commonpath([m.name for m in members])
        for member in members:  # strip the archive's top folder
            member.name = os.path.relpath(member.name, top)
        tar.extractall(dest, [m for m in members if m.name != "."], filter="data")
    return dest


def sources(work: Path) -> dict[str, Path]:
    """The four r24.10 source trees, unpacked under work/src."""
    folder = source_folder()
    out = {}
    for repo in REPOS:
        tarball = folder / f"{repo}-{TRITON_BRANCH}.tar.gz"
        if not tarball.exists():
            (work / "downloads").mkdir(parents=True, exist_ok=True)
            tarball = _download(
                GITHUB_SOURCE.format(repo=repo),
                work / "downloads" / tarball.name,
                f"{tarball} (Triton's {repo} sources)",
            )
        out[repo] = _unpack(tarball, work / "src" / repo)
    return out


def _ort_release(work: Path) -> Path:
    tarball = work / "downloads" / Path(ORT_RELEASE).name
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        _download(ORT_RELEASE, tarball, f"ONNX Runtime {ORT_VERSION}")
    return _unpack(tarball, work / "src" / "onnxruntime")


def ort_header(work: Path) -> Path:
    vendored = source_folder().parent / f"onnxruntime-{ORT_VERSION}" / "include"
    if (vendored / "onnxruntime_c_api.h").exists():
        return vendored
    return _ort_release(work) / "include"


def ort_library(work: Path) -> Path:
    """A folder holding libonnxruntime.so{,.1,.1.19.2}: from npm, else the ORT release."""
    lib = work / "ort-lib"
    real = lib / f"libonnxruntime.so.{ORT_VERSION}"
    if not real.exists():
        lib.mkdir(parents=True, exist_ok=True)
        source = _from_npm(work) or (_ort_release(work) / "lib" / real.name)
        shutil.copy2(source, real)
    for alias in ("libonnxruntime.so.1", "libonnxruntime.so"):
        if not (lib / alias).is_symlink():
            (lib / alias).symlink_to(real.name)
    return lib


def _from_npm(work: Path) -> Path | None:
    if shutil.which("npm") is None:
        return None
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=downloads, capture_output=True, text=True)
    tarball = downloads / f"onnxruntime-node-{ORT_VERSION}.tgz"
    if done.returncode != 0 or not tarball.exists():
        return None
    with tarfile.open(tarball) as tar:
        tar.extract(NPM_LIBRARY, downloads / "npm", filter="data")
    tarball.unlink()  # 70 MB, of which the build keeps the library
    return downloads / "npm" / NPM_LIBRARY


def _check_tools() -> None:
    missing = [tool for tool in ("cmake", "g++") if shutil.which(tool) is None]
    missing += [
        f"{pkg} ({path})"
        for pkg, path in (("rapidjson-dev", "/usr/include/rapidjson"), ("googletest", "/usr/src/googletest"))
        if not Path(path).exists()
    ]
    if missing:
        raise BuildError(f"missing for the build: {', '.join(missing)}; {DEBIAN_HINT}")


def _key() -> str:
    """What the cached build was made from: rebuild when the sources or this recipe change."""
    digest = hashlib.sha256(Path(__file__).read_bytes() + ORT_VERSION.encode())
    for repo in REPOS:
        tarball = source_folder() / f"{repo}-{TRITON_BRANCH}.tar.gz"
        digest.update(tarball.read_bytes() if tarball.exists() else repo.encode())
    return digest.hexdigest()[:16]


def build(work: Path | None = None, log=print) -> Path:
    """Build (once) and return the folder with libtriton_onnxruntime.so and libonnxruntime.so.1*."""
    work = Path(work or DEFAULT_WORK).resolve()
    out = work / "onnxruntime"
    stamp = out / "BUILT_FROM"
    key = _key()
    if (out / LIBRARY).exists() and stamp.exists() and stamp.read_text().strip() == key:
        return out
    _check_tools()
    log(
        f"building Triton's onnxruntime backend ({TRITON_BRANCH}, ONNX Runtime {ORT_VERSION}) in {work}: "
        f"about a minute, once ..."
    )
    src = sources(work)
    header, lib = ort_header(work), ort_library(work)
    cmake_build = work / "cmake"
    shutil.rmtree(cmake_build, ignore_errors=True)
    cache = {
        "CMAKE_BUILD_TYPE": "Release",
        "TRITON_ENABLE_GPU": "OFF",
        "TRITON_ENABLE_ONNXRUNTIME_TENSORRT": "OFF",
        "TRITON_ENABLE_ONNXRUNTIME_OPENVINO": "OFF",
        "TRITON_ONNXRUNTIME_INCLUDE_PATHS": header,
        "TRITON_ONNXRUNTIME_LIB_PATHS": lib,
        "FETCHCONTENT_SOURCE_DIR_REPO-COMMON": src["common"],
        "FETCHCONTENT_SOURCE_DIR_REPO-CORE": src["core"],
        "FETCHCONTENT_SOURCE_DIR_REPO-BACKEND": src["backend"],
        # common's tests declare googletest by URL; Debian's source tree satisfies it offline
        "FETCHCONTENT_SOURCE_DIR_GOOGLETEST": "/usr/src/googletest",
        "FETCHCONTENT_FULLY_DISCONNECTED": "ON",
    }
    log_path = work / "build.log"
    with open(log_path, "w") as out_log:
        for command in (
            [
                "cmake",
                "-S",
                str(src["onnxruntime_backend"]),
                "-B",
                str(cmake_build),
                *(f"-D{k}={v}" for k, v in cache.items()),
            ],
            [
                "cmake",
                "--build",
                str(cmake_build),
                "--target",
                "triton-onnxruntime-backend",
                f"-j{os.cpu_count() or 1}",
            ],
        ):
            if subprocess.run(command, stdout=out_log, stderr=subprocess.STDOUT).returncode != 0:
                tail = "\n  ".join(log_path.read_text(errors="replace").splitlines()[-6:])
                raise BuildError(
                    f"the onnxruntime backend build failed:\n  {tail}\n(full log: {log_path}; {DEBIAN_HINT})"
                )
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copy2(cmake_build / LIBRARY, out / LIBRARY)
    for item in lib.iterdir():
        shutil.copy2(item, out / item.name, follow_symlinks=False)
    stamp.write_text(key + "\n")
    shutil.rmtree(cmake_build)  # 100+ MB of objects; the library is all we need
    shutil.rmtree(work / "src")
    log(f"built {out / LIBRARY}")
    return out


def install(backends: Path, built: Path, server_library: Path) -> Path:
    """backends/onnxruntime/: links to the build, plus libtritonserver.so, which the backend needs
    (NEEDED libtritonserver.so, RUNPATH $ORIGIN) and the wheel ships under another name."""
    folder = Path(backends) / "onnxruntime"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {item.name: item for item in built.iterdir() if item.name.endswith((".so", ".so.1", f".so.{ORT_VERSION}"))}
    wanted["libtritonserver.so"] = server_library
    for name, target in wanted.items():
        link = folder / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve())
    return folder


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=Path("build"), help="the build folder (default build)")
    args = parser.parse_args(argv)
    try:
        print(build(args.build / "native", log=lambda line: print(line, file=sys.stderr)))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
