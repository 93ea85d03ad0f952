"""Signed snapshot and delta packs: the format, its signing keys, and squashing delta chains."""

from outpost.packs.format import FORMAT_VERSION, PACK_FILES, pack_name, read_manifest, read_pack, write_pack
from outpost.packs.signing import generate_key, load_private_key, parse_public_key, public_key_text
from outpost.packs.squash import squash

__all__ = [
    "FORMAT_VERSION",
    "PACK_FILES",
    "generate_key",
    "load_private_key",
    "pack_name",
    "parse_public_key",
    "public_key_text",
    "read_manifest",
    "read_pack",
    "squash",
    "write_pack",
]
