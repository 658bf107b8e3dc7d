"""Templates a sandbox can be created from.

Today the built-in ones: a template per language, on the backend's base image.
"""

from __future__ import annotations

from corral.errors import NotFoundError
from corral.models import Language
from corral.protocol import wire

#: Built-in template name -> the language of its sandboxes.
BUILTIN: dict[str, Language] = {language: language for language in wire.LANGUAGES}


def resolve_template(name: str) -> Language:
    """The language of template ``name``; NotFoundError for an unknown one."""
    if name not in BUILTIN:
        raise NotFoundError(f"unknown template {name!r}; the built-in templates are {', '.join(sorted(BUILTIN))}")
    return BUILTIN[name]
