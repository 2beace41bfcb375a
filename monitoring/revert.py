"""The revert change: the manifest's model version of a service set back to the `previous`
alias version, and the RayService re-rendered from it. Built from the committed manifest
(HEAD), never from the working tree."""

from __future__ import annotations

import logging
from pathlib import Path

from monitoring.pull_requests import Change
from serving.gitops import committed_text, manifest_copy
from serving.k8s import k8s_path, render
from serving.manifest import manifest_path, set_model_version, versions

log = logging.getLogger(__name__)


def revert_branch(service: str) -> str:
    return f"monitor/{service}/revert"


def build_revert_change(
    service: str,
    production_version: str,
    previous_version: str,
    evidence: str,
    repo: Path,
    env: str = "production",
) -> Change | None:
    """The manifest edit and its RayService; None when the committed manifest already serves
    `previous_version`."""
    manifest = manifest_path(env)
    relative, rayservice = (str(p.relative_to(repo)) for p in (manifest, k8s_path()))
    with manifest_copy(committed_text(manifest, "HEAD"), manifest.name) as path:
        if versions(path).get(service) == str(previous_version):
            log.info("%s: %s already serves v%s", service, relative, previous_version)
            return None
        replaced = set_model_version(path, service, str(previous_version))
        files = {relative: path.read_text(), rayservice: render(path, source=Path(relative))}
    title = f"Revert {service} to v{previous_version} (production v{production_version} degraded)"
    body = "\n".join(
        [
            f"The monitor found that `{service}` v{production_version}, promoted recently, "
            f"behaves worse than v{previous_version}. This pull request sets `model_version` of "
            f"`{service}` in `{relative}` from {replaced} back to {previous_version} (and "
            f"re-renders `{rayservice}`); merging it makes the deploy workflow apply it.",
            "",
            evidence,
        ]
    )
    return Change(
        branch=revert_branch(service),
        title=title,
        body=body,
        files=files,
        commit_message=f"Revert {service} to v{previous_version} in {relative}",
    )
