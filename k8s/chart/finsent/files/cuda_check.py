"""The GPU pod's init check: can this node's NVIDIA driver run the image's CUDA?

    python3 cuda_check.py 12.6      # the CUDA version of the image's NGC release

Run through the image's entrypoint, as Triton is: on an older data-center driver it puts CUDA's
forward-compatibility libcuda first, which then reports the newer version. Exit 0 when the driver
serves that CUDA version, else 1 with one line saying what to do. Standard library only."""

import ctypes
import sys

FIX = "recreate the GPU node pool with gpu-driver-version=latest (k8s/cluster.sh does)"


def main(argv):
    wanted = argv[1]
    major, minor = (int(part) for part in wanted.split("."))
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        print(f"error: no NVIDIA driver in the container ({exc}): the node has no GPU driver; {FIX}", file=sys.stderr)
        return 1
    version = ctypes.c_int(0)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    status = cuda.cuInit(0)  # 803/804: forward compatibility unavailable on this driver or GPU
    have = f"{version.value // 1000}.{version.value % 1000 // 10}"
    if status != 0 or version.value < 1000 * major + 10 * minor:
        print(
            f"error: the node's NVIDIA driver serves CUDA {have} (cuInit status {status}) and this image needs "
            f"CUDA {wanted} (driver R560 or later, or forward compatibility): {FIX}",
            file=sys.stderr,
        )
        return 1
    print(f"the driver serves CUDA {have}: enough for {wanted}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
