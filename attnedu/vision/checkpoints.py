"""Chapter 8's shipped checkpoints: small models trained once, offline, by a recipe that anyone can rerun.

Some of chapter 8's models take minutes to train on a laptop's CPU, longer than a chapter may run, so the
package ships them in ``attnedu/data/vision/``: ``<name>.pt`` (the configuration and the weights, at most 5 MB)
and ``<name>.json`` beside it, the record of the run that made it (the recipe's settings, its first losses,
the seconds it took and what the model measured as saved).

A **recipe** is a function in the model's module, ``recipe(stop_after=None, progress=True) -> (model, record)``,
fully seeded: rerun it and it makes the same model. ``stop_after=n`` runs only its first ``n`` steps, with the
schedule of the whole run, which is how the tests check, in seconds, that a recipe still starts exactly as the
run that made the shipped file did (:func:`first_losses`).

Reproduce one (on one CPU thread, as recorded)::

    python -m attnedu.vision.checkpoints captioner        # writes attnedu/data/vision/captioner.{pt,json}
    python -m attnedu.vision.checkpoints --list
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

__all__ = ["RECIPES", "DIRECTORY", "MAX_BYTES", "FIRST_LOSSES", "load", "record", "path", "reproduce",
           "first_losses", "save"]

#: where the shipped checkpoints live
DIRECTORY = Path(__file__).resolve().parents[1] / "data" / "vision"
#: the most bytes a shipped checkpoint may have
MAX_BYTES = 5 * 1024 * 1024
#: how many first losses a record keeps
FIRST_LOSSES = 20
#: checkpoint name -> "module:recipe function" (modules of attnedu.vision); each module's ``load_model(data)``
#: rebuilds the model from what :func:`save` wrote
RECIPES = {
    "captioner": "captions:recipe",
    "superres": "superres:superres_recipe",
    "denoise": "superres:denoise_recipe",
    "text-to-image": "text_to_image:recipe",
}


def _recipe(name: str):
    if name not in RECIPES:
        raise ValueError(f"no checkpoint named {name!r}: chapter 8 ships {', '.join(RECIPES)}")
    module, fn = RECIPES[name].split(":")
    return importlib.import_module(f"{__package__}.{module}"), fn


def path(name: str, directory: Path | str | None = None) -> Path:
    """The ``.pt`` file of checkpoint ``name``."""
    _recipe(name)
    return Path(directory or DIRECTORY) / f"{name}.pt"


def save(name: str, model: torch.nn.Module, config: dict, rec: dict, directory: Path | str | None = None) -> Path:
    """Write ``<name>.pt`` (``config`` and the weights, float16 for size) and ``<name>.json`` (``rec``)."""
    out = path(name, directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"name": name, "config": config, "state_dict": state}, out)
    size = out.stat().st_size
    if size > MAX_BYTES:
        out.unlink()
        raise ValueError(f"checkpoint {name!r} would be {size / 2**20:.1f} MB, over the {MAX_BYTES / 2**20:.0f} MB "
                         "limit: make the model smaller")
    rec = {**rec, "bytes": size}
    out.with_suffix(".json").write_text(json.dumps(rec, indent=1) + "\n")
    return out


def record(name: str, directory: Path | str | None = None) -> dict:
    """The record of the run that made checkpoint ``name`` (its ``.json``)."""
    p = path(name, directory).with_suffix(".json")
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {name!r} has no record at {p}: reinstall attnedu, or make it with "
                                f"`python -m attnedu.vision.checkpoints {name}`")
    return json.loads(p.read_text())


def load(name: str, directory: Path | str | None = None, **kwargs) -> torch.nn.Module:
    """The shipped model ``name``, in float32 and eval mode (keyword arguments go to the module's ``load_model``)."""
    p = path(name, directory)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {name!r} is missing at {p}: reinstall attnedu (the file ships in "
                                f"the package), or make it with `python -m attnedu.vision.checkpoints {name}`")
    data = torch.load(p, map_location="cpu", weights_only=True)
    data["state_dict"] = {k: (v.float() if v.is_floating_point() else v) for k, v in data["state_dict"].items()}
    module, _ = _recipe(name)
    return module.load_model(data, **kwargs).eval()


def first_losses(name: str, n: int = FIRST_LOSSES) -> list[float]:
    """Run the first ``n`` steps of checkpoint ``name``'s recipe and return their losses."""
    module, fn = _recipe(name)
    with _one_thread():
        _, rec = getattr(module, fn)(stop_after=n, progress=False)
    return rec["first_losses"][:n]


class _one_thread:
    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


def reproduce(name: str, directory: Path | str | None = None, progress: bool = True) -> dict:
    """Run checkpoint ``name``'s whole recipe on one thread and save it; returns its record."""
    module, fn = _recipe(name)
    start = time.perf_counter()
    with _one_thread():
        model, rec = getattr(module, fn)(progress=progress)
    rec = {**rec, "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__}
    save(name, model, rec.pop("config"), rec, directory)
    return record(name, directory)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnedu.vision.checkpoints", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"checkpoints to make: {', '.join(RECIPES)}")
    parser.add_argument("--list", action="store_true", help="list the checkpoints and their records")
    parser.add_argument("--out", default=None, help="write here instead of attnedu/data/vision/")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for name in RECIPES:
            p = path(name)
            print(f"{name:<14} {p.stat().st_size / 2**20:5.2f} MB" if p.exists() else f"{name:<14} (missing)")
        return 0
    for name in args.names:
        rec = reproduce(name, args.out)
        print(json.dumps({k: v for k, v in rec.items() if k != "first_losses"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
