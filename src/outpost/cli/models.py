"""`outpost models ...`: list, pull, create, show, rm, fit."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from outpost.app import Outpost
from outpost.cli.console import err, guarded, out, print_json, progress_bars
from outpost.cli.routing import fit_break_even
from outpost.errors import ConfigError, OutpostError
from outpost.models.modelfile import load_modelfile
from outpost.models.pull import pull
from outpost.models.registry import ModelEntry, Registry

models_app = typer.Typer(
    help="Manage local GGUF models: list, pull, create from a Modelfile, show, remove, fit.", no_args_is_help=True
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _home(ctx: typer.Context) -> Path:
    return Outpost(home=ctx.obj.get("home")).settings.home


def _params(entry: ModelEntry) -> str:
    n = entry.metadata.get("parameters") or 0
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


@models_app.command("list")
@guarded
def list_cmd(ctx: typer.Context, json_out: Json = False) -> None:
    """Models: name, family, parameters, quantisation, size, context, source."""
    entries = Registry(_home(ctx)).list()
    if json_out:
        print_json(entries)
        return
    table = Table("name", "family", "parameters", "quant", "size", "context", "source")
    for e in entries:
        table.add_row(
            e.name,
            e.family,
            _params(e),
            str(e.metadata.get("quantization", "")),
            f"{e.size / 1e6:.0f} MB",
            str(e.metadata.get("context_length", "")),
            e.source + (f" ← {e.base}" if e.base else ""),
        )
    out.print(table)


@models_app.command("pull")
@guarded
def pull_cmd(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="A .gguf file, hub://NAME (a synced hub), or hf://OWNER/REPO/FILE.gguf.")
    ],
    name: Annotated[Optional[str], typer.Option("--name", help="Name to register it under.")] = None,
) -> None:
    """Copy a model into the registry, hashed and verified; a half copy never shows up."""
    with progress_bars() as progress:
        entry = pull(_home(ctx), source, name, progress)
    err.print(f"pulled {entry.name} ({entry.size / 1e6:.0f} MB, sha256 {entry.sha256[:12]})")


def _adapter_file(registry: Registry, adapter: str) -> str:
    """An ADAPTER value as a file: a path as is, or a registered adapter's blob (``outpost models pull hub://X``)."""
    if Path(adapter).is_file():
        return adapter
    try:
        return registry.get(adapter).path
    except OutpostError:
        raise ConfigError(
            f"ADAPTER {adapter} is neither a file nor a pulled model (llama.cpp loads LoRA adapters in GGUF form)"
        ) from None


@models_app.command("create")
@guarded
def create_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new model.")],
    file: Annotated[Path, typer.Option("-f", "--file", help="Modelfile (Ollama syntax: FROM, SYSTEM, PARAMETER ...).")],
) -> None:
    """Create a model from a Modelfile: the base's weights (shared, not copied) plus its overlay."""
    home = _home(ctx)
    modelfile = load_modelfile(file)
    registry = Registry(home)
    base_ref = modelfile.from_
    if base_ref.lower().endswith(".gguf"):
        base = registry.pull_file(Path(base_ref), Path(base_ref).stem.lower())
    else:
        base = registry.get(base_ref)
    adapters = [_adapter_file(registry, adapter) for adapter in modelfile.adapters]
    entry = registry.derive(name, base, replace(modelfile, adapters=adapters).to_text())
    for note in modelfile.unused():
        err.print(f"warning: {note}")
    err.print(f"created {entry.name} from {base.name}")


@models_app.command("show")
@guarded
def show_cmd(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Model name.")], json_out: Json = False
) -> None:
    """Everything known about a model: file, hash, GGUF header metadata, Modelfile."""
    entry = Registry(_home(ctx)).get(name)
    if json_out:
        print_json(entry)
        return
    for key in ("name", "source", "base", "path", "sha256", "size", "created_at"):
        out.print(f"{key:>12}: {getattr(entry, key)}")
    for key, value in entry.metadata.items():
        if key != "chat_template":
            out.print(f"{key:>12}: {value}")
    if entry.modelfile:
        out.print("\nModelfile:\n" + entry.modelfile)


