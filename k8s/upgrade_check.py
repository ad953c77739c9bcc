"""What moving the serving image to another NGC tritonserver release would break, checked here.

    python -m k8s.upgrade_check --tag 24.10 --export build/export/finbert --export build/export/distilbert

For release TAG (one k8s/ngc.py knows: its ONNX Runtime and CUDA versions come from NVIDIA's release
notes; any other is refused):
  1. every shipped variant (fp32, int8, fp16) of each export loads, and the int8/fp16 accuracy guard
     runs, under that release's ONNX Runtime (export.optimize's side install under build/ort, on a copy
     of the export: the shipped files are not touched);
  2. every field and enum value of the container repository's config.pbtxt files (both profiles)
     exists in that release's model_config.proto (from ../shared/vendor/triton-rTAG, else unverified).
What stays unverified (printed): the server itself (its backends, CUDA and the GPU types), which only
the image on a GPU node shows. Exit 0 when every check that ran passed, 1 if one failed, 2 for a bad tag.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from k8s import ngc

VENDOR = Path(__file__).resolve().parents[2] / "shared" / "vendor"
SCALARS = {"bool", "string", "bytes", "float", "double"} | {
    f"{s}{n}" for s in ("int", "uint", "sint", "fixed", "sfixed") for n in (32, 64)
}


def parse_proto(text: str) -> tuple[dict[str, dict[str, str]], dict[str, set[str]]]:
    """({message: {field: type}}, {enum: values}) of a .proto file, names fully qualified by nesting."""
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    tokens = re.findall(r"map\s*<[^>]*>|[A-Za-z_][\w.]*|\d+|[{};=<>\[\]]|\"[^\"]*\"", text)
    messages: dict[str, dict[str, str]] = {}
    enums: dict[str, set[str]] = {}
    scope: list[tuple[str, str]] = []  # (kind, qualified name)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("message", "enum", "oneof") and i + 2 < len(tokens) and tokens[i + 2] == "{":
            name = tokens[i + 1]
            if tok == "oneof":  # its fields belong to the enclosing message
                scope.append(("oneof", scope[-1][1]))
            else:
                qualified = ".".join([s[1] for s in scope[-1:]] + [name]) if scope else name
                (messages if tok == "message" else enums)[qualified] = {} if tok == "message" else set()
                scope.append((tok, qualified))
            i += 3
        elif tok == "}":
            scope.pop()
            i += 1
        elif scope and scope[-1][0] == "enum" and i + 1 < len(tokens) and tokens[i + 1] == "=":
            enums[scope[-1][1]].add(tok)
            i += 2
        elif (
            scope and scope[-1][0] in ("message", "oneof") and tok not in ("reserved", "option", "repeated", "optional")
        ):
            if i + 2 < len(tokens) and tokens[i + 2] == "=":
                mapped = re.fullmatch(r"map\s*<\s*\w+\s*,\s*([\w.]+)\s*>", tok)  # an entry is key + value
                messages[scope[-1][1]][tokens[i + 1]] = f"{scope[-1][1]}|{mapped[1] if mapped else tok}" + (
                    "|map" if mapped else ""
                )
            while tokens[i] != ";":
                i += 1
            i += 1
        else:
            i += 1
    for fields in messages.values():  # resolve each type name from the innermost scope outwards
        for field, typed in fields.items():
            where, name, *mapped = typed.split("|")
            parts = where.split(".")
            candidates = [".".join(parts[:n] + [name]) for n in range(len(parts), -1, -1)]
            fields[field] = "map:" * bool(mapped) + next((c for c in candidates if c in messages or c in enums), name)
    return messages, enums


def config_problems(config: str, messages: dict, enums: dict, root: str = "ModelConfig") -> list[str]:
    """Fields or enum values of a text-format config that the proto lacks ("path: what")."""
    tokens = re.findall(r'"(?:\\.|[^"\\])*"|[A-Za-z_][\w.]*|-?[\d.]+(?:[eE][-+]?\d+)?|[{}\[\]:,]', config)
    problems: list[str] = []
    pos = 0

    def value(typ: str, path: str) -> None:
        nonlocal pos
        tok = tokens[pos]
        if tok == "[":
            pos += 1
            while tokens[pos] != "]":
                if tokens[pos] == ",":
                    pos += 1
                    continue
                value(typ, path)
            pos += 1
        elif tok == "{":
            pos += 1
            message(typ, path)
            pos += 1  # "}"
        else:
            if typ in enums and tok not in enums[typ]:
                problems.append(f"{path}: {tok} is not a value of {typ}")
            pos += 1

    def message(typ: str, path: str) -> None:
        nonlocal pos
        fields = messages.get(typ, {})
        while pos < len(tokens) and tokens[pos] != "}":
            name = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            where = f"{path}.{name}" if path else name
            if typ.startswith("map:"):  # a map entry: key, and value of the map's value type
                value(typ[4:] if name == "value" else "", where)
                continue
            if name not in fields:
                problems.append(f"{where}: no such field in {typ}")
            value(fields.get(name, ""), where)

    message(root, "")
    return problems


def release_proto(tag: str) -> str | None:
    """model_config.proto of branch r<tag> from the vendored common sources, if they are here."""
    tarball = VENDOR / f"triton-r{tag}" / f"common-r{tag}.tar.gz"
    if not tarball.exists():
        return None
    with tarfile.open(tarball) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("protobuf/model_config.proto"))
        return tar.extractfile(member).read().decode()


def check_configs(tag: str, repositories: list[Path], log=print) -> bool | None:
    """True/False: every config field exists in the release's proto; None: no proto to check against."""
    proto = release_proto(tag)
    if proto is None:
        log(f"unverified: no model_config.proto for r{tag} here (../shared/vendor/triton-r{tag}/common-r{tag}.tar.gz)")
        return None
    messages, enums = parse_proto(proto)
    configs = sorted(p for repo in repositories for p in repo.glob("*/config.pbtxt"))
    problems = [
        f"{p.parent.name}: {problem}" for p in configs for problem in config_problems(p.read_text(), messages, enums)
    ]
    for problem in problems:
        log(f"FAILED: config field not in r{tag}'s model_config.proto: {problem}")
    if not problems:
        log(
            f"ok: every field and enum value of {len(configs)} config.pbtxt files exists in r{tag}'s model_config.proto"
        )
    return not problems


