"""Pin the public surface: what `from outpost import *` offers is a promise to notebook users."""

import outpost


def test_exported_members() -> None:
    assert sorted(outpost.__all__) == [
        "Answer",
        "Chunk",
        "CollectionInfo",
        "Document",
        "Hit",
        "Outpost",
        "OutpostError",
        "Settings",
        "Source",
        "__version__",
    ]
    for name in outpost.__all__:
        assert hasattr(outpost, name), name


def test_settings_follow_the_home_and_environment(home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OUTPOST_TOP_K", "9")
    home.mkdir(parents=True)
    (home / "config.toml").write_text('llm_model = "custom.gguf"\ntop_k = 3\n')
    settings = outpost.Settings()
    assert settings.home == home
    assert settings.llm_model == "custom.gguf"  # from config.toml
    assert settings.top_k == 9  # the environment beats the file
    assert settings.with_overrides(top_k=2, llm_model=None).top_k == 2  # flags beat both; unset flags don't
