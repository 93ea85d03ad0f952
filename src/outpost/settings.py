"""One settings model for the CLI, the Python API and (later) the servers.

Precedence: defaults < ``<home>/config.toml`` < ``OUTPOST_*`` environment variables < explicit arguments
(CLI flags pass them as keyword arguments). ``<home>`` is the ``home`` argument when one is given, else
``$OUTPOST_HOME`` or the per-user data dir. All state lives under ``home``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["RoutingSettings", "Settings", "default_home"]


def default_home() -> Path:
    """``$OUTPOST_HOME`` if set, else the per-user data directory (e.g. ~/.local/share/outpost)."""
    env = os.environ.get("OUTPOST_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("outpost"))


def _config_home(init_settings: PydanticBaseSettingsSource) -> Path:
    """The home whose config.toml applies: the one passed in (``Settings(home=X)``, ``Outpost(home=X)``), else
    :func:`default_home`. Reading the environment's home for an explicit one mixed two homes' settings."""
    given = getattr(init_settings, "init_kwargs", {}).get("home")
    return Path(given).expanduser() if given is not None else default_home()


class RoutingSettings(BaseModel):
    """``[routing]`` in config.toml: when a question may go to a remote model (``docs/routing.md``).

    Unknown keys are refused (a typo must not silently leave the policy at its default).
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["local", "auto", "remote"] = Field(
        "local",
        description="local: never send anything; auto: remote when asked, too long or low confidence; "
        "remote: remote whenever the context may go.",
    )
    remote: str | None = Field(None, description="The remote (`outpost remote add`) to use; default: the only one.")
    min_evidence: float = Field(
        0.35, ge=0.0, le=1.0, description="auto: below this best-evidence score the local answer is judged unsure."
    )
    timeout_s: float = Field(20.0, gt=0, description="Seconds to wait for a remote before answering locally.")
    log_questions: bool = Field(False, description="Keep question text in audit.sqlite (else only its sha256).")


class Settings(BaseSettings):
    """Every knob of a local Outpost; field docs double as CLI help."""

    model_config = SettingsConfigDict(env_prefix="OUTPOST_", extra="ignore")

    home: Path = Field(
        default_factory=default_home,
        description="Folder for all Outpost state (default: $OUTPOST_HOME, else the per-user data dir).",
    )
    embed_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Embedding model: a sentence-transformers name or a local folder.",
    )
    embed_batch_size: int = Field(64, ge=1, description="Texts per embedding batch.")
    embed_backend: Literal["auto", "torch", "gpu", "onnx", "onnx-int8"] = Field(
        "auto",
        description="Embedding runtime: auto (CUDA: fast torch path; CPU: ONNX Runtime when its vectors match), "
        "torch (sentence-transformers), gpu, onnx, onnx-int8 (quantised: a different embedding identity).",
    )
    embed_cache: Path | None = Field(
        None, description="Exported ONNX graphs, content-addressed (default HOME/models/onnx; homes may share one)."
    )
    device: str | None = Field(None, description="Torch device for embeddings (default: cuda if present).")
    chunk_tokens: int = Field(200, ge=16, description="Chunk size in the embedder's word pieces.")
    chunk_overlap: int = Field(30, ge=0, description="Word pieces shared by consecutive chunks.")
    llm_model: str = Field("gemma3-270m", description="Chat model: a bundled name or a .gguf path.")
    n_ctx: int = Field(4096, ge=256, description="LLM context window in tokens.")
    n_threads: int | None = Field(None, description="llama.cpp threads (default: the CPUs this process may use).")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature; 0 is greedy.")
    max_tokens: int = Field(384, ge=1, description="Most tokens to generate for an answer.")
    top_k: int = Field(5, ge=1, description="Chunks retrieved for an answer.")
    prompt_sentences: int = Field(
        1, ge=0, description="Best evidence sentences given to the model instead of whole chunks (0: whole chunks)."
    )
    grounding: bool = Field(
        True, description="Check each answer sentence against its sources and mark unsupported ones."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    bm25_weight: float = Field(1.0, ge=0.0, description="Weight of BM25 ranks in fusion.")
    dense_weight: float = Field(1.0, ge=0.0, description="Weight of vector ranks in fusion.")
    keep_alive: float = Field(300.0, ge=0, description="Seconds an idle model stays loaded in `outpost serve`.")
    api_key: str | None = Field(None, description="If set, `outpost serve` requires `Authorization: Bearer KEY`.")
    serve_host: str = Field("127.0.0.1", description="Address `outpost serve` binds (loopback only by default).")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names `outpost serve` answers to besides loopback and its bound address (DNS-rebinding "
        "defence: any other Host header is refused).",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Web origins (scheme://host:port) whose pages may call `outpost serve` from a browser; "
        "requests from any other origin are refused.",
    )
    share_query_text: bool = Field(False, description="Upload query text with feedback (else only vectors and ids).")
    max_pack_bytes: int = Field(
        4 * 2**30,
        ge=1,
        description="Largest pack file `outpost sync` downloads, in bytes (a hub announcing more is refused).",
    )
    hub_train_every: int = Field(200, ge=0, description="Hub: train an adapter after this many new votes (0: never).")
    hub_feedback_max_items: int = Field(500, ge=1, description="Hub: most feedback items in one upload.")
    hub_feedback_max_bytes: int = Field(
        16 * 2**20, ge=1024, description="Hub: largest request body in bytes (larger: 413, never read)."
    )
    hub_feedback_token_share: float = Field(
        0.5, gt=0.0, le=1.0, description="Hub: largest share of adapter training data one token may supply (1: no cap)."
    )
    hub_keep_versions: int = Field(
        20, ge=0, description="Hub: `hub prune` keeps deltas for clients this many versions behind (older: snapshot)."
    )
    hub_api_docs: bool = Field(False, description="Hub: serve /docs, /redoc and /openapi.json (behind the token gate).")
    hub_db: str | None = Field(
        None,
        description="Hub: metadata database URL, postgresql://… (shared by several `hub serve`); unset: hub.sqlite.",
    )
    exact_search_below: int = Field(
        5000, ge=0, description="Collections smaller than this are searched exactly, not by ANN."
    )
    max_file_mb: int = Field(200, ge=1, description="Ingest: larger files are skipped and reported (MB).")
    file_timeout_s: float = Field(
        30.0, ge=0, description="Ingest: a file whose parsing takes longer is abandoned and reported (0: no limit)."
    )
    routing: RoutingSettings = Field(
        default_factory=RoutingSettings, description="Hybrid answering policy (`[routing]` in config.toml)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_home(init_settings) / "config.toml")
        return (init_settings, env_settings, toml)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced; ``None`` values (unset CLI flags) are ignored."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return self.model_copy(update=changes) if changes else self

    @property
    def collections_dir(self) -> Path:
        return self.home / "collections"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"
