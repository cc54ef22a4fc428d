"""`infergate.seed.extract_blocks` on small documents shaped like the source document."""

from __future__ import annotations

from pathlib import Path

import pytest

from infergate.seed import extract_blocks, load_seed_document

DOC = """\
見出し

kubectl を使用して API バージョンを区別する

    kubectl get a --all-namespaces
    kubectl get b --all-namespaces

  説明。

    helm install x \\
    --set a=b \\
    chart

      kubectl apply -f - <<EOF
      ---
      kind: Thing
      metadata:
        name: n
      EOF

      出力は次のようになります。

      NAME   CLASS
      n      c

      curl -d '{
      "a": 1
      }'
"""


def test_blocks_continuations_heredoc_quotes_and_outputs() -> None:
    blocks = extract_blocks(DOC)
    assert [(b.kind, b.line) for b in blocks] == [("command", 5), ("command", 10), ("command", 14),
                                                  ("output", 23), ("command", 26)]
    assert blocks[0].text == "kubectl get a --all-namespaces\nkubectl get b --all-namespaces\n"
    assert blocks[1].text == "helm install x \\\n--set a=b \\\nchart\n"
    # dedented by the first line: the here-document's EOF in column 0, the YAML keeps its nesting
    assert blocks[2].text == "kubectl apply -f - <<EOF\n---\nkind: Thing\nmetadata:\n  name: n\nEOF\n"
    assert blocks[3].text == "NAME   CLASS\nn      c\n"
    assert blocks[4].text == "curl -d '{\n\"a\": 1\n}'\n"
    assert blocks[4].first_line == "curl -d '{"


@pytest.mark.parametrize(("text", "error"), [
    ("    kubectl apply -f - <<EOF\n    kind: X\n", "here-document without its EOF line"),
    ("    curl -d '{\n    x\n", "unterminated single quote"),
])
def test_unterminated_blocks_are_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        extract_blocks(text)


def test_load_seed_document_needs_exactly_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="found 0"):
        load_seed_document(tmp_path)
    (tmp_path / "doc.txt").write_text("x", encoding="utf-8")
    assert load_seed_document(tmp_path) == "x"