def check(tag: str, exports: list[Path], guard_sentences: int, min_agreement: float | None, log=print) -> int:
    from export.optimize import MIN_AGREEMENT, GuardError, build_variants, under_runtime
    from export.runtime import variant_filename
    from model_repository.assemble import TargetOptions, assemble

    release = ngc.RELEASES[tag]
    log(f"NGC tritonserver {tag}: Triton {release.triton}, CUDA {release.cuda}, ONNX Runtime {release.onnxruntime}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="finsent-upgrade-") as tmp:
        copies = {}
        for export in exports:
            copy = shutil.copytree(export, Path(tmp) / export.name, ignore=shutil.ignore_patterns("variants.json"))
            copies[export.name] = copy
            shipped = [v for v in ("fp32", "int8", "fp16") if (export / variant_filename(v)).exists()]
            try:
                loaded = under_runtime(release.onnxruntime, {"export": str(export), "load": shipped}, log)
                log(f"ok: {export.name}: {', '.join(shipped)} load in onnxruntime {loaded['runtime']}")
                build_variants(
                    copy,
                    ["int8", "fp16"],
                    guard_limit=guard_sentences,
                    min_agreement=MIN_AGREEMENT if min_agreement is None else min_agreement,
                    runtime=release.onnxruntime,
                    log=lambda *_: None,
                )
                log(f"ok: {export.name}: the int8 and fp16 guard passes under onnxruntime {release.onnxruntime}")
            except GuardError as exc:
                log(f"FAILED: {export.name}: {str(exc).splitlines()[-1]}")
                ok = False
        repositories = []
        if ok:
            for device in ("gpu", "cpu"):
                repo = Path(tmp) / f"repository-{device}"
                assemble(copies, repo, TargetOptions("container", device, cores=2), link=False)
                repositories.append(repo)
            configs = check_configs(tag, repositories, log)
            ok = ok and configs is not False
    if tag != "24.10":
        log(
            f"unverified for {tag}: the server itself (Triton {release.triton}'s backends and their "
            f"ONNX Runtime build, CUDA {release.cuda} on the node drivers, the GPU types in "
            "k8s/chart/finsent/files/accelerators.yaml): build the image and run it on a GPU node"
        )
    else:
        log("unverified here: the image on a GPU node (the GPU types, CUDA, the GPU classifier's fp16)")
    log(f"{'ok' if ok else 'FAILED'}: NGC {tag} (pinned: {ngc.pinned()})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", required=True, help="an NGC tritonserver release, e.g. 24.10")
    parser.add_argument(
        "--export", type=Path, action="append", default=[], help="an export directory (default: build/export/*)"
    )
    parser.add_argument("--guard-sentences", type=int, default=None, help="guard sample size (default: all)")
    parser.add_argument("--min-agreement", type=float, default=None, help="the guard's (0: report only)")
    args = parser.parse_args(argv)
    if args.tag not in ngc.RELEASES:
        print(
            f"error: NGC release {args.tag} is unknown to k8s/ngc.py (known: {', '.join(ngc.RELEASES)}): add its "
            "Triton, CUDA and ONNX Runtime versions there from NVIDIA's release notes first",
            file=sys.stderr,
        )
        return 2
    exports = args.export or sorted(p.parent for p in Path("build/export").glob("*/model.onnx"))
    if not exports:
        print("error: no exports (python -m export.onnx, or --export DIR)", file=sys.stderr)
        return 2
    return check(args.tag, exports, args.guard_sentences, args.min_agreement)


if __name__ == "__main__":
    sys.exit(main())
