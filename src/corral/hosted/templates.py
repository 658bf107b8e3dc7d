"""Templates a sandbox can be created from: the built-in ones, and built ones stored per owner.

A built-in template is a language on the backend's base image. A built
template (see :mod:`corral.hosted.template_build`) is a stored layer: the
files its steps left in the home directory (a files-snapshot manifest in the
blob store), plus its env, start_cmd and ready_cmd. Its id is the hash of its
definition without the name, so the same definition builds once.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from corral.contract.schemas import TemplateDefinition, TemplateInfo
from corral.errors import NotFoundError
from corral.hosted.database import Database
from corral.models import Language
from corral.protocol import wire

#: Built-in template name -> the language of its sandboxes.
BUILTIN: dict[str, Language] = {language: language for language in wire.LANGUAGES}


@dataclass(frozen=True)
class ResolvedTemplate:
    """What creating a sandbox from a template needs."""

    name: str
    language: Language
    definition: TemplateDefinition | None = None
    manifest_digest: str | None = None


def sandbox_env(template: ResolvedTemplate) -> dict[str, str]:
    """The env a sandbox of ``template`` starts with: the definition's, then its env steps in order."""
    if template.definition is None:
        return {}
    env = dict(template.definition.env)
    for step in template.definition.steps:
        env.update(step.env or {})
    return env


def template_id(definition: TemplateDefinition) -> str:
    """The content address of a definition (its name is only a label)."""
    canonical = json.dumps(definition.model_dump(mode="json", exclude={"name"}), sort_keys=True)
    return "tpl_" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


class TemplateStore:
    """Built templates by owner and name (or id)."""

    def __init__(self, db: Database):
        self.db = db

    def resolve(self, owner: str, name: str) -> ResolvedTemplate:
        """A built-in template, or the owner's built template by name or id; NotFoundError otherwise."""
        if name in BUILTIN:
            return ResolvedTemplate(name, BUILTIN[name])
        row = self._row(owner, name)
        definition = TemplateDefinition.model_validate_json(row["definition_json"])
        return ResolvedTemplate(row["name"], definition.base, definition, row["manifest_digest"])

    def cached(self, owner: str, definition: TemplateDefinition) -> TemplateInfo | None:
        """The owner's template built from an identical definition, recorded under this name too."""
        rows = self.db.query("SELECT * FROM templates WHERE owner = ? AND id = ? LIMIT 1",
                             (owner, template_id(definition)))
        if not rows:
            return None
        row = rows[0]
        self.record(owner, definition, row["manifest_digest"], row["file_count"], row["size_bytes"],
                    row["build_seconds"])
        return self.get(owner, definition.name).model_copy(update={"cached": True})

    def record(self, owner: str, definition: TemplateDefinition, manifest_digest: str, file_count: int,
               size_bytes: int, build_seconds: float) -> None:
        """Store a built template under its name (replacing what the name meant before)."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO templates (owner, name, id, definition_json, manifest_digest, file_count,"
                " size_bytes, build_seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (owner, definition.name, template_id(definition), definition.model_dump_json(), manifest_digest,
                 file_count, size_bytes, build_seconds, time.time()),
            )

    def get(self, owner: str, name: str) -> TemplateInfo:
        """The owner's template by name or id."""
        return _info(self._row(owner, name))

    def list(self, owner: str) -> list[TemplateInfo]:
        """The owner's templates by name."""
        return [_info(row) for row in self.db.query("SELECT * FROM templates WHERE owner = ? ORDER BY name", (owner,))]

    def delete(self, owner: str, name: str) -> None:
        """Forget a template name (sandboxes made from it are unaffected)."""
        self._row(owner, name)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM templates WHERE owner = ? AND (name = ? OR id = ?)", (owner, name, name))

    def _row(self, owner: str, name: str):
        rows = self.db.query("SELECT * FROM templates WHERE owner = ? AND (name = ? OR id = ?) LIMIT 1",
                             (owner, name, name))
        if not rows:
            raise NotFoundError(f"unknown template {name!r}; the built-in templates are {', '.join(sorted(BUILTIN))}"
                                ", others are built with `corral template build`")
        return rows[0]


def _info(row) -> TemplateInfo:
    definition = json.loads(row["definition_json"])
    return TemplateInfo(id=row["id"], name=row["name"], base=definition["base"], file_count=row["file_count"],
                        size_bytes=row["size_bytes"], build_seconds=row["build_seconds"], created_at=row["created_at"])
