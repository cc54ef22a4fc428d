"""How the converter names the GA objects it creates."""

from __future__ import annotations

import re

PREVIEW_SUFFIX = "-preview"
DEFAULT_POOL_NAME_SUFFIX = "-ga"
# The inferencepool Helm chart (v0.3.0 and v1.0.0) names the EPP Deployment/Service
# "<release name truncated to 40 characters>-epp"; the pool is named after the release.
_HELM_NAME_LIMIT = 40
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_DNS_SUBDOMAIN_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")


def ga_pool_name(preview_name: str, suffix: str = DEFAULT_POOL_NAME_SUFFIX) -> str:
    """The GA pool's name: a trailing ``-preview`` is replaced by ``suffix``, otherwise ``suffix`` is appended.

    ``vllm-llama3-8b-instruct-preview`` -> ``vllm-llama3-8b-instruct-ga``; ``my-pool`` -> ``my-pool-ga``;
    an empty suffix keeps the name (the GA pool is a different resource, so the names do not collide).
    """
    if suffix and preview_name.endswith(PREVIEW_SUFFIX):
        return preview_name[: -len(PREVIEW_SUFFIX)] + suffix
    return preview_name + suffix


def helm_epp_name(pool_name: str) -> str:
    """The EPP Service the inferencepool Helm chart creates for a release (and pool) named ``pool_name``."""
    return pool_name[:_HELM_NAME_LIMIT] + "-epp"


def is_dns_label(name: str, longest: int = 63) -> bool:
    """Whether ``name`` is an RFC 1123 label (a namespace; a name others are derived from) of at most ``longest``."""
    return len(name) <= longest and bool(_DNS_LABEL_RE.fullmatch(name))


def is_dns_subdomain(name: str) -> bool:
    """Whether ``name`` is a valid object name (RFC 1123 subdomain, at most 253 characters)."""
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN_RE.match(name))
