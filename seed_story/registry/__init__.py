"""The model registry: immutable model versions and movable aliases, kept in the object store (no server).

A version is a checkpoint folder of this project (``seed_story.json`` + safetensors + tokenizer files) stored
under its content hash; an alias (``production``, ``candidate``) is a named pointer whose every move is a new,
create-only event, so its history is append-only and two concurrent moves cannot both land::

    models/{name}/versions/{version_id}/...              the checkpoint folder's files
    models/{name}/versions/{version_id}/version.json     ModelVersion: written last; a version without it is
                                                         invisible (never listed, resolved or pointed at)
    models/{name}/aliases/{alias}/{seq:08d}.json         AliasEvent seq 1, 2, ...: the highest is where the
                                                         alias points now

``version_id`` is the first 16 hex digits of sha256 over the sorted ``path<TAB>sha256`` lines of the files.
Generation takes ``models://name@alias`` or ``models://name@version_id`` wherever it takes a model folder.

Example::

    from seed_story.registry import Registry
    registry = Registry(open_store("s3://books/prod"))
    version = registry.register(Path("training/stage2/run7/final"), "seed-story")
    registry.promote("seed-story", version.version_id, by="ana@lab")
    folder = registry.fetch(registry.resolve("models://seed-story@production"), Path("~/.cache/seed-story/models"))
"""

from seed_story.registry.cache import cached_folder, fetch_version
from seed_story.registry.records import AliasAction, AliasEvent, FileEntry, ModelVersion, content_id
from seed_story.registry.refs import (
    ModelRef,
    check_alias,
    check_name,
    check_version_id,
    is_model_ref,
    is_version_id,
    parse_model_ref,
)
from seed_story.registry.registry import (
    AliasConflict,
    Registry,
    RegistryError,
    UnknownVersion,
    scan_checkpoint,
)

__all__ = [
    "AliasAction",
    "AliasConflict",
    "AliasEvent",
    "FileEntry",
    "ModelRef",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "UnknownVersion",
    "cached_folder",
    "check_alias",
    "check_name",
    "check_version_id",
    "content_id",
    "fetch_version",
    "is_model_ref",
    "is_version_id",
    "parse_model_ref",
    "scan_checkpoint",
]
