"""Write the requirements of the wheels in a folder as two pip requirements files beside them.

    python wheel-requirements.py /wheels    ->  /wheels/torch.txt  (torch, torchvision: installed from TORCH_INDEX)
                                                /wheels/deps.txt   (everything else)

The wheels' own distributions (sweep needs hydra-optuna-studies) are left out, and so are optional extras unless one
of the wheels asks for them (sweep asks for hydra-optuna-studies[mlflow,postgres]). docker/Dockerfile
installs each file in a layer of its own, so a code change rebuilds only the layer with the two small wheels, and
torch's pins come from pyproject.toml alone. Standard library only: it runs in the build stage's bare venv.
"""

from __future__ import annotations

import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

TORCH = {"torch", "torchvision"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def name_of(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise SystemExit(f"wheel-requirements: cannot read the requirement {requirement!r}")
    return normalize(match.group(1))


def metadata(wheel: Path) -> tuple[str, list[str]]:
    """The wheel's distribution name and its Requires-Dist entries."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode("utf-8"))
    return normalize(message["Name"]), message.get_all("Requires-Dist") or []


EXTRA = re.compile(r"""^(?:\((?P<rest>.*)\)\s+and\s+)?extra\s*==\s*["'](?P<extra>[^"']+)["']$""")


def requested_extras(requirement: str) -> set[str]:
    """The extras a requirement asks for: {"mlflow", "postgres"} of ``x[mlflow,postgres]==1``."""
    match = re.match(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*\[([^\]]*)\]", requirement)
    return {normalize(e.strip()) for e in match.group(1).split(",") if e.strip()} if match else set()


def split(wheels: list[Path]) -> tuple[list[str], list[str]]:
    """(torch requirements, other requirements) of ``wheels``, each sorted and without duplicates.

    A wheel's own extras are left out, except those another of the wheels asks for (sweep requires
    ``hydra-optuna-studies[mlflow,postgres]``): their requirements are kept, without the ``extra ==`` marker.
    """
    found = dict(metadata(w) for w in wheels)
    wanted: dict[str, set[str]] = {name: set() for name in found}
    for requires in found.values():
        for requirement in requires:
            if name_of(requirement) in found:
                wanted[name_of(requirement)] |= requested_extras(requirement)
    torch: set[str] = set()
    deps: set[str] = set()
    for dist, requires in found.items():
        for requirement in requires:
            spec, _, marker = (part.strip() for part in requirement.partition(";"))
            extra = EXTRA.match(marker)
            if extra:
                if normalize(extra.group("extra")) not in wanted[dist]:
                    continue  # an optional extra (dev, ...) nobody here asks for: not installed in the image
                requirement = f"{spec}; {extra.group('rest')}" if extra.group("rest") else spec
            elif re.search(r"\bextra\b", marker):
                raise SystemExit(f"wheel-requirements: cannot read the marker of {requirement!r}")
            name = name_of(requirement)
            if name not in found:
                (torch if name in TORCH else deps).add(requirement.strip())
    return sorted(torch), sorted(deps)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: wheel-requirements.py WHEEL_DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        print(f"wheel-requirements: no wheels in {folder}", file=sys.stderr)
        return 1
    torch, deps = split(wheels)
    if {name_of(r) for r in torch} != TORCH:
        print(f"wheel-requirements: expected requirements on torch and torchvision, got {torch}", file=sys.stderr)
        return 1
    (folder / "torch.txt").write_text("".join(f"{r}\n" for r in torch))
    (folder / "deps.txt").write_text("".join(f"{r}\n" for r in deps))
    for label, reqs in (("torch.txt", torch), ("deps.txt", deps)):
        print(f"{label}: {', '.join(reqs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
