"""The GPU pod's init check: can this node's NVIDIA driver run the image's CUDA?

    python3 cuda_check.py 12.6 [LIBCUDA]   # the CUDA version of the image's NGC release

Run through the image's entrypoint, as Triton is: on an older data-center driver it puts CUDA's
forward-compatibility libcuda first, which then reports the newer version. Exit 0 when the driver
serves that CUDA version, else 1 with one line saying what to do. LIBCUDA (default libcuda.so.1)
is the driver library to ask. Standard library only."""

import ctypes
import sys

FIX = "recreate the GPU node pool with gpu-driver-version=latest (k8s/cluster.sh does)"


def verdict(wanted: str, version: int, status: int) -> tuple[int, str]:
    """(exit code, line) for a driver whose cuDriverGetVersion() is `version` (1000 * major + 10 *
    minor) and whose cuInit(0) returned `status`, for an image that needs CUDA `wanted`."""
    major, minor = (int(part) for part in wanted.split("."))
    have = f"{version // 1000}.{version % 1000 // 10}"
    if status != 0 or version < 1000 * major + 10 * minor:
        return 1, (
            f"error: the node's NVIDIA driver serves CUDA {have} (cuInit status {status}) and this image needs "
            f"CUDA {wanted} (driver R560 or later, or forward compatibility): {FIX}"
        )
    return 0, f"the driver serves CUDA {have}: enough for {wanted}"


def main(argv):
    wanted, library = argv[1], argv[2] if len(argv) > 2 else "libcuda.so.1"
    try:
        cuda = ctypes.CDLL(library)
    except OSError as exc:
        print(f"error: no NVIDIA driver in the container ({exc}): the node has no GPU driver; {FIX}", file=sys.stderr)
        return 1
    version = ctypes.c_int(0)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    status = cuda.cuInit(0)  # 803/804: forward compatibility unavailable on this driver or GPU
    code, line = verdict(wanted, version.value, status)
    print(line, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
