"""The source document's command and output blocks, extracted from its plain text.

The source document (``../shared/seed/*.txt``, GKE's preview-to-GA migration guide) is the
project's acceptance test: ``tests/acceptance/`` runs its commands, as extracted here, against
``infergate up``. See ``docs/acceptance.md``.
"""

from infergate.seed.blocks import SeedBlock, extract_blocks, load_seed_document

__all__ = ["SeedBlock", "extract_blocks", "load_seed_document"]
