"""The serving image (`infra/k8s/Dockerfile`) and the reference the RayService names.

The tag is a digest of the image's inputs: the Dockerfile, the .dockerignore and the files of
the working tree its COPY instructions take (`src-` and 20 hex digits). A commit cannot name
itself, and the RayService rendered into a commit is written before that commit exists (and a
squash or rebase merge gives it another id), so a tag from the commit could not be computed
by both sides. The inputs' digest can: `mlops render k8s` computes it before the commit, the
image job of ci.yml computes it (`mlops ci image-tag`) in the commit on main and pushes the
image under it and under that commit's SHA. Commits that do not touch the inputs (a release,
a rollout step, a revert) keep the tag, so the image they name already exists.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from services.gitutil import working_files
from services.settings import PACKAGE_REPO, get_settings

DOCKERFILE = "infra/k8s/Dockerfile"
DOCKERIGNORE = ".dockerignore"
TAG_PREFIX = "src-"
TAG_DIGITS = 20
TAG_PATTERN = re.compile(rf"{TAG_PREFIX}[0-9a-f]{{{TAG_DIGITS}}}")


class ImageError(ValueError):
    """A Dockerfile or an image repository this module cannot work with."""


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context paths that the Dockerfile's COPY instructions take (shell form)."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    sources: list[str] = []
    for line in joined.splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY":
            continue
        if words[1].startswith("["):
            raise ImageError(f"{DOCKERFILE}: write COPY in shell form: {line.strip()}")
        if any(word.startswith("--from") for word in words[1:]):
            continue  # from another stage or image, not from the build context
        paths = [word for word in words[1:] if not word.startswith("--")]
        sources += [path.rstrip("/") or "." for path in paths[:-1]]
    return sources


# Service specs shape the next version, not the running one (a served version carries the
# spec it was trained with): the image leaves them out (.dockerignore), so a pull request that
# changes a model's params does not change the image or the RayService that names it.
SERVICE_SPEC = re.compile(r"services/[^/]+/service\.yaml")


def inputs(root: Path = PACKAGE_REPO) -> list[str]:
    """The files of `root` that go into the image or shape what goes in, sorted."""
    dockerfile = (root / DOCKERFILE).read_text()
    files = working_files(root, DOCKERFILE, DOCKERIGNORE, *copied_sources(dockerfile))
    return [name for name in files if not SERVICE_SPEC.fullmatch(name)]


def image_tag(root: Path = PACKAGE_REPO) -> str:
    """The tag of the image built from `root`: a digest of its inputs' names and contents."""
    digest = hashlib.sha256()
    for name in inputs(root):
        content = (root / name).read_bytes()
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return TAG_PREFIX + digest.hexdigest()[:TAG_DIGITS]


def image_reference(root: Path = PACKAGE_REPO) -> str:
    """`<MLOPS_SERVING_IMAGE>:<image_tag>`: the image the RayService runs."""
    repository = get_settings().serving_image
    if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        raise ImageError(
            f"MLOPS_SERVING_IMAGE={repository!r}: name the repository without a tag or digest "
            "(the tag is computed: `mlops ci image-tag`)"
        )
    return f"{repository}:{image_tag(root)}"
