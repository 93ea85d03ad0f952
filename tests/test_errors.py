"""One error class per failure kind (``outpost/errors.py``), and each failure reported as its own kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hubkit import HubServer, outpost_cli
from outpost.embed.base import Embedder
from outpost.errors import (
    CollectionNotFoundError,
    ConfigError,
    IntegrityError,
    ModelNotFoundError,
    NotFoundError,
    OutpostError,
    PackError,
)
from outpost.feedback import FeedbackQueue
from outpost.hub.home import HubHome
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name, save_hub
from outpost.ingest.chunker import Chunker
from outpost.llm.bundled import resolve_gguf
from outpost.models.pull import pull
from outpost.models.registry import Registry
from outpost.records import EmbeddingIdentity
from outpost.remotes import RemoteStore


def test_the_kinds_share_a_base_and_keep_their_exit_codes() -> None:
    assert issubclass(CollectionNotFoundError, NotFoundError) and issubclass(ModelNotFoundError, NotFoundError)
    assert issubclass(PackError, IntegrityError) and issubclass(IntegrityError, OutpostError)
    assert (CollectionNotFoundError.exit_code, ModelNotFoundError.exit_code, PackError.exit_code) == (3, 6, 8)
    assert NotFoundError.http_status == 404 and ConfigError.http_status == 400


def test_a_model_missing_on_the_hub_is_a_missing_model_not_a_missing_collection(tmp_path: Path, home: Path) -> None:
    hub_home = tmp_path / "hub"
    key = HubHome.at(hub_home).init()
    Registry(HubHome.at(hub_home).root).pull_file(resolve_gguf("smollm2"), "approved")
    token = Tokens(HubHome.at(hub_home)).create("laptop", models=["approved"])[0]
    with HubServer(hub_home) as server:
        save_hub(home, HubConfig(hub_name(server.url), server.url, token, key))
        with pytest.raises(ModelNotFoundError, match="no model named 'nope'"):
            pull(home, "hub://nope")
        cli = outpost_cli("models", "pull", "hub://nope", home=home)
    assert cli.returncode == ModelNotFoundError.exit_code, cli.stderr
    assert "no model named 'nope'" in cli.stderr and "collection" not in cli.stderr.lower()
    assert len(cli.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_a_model_name_that_could_not_be_a_url_segment_is_refused_before_any_request(home: Path) -> None:
    with pytest.raises(ConfigError, match="Invalid model name"):
        pull(home, "hub://../collections/x")  # no hub is configured: the name is checked first


def test_settings_a_user_chose_are_config_errors_in_their_own_words() -> None:
    with pytest.raises(ConfigError, match=r"chunk_overlap \(150\) must be under half the chunk size \(200"):
        Chunker(lambda texts: [len(t.split()) for t in texts], 200, 150)


class _WrongShape(Embedder):
    """An embedder backend that returns one dimension too few (what a broken plugin might do)."""

    @property
    def identity(self) -> EmbeddingIdentity:
        return EmbeddingIdentity("wrong-shape", "0" * 64, 8, 64)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [1 for _ in texts]

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 7), dtype=np.float32)


def test_a_broken_embedder_is_named_not_a_bare_runtime_error() -> None:
    with pytest.raises(
        ConfigError, match=r"The embedder 'wrong-shape' returned vectors of shape \(2, 7\), not \(2, 8\)"
    ):
        _WrongShape().embed(["a", "b"])


def test_named_things_that_do_not_exist_are_not_found_errors(home: Path) -> None:
    with pytest.raises(NotFoundError, match="No remote named 'gpu'"):
        RemoteStore(home).get("gpu")
    queue = FeedbackQueue(home)
    try:
        with pytest.raises(NotFoundError, match="No single answer with id 'abc'"):
            queue.get("abc")
    finally:
        queue.close()


def test_a_hub_token_that_does_not_exist_is_a_not_found_error(tmp_path: Path) -> None:
    hub = HubHome.at(tmp_path / "hub")
    hub.init()
    tokens = Tokens(hub)
    with pytest.raises(NotFoundError, match="No live token named or numbered 'nobody'"):
        tokens.revoke("nobody")
    with pytest.raises(NotFoundError, match="No token with id 42"):
        tokens.get(42)