@models_app.command("rm")
@guarded
def rm_cmd(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Remove a model (its file goes once no other model uses it; bundled files stay)."""
    entry = Registry(_home(ctx)).remove(name)
    err.print(f"removed {entry.name}")


PLANNING_SIZES = (0.5, 1.5, 3, 7, 14, 32, 70)


def _plan_json(p: Any) -> dict[str, Any]:
    return {
        "model": p.spec.name,
        "quant": p.spec.quant,
        "params_b": round(p.spec.params_b, 2),
        "fits": p.fits,
        "where": p.where,
        "gpu_layers": p.gpu_layers,
        "n_ctx": p.n_ctx,
        "tokens_per_s": round(p.tokens_per_s, 1),
        "memory_bytes": p.memory.total,
        "reason": p.reason,
        "explain": p.explain(),
    }


@models_app.command("fit")
@guarded
def fit_cmd(
    ctx: typer.Context,
    models: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Registered model names, .gguf paths, or sizes like 32B or 32B:Q8_0 (default: registered models "
            "plus the best quant for common sizes)."
        ),
    ] = None,
    profile: Annotated[
        Optional[str],
        typer.Option(help="Plan for a synthetic machine instead of this one: laptop-8gb, gpu-24gb, h100-80gb."),
    ] = None,
    n_ctx: Annotated[
        Optional[int], typer.Option("--ctx", help="Context to plan for (default: the largest that fits).")
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show the arithmetic behind each plan.")] = False,
    volume: Annotated[
        Optional[float],
        typer.Option(min=0, help="Requests a day: show the break-even of this machine against the remote's price."),
    ] = None,
    price_in: Annotated[Optional[float], typer.Option(min=0, help="Remote USD per million tokens in.")] = None,
    price_out: Annotated[Optional[float], typer.Option(min=0, help="Remote USD per million tokens out.")] = None,
    hardware_usd: Annotated[float, typer.Option(min=0, help="--volume: what the local machine costs.")] = 2000.0,
    json_out: Json = False,
) -> None:
    """Which models, quantisations and contexts fit this machine, how fast, and why (arithmetic shown).

    With --volume, also the monthly cost of answering that many requests here vs on the remote (its
    configured prices, or --price-in/--price-out) and the break-even volume (docs/routing.md).
    """
    from outpost.models import advisor

    op = Outpost(home=ctx.obj.get("home"))
    hardware = advisor.Hardware.profile(profile) if profile else advisor.detect_hardware()
    index_bytes = sum(info.bytes_on_disk for info in op.collections())
    specs: list[advisor.ModelSpec] = []
    registry = Registry(op.settings.home)
    for name in models or [e.name for e in registry.list()]:
        sized = advisor.spec_from_size(name)
        specs.append(
            sized
            or advisor.ModelSpec.from_gguf(Path(name) if name.endswith(".gguf") else Path(registry.get(name).path))
        )
    plans = [advisor.plan(hardware, spec, n_ctx, index_bytes) for spec in specs]
    if not models:
        for size in PLANNING_SIZES:
            plans.append(advisor.plan(hardware, advisor.candidate_quants(size), n_ctx, index_bytes))
    fitting = [p for p in plans if p.fits and p.tokens_per_s > 0]
    costs = None
    if volume is not None and fitting:  # priced for the first registered model that fits (the one in use)
        costs = fit_break_even(op, fitting[0].tokens_per_s, volume, price_in, price_out, hardware_usd)
    if json_out:
        print_json(
            {"hardware": hardware.describe(), "index_bytes": index_bytes, "plans": [_plan_json(p) for p in plans]}
            | ({"break_even": {"model": fitting[0].spec.name, **asdict(costs)}} if costs else {})
        )
        return
    for line in hardware.describe():
        out.print(line)
    out.print(f"local vector index and collections: {index_bytes / 1e6:.1f} MB (counted against RAM)")
    table = Table("model", "quant", "fits", "where", "GPU layers", "context", "tok/s", "memory")
    for p in plans:
        table.add_row(
            p.spec.name,
            p.spec.quant,
            "yes" if p.fits else "no",
            p.where,
            str(p.gpu_layers),
            str(p.n_ctx),
            f"{p.tokens_per_s:.1f}",
            f"{p.memory.total / 1e9:.2f} GB",
        )
    out.print(table)
    for p in plans:
        if explain or not p.fits:
            out.print(f"\n{p.spec.name} {p.spec.quant}:")
            for line in p.explain() if explain else [p.reason]:
                out.print(f"  {line}")
    if costs is not None:
        out.print(f"\nLocal ({fitting[0].spec.name}, {fitting[0].tokens_per_s:.1f} tok/s) vs remote:")
        for line in costs.explain():
            out.print(f"  {line}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
