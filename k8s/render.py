"""Render the finsent Helm chart offline with Helm's own engine (PyPI helm-python-sdk, no binary).

    python -m k8s.render                    # regenerate the Triton args template and k8s/manifests/
    python -m k8s.render --check            # exit 1 if either differs from a fresh render
    python -m k8s.render --profile cpu --profile gateway   # print a render, like `helm template`

The chart's Triton arguments are generated from server.triton.triton_args() into
templates/_triton_args.tpl, so the chart and the local launcher run Triton the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from server.triton import Ports, triton_args

HERE = Path(__file__).resolve().parent
CHART = HERE / "chart" / "finsent"
PROFILES = HERE / "values"
MANIFESTS = HERE / "manifests"
ARGS_TEMPLATE = CHART / "templates" / "_triton_args.tpl"
RELEASE, NAMESPACE = "finsent", "finsent"
# Kubernetes expands $(VAR) in args from the container's env: the pod's admin key.
ADMIN_KEY = "$(TRITON_ADMIN_KEY)"
# Explicit model control (behind the admin key): the liveness probe reloads a model whose Python
# stub died (server/health.py), as the local launcher's watchdog does.
CONTROL_MODE = "explicit"
_REPOSITORY = "@MODEL_REPOSITORY@"
GENERATED = "Rendered from k8s/chart/finsent with default values by `make manifests`: do not edit."


def args_template() -> str:
    """The chart's tritonserver args and ports, as Helm defines, from triton_args()."""
    lines = [
        "{{/* Generated from server.triton.triton_args() by `make manifests`: do not edit. */}}",
        '{{- define "finsent.tritonArgs" -}}',
    ]
    for arg in triton_args(_REPOSITORY, Ports(), control_mode=CONTROL_MODE, admin_key=ADMIN_KEY):
        if _REPOSITORY in arg:
            before, after = arg.split(_REPOSITORY)
            lines.append(
                f'- {{{{ printf "%s%s%s" {json.dumps(before)} (include "finsent.modelRepository" .) '
                f"{json.dumps(after)} | quote }}}}"
            )
        else:
            lines.append(f"- {json.dumps(arg)}")
    lines.append("{{- end }}")
    for kind, port in Ports().items():
        lines.append(f'{{{{- define "finsent.port.{kind}" }}}}{port}{{{{- end }}}}')
    return "\n".join(lines) + "\n"


def merge(base: dict, override: dict) -> dict:
    """Deep-merge values as Helm does for several -f files (later wins, maps merge)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def profile_values(profiles: list[str | dict] | tuple[str | dict, ...] = ()) -> dict:
    """The profiles' values merged in order: a name (k8s/values/NAME.yaml) or a dict (as --set gives)."""
    values: dict = {}
    for name in profiles:
        if isinstance(name, dict):
            values = merge(values, name)
            continue
        path = PROFILES / f"{name}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in PROFILES.glob("*.yaml"))
            raise SystemExit(f"error: no values profile {name!r} (known: {', '.join(known)})")
        values = merge(values, yaml.safe_load(path.read_text()) or {})
    return values


def render(profiles: list[str | dict] | tuple[str | dict, ...] = (), values: dict | None = None) -> dict[str, str]:
    """{template path: rendered text} for the chart with the profiles' and `values` overrides."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        return chart.render(
            merge(profile_values(profiles), values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True
        )


def manifests(rendered: dict[str, str]) -> dict[str, str]:
    """{file name: YAML} for every template that rendered to objects (NOTES.txt left out)."""
    out = {}
    for path, text in sorted(rendered.items()):
        name = Path(path).name
        if name.endswith((".yaml", ".yml")) and any(yaml.safe_load_all(text)):
            out[name] = f"# {GENERATED}\n{text.strip()}\n"
    return out


def objects(rendered: dict[str, str]) -> list[dict]:
    return [obj for text in manifests(rendered).values() for obj in yaml.safe_load_all(text) if obj]


def expected_files() -> dict[Path, str]:
    """Every generated file and its fresh content."""
    files = {ARGS_TEMPLATE: args_template()}
    files.update({MANIFESTS / name: text for name, text in manifests(render()).items()})
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    extra = [p for p in MANIFESTS.glob("*.yaml") if p not in files]
    return [p for p, text in files.items() if not p.exists() or p.read_text() != text] + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    parser.add_argument("--profile", action="append", default=[], help=f"print a render with {PROFILES}/NAME.yaml")
    args = parser.parse_args(argv)
    if args.profile:
        import helm_python as helm

        try:
            rendered = render(args.profile)
        except helm.HelmRenderError as exc:  # the chart's own `fail` says what to set
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("---\n".join(manifests(rendered).values()))
        return 0
    if args.check:
        # The args template feeds the render: compare it first, on its own.
        if not ARGS_TEMPLATE.exists() or ARGS_TEMPLATE.read_text() != args_template():
            print(f"{ARGS_TEMPLATE} is out of date: run `make manifests`", file=sys.stderr)
            return 1
        bad = stale(expected_files())
        for path in bad:
            print(f"{path} is out of date: run `make manifests`", file=sys.stderr)
        return 1 if bad else 0
    ARGS_TEMPLATE.write_text(args_template())
    MANIFESTS.mkdir(exist_ok=True)
    files = expected_files()
    for path in stale(files):
        if path in files:
            path.write_text(files[path])
        else:
            path.unlink()
    print(
        f"wrote {ARGS_TEMPLATE.relative_to(HERE.parent)} and {len(files) - 1} manifests in "
        f"{MANIFESTS.relative_to(HERE.parent)}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
